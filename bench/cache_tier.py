"""Requests per second for one hot seeded URL: the service alone vs behind the nginx cache tier
(``deploy/nginx/initsvc-cache.conf``), side by side in one run, printed as a markdown table.

    python bench/cache_tier.py [--requests 2000] [--clients 8] [--rounds 2]

The URL is ``/v1/tensor?shape=256,784&scheme=kaiming_uniform&seed=0&device=cpu`` (784 KiB of
float32, immutable): behind nginx every measured request is a cache HIT. Each round measures the
service, then nginx, with the same keep-alive clients (httpx, asyncio); the table gives each
side's best round. Loopback only: it starts its own service (uvicorn) and nginx (Debian's, run as
the current user in a scratch folder) and stops both. Needs nginx on PATH or in /usr/sbin.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._servers import ROOT, free_port, serve  # noqa: E402

URL = "/v1/tensor?shape=256,784&scheme=kaiming_uniform&seed=0&device=cpu"
CONF = ROOT / "deploy" / "nginx" / "initsvc-cache.conf"
MAIN_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/initsvc-cache.conf;
}}
"""


def start_nginx(prefix: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        sys.exit("nginx is not installed (bash .ci/nginx-setup installs Debian's)")
    port = free_port()
    (prefix / "cache").mkdir()
    values = {"CACHE_UPSTREAM": upstream, "CACHE_LISTEN": f"127.0.0.1:{port}",
              "CACHE_DIR": str(prefix / "cache"), "CACHE_MAX_SIZE": "256m"}
    (prefix / "initsvc-cache.conf").write_text(re.sub(r"\$\{(CACHE_\w+)\}", lambda m: values[m[1]], CONF.read_text()))
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(prefix=prefix, user=user))
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
                            stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{url}/cache-healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit(f"nginx did not start: {(prefix / 'error.log').read_text()}")
        time.sleep(0.05)


async def measure(base: str, requests: int, clients: int) -> dict:
    """`requests` GETs of URL spread over `clients` concurrent keep-alive clients."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    bodies: set[bytes] = set()
    remaining = requests

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            r = await http.get(URL)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{base}: {r.status_code} {r.text[:200]}")
            cache = r.headers.get("x-cache-status", "-")
            statuses[cache] = statuses.get(cache, 0) + 1
            if len(bodies) < 2:
                bodies.add(r.content)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        for _ in range(20):  # warm: connections open, and the nginx entry filled
            (await http.get(URL)).raise_for_status()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    assert len(bodies) == 1, "different bytes for one seeded URL"
    latencies.sort()
    return {"rps": requests / seconds, "seconds": seconds, "p50": statistics.median(latencies) * 1e3,
            "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1e3, "cache": statuses, "body": bodies.pop()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 100_000 and 1 <= args.rounds <= 10):
        parser.error("--clients 1..64, --requests 1..100000, --rounds 1..10")

    with serve() as (service_url, _), tempfile.TemporaryDirectory(prefix="initsvc-cache-bench-") as scratch:
        nginx, nginx_url = start_nginx(Path(scratch), service_url.removeprefix("http://"))
        try:
            best: dict[str, dict] = {}
            for _ in range(args.rounds):
                for name, base in (("service alone", service_url), ("behind nginx (HIT)", nginx_url)):
                    result = asyncio.run(measure(base, args.requests, args.clients))
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
        finally:
            nginx.terminate()
            nginx.wait(10)

    alone, cached = best["service alone"], best["behind nginx (HIT)"]
    assert alone["body"] == cached["body"], "nginx served different bytes"
    print(f"GET {URL}: {args.requests} requests, {args.clients} concurrent keep-alive clients, "
          f"best of {args.rounds} rounds, loopback\n")
    print("| | req/s | p50 | p99 | X-Cache-Status |")
    print("|---|---|---|---|---|")
    for name, r in best.items():
        cache = ", ".join(f"{k} {v}" for k, v in sorted(r["cache"].items()))
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {cache} |")
    print(f"\nbehind nginx: {cached['rps'] / alone['rps']:.1f}x the service's req/s; identical bytes")
    print(f"load average during the run (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
