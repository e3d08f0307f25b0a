"""Shared fixtures: a live uvicorn server in a thread (as httpx's own tests do) and its client."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import service.app  # noqa: F401  (sets MKL_CBWR before torch loads)

# isort: split
import httpx
import pytest
import torch
import uvicorn

from service.app import create_app
from service.server import DrainingServer, uvicorn_options
from service.settings import Settings

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU; none is visible")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, settings: Settings):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        options = {**uvicorn_options(settings), "timeout_graceful_shutdown": 5}  # as initsvc serve, shorter grace
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        self.server = DrainingServer(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def sigterm(self) -> None:
        """What SIGTERM does: drain, then exit once in-flight responses are done."""
        self.server.handle_exit(15, None)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def live_server(**settings) -> Iterator[LiveServer]:
    """A server with its own settings, e.g. ``live_server(max_elements=1024)``."""
    with LiveServer(Settings(**settings)) as server:
        yield server


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    with LiveServer(Settings()) as s:
        yield s


@pytest.fixture(scope="session")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
