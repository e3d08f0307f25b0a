"""Where a small request's time goes, stage by stage, in process (no sockets, no client).

    python bench/profile_small.py [--n 300] [--profile]

256x784 kaiming_uniform (803 KB answers), driven straight into the ASGI app with a fake
``receive``/``send``, so the figures are the server's own work per request:

    job                the engine job alone (plan.run on this thread)
    hop                a no-op job's round trip to the device's worker thread and back
    route              the app without our middleware (FastAPI routing, validation, plan, job, body)
    full               the app with the whole middleware stack
    bare               a bare FastAPI endpoint returning as many ready bytes

``--profile`` adds cProfile's top functions of ``full``. ``--steps`` adds timers around the steps
of ``full`` as they run inside a request (the job on its thread, submitting it and getting the
result back, planning, the header and response, handing the body over, the access line): the
same steps measured alone run faster, with warm caches. Every row is the median of ``--n`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import functools
import inspect
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI, Response  # noqa: E402

import service.app  # noqa: E402,F401  (MKL_CBWR before torch)
from service.app import create_app  # noqa: E402
from service.planning.tensors import plan_tensor  # noqa: E402
from service.schemas.requests import TensorRequest  # noqa: E402
from service.settings import Settings  # noqa: E402

APP = None  # set by main: FastAPI puts the app in every request's scope
BODY = {"shape": [256, 784], "init": {"scheme": "kaiming_uniform"}, "seed": 0, "device": "cpu"}


def scope_for(path: str, body: bytes) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": APP,
    }


async def call(app, path: str, body: bytes) -> int:
    """One request through ``app``; returns the body bytes sent."""
    sent = 0
    delivered = False
    finished = asyncio.Event()

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += len(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    await app(scope_for(path, body), receive, send)
    return sent


async def timed(n: int, fn) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def step_timers() -> dict[str, list[float]]:
    """Wrap the steps of a request in timers (for ``--steps``); returns their samples by name."""
    from service.api import answer
    from service.api.delivery import BodyResponse
    from service.api.middleware.request_log import AccessLog
    from service.api.routes import tensors
    from service.workers.worker import DeviceWorker

    samples: dict[str, list[float]] = collections.defaultdict(list)

    def timed_step(owner, name: str, label: str) -> None:
        fn = getattr(owner, name)
        if inspect.iscoroutinefunction(fn):
            async def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    samples[label].append(time.perf_counter() - t0)
        else:
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    samples[label].append(time.perf_counter() - t0)

        setattr(owner, name, functools.wraps(fn)(wrapper))

    timed_step(DeviceWorker, "_run_one", "the job on its thread")
    timed_step(DeviceWorker, "submit", "submit and get the result back (job included)")
    timed_step(tensors, "plan_tensor", "planning (plan_tensor)")
    timed_step(answer, "safetensors_response", "header and response (safetensors_response)")
    timed_step(answer, "deliver", "queueing the body's views (deliver)")
    timed_step(BodyResponse, "__call__", "handing the body to the server (BodyResponse)")
    timed_step(AccessLog, "__call__", "the access line")
    return samples


def bare_app(size: int) -> FastAPI:
    app = FastAPI()
    payload = bytes(size)

    @app.post("/bytes")
    async def fixed() -> Response:
        return Response(payload, media_type="application/octet-stream")

    return app


async def main(args) -> None:
    global APP
    app = APP = create_app(Settings())
    body = json.dumps(BODY).encode()
    async with app.router.lifespan_context(app):
        pool = app.state.pool
        stack = app.build_middleware_stack()
        ours, app.user_middleware = app.user_middleware, []
        inner = app.build_middleware_stack()  # Starlette's own error and exit-stack layers only
        app.user_middleware = ours
        size = await call(stack, "/v1/tensor", body)
        plan = plan_tensor(TensorRequest(**BODY), app.state.settings, pool)
        worker = pool.workers["cpu"]
        bare = bare_app(size)
        rows = {
            "job": await timed(args.n, lambda: asyncio.sleep(0, plan.run(plan.job))),
            "hop": await timed(args.n, lambda: worker.submit(int, cost=0)),
            "route": await timed(args.n, lambda: call(inner, "/v1/tensor", body)),
            "full": await timed(args.n, lambda: call(stack, "/v1/tensor", body)),
            "bare": await timed(args.n, lambda: call(bare, "/bytes", b"")),
        }
        print(f"256x784 kaiming_uniform, {size} body bytes; median of {args.n} in-process requests")
        for name, ms in rows.items():
            print(f"  {name:6s} {ms:7.3f} ms")
        print(f"  middleware: {rows['full'] - rows['route']:.3f} ms; route beyond job + hop: "
              f"{rows['route'] - rows['job'] - rows['hop']:.3f} ms")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.n):
                await call(stack, "/v1/tensor", body)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumulative").print_stats(r"service/", 30)
        if args.steps:
            samples = step_timers()
            whole = [await timed(1, lambda: call(stack, "/v1/tensor", body)) for _ in range(args.n)]
            print(f"inside a request (median of {args.n}; whole request {statistics.median(whole):.3f} ms):")
            for label, values in samples.items():
                print(f"  {statistics.median(values) * 1e3:7.3f} ms  {label}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--steps", action="store_true", help="timers around each step inside a request")
    asyncio.run(main(parser.parse_args()))
