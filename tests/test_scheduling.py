"""Fair scheduling per device: small jobs run on their own lane, never behind a big one.

Deterministic: a big job is held inside the engine (an event it waits on) while small ones are
served; nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from safetensors.torch import load

import service.workers.jobs as jobs
from service.errors import QueueFull
from service.workers.worker import DeviceWorker
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

BLOCK_SEED = 7171


def test_a_small_job_completes_while_a_large_one_is_blocked():
    async def scenario() -> None:
        worker = DeviceWorker("cpu", queue_depth=4, job_timeout_s=60, small_job_bytes=100)
        release, entered = threading.Event(), threading.Event()

        def large() -> str:
            entered.set()
            release.wait(30)
            return "large"

        try:
            big = asyncio.ensure_future(worker.submit(large, cost=1000))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
            queued_behind = asyncio.ensure_future(worker.submit(lambda: "second large", cost=101))
            assert await worker.submit(lambda: "small", cost=100) == "small"
            assert not big.done() and not queued_behind.done()
            release.set()
            assert await big == "large" and await queued_behind == "second large"
        finally:
            release.set()
            worker.stop()

    asyncio.run(scenario())


def test_lanes_by_cost():
    worker = DeviceWorker("cpu", queue_depth=1, job_timeout_s=60, small_job_bytes=4096)
    single = DeviceWorker("cpu", queue_depth=1, job_timeout_s=60, small_job_bytes=0)
    try:
        assert worker.small is not None
        assert worker.lane_for(0) is worker.small and worker.lane_for(4096) is worker.small
        assert worker.lane_for(4097) is worker and worker.lane_for(None) is worker  # unknown cost: main lane
        assert single.small is None and single.lane_for(1) is single
        assert worker.alive and worker.queued == 0 and worker.restarts == 0
    finally:
        worker.stop()
        single.stop()
    assert not worker.small._thread.is_alive() and not worker._thread.is_alive()


def test_each_lane_is_first_in_first_out():
    async def scenario() -> list[int]:
        worker = DeviceWorker("cpu", queue_depth=16, job_timeout_s=60, small_job_bytes=100)
        order: list[int] = []
        gate = threading.Event()
        try:
            first = asyncio.ensure_future(worker.submit(gate.wait, 30, cost=1))
            rest = [asyncio.ensure_future(worker.submit(order.append, i, cost=1)) for i in range(8)]
            gate.set()
            await asyncio.gather(first, *rest)
        finally:
            worker.stop()
        return order

    assert asyncio.run(scenario()) == list(range(8))


class Held:
    """Wraps ``real``: a call for which ``held(*args)`` is true waits inside until released."""

    def __init__(self, real, held):
        self.real, self.held = real, held
        self.release, self.entered = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        if self.held(*args):
            self.entered.set()
            self.release.wait(30)
        return self.real(*args, **kwargs)


@pytest.fixture
def blocker(monkeypatch):
    """make_tensor, with the job seeded BLOCK_SEED held."""
    b = Held(jobs.make_tensor, lambda spec, streams, *rest: streams.seed == BLOCK_SEED)
    monkeypatch.setattr(jobs, "make_tensor", b)
    yield b
    b.release.set()


def _body(seed, shape, **extra):
    return {"shape": list(shape), "init": {"scheme": "normal"}, "seed": seed, "device": "cpu", **extra}


@pytest.mark.parametrize("extra", [{}, {"stats": False}], ids=["stats", "streamed"])
def test_over_http_a_small_request_is_answered_while_a_large_one_is_being_made(blocker, extra):
    large = (1 << 16,)  # 256 KiB: over the small-job limit set here
    with live_server(small_job_bytes=4096) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED, large, **extra), timeout=60)
        assert blocker.entered.wait(30)
        for seed in (1, 2, 3):
            r = httpx.post(f"{server.url}/v1/tensor", json=_body(seed, (16, 16), **extra), timeout=30)
            assert r.status_code == 200
            assert as_bytes(load(r.content)["weight"]) == as_bytes(reference([16, 16], "normal", {}, "float32", seed))
        assert not running.done()
        blocker.release.set()
        r = running.result()
        assert r.status_code == 200
        assert as_bytes(load(r.content)["weight"]) == as_bytes(reference(list(large), "normal", {}, "float32", BLOCK_SEED))


def test_admission_still_bounds_bytes_across_both_lanes(blocker):
    large = (1 << 10,)  # 4 KiB, on the main lane
    with live_server(small_job_bytes=1024, max_inflight_bytes=4096 + 32) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED, large), timeout=60)
        assert blocker.entered.wait(30)
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(1, (4, 4)), timeout=30)  # 64 bytes: over the limit now
        assert r.status_code == 429 and "INITSVC_MAX_INFLIGHT_BYTES" in r.json()["detail"]
        assert httpx.post(f"{server.url}/v1/tensor", json=_body(1, (2, 4)), timeout=30).status_code == 200  # 32 fit
        blocker.release.set()
        assert running.result().status_code == 200


def test_queue_depth_bounds_the_jobs_waiting_on_both_lanes_together():
    """docs/api.md §7: INITSVC_QUEUE_DEPTH is per device, whichever lane the jobs wait in."""

    async def scenario() -> None:
        worker = DeviceWorker("cpu", queue_depth=2, job_timeout_s=60, small_job_bytes=100)
        gate = threading.Event()
        started = [threading.Event(), threading.Event()]

        def hold(i: int) -> int:
            started[i].set()
            gate.wait(30)
            return i

        try:
            running = [asyncio.ensure_future(worker.submit(hold, 0, cost=1000)),
                       asyncio.ensure_future(worker.submit(hold, 1, cost=1))]
            for event in started:  # both lanes busy: what comes next waits
                await asyncio.get_running_loop().run_in_executor(None, event.wait, 30)
            waiting = [worker.enqueue(gate.wait, 30, cost=1000), worker.enqueue(gate.wait, 30, cost=1)]
            assert worker.queued == 2
            for cost in (1, 1000):
                with pytest.raises(QueueFull, match="INITSVC_QUEUE_DEPTH"):
                    worker.enqueue(gate.wait, 30, cost=cost)
            gate.set()
            assert await asyncio.gather(*running) == [0, 1]
            assert [await job.lane.wait(job) for job in waiting] == [True, True]
            assert await worker.submit(lambda: "room again", cost=1) == "room again"
        finally:
            gate.set()
            worker.stop()

    asyncio.run(scenario())


def test_a_short_job_timeout_does_not_stop_the_start_up_self_tests():
    """INITSVC_JOB_TIMEOUT_S bounds requests' jobs; the self-tests at start take seconds on 2
    cores, and with the bound below that the server used to fail to start."""
    with live_server(job_timeout_s=0.5) as server:
        r = httpx.post(f"{server.url}/v1/tensor", json=_body(5, (4, 4)), timeout=30)
        assert r.status_code == 200
        assert server.app.state.pool.workers["cpu"].restarts == 0


@pytest.mark.parametrize("scheme", ["trunc_normal", "sparse"])
def test_a_small_fill_of_a_serial_scheme_does_not_wait_for_a_big_one(monkeypatch, scheme):
    """Schemes torch fills itself: the small lane's job must not wait on a lock the big job's fill
    holds only to capture warnings torch does not give. (Two orthogonal fills do take turns: the
    QR's thread count is process-wide; docs/api.md §8.)"""
    from service.engine import schemes

    params = {"sparsity": 0.5} if scheme == "sparse" else {}
    held = Held(schemes.SCHEMES[scheme].fill, lambda t, *rest: t.numel() == 256 * 256)  # the big one waits
    monkeypatch.setitem(schemes.SCHEMES, scheme, schemes.Scheme(held, schemes.SCHEMES[scheme].shape_rule))
    big = {"shape": [256, 256], "init": {"scheme": scheme, **params}, "seed": 1, "device": "cpu"}
    small = {"shape": [8, 8], "init": {"scheme": scheme, **params}, "seed": 2, "device": "cpu"}
    with live_server(small_job_bytes=4096) as server, ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=big, timeout=60)
        assert held.entered.wait(30)
        try:
            r = httpx.post(f"{server.url}/v1/tensor", json=small, timeout=10)
            assert r.status_code == 200, r.text
            assert as_bytes(load(r.content)["weight"]) == as_bytes(reference([8, 8], scheme, params, "float32", 2))
            assert not running.done()
        finally:
            held.release.set()
        assert running.result().status_code == 200


