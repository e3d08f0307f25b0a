"""Fair scheduling per device: small jobs run on their own lane, never behind a big one.

Deterministic: a big job is held inside the engine (an event it waits on) while small ones are
served; nothing is timed.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from safetensors.torch import load

import service.workers.jobs as jobs
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


class Blocker:
    """Wraps make_tensor: the job with BLOCK_SEED waits until released."""

    def __init__(self, real):
        self.real, self.release, self.entered = real, threading.Event(), threading.Event()

    def __call__(self, spec, streams, *args, **kwargs):
        if streams.seed == BLOCK_SEED:
            self.entered.set()
            self.release.wait(30)
        return self.real(spec, streams, *args, **kwargs)


@pytest.fixture
def blocker(monkeypatch):
    b = Blocker(jobs.make_tensor)
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


def test_a_quick_cpu_job_runs_inline_while_its_lane_is_idle_and_queues_while_it_is_busy():
    async def scenario() -> None:
        worker = DeviceWorker("cpu", queue_depth=8, job_timeout_s=60, small_job_bytes=4096)
        gate, entered = threading.Event(), threading.Event()
        loop_thread = threading.get_ident()

        def where() -> int:
            return threading.get_ident()

        def hold() -> int:
            entered.set()
            gate.wait(30)
            return threading.get_ident()

        try:
            assert await worker.submit(where, cost=10, inline=True) == loop_thread  # idle lane: on this thread
            assert await worker.submit(where, cost=10) != loop_thread  # not marked quick: the lane's thread
            assert not worker.runs_inline(None)  # unknown cost: never
            held = asyncio.ensure_future(worker.submit(hold, cost=10))
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
            assert not worker.runs_inline(10) and not worker.runs_inline(5000)  # small lane busy; main: never
            queued = asyncio.ensure_future(worker.submit(where, cost=10, inline=True))  # queued behind it
            await asyncio.sleep(0)
            assert not queued.done()
            gate.set()
            lane_thread = await held
            assert await queued == lane_thread != loop_thread
            assert await worker.submit(where, cost=10, inline=True) == loop_thread  # idle again
        finally:
            gate.set()
            worker.stop()

    asyncio.run(scenario())


def test_inline_jobs_fail_as_lane_jobs_do_and_never_on_other_devices():
    from service.errors import DeviceOutOfMemory

    async def scenario() -> None:
        worker = DeviceWorker("cpu", queue_depth=2, job_timeout_s=60, small_job_bytes=4096)

        def out_of_memory() -> None:
            raise MemoryError("no room")

        def bad() -> None:
            raise ValueError("a bad recipe")

        try:
            with pytest.raises(DeviceOutOfMemory, match="ran out of memory"):
                await worker.submit(out_of_memory, cost=1, inline=True)
            with pytest.raises(ValueError, match="a bad recipe"):
                await worker.submit(bad, cost=1, inline=True)
            worker.stop_accepting()
            assert not worker.runs_inline(1)
        finally:
            worker.stop()

    asyncio.run(scenario())
    gpu_named = DeviceWorker("cuda:0", queue_depth=1, job_timeout_s=60)
    try:
        assert not gpu_named.runs_inline(1)
    finally:
        gpu_named.stop()


@pytest.mark.parametrize(
    "body,quick",
    [
        ({"shape": [256, 784], "init": {"scheme": "kaiming_uniform"}}, True),
        ({"shape": [256, 784], "init": {"scheme": "zeros"}}, True),
        ({"shape": [256, 784], "init": {"scheme": "orthogonal"}}, False),  # a QR
        ({"shape": [256, 784], "init": {"scheme": "trunc_normal"}}, False),  # rejection sampling
        ({"shape": [256, 784], "init": {"scheme": "sparse", "sparsity": 0.5}}, False),
        ({"shape": [256, 784], "init": {"scheme": "normal"}, "slice": [[0, 8], None]}, False),
        ({"shape": [256, 784], "init": {"scheme": "normal"}, "rng": "portable-v1"}, False),
        ({"shape": [1024, 1024], "init": {"scheme": "normal"}}, False),  # 4 MiB: over 1 MiB
        ({"shape": [256, 784], "init": {"scheme": "normal"}, "device": "auto"}, True),
    ],
)
def test_which_plans_are_quick(body, quick):
    from service.planning.tensors import plan_tensor
    from service.schemas.requests import TensorRequest
    from service.settings import Settings
    from service.workers.pool import WorkerPool

    settings = Settings(default_device="cpu")
    pool = WorkerPool(settings)
    try:
        plan = plan_tensor(TensorRequest.model_validate({"device": "cpu", "seed": 1, **body}), settings, pool)
        assert plan.quick is quick
        off = Settings(default_device="cpu", inline_job_bytes=0)
        assert plan_tensor(TensorRequest.model_validate({"device": "cpu", "seed": 1, **body}), off, pool).quick is False
    finally:
        pool.stop()
