"""Concurrent requests: the same bytes as sequential ones, and health stays responsive."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from safetensors.torch import load

import service.workers.jobs as jobs
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

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


def test_health_answers_while_a_big_tensor_is_made(monkeypatch):
    """The event loop never runs the job: while a big tensor's job is held inside the engine,
    /healthz keeps answering (deterministic: the job is blocked until the probes are done)."""
    real, entered, release = jobs.make_tensor, threading.Event(), threading.Event()

    def held(spec, streams, *args, **kwargs):
        entered.set()
        release.wait(60)
        return real(spec, streams, *args, **kwargs)

    monkeypatch.setattr(jobs, "make_tensor", held)
    shape = [2048, 2048]
    with live_server() as server, ThreadPoolExecutor(1) as pool:
        big = pool.submit(
            httpx.post, f"{server.url}/v1/tensor",
            json={"shape": shape, "init": {"scheme": "trunc_normal"}, "seed": 0, "device": "cpu"}, timeout=120,
        )
        try:
            assert entered.wait(30)
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for _ in range(20):
                    assert client.get("/healthz").status_code == 200
            assert not big.done()  # every probe was answered while the job was still running
        finally:
            release.set()
        r = big.result()
        assert r.status_code == 200
        assert as_bytes(load(r.content)["weight"]) == as_bytes(reference(shape, "trunc_normal", {}, "float32", 0))
