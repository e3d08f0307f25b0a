"""End-to-end serving benchmarks, each measured side by side in one run, printed as ratios.

    python bench/serving.py large   [--mib 1024] [--env K=V]  1 GiB float32 normal through curl, stats on/off, vs
                                                   the in-process parallel fill and serial torch;
                                                   peak RSS over idle, one request and back to back;
                                                   the CPU time server and curl took against the cores
    python bench/serving.py small   [--seconds 3]  256x784 kaiming_uniform: p50/p99 and req/s,
                                                   sequential and 16 clients, vs a bare FastAPI endpoint
                                                   (both servers up at once, rows interleaved)
    python bench/serving.py fairness [--mib 1024]  256x784 requests from one client while another has
                                                   1 GiB tensors made and sent back to back: p50/p99,
                                                   with the small-job lane and without it
    python bench/serving.py health  [--mib 2048]   /healthz p99 while a big tensor is made
    python bench/serving.py gpu     [--mib 1024]   (GPU) 1 GiB float32 normal on cuda through curl,
                                                   vs the same server setup sending a ready pinned buffer

Loopback only; each run starts its own servers and stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import service.app  # noqa: E402,F401  (MKL_CBWR before torch)
from bench._servers import cpu_seconds, peak_rss_bytes, reset_peak_rss, rss_bytes, serve  # noqa: E402


def best(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def curl_post(url: str, body: dict) -> float:
    """Seconds for curl to POST ``body`` and read the whole answer into /dev/null."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code} %{size_download}", "-X", "POST",
         "-H", "content-type: application/json", "-d", json.dumps(body), url],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    if out[1] != "200":
        raise RuntimeError(f"HTTP {out[1]}")
    return float(out[0])


