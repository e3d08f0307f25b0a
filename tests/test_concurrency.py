"""Concurrent requests: the same bytes as sequential ones, and health stays responsive."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import live_server

RECIPES = [
    {"scheme": "normal"},
    {"scheme": "kaiming_uniform", "a": 2.23606797749979},
    {"scheme": "sparse", "sparsity": 0.2},
    {"scheme": "orthogonal"},
    {"scheme": "trunc_normal", "std": 0.02},
    {"scheme": "xavier_normal"},
    {"scheme": "variance_scaling"},
    {"scheme": "uniform"},
]


def test_eight_concurrent_requests_equal_their_sequential_results(server):
    bodies = [
        {"shape": [96, 64], "init": init, "seed": 1000 + i, "device": "cpu", "histogram_bins": 8}
        for i, init in enumerate(RECIPES)
    ]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        sequential = [client.post("/v1/tensor", json=b).content for b in bodies]
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda b: client.post("/v1/tensor", json=b).content, bodies * 2))
    assert concurrent == sequential * 2


def test_health_answers_while_a_big_tensor_is_made():
    with live_server() as server:
        done = threading.Event()

        def big():
            try:
                httpx.post(
                    f"{server.url}/v1/tensor",
                    json={"shape": [8192, 8192], "init": {"scheme": "trunc_normal"}, "seed": 0, "device": "cpu"},
                    timeout=120,
                ).raise_for_status()
            finally:
                done.set()

        worker = threading.Thread(target=big)
        worker.start()
        time.sleep(0.2)
        answered_during = 0
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not done.is_set():
                assert client.get("/healthz").status_code == 200
                answered_during += 1
                time.sleep(0.02)
        worker.join()
        assert answered_during > 0
