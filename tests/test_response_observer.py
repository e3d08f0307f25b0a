"""One response observer per request: the only wrapper of ``send`` in our middleware, and the one
source of the access line and the HTTP metrics, which therefore agree on status and bytes.

Requests are driven straight into the app (fake ``receive``/``send``, no sockets), so the test
sees every message the server would get and can be a client that goes away mid-body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import service
from service.api.middleware.observer import CLIENT_GONE, COMPLETED, ERROR, SCOPE_KEY, ResponseObserver
from service.app import create_app
from service.settings import Settings

SERVICE_DIR = Path(service.__file__).resolve().parent
STREAM = "/test/stream"
STREAM_CHUNKS = [b"a" * 1000, b"b" * 2000, b"c" * 3000]
BUG, BUG_MID_BODY = "/test/bug", "/test/bug-mid-body"


class Boom(Exception):
    """Nothing the service maps: a bug."""


def _middleware_file(filename: str) -> str | None:
    """'ours' for our middleware's modules, 'starlette' for Starlette's, else None."""
    path = Path(filename).resolve()
    if path == SERVICE_DIR / "api" / "errors.py" or path.parent == SERVICE_DIR / "api" / "middleware":
        return "ours"
    parts = path.parts
    if "starlette" in parts and (path.name == "_exception_handler.py" or "middleware" in parts):
        return "starlette"
    return None


def _send_layers() -> list[tuple[str, object]]:
    """The middleware frames between the server's ``send`` (the caller of this function's caller)
    and the code that sent the message: ``(qualified name, self)`` of each of ours."""
    frame = sys._getframe(2)
    ours = []
    while frame is not None and (kind := _middleware_file(frame.f_code.co_filename)) is not None:
        if kind == "ours":
            ours.append((frame.f_code.co_qualname, frame.f_locals.get("self")))
        frame = frame.f_back
    return ours


@dataclass
class Served:
    """What the fake server got for one request, and what the app logged and counted."""

    scope: dict
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0
    body: bytes = b""
    layers: list[list[tuple[str, object]]] = field(default_factory=list)
    log: list[logging.LogRecord] = field(default_factory=list)
    requests_moved: float = 0.0
    bytes_moved: float = 0.0
    raised: BaseException | None = None

    @property
    def observer(self) -> ResponseObserver:
        return self.scope[SCOPE_KEY]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class InProcess:
    """The app with its lifespan running on a loop of its own, and a one-request fake server."""

    def __init__(self) -> None:
        self.app: FastAPI = create_app(Settings())

        async def stream():
            async def chunks():
                for chunk in STREAM_CHUNKS:
                    yield chunk
                    await asyncio.sleep(0)

            return StreamingResponse(chunks(), media_type="application/octet-stream")  # no Content-Length

        async def bug():
            raise Boom("before the answer")

        async def bug_mid_body():
            async def chunks():
                yield STREAM_CHUNKS[0]
                raise Boom("after the answer started")

            return StreamingResponse(chunks(), media_type="application/octet-stream")

        self.app.add_api_route(STREAM, stream, methods=["GET"])
        self.app.add_api_route(BUG, bug, methods=["GET"])
        self.app.add_api_route(BUG_MID_BODY, bug_mid_body, methods=["GET"])
        self.loop = asyncio.new_event_loop()
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.access = Records()
        logging.getLogger("initsvc.access").addHandler(self.access)

    def close(self) -> None:
        logging.getLogger("initsvc.access").removeHandler(self.access)
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()

    def _sample(self, name: str, **labels: str) -> float:
        return self.app.state.metrics.registry.get_sample_value(name, labels) or 0.0

    def request(self, method: str, path: str, body: object = None, gone_after: int | None = None) -> Served:
        """One request; with ``gone_after=n`` the client stops reading after n body messages and
        goes away (the server's ``send`` never returns again, ``receive`` says disconnect)."""
        raw = json.dumps(body).encode() if body is not None else b""
        rid = f"observer-{len(self.access.records)}-{path}"
        headers = [(b"host", b"test"), (b"x-request-id", rid.encode()), (b"content-length", str(len(raw)).encode())]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
            "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80),
        }
        served = Served(scope)

        async def run() -> None:
            gone = asyncio.Event()
            delivered = False
            body_messages = 0

            async def receive():
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message):
                nonlocal body_messages
                served.layers.append(_send_layers())
                if message["type"] == "http.response.start":
                    served.status = message["status"]
                    served.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
                elif message["type"] == "http.response.body":
                    served.body_bytes += len(message.get("body", b""))
                    served.body += bytes(message.get("body", b""))
                    body_messages += 1
                    if gone_after is not None and body_messages >= gone_after:
                        gone.set()
                        await asyncio.Event().wait()  # the client reads nothing more
                    if not message.get("more_body", False):
                        gone.set()

            try:
                await self.app(scope, receive, send)
            except Boom as exc:  # past the start of the answer, the server gets the error
                served.raised = exc

        route = path
        before = (self._sample("initsvc_http_response_bytes_total", route=route), len(self.access.records))
        requests_before = {
            s: self._sample("initsvc_http_requests_total", method=method, route=route, status=str(s))
            for s in (200, 422, 499, 500)
        }
        self.loop.run_until_complete(run())
        served.bytes_moved = self._sample("initsvc_http_response_bytes_total", route=route) - before[0]
        served.log = [r for r in self.access.records[before[1]:] if getattr(r, "request_id", None) == rid]
        logged = served.log[0].status if served.log else served.status
        served.requests_moved = (
            self._sample("initsvc_http_requests_total", method=method, route=route, status=str(logged))
            - requests_before.get(logged, 0.0)
        )
        return served