def children_cpu_seconds() -> float:
    """User plus system CPU time of this process's finished children (the curls) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def in_process_fill(n: int, threads: int):
    """A callable that makes ``normal`` of ``n`` float32 as the server's job does (the engine's
    parallel fill over ``threads``), without stats."""
    from service.planning.tensors import build_spec
    from service.schemas.requests import TensorRequest
    from service.settings import Settings
    from service.workers.jobs import TensorJob, run_tensor_job

    req = TensorRequest(shape=[n], init={"scheme": "normal"}, seed=0, device="cpu", stats=False)
    spec = build_spec(req, req.dtype, 0, False, Settings())
    job = TensorJob(specs=[spec], seed=0, device="cpu", cpu_threads=threads)
    return lambda: run_tensor_job(job)


def large(args) -> None:
    n = args.mib * (1 << 20) // 4
    nbytes = 4 * n
    threads = len(__import__("os").sched_getaffinity(0))
    torch.set_num_threads(threads)

    def serial() -> None:
        g = torch.Generator().manual_seed(0)
        torch.empty(n).normal_(generator=g)

    parallel = in_process_fill(n, threads)

    def parallel_torch_op() -> None:  # the same pieces, each by torch's own normal_, not the kernel
        from service.engine import transforms

        real = transforms.fill_run_
        transforms.fill_run_ = lambda *a, **k: False
        try:
            parallel()
        finally:
            transforms.fill_run_ = real

    server_env = dict(item.split("=", 1) for item in args.env)
    with serve(env=server_env) as (url, proc):
        body = {"shape": [n], "init": {"scheme": "normal"}, "seed": 0, "device": "cpu"}
        curl_post(f"{url}/v1/tensor", {**body, "shape": [1024]})  # warm up
        times: dict[str, list[float]] = {"serial": [], "parallel": [], "torch op": [], "stats": [], "stats: false": []}
        # CPU seconds (server, curl) of each end-to-end request: what the 2 cores had to do
        cpu: dict[str, list[tuple[float, float]]] = {"stats": [], "stats: false": []}
        for _ in range(args.repeats):  # interleaved, so every figure sees the same machine
            times["serial"].append(best(serial, 1))
            times["parallel"].append(best(parallel, 1))
            times["torch op"].append(best(parallel_torch_op, 1))
            for label, extra in (("stats", {}), ("stats: false", {"stats": False})):
                server_before, curl_before = cpu_seconds(proc.pid), children_cpu_seconds()
                times[label].append(curl_post(f"{url}/v1/tensor", {**body, **extra}))
                cpu[label].append((cpu_seconds(proc.pid) - server_before, children_cpu_seconds() - curl_before))
        # Peak RSS over idle: one request, then back to back (the next request starts as soon as
        # the previous answer has been read).
        time.sleep(0.5)
        idle = rss_bytes(proc.pid)
        reset_peak_rss(proc.pid)
        curl_post(f"{url}/v1/tensor", {**body, "stats": False})
        one = peak_rss_bytes(proc.pid) - idle
        time.sleep(0.5)
        idle = rss_bytes(proc.pid)
        reset_peak_rss(proc.pid)
        for _ in range(3):
            curl_post(f"{url}/v1/tensor", {**body, "stats": False})
        back_to_back = peak_rss_bytes(proc.pid) - idle
        devices = httpx.get(f"{url}/v1/devices").json()
    best_of = {k: min(v) for k, v in times.items()}
    print(f"server: cpu_threads={devices['devices'][0].get('threads')}, torch {devices['torch']}; "
          f"{args.mib} MiB float32 normal, best of {args.repeats} interleaved; server env {server_env or 'as is'}")
    print(f"in-process serial torch normal_: {best_of['serial']:.3f} s ({nbytes / best_of['serial'] / 1e9:.2f} GB/s)")
    print(f"in-process parallel fill ({threads} threads): {best_of['parallel']:.3f} s "
          f"({nbytes / best_of['parallel'] / 1e9:.2f} GB/s) = {best_of['serial'] / best_of['parallel']:.2f}x serial")
    print(f"in-process parallel fill, pieces by torch's own normal_ ({threads} threads): {best_of['torch op']:.3f} s "
          f"({nbytes / best_of['torch op'] / 1e9:.2f} GB/s)")
    for label in ("stats", "stats: false"):
        t = best_of[label]
        server_cpu, curl_cpu = cpu[label][times[label].index(t)]
        print(f"end-to-end via curl, {label:12s}: {t:.3f} s ({nbytes / t / 1e9:.2f} GB/s)  "
              f"vs parallel fill {best_of['parallel'] / t:.2f}x, vs serial torch {best_of['serial'] / t:.2f}x; "
              f"CPU: server {server_cpu:.2f} s + curl {curl_cpu:.2f} s = {(server_cpu + curl_cpu) / (threads * t):.2f} "
              f"of {threads} cores for {t:.3f} s")
    print(f"peak RSS above idle: one request {one / nbytes:.2f}x the tensor's bytes, "
          f"3 back to back {back_to_back / nbytes:.2f}x")


async def latencies(url: str, path: str, body: dict | None, clients: int, seconds: float) -> list[float]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.post(path, json=body)
                await r.aread()
                r.raise_for_status()
                samples.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(clients)))
    return samples


def summarize(samples: list[float], seconds: float) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e3, q[98] * 1e3, len(samples) / seconds


def small(args) -> None:
    body = {"shape": [256, 784], "init": {"scheme": "kaiming_uniform"}, "seed": 0, "device": "cpu"}
    with serve() as (url, _), serve("bench.bare_app:app") as (bare_url, _):
        size = len(httpx.post(f"{url}/v1/tensor", json=body).content)
        ours: dict[int, list[float]] = {1: [], 16: []}
        bare: dict[int, list[float]] = {1: [], 16: []}
        for _ in range(args.rounds):  # interleaved rounds: both see the same machine
            for c in (1, 16):
                ours[c] += asyncio.run(latencies(url, "/v1/tensor", body, c, args.seconds))
                bare[c] += asyncio.run(latencies(bare_url, f"/bytes/{size}", None, c, args.seconds))
    seconds = args.seconds * args.rounds
    print(f"256x784 kaiming_uniform, {size} bytes per answer, {args.rounds} interleaved rounds of {args.seconds:.0f} s")
    for clients in (1, 16):
        p50, p99, rps = summarize(ours[clients], seconds)
        b50, b99, brps = summarize(bare[clients], seconds)
        print(f"{clients:2d} clients: initsvc p50 {p50:.2f} ms p99 {p99:.2f} ms {rps:.0f} req/s | "
              f"bare p50 {b50:.2f} ms p99 {b99:.2f} ms {brps:.0f} req/s | "
              f"p50 ratio {p50 / b50:.2f}x, p99 ratio {p99 / b99:.2f}x, req/s ratio {rps / brps:.2f}x")


def fairness(args) -> None:
    """Small requests while big ones are made and sent back to back, lane on and off."""
    n = args.mib * (1 << 20) // 4
    big = {"shape": [n], "init": {"scheme": "normal"}, "seed": 0, "device": "cpu", "stats": False}
    small_body = {"shape": [256, 784], "init": {"scheme": "kaiming_uniform"}, "seed": 0, "device": "cpu"}
    results = {}
    for label, env in (("small-job lane", {}), ("one FIFO per device", {"INITSVC_SMALL_JOB_BYTES": "0"})):
        with serve(env=env) as (url, _):
            curl_post(f"{url}/v1/tensor", {**big, "shape": [1024]})
            done = threading.Event()

            def bigs(done: threading.Event = done) -> None:
                try:
                    for _ in range(args.big):
                        curl_post(f"{url}/v1/tensor", big)
                finally:
                    done.set()

            thread = threading.Thread(target=bigs, daemon=True)
            thread.start()
            samples = []
            with httpx.Client(base_url=url, timeout=120) as client:
                while not done.is_set():
                    t0 = time.perf_counter()
                    client.post("/v1/tensor", json=small_body).raise_for_status()
                    samples.append(time.perf_counter() - t0)
            thread.join()
        q = statistics.quantiles(samples, n=100)
        results[label] = (len(samples), q[49] * 1e3, q[98] * 1e3, max(samples) * 1e3)
    print(f"256x784 requests (one client) while {args.big} x {args.mib} MiB normal (stats: false) are made and "
          "sent back to back to another")
    for label, (count, p50, p99, worst) in results.items():
        print(f"{label:20s}: {count} small requests, p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")


def health(args) -> None:
    n = args.mib * (1 << 20) // 4
    with serve() as (url, _):
        done = threading.Event()

        def big() -> None:
            try:
                httpx.post(f"{url}/v1/tensor", json={"shape": [n], "init": {"scheme": "trunc_normal"}, "seed": 0, "device": "cpu"}, timeout=600)
            finally:
                done.set()

        threading.Thread(target=big, daemon=True).start()
        time.sleep(0.2)
        samples = []
        with httpx.Client(base_url=url, timeout=5) as client:
            while not done.is_set():
                t0 = time.perf_counter()
                client.get("/healthz").raise_for_status()
                samples.append(time.perf_counter() - t0)
                time.sleep(0.01)
    q = statistics.quantiles(samples, n=100)
    print(f"/healthz during a {args.mib} MiB trunc_normal generation: {len(samples)} probes, "
          f"p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms")


def curl_get(url: str) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code}", url],
                         capture_output=True, text=True, check=True).stdout.split()
    if out[1] != "200":
        raise RuntimeError(f"HTTP {out[1]}")
    return float(out[0])


def gpu(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: the GPU benchmark needs one")
    n = args.mib * (1 << 20) // 4
    body = {"shape": [n], "init": {"scheme": "normal"}, "seed": 0, "device": "cuda"}
    with serve() as (url, _):
        curl_post(f"{url}/v1/tensor", {**body, "shape": [1024]})
        rows = [(label, min(curl_post(f"{url}/v1/tensor", {**body, **extra}) for _ in range(args.repeats)))
                for label, extra in (("stats", {}), ("stats: false", {"stats": False}))]
        name = httpx.get(f"{url}/v1/devices").json()["devices"][-1].get("device_name")
    with serve("bench.bare_app:app") as (url, _):
        curl_get(f"{url}/pinned/{4 * n}")
        ceiling = min(curl_get(f"{url}/pinned/{4 * n}") for _ in range(args.repeats))
    print(f"GPU: {name}; ready pinned buffer of {args.mib} MiB: {ceiling:.3f} s ({4 * n / ceiling / 1e9:.2f} GB/s)")
    for label, t in rows:
        print(f"cuda normal end-to-end, {label:12s}: {t:.3f} s ({4 * n / t / 1e9:.2f} GB/s), "
              f"ratio vs ceiling: {ceiling / t:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("large")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable for the server")
    p = sub.add_parser("small")
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p = sub.add_parser("fairness")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--big", type=int, default=3)
    p = sub.add_parser("health")
    p.add_argument("--mib", type=int, default=2048)
    p = sub.add_parser("gpu")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"large": large, "small": small, "fairness": fairness, "health": health, "gpu": gpu}[args.what](args)


if __name__ == "__main__":
    main()
