"""From made tensors to an HTTP answer: safetensors stream, JSON summary, or 304/412.

The safetensors body is the header we encode (``codec.header``) followed by the views the worker
side queues on ``Segments`` (the tensor's own memory on CPU, pinned buffers from a GPU), streamed
with an exact ``Content-Length``. The admission slot is released when the last byte is sent or
the client goes away, whichever comes first; going away also stops the producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from service.codec.header import TensorEntry, body_length, dumps, encode_header
from service.engine.maker import MadeTensor, Output
from service.engine.rng import SAFETENSORS_DTYPES
from service.workers.admission import Slot
from service.workers.streaming import WRITE_BYTES, Segments

log = logging.getLogger("initsvc.delivery")
_UNSAFE_FILENAME = re.compile(r'[^A-Za-z0-9._-]')


def wants_json(request: Request) -> bool:
    """Accept lists ``application/json`` with q > 0 (``q=0`` refuses it, RFC 9110)."""
    for part in request.headers.get("accept", "").lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media != "application/json":
            continue
        q = next((value.strip() for name, _, value in (p.partition("=") for p in params) if name.strip() == "q"), "1")
        try:
            return float(q) > 0
        except ValueError:
            return False
    return False


def representation(request: Request) -> str:
    return "json" if wants_json(request) else "st"


def etag_matches(request: Request, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag, weak or strong, equal to ``etag``."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def not_modified(request: Request, headers: dict[str, str]) -> Response:
    """304 for GET/HEAD; 412 for other methods, as RFC 9110 requires for If-None-Match."""
    if request.method in ("GET", "HEAD"):
        return Response(status_code=304, headers=headers)
    return JSONResponse(
        status_code=412,
        content={"detail": "If-None-Match matched the ETag of this response; nothing was generated"},
        headers=headers,
    )


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII-safe filename (no quotes, CR/LF or ``;`` can get through) and
    the exact name in RFC 5987 ``filename*``."""
    safe = _UNSAFE_FILENAME.sub("_", name)[:200] or "tensor"
    return f"attachment; filename=\"{safe}.safetensors\"; filename*=UTF-8''{quote(name + '.safetensors', safe='')}"


def provenance_with_outcome(provenance: dict[str, Any], made: Sequence[MadeTensor]) -> dict[str, Any]:
    """The plan's provenance plus what generation knows: torch's warnings, and how each tensor was
    made (CPU threads; a slice generated directly or cut from the whole tensor)."""
    warnings: list[str] = []
    for m in made:
        # A preset's warnings are the model's (its config, its build), not one key's.
        prefix = f"{m.spec.name}: " if len(made) > 1 and m.spec.scheme != "preset" else ""
        warnings += [prefix + w for w in m.warnings]
    outcome: dict[str, Any] = {"warnings": warnings}
    if len(made) == 1:
        outcome.update(made[0].generation)
    elif any(m.generation for m in made):
        outcome["generation"] = {m.spec.name: m.generation for m in made}
    return {**provenance, **outcome}


def tensor_summaries(made: Sequence[MadeTensor]) -> dict[str, Any]:
    return {
        m.spec.name: {"dtype": m.spec.dtype, "shape": list(m.tensor.shape), "stats": m.stats} for m in made
    }


def metadata(made: Sequence[MadeTensor] | Sequence[Output], request_json: dict, provenance: dict) -> dict[str, str]:
    meta = {"format": "pt", "request": dumps(request_json), "provenance": dumps(provenance)}
    if made and all(isinstance(m, MadeTensor) and m.stats is not None for m in made):
        meta["stats"] = dumps({m.spec.name: m.stats for m in made})
    return meta


def json_response(made: Sequence[MadeTensor], request_json: dict, provenance: dict, headers: dict[str, str]) -> Response:
    content = {"tensors": tensor_summaries(made), "request": request_json, "provenance": provenance}
    return Response(content=dumps(content), media_type="application/json", headers=headers)


def safetensors_response(
    request: Request,
    made: Sequence[MadeTensor] | Sequence[Output],
    request_json: dict,
    provenance: dict,
    headers: dict[str, str],
    slot: Slot,
    segments: Segments,
) -> Response:
    """The header we encode, then every queued view of tensor bytes; exact ``Content-Length``."""
    entries = [_entry(m) for m in made]
    header = encode_header(entries, metadata(made, request_json, provenance))
    length = body_length(header, entries)
    headers = {**headers, "content-length": str(length)}
    if request.method == "HEAD":
        segments.cancel()
        slot.release()
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")

    send_timeout_s = request.app.state.settings.send_timeout_s
    return BodyResponse(header, segments, slot.release, headers, send_timeout_s)


