"""Requests per second for one hot seeded URL: the service alone vs behind the nginx cache tier
(``deploy/nginx/initsvc-cache.conf``), side by side in one run, printed as a markdown table.

    python bench/cache_tier.py [--requests 2000] [--clients 8] [--rounds 2] [--large-mib 1024]

The URL is ``/v1/tensor?shape=256,784&scheme=kaiming_uniform&seed=0&device=cpu`` (784 KiB of
float32, immutable): behind nginx every measured request is a cache HIT. Each round measures the
service, then nginx, with the same client (curl --parallel: one process, `--clients` keep-alive
connections); the table gives each side's best round; latencies are curl's per-transfer totals.
With --large-mib, one large seeded tensor (stats=false) is then fetched through nginx twice with
curl, a MISS (streamed while nginx writes the cache file) and a HIT: time to first byte, total
time, nginx's worker RSS. Loopback only: it starts its own service (uvicorn) and nginx (Debian's,
run as the current user in a scratch folder) and stops both. Needs nginx on PATH or in /usr/sbin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._nginx import start_nginx, stop_nginx
from bench._servers import rss_bytes, serve

URL = "/v1/tensor?shape=256,784&scheme=kaiming_uniform&seed=0&device=cpu"
def measure(base: str, requests: int, clients: int) -> dict:
    """`requests` GETs of URL over `clients` parallel keep-alive connections: curl --parallel, a C
    client, so that the client's own cost on these shared cores stays small."""
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(20):  # warm: the nginx entry filled, the service's first-call costs paid
            http.get(URL).raise_for_status()
        body = http.get(URL).content
    with tempfile.NamedTemporaryFile("w", suffix=".curlrc") as config:
        config.write(f'url = "{base}{URL}"\noutput = "/dev/null"\n' * requests)
        config.flush()
        t0 = time.perf_counter()
        out = subprocess.run(
            ["curl", "-sS", "--parallel", "--parallel-max", str(clients), "--config", config.name,
             "-w", "%{http_code} %{time_total} %header{x-cache-status}\n"],
            capture_output=True, text=True, check=True, timeout=600).stdout
        seconds = time.perf_counter() - t0
    rows = [line.split() for line in out.splitlines()]
    if len(rows) != requests or any(row[0] != "200" for row in rows):
        raise RuntimeError(f"{base}: {len(rows)} answers, statuses {sorted({row[0] for row in rows})}")
    statuses: dict[str, int] = {}
    for row in rows:
        cache = row[2] if len(row) > 2 else "-"
        statuses[cache] = statuses.get(cache, 0) + 1
    latencies = sorted(float(row[1]) for row in rows)
    return {"rps": requests / seconds, "seconds": seconds, "p50": statistics.median(latencies) * 1e3,
            "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1e3, "cache": statuses, "body": body}


def large_through_nginx(base: str, nginx_pid: int, mib: int) -> list[dict]:
    n = mib * 2**20 // 4
    side = int(n ** 0.5)
    shape = f"{side},{n // side}"
    rows = []
    for i in (1, 2):
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "\n%{time_starttransfer} %{time_total} %{size_download}",
             f"{base}/v1/tensor?shape={shape}&scheme=uniform&seed=1&device=cpu&stats=false"],
            capture_output=True, text=True, check=True, timeout=600).stdout
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()[:-1])}
        ttfb, total, size = out.splitlines()[-1].split()
        if int(size) != int(headers["content-length"]):
            raise RuntimeError(f"received {size} bytes of {headers['content-length']}")
        workers = subprocess.run(["pgrep", "-P", str(nginx_pid), "-f", "worker process"], capture_output=True, text=True,
                                 check=False)
        rss = sum(rss_bytes(int(pid)) for pid in workers.stdout.split())
        rows.append({"n": f"GET {i}", "cache": headers.get("x-cache-status", "-"), "bytes": int(size),
                     "ttfb": float(ttfb), "total": float(total), "rss": rss})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large-mib", type=int, default=0, help="also fetch one tensor of this size twice (0: no)")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 100_000 and 1 <= args.rounds <= 10):
        parser.error("--clients 1..64, --requests 1..100000, --rounds 1..10")

    with serve() as (service_url, _), tempfile.TemporaryDirectory(prefix="initsvc-cache-bench-") as scratch:
        nginx, nginx_port = start_nginx(Path(scratch), service_url.removeprefix("http://"))
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        try:
            best: dict[str, dict] = {}
            for _ in range(args.rounds):
                for name, base in (("service alone", service_url), ("behind nginx (HIT)", nginx_url)):
                    result = measure(base, args.requests, args.clients)
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
            large = large_through_nginx(nginx_url, nginx.pid, args.large_mib) if args.large_mib else []
        finally:
            stop_nginx(nginx, Path(scratch))

    alone, cached = best["service alone"], best["behind nginx (HIT)"]
    assert alone["body"] == cached["body"], "nginx served different bytes"
    print(f"GET {URL}: {args.requests} requests, curl --parallel-max {args.clients} (keep-alive), "
          f"best of {args.rounds} rounds, loopback\n")
    print("| | req/s | p50 | p99 | X-Cache-Status |")
    print("|---|---|---|---|---|")
    for name, r in best.items():
        cache = ", ".join(f"{k} {v}" for k, v in sorted(r["cache"].items()))
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {cache} |")
    print(f"\nbehind nginx: {cached['rps'] / alone['rps']:.1f}x the service's req/s; identical bytes")
    if large:
        print(f"\n{args.large_mib} MiB float32 uniform, stats=false, through nginx with curl:\n")
        print("| | X-Cache-Status | bytes | first byte | total | nginx worker RSS after |")
        print("|---|---|---|---|---|---|")
        for row in large:
            print(f"| {row['n']} | {row['cache']} | {row['bytes']} | {row['ttfb']:.3f} s | {row['total']:.2f} s | "
                  f"{row['rss'] / 2**20:.1f} MiB |")
    print(f"load average during the run (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
