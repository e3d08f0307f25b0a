"""Soak over loopback: schemathesis rounds and mangled raw requests until the time is up.

    python bench/soak.py --duration 300                 # starts its own server (uvicorn, small limits)
    python bench/soak.py --url http://127.0.0.1:8000    # or targets a running one (loopback only)

Each round runs every operation of the server's own /openapi.json through schemathesis with a
fresh seed (valid and invalid inputs, no shrinking, so a round is bounded), checking: no 5xx, and
status, content type and body as documented. Between rounds it sends mangled copies of valid
requests (truncated, bytes flipped, NaN and huge numbers spliced in, odd content types) written
straight to a socket, each of which must get an answer below 500. Every ``--sample`` seconds it
reads the server's RSS and times /healthz.

Bounded: it stops at ``--duration`` seconds or ``--max-requests`` requests, whichever comes first.
Prints failures (each with the request that caused it), RSS at start/end/peak and the slowest
/healthz; exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

try:
    from bench.load import is_loopback, mib, rss_bytes, spawned_server
except ImportError:  # run as a script: bench/ is on sys.path, the repository root may not be
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load import is_loopback, mib, rss_bytes, spawned_server  # noqa: E402

SMALL_LIMITS = {"INITSVC_MAX_ELEMENTS": str(1 << 16), "INITSVC_MAX_REQUEST_BYTES": str(1 << 20),
                "INITSVC_MAX_TENSORS": "16", "INITSVC_MAX_BODY_BYTES": str(256 * 1024)}
VALID = [
    ("/v1/tensor", {"shape": [4, 5], "init": {"scheme": "normal", "std": 0.5}, "seed": 1, "histogram_bins": 4}),
    ("/v1/tensor", {"shape": [3, 3, 3], "init": {"scheme": "dirac", "groups": 1}, "dtype": "float16"}),
    ("/v1/tensor", {"shape": [8, 8], "init": {"scheme": "trunc_normal", "a": -1.0, "b": 1.0}, "slice": [[0, 4], None]}),
    ("/v1/tensors", {"seed": 3, "tensors": [{"name": "w", "shape": [4, 4], "init": {"scheme": "orthogonal"}},
                                           {"name": "b", "shape": [4], "init": {"scheme": "zeros"}}]}),
    ("/v1/module", {"seed": 0, "layers": [{"type": "Linear", "in_features": 8, "out_features": 4}, {"type": "ReLU"}]}),
]
SPLICES = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1", b"1.5", b"true", b"null", b'"x"', b"[]", b"{}",
           b"18446744073709551616", b"9" * 400, b"[" * 2000]


def describe(exc: BaseException) -> str:
    """A failure in a few lines: what the checks said and the curl command that reproduces it."""
    text = str(exc).strip()
    if isinstance(exc, BaseExceptionGroup):
        text = "; ".join(str(e).strip().splitlines()[0] for e in exc.exceptions)
        curl = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("curl ")]
        if curl:
            text += "\n" + curl[0]
    return text[:1500]


class Soak:
    def __init__(self, url: str, pid: int | None, args: argparse.Namespace):
        self.url, self.pid, self.args = url, pid, args
        self.rng = random.Random(args.seed)
        self.requests = 0
        self.failures: list[str] = []
        self.repeats: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.health_ms: list[float] = []
        self.rss: list[int] = []
        self.started = time.monotonic()
        self.next_sample = self.started

    def time_left(self) -> bool:
        return time.monotonic() - self.started < self.args.duration and self.requests < self.args.max_requests

    def fail(self, what: str) -> None:
        """Record a failure; the same failure seen again (next round, same cause) only counts."""
        key = what.split("\n")[0][:200]
        self.repeats[key] += 1
        if self.repeats[key] == 1 and len(self.failures) < 200:
            self.failures.append(what)

    def sample(self, force: bool = False) -> None:
        if not force and time.monotonic() < self.next_sample:
            return
        self.next_sample = time.monotonic() + self.args.sample
        rss = rss_bytes(self.pid)
        if rss is not None:
            self.rss.append(rss)
        began = time.perf_counter()
        try:
            ok = httpx.get(self.url + "/healthz", timeout=30).status_code == 200
        except httpx.HTTPError as exc:
            ok = False
            self.fail(f"/healthz: {type(exc).__name__}")
        self.health_ms.append((time.perf_counter() - began) * 1000)
        if not ok:
            self.fail("/healthz did not answer 200")

    # -- schemathesis rounds
    def schemathesis_round(self, schema, round_no: int) -> None:
        from hypothesis import HealthCheck, Phase, given, seed, settings
        from hypothesis.errors import Unsatisfiable
        from schemathesis.checks import not_a_server_error
        from schemathesis.generation.modes import GenerationMode
        from schemathesis.specs.openapi.checks import (
            content_type_conformance,
            response_schema_conformance,
            status_code_conformance,
        )

        checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if not self.time_left():
                    return

                @seed(self.args.seed * 100_003 + round_no)
                @settings(max_examples=self.args.examples, deadline=None, database=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def exercise(case) -> None:
                    if not self.time_left():
                        return
                    self.requests += 1
                    response = case.call(base_url=self.url, timeout=60)
                    self.statuses[response.status_code] += 1
                    case.validate_response(response, checks=checks)
                    self.sample()

                try:
                    exercise()
                except Unsatisfiable:
                    pass  # nothing to make invalid (an operation without inputs, in negative mode)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # noqa: BLE001 - schemathesis' FailureGroup is a BaseExceptionGroup
                    self.fail(f"{operation.label} ({mode.value}): {describe(exc)}")

    # -- mangled raw requests
    def mangled(self) -> bytes:
        path, body = self.rng.choice(VALID)
        raw = json.dumps(body).encode()
        how = self.rng.randrange(5)
        if how == 0:
            raw = raw[: self.rng.randrange(len(raw))]
        elif how == 1:
            data = bytearray(raw)
            for _ in range(self.rng.randint(1, 4)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            raw = bytes(data)
        elif how == 2:
            spots = [i for i, c in enumerate(raw) if c in b"0123456789"]
            if spots:
                i = self.rng.choice(spots)
                j = i
                while j < len(raw) and raw[j] in b"0123456789.eE+-":
                    j += 1
                raw = raw[:i] + self.rng.choice(SPLICES) + raw[j:]
        elif how == 3:
            raw = raw.replace(b'"', b"'", 1) if self.rng.random() < 0.5 else raw + b"," + raw
        content_type = self.rng.choice(["application/json"] * 4 + ["text/plain", "", "application/json; charset=latin-1"])
        headers = f"Content-Type: {content_type}\r\n" if content_type else ""
        host = urlsplit(self.url).netloc
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}"
                f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw

    def raw_round(self, count: int) -> None:
        parts = urlsplit(self.url)
        for _ in range(count):
            if not self.time_left():
                return
            request = self.mangled()
            self.requests += 1
            try:
                with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
                    sock.sendall(request)
                    head = sock.recv(64)
            except OSError as exc:
                self.fail(f"raw request: {type(exc).__name__} for {request[:300]!r}")
                continue
            try:
                status = int(head.split()[1])
            except (IndexError, ValueError):
                self.fail(f"raw request: no status line ({head!r}) for {request[:300]!r}")
                continue
            self.statuses[status] += 1
            if status >= 500:
                self.fail(f"raw request: {status} for {request[:600]!r}")
            self.sample()

    def run(self) -> int:
        import schemathesis

        schema = schemathesis.openapi.from_url(self.url + "/openapi.json")
        self.sample(force=True)
        round_no = 0
        while self.time_left():
            self.schemathesis_round(schema, round_no)
            self.raw_round(self.args.raw_per_round)
            round_no += 1
        self.sample(force=True)
        elapsed = time.monotonic() - self.started
        print(f"\nrounds {round_no}, requests {self.requests} in {elapsed:.0f} s ({self.requests / elapsed:.1f}/s)")
        print("statuses:", dict(sorted(self.statuses.items())))
        if self.rss:
            print(f"server RSS: start {mib(self.rss[0])}, end {mib(self.rss[-1])}, peak sampled {mib(max(self.rss))}, "
                  f"VmHWM {mib(rss_bytes(self.pid, 'VmHWM'))}")
        if self.health_ms:
            print(f"/healthz: {len(self.health_ms)} samples, slowest {max(self.health_ms):.1f} ms")
        print(f"failures: {len(self.failures)}")
        for failure in self.failures:
            times = self.repeats[failure.split("\n")[0][:200]]
            print(f" - ({times}x)", failure.replace("\n", "\n   "))
        return 1 if self.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="target this server (loopback only) instead of starting one")
    parser.add_argument("--pid", type=int, help="the target server's pid, for RSS (with --url)")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds to run (default 300)")
    parser.add_argument("--max-requests", type=int, default=500_000, help="stop after this many requests")
    parser.add_argument("--examples", type=int, default=50, help="examples per operation and mode per round")
    parser.add_argument("--raw-per-round", type=int, default=300, help="mangled raw requests between rounds")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS and /healthz samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    from hypothesis.configuration import set_hypothesis_home_dir

    home = tempfile.mkdtemp(prefix="initsvc-soak-hypothesis-")
    set_hypothesis_home_dir(home)  # keep Hypothesis' cache out of the working tree
    try:
        if args.url:
            if not is_loopback(args.url):
                parser.error(f"--url must be a loopback address; got {args.url}")
            code = Soak(args.url.rstrip("/"), args.pid, args).run()
        else:
            log_path = Path(tempfile.mkdtemp(prefix="initsvc-soak-")) / "server.log"
            with spawned_server(SMALL_LIMITS, log_path) as (url, pid):
                code = Soak(url, pid, args).run()
            print(f"server log: {log_path}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