class BodyResponse(Response):
    """Header bytes, then the queued views, each ``send`` bounded by ``send_timeout_s``.

    Written out rather than starlette's ``StreamingResponse`` so that the end of the response is
    explicit: however it ends (sent, client gone, client stalled past the timeout, producer
    failed), the producers are stopped and the admission slot is released right then, not when
    an abandoned generator is garbage-collected.

    A body whose every byte is queued already (``segments.complete``: a CPU tensor made whole) is
    sent from the route's own task: no listener task, no per-send timer task, the last piece
    carrying ``more_body: False``. A client that goes away meanwhile makes the remaining sends
    return at once (the server drops them). A body still being made (streamed, or copied from a
    device) is sent while a second task listens for the client going away, which stops the
    producers. Either way one timer per send (not a task) enforces ``send_timeout_s``.
    """

    media_type = "application/octet-stream"

    def __init__(self, header: bytes, segments: Segments, on_close, headers: dict[str, str], send_timeout_s: float):
        super().__init__(content=None, headers=headers, media_type=self.media_type)
        self.raw_headers = [
            (k, v) for k, v in self.raw_headers if k != b"content-length"
        ] + [(b"content-length", headers["content-length"].encode())]
        self.header, self.segments, self.on_close, self.send_timeout_s = header, segments, on_close, send_timeout_s
        self.stalled = False

    def _stall(self, task: asyncio.Task) -> None:
        self.stalled = True
        task.cancel()

    async def _send_all(self, send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        timeout = self.send_timeout_s

        async def timed(message) -> None:
            timer = loop.call_later(timeout, self._stall, task)
            try:
                await send(message)
            finally:
                timer.cancel()
            if message.get("more_body"):
                # A write the socket takes at once does not suspend: without this turn of the
                # loop, a body the client reads as fast as it is written would keep every other
                # request (and every finished job's answer) waiting until its last byte.
                await asyncio.sleep(0)

        await timed({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.segments.complete:
            await self._send_ready(timed)
            return
        await timed({"type": "http.response.body", "body": self.header, "more_body": True})
        async with contextlib.aclosing(self.segments.views()) as views:
            async for view in views:
                await timed({"type": "http.response.body", "body": view, "more_body": True})
                del view  # sent: not kept while the next one is awaited (its piece is given back then)
        await timed({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_ready(self, timed) -> None:
        """Every piece is queued: write them in ``WRITE_BYTES`` views, the last one ending the body."""
        pending: memoryview | bytes = self.header
        while (piece := self.segments.take()) is not None:
            view, release = piece
            try:
                for start in range(0, len(view), WRITE_BYTES):
                    await timed({"type": "http.response.body", "body": pending, "more_body": True})
                    pending = view[start : start + WRITE_BYTES]
            finally:
                if release is not None:
                    release()
            del view, piece
        await timed({"type": "http.response.body", "body": pending, "more_body": False})

    @staticmethod
    async def _disconnected(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def __call__(self, scope, receive, send) -> None:
        try:
            if self.segments.complete:
                await self._send_all(send)  # this task: nothing else to wait for
            else:
                await self._send_streamed(receive, send)
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            log.warning("abandoned a response: the client took no bytes for %s s", self.send_timeout_s)
            self._uncancel()
        finally:
            self.segments.cancel()
            self.segments.dispose()
            self.on_close()  # last: a released slot means this response holds nothing any more

    @staticmethod
    def _uncancel() -> None:
        task = asyncio.current_task()
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()

    async def _send_streamed(self, receive, send) -> None:
        sending = asyncio.ensure_future(self._send_all(send))
        listening = asyncio.ensure_future(self._disconnected(receive))
        try:
            await asyncio.wait({sending, listening}, return_when=asyncio.FIRST_COMPLETED)
            if sending.done():
                if sending.cancelled():
                    if self.stalled:
                        log.warning("abandoned a response: the client took no bytes for %s s", self.send_timeout_s)
                elif (exc := sending.exception()) is not None:
                    raise exc
        finally:
            for task in (sending, listening):
                task.cancel()
            # Let the cancelled tasks unwind (closing the views generator) before giving back.
            await asyncio.gather(sending, listening, return_exceptions=True)


def _entry(m: MadeTensor | Output) -> TensorEntry:
    if isinstance(m, Output):
        return TensorEntry(m.name, SAFETENSORS_DTYPES[m.dtype], m.shape, m.nbytes)
    t = m.tensor
    return TensorEntry(m.spec.name, SAFETENSORS_DTYPES[m.spec.dtype], tuple(t.shape), t.numel() * t.element_size())
