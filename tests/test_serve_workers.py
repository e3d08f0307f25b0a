"""``initsvc serve``, in one process and with ``--workers 2``, drains on SIGTERM (docs/api.md §8):
every server process stops admitting (a request that reaches a route gets 503 with Retry-After),
stops listening, finishes its in-flight responses, and the command exits 0."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from safetensors.torch import load

from tests.torch_reference import as_bytes, reference

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.name != "posix" or "spawn" not in multiprocessing.get_all_start_methods(),
    reason="needs POSIX signals and multiprocessing's spawn start method",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"initsvc serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("initsvc serve --workers 2 did not become ready")


def _refused(port: int, timeout: float = 10.0) -> bool:
    """True once nothing listens on the port: every server process and the parent closed the socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_every_worker_finishes_in_flight_responses_and_exits_0(tmp_path, workers):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--workers", str(workers), "--port", str(port), "--device", "cpu",
             "--shutdown-timeout-s", "20"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        pytest.skip(f"cannot start a server process: {exc}")
    try:
        _wait_ready(url, process)
        body = {"shape": [2**22], "init": {"scheme": "normal"}, "seed": 11, "device": "cpu", "stats": False}
        with httpx.Client(timeout=30) as client, client.stream("POST", f"{url}/v1/tensor", json=body) as streamed:
            assert streamed.status_code == 200
            chunks = streamed.iter_raw(4096)
            first = next(chunks)  # in flight: the rest is held back until the test reads it

            # A second request already in a route, its body not yet sent: the server answers
            # 100 Continue when the route starts reading the body.
            late = json.dumps({**body, "shape": [4], "seed": 12}).encode()
            upload = socket.create_connection(("127.0.0.1", port), timeout=30)
            upload.sendall(
                b"POST /v1/tensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(late)
            )
            assert upload.recv(4096).startswith(b"HTTP/1.1 100 Continue")

            process.send_signal(signal.SIGTERM)
            # Each server process stops admitting before it stops listening, so once nothing listens
            # every one is draining; the parent's own copy of the socket is closed too.
            assert _refused(port)

            upload.sendall(late)
            answer = _read_response(upload)
            upload.close()
            head, _, detail = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"\r\nretry-after: " in head.lower()
            assert "shutting down" in json.loads(detail)["detail"]

            data = first + b"".join(chunks)
        assert len(data) == int(streamed.headers["content-length"])
        assert as_bytes(load(data)["weight"]) == as_bytes(reference([2**22], "normal", {}, "float32", 11))
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        print((tmp_path / "serve.log").read_text(errors="replace")[-4000:])
