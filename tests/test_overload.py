"""Overload and faults: full queues, out-of-memory, dead and hung workers, disconnects, slow
clients and SIGTERM. None loses an admitted response or leaves the service unable to serve."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from safetensors.torch import load

import service.workers.jobs as jobs
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

BLOCK_SEED, OOM_SEED, CRASH_SEED = 4242, 5353, 6464


class Faults:
    """Wraps the engine's make_tensor: some seeds block, run out of memory or kill the thread."""

    def __init__(self, real):
        self.real = real
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, spec, streams, *args, **kwargs):
        if streams.seed == BLOCK_SEED:
            self.entered.set()
            self.release.wait(30)
        if streams.seed == OOM_SEED:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")
        if streams.seed == CRASH_SEED:
            raise SystemExit("simulated worker death")
        return self.real(spec, streams, *args, **kwargs)


@pytest.fixture
def faults(monkeypatch):
    f = Faults(jobs.make_tensor)
    monkeypatch.setattr(jobs, "make_tensor", f)
    yield f
    f.release.set()


def _body(seed, shape=(4, 4), **extra):
    return {"shape": list(shape), "init": {"scheme": "normal"}, "seed": seed, "device": "cpu", **extra}


def _drained(pool, timeout=10.0) -> bool:
    """In-flight bytes return to zero (the server releases just after the last byte is sent)."""
    deadline = time.monotonic() + timeout
    while pool.admissions["cpu"].in_flight_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.admissions["cpu"].in_flight_bytes == 0


