"""Load test over loopback: N concurrent clients for T seconds with a mix of request kinds.

    python bench/load.py --clients 50 --duration 60            # starts its own server (uvicorn)
    python bench/load.py --url http://127.0.0.1:8000 ...        # or targets a running one

The mix: tiny ([16]) and medium ([256, 784]) and large ([2048, 2048]) /v1/tensor requests, a GET
/v1/tensor URL, /v1/tensors (a small MLP's weights), /v1/module (when the server answers it; the
kind is dropped if /v1/module is a 404), and about 5% bad requests that must be 422. Each client
reads every answer to its end and checks its length against Content-Length.

It reports requests, errors by kind (expected: a bad request's 422; busy: 429/503 with
Retry-After, the service's backpressure; unexpected: anything else), p50/p99 latency per kind,
requests/s, and the server's RSS (VmRSS from /proc/<pid>/status) at start, after the warm-up and
at the end. Exit status 1 on any unexpected error.

Bounded: it stops after ``--duration`` seconds or ``--max-requests`` answers, whichever comes
first, and gives up on the run ``--grace`` seconds after that. Loopback only: a --url that is not
127.0.0.0/8, ::1 or localhost is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._servers import event_loop  # noqa: E402  (the loop initsvc serve runs)

REPO = Path(__file__).resolve().parent.parent


# ---- the server ---------------------------------------------------------------------------------


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int | None, field_name: str = "VmRSS") -> int | None:
    """``VmRSS`` (or ``VmHWM``, the peak) of ``pid`` from /proc, in bytes; None if unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def spawned_server(env_overrides: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    """``uvicorn service.app:app`` on 127.0.0.1 and a free port; yields (url, pid); stops it after."""
    port = free_port()
    env = {**os.environ, **env_overrides}
    command = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "10",
               "--loop", event_loop(env)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}; see {log_path}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not get ready in 120 s; see {log_path}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# ---- the mix --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    weight: float
    method: str
    path: str
    expect: int = 200
    json: object = None
    params: dict | None = None


BAD_BODIES = [
    {"shape": [4, 4], "init": {"scheme": "normal", "std": -1.0}},
    {"shape": [4], "init": {"scheme": "eye"}},
    {"shape": [4], "init": {"scheme": "normal", "sdt": 1.0}},
    {"shape": [4], "init": {"scheme": "uniform", "a": 2.0, "b": 1.0}},
    {"shape": "4", "init": {"scheme": "ones"}},
]


