"""One observer per HTTP request: the only wrapper of ASGI ``send`` in the middleware stack.

``ObserverMiddleware`` is the outermost of ours. For each HTTP request it picks the request id
(the client's ``X-Request-ID`` when valid, else a uuid4 hex; see ``request_log``), puts it on
``request.state.request_id`` and on every log record written while the request runs, and places
a ``ResponseObserver`` in the scope under ``SCOPE_KEY``. The observer wraps ``send`` once and
records what goes out:

    status, headers     of ``http.response.start`` (``X-Request-ID`` set there)
    body_bytes          body bytes handed to the server
    started_at, ended_at  ``time.perf_counter()`` at the request's first byte and at its end
    outcome             completed, client_gone or error

The answer ends when its last body byte is handed to the server (the last chunk, or the one that
completes ``Content-Length``: a client has the whole answer then, before the closing empty chunk),
or when the request ends without that: ``error`` if the app raised, ``client_gone`` otherwise (it
returned or was cancelled with the answer unsent or short, as when the client went away). Then,
once and before that last byte goes out (so a client holding the answer sees it logged and
counted), every ``on_end`` hook gets the scope and the observer: the metrics (``metrics.py``) and
the access line (``request_log.py``).

The middleware further in (the 500 guard in ``api/errors.py``, the body limit) ask the observer
whether the answer has started instead of wrapping ``send`` themselves: ``observed(scope, send)``
gives them the request's observer and ``send`` unchanged, or, used without ``ObserverMiddleware``
outside them, a fresh observer and the ``send`` it wraps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.middleware.request_log import request_id_from, reset_request_id, set_request_id

SCOPE_KEY = "initsvc.observer"
COMPLETED: Final = "completed"  # the last body byte was handed to the server
CLIENT_GONE: Final = "client_gone"  # the request ended without (all of) its answer
ERROR: Final = "error"  # the app raised
Outcome = Literal["completed", "client_gone", "error"]

log = logging.getLogger("initsvc.observer")


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` of a response's raw ASGI headers, if it declares one."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class ResponseObserver:
    """What one request's answer did: status, headers, body bytes, start and end, outcome.

    ``send`` is the wrapper the app below gets; ``on_end`` hooks run once, when the answer ends.
    """

    __slots__ = (
        "_send", "_request_id_bytes", "_on_end", "scope", "request_id",
        "status", "headers", "declared", "body_bytes", "started_at", "ended_at", "outcome",
    )

    def __init__(
        self, scope: Scope, send: Send, request_id: str | None = None,
        on_end: Sequence[Callable[[Scope, ResponseObserver], None]] = (),
    ):
        self._send = send
        self.request_id = request_id
        self._request_id_bytes = request_id.encode("ascii") if request_id is not None else None
        self._on_end = on_end
        self.scope = scope
        self.status = 0  # 0 until http.response.start
        self.headers: list[tuple[bytes, bytes]] = []
        self.declared: int | None = None  # the answer's Content-Length, if it has one
        self.body_bytes = 0
        self.started_at = time.perf_counter()
        self.ended_at: float | None = None
        self.outcome: Outcome | None = None

    @property
    def started(self) -> bool:
        """Whether ``http.response.start`` has gone out (past that, no other answer can be sent)."""
        return self.status != 0

    @property
    def duration_s(self) -> float:
        """From the request's first byte to the answer's end (to now while it runs)."""
        return (self.ended_at if self.ended_at is not None else time.perf_counter()) - self.started_at

    def final_status(self) -> int:
        """The status sent; for an answer that never started, 500 if the app raised, else 499
        (nginx's "client closed request": the request ended without an answer)."""
        return self.status or (500 if self.outcome == ERROR else 499)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.body_bytes += len(message.get("body", b""))
            if self.outcome is None and (
                not message.get("more_body", False) or (self.declared is not None and self.body_bytes >= self.declared > 0)
            ):
                self.end(COMPLETED)
        elif kind == "http.response.start":
            self.status = message["status"]
            if self._request_id_bytes is not None:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", self._request_id_bytes))
                message = {**message, "headers": headers}
            else:
                headers = list(message.get("headers", ()))
            self.headers = headers
            self.declared = content_length(headers)
        await self._send(message)

    def end(self, outcome: Outcome) -> None:
        """Record the end (once; later calls do nothing) and run the ``on_end`` hooks. A hook that
        fails is logged and the others still run: the answer itself is not touched."""
        if self.outcome is not None:
            return
        self.ended_at = time.perf_counter()
        self.outcome = outcome
        for hook in self._on_end:
            try:
                hook(self.scope, self)
            except Exception:  # noqa: BLE001 - a broken hook must not break the answer
                log.exception("response observer hook %r failed", hook)


def observed(scope: Scope, send: Send) -> tuple[ResponseObserver, Send]:
    """The request's observer and the ``send`` to pass on: the one ``ObserverMiddleware`` put in
    the scope with ``send`` unchanged, or, without it, a new observer and its wrapper of ``send``."""
    observer = scope.get(SCOPE_KEY)
    if observer is not None:
        return observer, send
    observer = ResponseObserver(scope, send)
    return observer, observer.send


class ObserverMiddleware:
    """Request id in and out, one ``ResponseObserver`` per HTTP request, ``on_end`` hooks at its end."""

    def __init__(self, app: ASGIApp, on_end: Sequence[Callable[[Scope, ResponseObserver], None]] = ()):
        self.app = app
        self.on_end = tuple(on_end)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
        request_id = request_id_from(supplied)
        scope.setdefault("state", {})["request_id"] = request_id
        observer = scope[SCOPE_KEY] = ResponseObserver(scope, send, request_id, self.on_end)
        token = set_request_id(request_id)
        try:
            await self.app(scope, receive, observer.send)
        except Exception:
            # An error past the 500 guard (its 500 was already an answer): the server closes.
            observer.end(ERROR)
            raise
        finally:
            observer.end(CLIENT_GONE)  # the request ended without (all of) its answer
            reset_request_id(token)