def _until(condition, timeout=30.0) -> bool:
    """Wait for a state change (not a duration): ``condition()`` turns true, or give up."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def _works(url):
    r = httpx.post(f"{url}/v1/tensor", json=_body(1), timeout=30)
    assert r.status_code == 200
    assert as_bytes(load(r.content)["weight"]) == as_bytes(reference([4, 4], "normal", {}, "float32", 1))


def test_full_queue_answers_429_with_retry_after_then_recovers(faults):
    with live_server(queue_depth=1, retry_after_s=2) as server, ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED), timeout=30)
        assert faults.entered.wait(10)
        queued = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(2), timeout=30)
        assert _until(lambda: server.app.state.pool.workers["cpu"].queued == 1)  # the second waits
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(3), timeout=30)
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert "INITSVC_QUEUE_DEPTH" in r.json()["detail"]
        faults.release.set()
        assert running.result().status_code == 200 and queued.result().status_code == 200
        _works(server.url)


def test_bytes_in_flight_over_the_limit_answer_429_and_a_request_that_can_never_fit_413(faults):
    with live_server(max_inflight_bytes=100) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED, (4, 4)), timeout=30)
        assert faults.entered.wait(10)
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(2, (4, 4)), timeout=30)
        assert r.status_code == 429 and "INITSVC_MAX_INFLIGHT_BYTES" in r.json()["detail"] and "retry-after" in r.headers
        too_big = httpx.post(f"{server.url}/v1/tensor", json=_body(2, (8, 8)), timeout=30)
        assert too_big.status_code == 413 and too_big.json()["env_var"] == "INITSVC_MAX_INFLIGHT_BYTES"
        faults.release.set()
        assert running.result().status_code == 200
        _works(server.url)


def test_out_of_memory_answers_503_then_the_next_request_works(faults):
    with live_server() as server:
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(OOM_SEED), timeout=30)
        assert r.status_code == 503 and "out of memory" in r.json()["detail"] and "retry-after" in r.headers
        _works(server.url)
        assert _drained(server.app.state.pool)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the simulated death
def test_a_dead_worker_gives_503_and_is_replaced(faults):
    with live_server() as server:
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(CRASH_SEED), timeout=30)
        assert r.status_code == 503 and "died" in r.json()["detail"]
        _works(server.url)
        assert server.app.state.pool.workers["cpu"].restarts == 1
        assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_a_hung_worker_gives_503_and_is_replaced(faults):
    with live_server(job_timeout_s=1.0) as server:
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(BLOCK_SEED), timeout=30)
        assert r.status_code == 503 and "hung" in r.json()["detail"]
        _works(server.url)
        faults.release.set()


def test_a_client_that_disconnects_mid_body_frees_its_slot(monkeypatch):
    # The producer is held after its first piece, so the body cannot be complete (however much
    # the transport and socket buffers take) until the client has gone.
    held, first_sent = threading.Event(), threading.Event()

    class HeldProgress(jobs._Progress):
        def __call__(self, t, elements):
            if not first_sent.is_set():
                super().__call__(t, min(elements, 1 << 16))  # the first 256 KiB go out, then a pause
                first_sent.set()
                held.wait(30)
            super().__call__(t, elements)

    monkeypatch.setattr(jobs, "_Progress", HeldProgress)
    tensor_bytes = 4 * 2**23
    with live_server(max_inflight_bytes=tensor_bytes + 1024) as server:
        pool = server.app.state.pool
        body = _body(9, (2**23,), stats=False)
        try:
            with httpx.Client(timeout=30) as client, client.stream("POST", f"{server.url}/v1/tensor", json=body) as r:
                assert r.status_code == 200
                chunks = r.iter_raw(65536)  # kept: a dropped iterator closes the response
                next(chunks)
                assert first_sent.wait(30)
                assert pool.admissions["cpu"].in_flight_bytes == tensor_bytes
            assert _drained(pool)  # given back while the producer is still held
        finally:
            held.set()
        again = httpx.post(f"{server.url}/v1/tensor", json=_body(9, (2**23,)), timeout=60)
        assert again.status_code == 200
        assert as_bytes(load(again.content)["weight"]) == as_bytes(reference([2**23], "normal", {}, "float32", 9))


def test_a_stalled_client_times_out_and_holds_no_more_than_its_admitted_bytes():
    tensor_bytes = 4 * 2**24
    with live_server(send_timeout_s=1.0) as server:
        pool = server.app.state.pool
        request = (
            b"GET /v1/tensor?shape=16777216&scheme=uniform&seed=1&device=cpu HTTP/1.1\r\n"
            b"Host: x\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            sock.recv(1)  # then read one byte a second: far too slow
            peak = 0
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                peak = max(peak, pool.admissions["cpu"].in_flight_bytes)
                if pool.admissions["cpu"].in_flight_bytes == 0:
                    break
                sock.recv(1)
                time.sleep(1.0)
        assert peak <= tensor_bytes
        assert pool.admissions["cpu"].in_flight_bytes == 0
        _works(server.url)


def test_sigterm_finishes_the_in_flight_response_and_refuses_new_work():
    with live_server() as server:
        body = _body(11, (2**22,), stats=False)
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{server.url}/v1/tensor", json=body) as r:
            chunks = r.iter_raw(4096)
            first = next(chunks)
            server.sigterm()
            assert server.app.state.pool.ready is False  # draining: readiness fails, new jobs get 503
            try:
                refused = httpx.get(f"{server.url}/readyz", timeout=5).status_code == 503
            except httpx.TransportError:
                refused = True  # or the listener is already closed
            assert refused
            rest = b"".join(chunks)
        data = first + rest
        assert len(data) == int(r.headers["content-length"])
        assert as_bytes(load(data)["weight"]) == as_bytes(reference([2**22], "normal", {}, "float32", 11))
        server.thread.join(10)
        assert not server.thread.is_alive()


def test_draining_pool_answers_503_with_retry_after():
    with live_server() as server:
        server.app.state.pool.stop_accepting()
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(1), timeout=10)
        assert r.status_code == 503 and "retry-after" in r.headers and "shutting down" in r.json()["detail"]
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_out_of_memory_in_a_streamed_job_is_a_503_not_a_cut_body(faults):
    with live_server() as server:
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(OOM_SEED, stats=False), timeout=30)
        assert r.status_code == 503 and "out of memory" in r.json()["detail"]
        assert _drained(server.app.state.pool)
        _works(server.url)


def test_a_job_that_waited_long_in_the_queue_is_not_taken_for_a_hung_one(faults):
    with live_server(job_timeout_s=1.5) as server, ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED), timeout=30)
        assert faults.entered.wait(10)
        second = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(2), timeout=30)
        time.sleep(1.0)
        faults.release.set()  # the first finishes within its time; the second waited ~1 s queued
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert server.app.state.pool.workers["cpu"].restarts == 0