def mix(with_module: bool) -> list[Kind]:
    kinds = [
        Kind("tiny", 0.30, "POST", "/v1/tensor", json={"shape": [16], "init": {"scheme": "normal"}, "device": "cpu"}),
        Kind("tiny-get", 0.10, "GET", "/v1/tensor", params={"shape": "16", "scheme": "uniform", "device": "cpu"}),
        Kind("medium", 0.25, "POST", "/v1/tensor",
             json={"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 5 ** 0.5}, "device": "cpu"}),
        Kind("large", 0.05, "POST", "/v1/tensor",
             json={"shape": [2048, 2048], "init": {"scheme": "xavier_uniform"}, "device": "cpu"}),
        Kind("tensors", 0.12, "POST", "/v1/tensors", json={"device": "cpu", "tensors": [
            {"name": "fc1.weight", "shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 5 ** 0.5}},
            {"name": "fc1.bias", "shape": [256], "init": {"scheme": "uniform", "a": -0.0357, "b": 0.0357}},
            {"name": "fc2.weight", "shape": [10, 256], "init": {"scheme": "xavier_normal"}},
        ]}),
        Kind("bad", 0.05, "POST", "/v1/tensor", expect=422),
    ]
    if with_module:
        kinds.append(Kind("module", 0.13, "POST", "/v1/module", json={"device": "cpu", "layers": [
            {"type": "Linear", "in_features": 784, "out_features": 256}, {"type": "ReLU"},
            {"type": "Linear", "in_features": 256, "out_features": 10}]}))
    return kinds


# ---- the run ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    bytes_in: int = 0
    ok: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    expected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    busy: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexpected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: list[str] = field(default_factory=list)
    done: int = 0

    def problem(self, kind: str, what: str) -> None:
        self.unexpected[f"{kind}: {what}"] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {what}")


async def one(client: httpx.AsyncClient, kind: Kind, rng: random.Random, tally: Tally) -> None:
    body = rng.choice(BAD_BODIES) if kind.name == "bad" else kind.json
    params = dict(kind.params or {}, seed=str(rng.randrange(2**32))) if kind.params else None
    if isinstance(body, dict) and kind.name != "bad":
        body = {**body, "seed": rng.randrange(2**32)}
    started = time.perf_counter()
    try:
        async with client.stream(kind.method, kind.path, json=body, params=params) as response:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
    except httpx.HTTPError as exc:
        tally.problem(kind.name, type(exc).__name__)
        return
    finally:
        tally.done += 1
    elapsed = time.perf_counter() - started
    tally.bytes_in += received
    status = response.status_code
    declared = response.headers.get("content-length")
    if status == kind.expect:
        if declared is not None and int(declared) != received:
            tally.problem(kind.name, f"short body {received} of {declared}")
            return
        (tally.expected if kind.expect != 200 else tally.ok)[kind.name] += 1
        tally.latencies[kind.name].append(elapsed)
    elif status in (429, 503) and "retry-after" in response.headers:
        tally.busy[f"{kind.name}: {status}"] += 1
    else:
        tally.problem(kind.name, f"status {status}")


async def client_loop(client: httpx.AsyncClient, kinds: list[Kind], seed: int, stop_at: float, budget: list[int],
                      tally: Tally) -> None:
    rng = random.Random(seed)
    weights = [k.weight for k in kinds]
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        await one(client, rng.choices(kinds, weights)[0], rng, tally)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


async def run(url: str, pid: int | None, args: argparse.Namespace) -> int:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=args.request_timeout, limits=limits) as client:
        probe = await client.post("/v1/module", json={"layers": [{"type": "ReLU"}], "device": "cpu"})
        with_module = probe.status_code != 404
        kinds = mix(with_module)
        print(f"target {url}; /v1/module {'answers' if with_module else 'is a 404: module kind dropped'}")
        rss_start = rss_bytes(pid)
        tally = Tally()
        budget = [args.max_requests]
        started = time.monotonic()
        stop_at = started + args.duration
        tasks = [asyncio.create_task(client_loop(client, kinds, args.seed * 1000 + i, stop_at, budget, tally))
                 for i in range(args.clients)]
        await asyncio.sleep(min(args.warmup, args.duration))
        rss_warm = rss_bytes(pid)
        done_at_warm, warm_at = tally.done, time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(0.0, stop_at - time.monotonic()) + args.grace)
        except TimeoutError:
            for task in tasks:
                task.cancel()
            tally.problem("run", f"clients still busy {args.grace} s after the end")
        elapsed = time.monotonic() - started
        after_warm = tally.done - done_at_warm
        rss_end = rss_bytes(pid)
        peak = rss_bytes(pid, "VmHWM")
        health = await client.get("/healthz")
        if health.status_code != 200:
            tally.problem("healthz", f"status {health.status_code} after the run")

    total = tally.done
    print(f"\nclients {args.clients}, duration {elapsed:.1f} s (warm-up {args.warmup:g} s), seed {args.seed}")
    print(f"requests {total}, {total / elapsed:.1f} req/s overall, "
          f"{after_warm / max(1e-9, time.monotonic() - warm_at):.1f} req/s after warm-up; "
          f"received {tally.bytes_in / 2**20:.1f} MiB ({tally.bytes_in / 2**20 / elapsed:.1f} MiB/s)")
    print(f"\n{'kind':<10}{'ok':>8}{'expected':>10}{'busy':>7}{'unexpected':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for kind in kinds:
        lat = tally.latencies[kind.name]
        busy = sum(v for k, v in tally.busy.items() if k.startswith(kind.name + ":"))
        bad = sum(v for k, v in tally.unexpected.items() if k.startswith(kind.name + ":"))
        print(f"{kind.name:<10}{tally.ok[kind.name]:>8}{tally.expected[kind.name]:>10}{busy:>7}{bad:>12}"
              f"{percentile(lat, 0.5) * 1000:>10.1f}{percentile(lat, 0.99) * 1000:>10.1f}")
    print("\nerrors: expected (bad request -> 422):", sum(tally.expected.values()),
          "| busy (429/503):", dict(tally.busy) or 0, "| unexpected:", dict(tally.unexpected) or 0)
    for example in tally.examples:
        print("  unexpected:", example)
    if pid is not None:
        growth = None if rss_end is None or rss_warm is None else rss_end - rss_warm
        print(f"\nserver RSS (pid {pid}): start {mib(rss_start)}, after warm-up {mib(rss_warm)}, end {mib(rss_end)}, "
              f"peak {mib(peak)}; growth after warm-up {mib(growth)}")
    else:
        print("\nserver RSS: unknown (not started by this script; pass --pid to read it)")
    return 1 if tally.unexpected else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="target this server (loopback only) instead of starting one")
    parser.add_argument("--pid", type=int, help="the target server's pid, for RSS (with --url)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the warm RSS reading (default 10)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--grace", type=float, default=120.0, help="seconds to let clients finish after the end")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices (default 0)")
    parser.add_argument("--server-log", type=Path, help="where the started server's output goes (default: a temp file)")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("--clients, --duration and --max-requests must be positive")
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    if args.url:
        if not is_loopback(args.url):
            parser.error(f"--url must be a loopback address (127.0.0.0/8, ::1, localhost); got {args.url}")
        sys.exit(asyncio.run(run(args.url.rstrip("/"), args.pid, args)))
    log_path = args.server_log or Path(tempfile.mkdtemp(prefix="initsvc-load-")) / "server.log"
    with spawned_server({}, log_path) as (url, pid):
        code = asyncio.run(run(url, pid, args))
    print(f"server log: {log_path}")
    sys.exit(code)


if __name__ == "__main__":
    main()