@pytest.fixture(scope="module")
def app() -> Iterator[InProcess]:
    running = InProcess()
    try:
        yield running
    finally:
        running.close()


TENSOR = {"shape": [16, 16], "init": {"scheme": "normal"}, "seed": 0, "device": "cpu"}
BIG = {"shape": [1024, 2048], "init": {"scheme": "uniform"}, "seed": 0, "device": "cpu"}  # 8 MiB: several chunks
BAD = {"shape": [4], "init": {"scheme": "eye"}, "device": "cpu"}

CASES = {
    "normal": ("POST", "/v1/tensor", TENSOR, None),
    "422": ("POST", "/v1/tensor", BAD, None),
    "multi-chunk": ("POST", "/v1/tensor", BIG, None),
    "streamed": ("GET", STREAM, None, None),
    "client-gone-mid-body": ("GET", STREAM, None, 2),
    "500": ("GET", BUG, None, None),
    "error-mid-body": ("GET", BUG_MID_BODY, None, None),
}
STATUS = {"422": 422, "500": 500}


def test_our_middleware_wraps_send_once(app):
    """For every message of a request, exactly one frame of our middleware lies between the code
    that sends it and the server: the request's own observer's ``send``."""
    for method, path, body, gone_after in CASES.values():
        served = app.request(method, path, body, gone_after)
        assert len(served.layers) >= 2, served.layers  # a start and a body at least
        for layers in served.layers:
            assert [name for name, _ in layers] == ["ResponseObserver.send"], (path, layers)
            assert layers[0][1] is served.observer


@pytest.mark.parametrize("case", list(CASES))
def test_access_line_and_metrics_agree_on_status_and_bytes(app, case):
    method, path, body, gone_after = CASES[case]
    served = app.request(method, path, body, gone_after)

    assert len(served.log) == 1, served.log
    line = served.log[0]
    assert served.status == STATUS.get(case, 200)
    # The access line: what the server was given, in its fields and its text.
    assert (line.status, line.bytes) == (served.status, served.body_bytes)
    assert f" {served.status} " in line.getMessage() and f" {served.body_bytes}B " in line.getMessage()
    # The metrics: the request counted once under the same status, the same bytes.
    assert served.requests_moved == 1
    assert served.bytes_moved == served.body_bytes
    # And the observer they both read.
    observer = served.observer
    assert (observer.status, observer.body_bytes) == (served.status, served.body_bytes)
    assert served.headers["x-request-id"] == observer.request_id == line.request_id
    if case == "error-mid-body":
        # Too late for a 500: logged and counted as the 200 it started as, with the bytes sent.
        assert observer.outcome == ERROR and isinstance(served.raised, Boom)
        assert served.body_bytes == len(STREAM_CHUNKS[0])
    elif gone_after is None:
        assert served.raised is None and observer.outcome == COMPLETED
        if "content-length" in served.headers:
            assert served.body_bytes == int(served.headers["content-length"])
        elif path == STREAM:
            assert served.body_bytes == sum(map(len, STREAM_CHUNKS))
    else:
        assert observer.outcome == CLIENT_GONE
        assert 0 < served.body_bytes < sum(map(len, STREAM_CHUNKS))
    if case == "500":  # the guard's JSON 500, carrying the request id, went through the observer
        assert json.loads(served.body)["request_id"] == observer.request_id
    assert observer.ended_at is not None and observer.duration_s * 1000.0 == pytest.approx(line.duration_ms, abs=1e-3)
