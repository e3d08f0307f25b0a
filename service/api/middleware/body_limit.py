"""Refuse request bodies over ``INITSVC_MAX_BODY_BYTES`` before they are read whole (413).

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is
counted as it arrives and refused as soon as it passes the limit: with a 413 if no answer has
started (the request's ``ResponseObserver`` says so; this middleware does not wrap ``send``).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import send_error
from service.api.middleware.observer import observed


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-body; an ``HTTPException`` so FastAPI's body reader lets it
    through as the 413 it is (a plain exception there becomes a 400)."""

    def __init__(self, limit: int):
        super().__init__(
            413, f"request body of more than {limit} bytes is over INITSVC_MAX_BODY_BYTES={limit}"
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _refuse(self, send: Send, size: str) -> None:
        await send_error(
            send, 413, f"request body of {size} bytes is over INITSVC_MAX_BODY_BYTES={self.max_body_bytes}",
            headers=[(b"connection", b"close")], limit=self.max_body_bytes, env_var="INITSVC_MAX_BODY_BYTES",
        )

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
                    await self._refuse(send, str(declared))
                    return
        received = 0
        observer, send = observed(scope, send)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            if not observer.started:
                await self._refuse(send, f"more than {self.max_body_bytes}")
