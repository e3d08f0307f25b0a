"""Refuse request bodies over ``INITSVC_MAX_BODY_BYTES`` before they are read whole (413), and
bodies whose client stops sending for ``INITSVC_RECEIVE_TIMEOUT_S`` (408).

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is
counted as it arrives and refused as soon as it passes the limit. Both errors are raised from
``receive`` as ``ReceiveError`` (``api/errors.py``), which FastAPI's body reader lets through to
its exception handler; one raised where no handler runs is answered here, if no answer has
started (the request's ``ResponseObserver`` says so; this middleware does not wrap ``send``).
Either answer closes the connection, since the rest of the body is never read.

The timeout covers only the body: once its last part has arrived (``more_body`` false), a
``receive`` waits for ``http.disconnect`` as long as it takes, so a streaming answer still hears
its client leave.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ReceiveError, body_too_large, receive_timed_out, send_error
from service.api.middleware.observer import observed

CLOSE = [(b"connection", b"close")]


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, receive_timeout_s: float | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.receive_timeout_s = receive_timeout_s

    async def _refuse(self, send: Send, error: ReceiveError) -> None:
        await send_error(send, error.status_code, error.detail, headers=CLOSE, **error.fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body_bytes:
                    await self._refuse(send, body_too_large(declared, self.max_body_bytes))
                    return
        received = 0
        body_done = False
        observer, send = observed(scope, send)

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done or self.receive_timeout_s is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.receive_timeout_s)
                except TimeoutError:
                    raise receive_timed_out(self.receive_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise body_too_large(received, self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except ReceiveError as error:
            if not observer.started:
                await self._refuse(send, error)
