"""End-to-end serving benchmarks, each measured side by side in one run, printed as ratios.

    python bench/serving.py large   [--mib 1024]   1 GiB float32 normal through curl, stats on/off,
                                                   vs in-process torch; peak RSS over idle; a 1/8 slice
    python bench/serving.py small   [--seconds 10] 256x784 kaiming_uniform: p50/p99 and req/s,
                                                   sequential and 16 clients, vs a bare FastAPI endpoint
    python bench/serving.py health  [--mib 2048]   /healthz p99 while a big tensor is made
    python bench/serving.py gpu     [--mib 1024]   (GPU) 1 GiB float32 normal on cuda through curl,
                                                   vs the same server setup sending a ready pinned buffer

Loopback only; each run starts its own servers and stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import service.app  # noqa: E402,F401  (MKL_CBWR before torch)
import torch  # noqa: E402

from bench._servers import peak_rss_bytes, reset_peak_rss, rss_bytes, serve  # noqa: E402


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


def large(args) -> None:
    n = args.mib * (1 << 20) // 4
    nbytes = 4 * n
    torch.set_num_threads(2)

    def in_process() -> None:
        g = torch.Generator().manual_seed(0)
        torch.empty(n).normal_(generator=g)

    base = best(in_process, args.repeats)
    print(f"in-process torch normal_ {args.mib} MiB float32: {base:.3f} s ({nbytes / base / 1e9:.2f} GB/s)")
    with serve() as (url, proc):
        body = {"shape": [n], "init": {"scheme": "normal"}, "seed": 0, "device": "cpu"}
        curl_post(f"{url}/v1/tensor", {**body, "shape": [1024]})  # warm up
        rows, peaks = [], []
        for label, extra in (("stats", {}), ("stats: false", {"stats": False})):
            times = []
            for _ in range(args.repeats):
                time.sleep(0.5)  # the previous answer's tensor is freed once its response is done
                idle = rss_bytes(proc.pid)
                reset_peak_rss(proc.pid)
                times.append(curl_post(f"{url}/v1/tensor", {**body, **extra}))
                peaks.append(peak_rss_bytes(proc.pid) - idle)
            rows.append((label, min(times)))
        peak = max(peaks)
        slice_rows = []
        for label, extra in (("stats", {}), ("stats: false", {"stats": False})):
            whole = {**body, **extra, "shape": [8, n // 8]}
            t_slice = min(curl_post(f"{url}/v1/tensor", {**whole, "slice": [[3, 4], None]}) for _ in range(args.repeats))
            t_whole = min(curl_post(f"{url}/v1/tensor", whole) for _ in range(args.repeats))
            slice_rows.append((label, t_slice, t_whole))
        devices = httpx.get(f"{url}/v1/devices").json()
    threads = devices["devices"][0].get("threads")
    print(f"server: cpu_threads={threads}, torch {devices['torch']}")
    for label, t in rows:
        print(f"end-to-end via curl, {label:12s}: {t:.3f} s ({nbytes / t / 1e9:.2f} GB/s)  "
              f"ratio vs in-process torch: {base / t:.2f}x")
    print(f"peak RSS above idle: {peak / 2**20:.0f} MiB = {peak / nbytes:.2f}x the tensor's bytes")
    for label, t_slice, t_whole in slice_rows:
        print(f"1/8 slice, {label:12s}: {t_slice:.3f} s vs the whole tensor {t_whole:.3f} s -> {t_whole / t_slice:.1f}x faster")


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
    with serve() as (url, _):
        probe = httpx.post(f"{url}/v1/tensor", json=body)
        size = len(probe.content)
        ours = {c: asyncio.run(latencies(url, "/v1/tensor", body, c, args.seconds)) for c in (1, 16)}
    with serve("bench.bare_app:app") as (url, _):
        bare = {c: asyncio.run(latencies(url, f"/bytes/{size}", None, c, args.seconds)) for c in (1, 16)}
    print(f"256x784 kaiming_uniform, {size} bytes per answer, {args.seconds:.0f} s per row")
    for clients in (1, 16):
        p50, p99, rps = summarize(ours[clients], args.seconds)
        b50, b99, brps = summarize(bare[clients], args.seconds)
        print(f"{clients:2d} clients: initsvc p50 {p50:.2f} ms p99 {p99:.2f} ms {rps:.0f} req/s | "
              f"bare p50 {b50:.2f} ms p99 {b99:.2f} ms {brps:.0f} req/s | "
              f"p50 ratio {p50 / b50:.2f}x, req/s ratio {rps / brps:.2f}x")


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
    p = sub.add_parser("small")
    p.add_argument("--seconds", type=float, default=10)
    p = sub.add_parser("health")
    p.add_argument("--mib", type=int, default=2048)
    p = sub.add_parser("gpu")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"large": large, "small": small, "health": health, "gpu": gpu}[args.what](args)


if __name__ == "__main__":
    main()