@pytest.mark.parametrize("extra", [{}, {"stats": False}], ids=["stats", "streamed"])
def test_a_job_whose_client_went_away_while_it_waited_is_skipped_and_its_bytes_given_back(blocker, extra):
    """docs/api.md §8: the client of a queued job closes its connection; its admission comes back
    at once, and the job never runs when its turn comes."""
    import socket

    made: list[int] = []
    real = blocker.real

    def recording(spec, streams, *args, **kwargs):
        made.append(streams.seed)
        return real(spec, streams, *args, **kwargs)

    blocker.real = recording
    with live_server(small_job_bytes=0) as server, ThreadPoolExecutor(1) as pool:
        admission = server.app.state.pool.admissions["cpu"]
        running = pool.submit(httpx.post, f"{server.url}/v1/tensor", json=_body(BLOCK_SEED, (1 << 10,)), timeout=60)
        assert blocker.entered.wait(30)
        held = admission.in_flight_bytes
        body = json.dumps(_body(77, (1 << 16,), **extra)).encode()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/tensor HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            deadline = time.monotonic() + 10
            while admission.in_flight_bytes == held and time.monotonic() < deadline:
                time.sleep(0.01)
            assert admission.in_flight_bytes == held + (1 << 18)  # queued behind the held job
        deadline = time.monotonic() + 10
        while admission.in_flight_bytes != held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.in_flight_bytes == held  # given back while the big job still runs
        blocker.release.set()
        assert running.result().status_code == 200
        assert httpx.post(f"{server.url}/v1/tensor", json=_body(78, (4,)), timeout=30).status_code == 200
    assert 77 not in made and 78 in made


def test_a_running_job_whose_client_went_away_stays_counted_until_it_ends(blocker):
    """The thread cannot be stopped mid-job: its bytes are in memory until it ends, so admission
    keeps counting them until then, and gives them back then."""
    import socket

    with live_server(small_job_bytes=0) as server:
        admission = server.app.state.pool.admissions["cpu"]
        body = json.dumps(_body(BLOCK_SEED, (1 << 10,))).encode()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/tensor HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            assert blocker.entered.wait(30)
            time.sleep(0.2)  # past the 50 ms after which the client is watched
            assert admission.in_flight_bytes == 1 << 12
        time.sleep(0.5)  # the client is gone, the job still runs
        assert admission.in_flight_bytes == 1 << 12
        blocker.release.set()
        deadline = time.monotonic() + 10
        while admission.in_flight_bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.in_flight_bytes == 0


def test_jobs_whose_callers_gave_up_do_not_fill_the_queue():
    async def scenario() -> None:
        worker = DeviceWorker("cpu", queue_depth=2, job_timeout_s=60, small_job_bytes=0)
        gate, entered = threading.Event(), threading.Event()

        def hold() -> str:
            entered.set()
            gate.wait(30)
            return "held"

        try:
            running = asyncio.ensure_future(worker.submit(hold))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
            given_up = [worker.enqueue(lambda: "never", cost=1) for _ in range(2)]
            with pytest.raises(QueueFull):
                worker.enqueue(lambda: "no room", cost=1)
            for job in given_up:
                job.future.cancel()  # what a wait cancelled by a client's going away does
            assert worker.queued == 0
            kept = worker.enqueue(lambda: "room again", cost=1)
            gate.set()
            assert await running == "held" and await kept.lane.wait(kept) == "room again"
        finally:
            gate.set()
            worker.stop()

    asyncio.run(scenario())
