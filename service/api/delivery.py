"""From made tensors to an HTTP answer: safetensors stream, JSON summary, or 304/412.

The safetensors body is the header we encode (``codec.header``) followed by memoryviews of each
tensor's own memory (``codec.body``), streamed with an exact ``Content-Length``. The admission
slot is released when the last byte is sent or the client goes away, whichever comes first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from service.codec.body import chunk_views, tensor_bytes_view
from service.codec.header import TensorEntry, dumps, encode_header
from service.engine.maker import MadeTensor
from service.engine.rng import SAFETENSORS_DTYPES
from service.workers.admission import Slot

_UNSAFE_FILENAME = re.compile(r'[^A-Za-z0-9._-]')


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


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
        prefix = f"{m.spec.name}: " if len(made) > 1 else ""
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


def metadata(made: Sequence[MadeTensor], request_json: dict, provenance: dict) -> dict[str, str]:
    meta = {"format": "pt", "request": dumps(request_json), "provenance": dumps(provenance)}
    if all(m.stats is not None for m in made):
        meta["stats"] = dumps({m.spec.name: m.stats for m in made})
    return meta


def json_response(made: Sequence[MadeTensor], request_json: dict, provenance: dict, headers: dict[str, str]) -> Response:
    content = {"tensors": tensor_summaries(made), "request": request_json, "provenance": provenance}
    return Response(content=dumps(content), media_type="application/json", headers=headers)


def safetensors_response(
    request: Request,
    made: Sequence[MadeTensor],
    request_json: dict,
    provenance: dict,
    headers: dict[str, str],
    slot: Slot,
) -> Response:
    entries = [
        TensorEntry(m.spec.name, SAFETENSORS_DTYPES[m.spec.dtype], tuple(m.tensor.shape), m.tensor.numel() * m.tensor.element_size())
        for m in made
    ]
    header = encode_header(entries, metadata(made, request_json, provenance))
    length = len(header) + sum(e.nbytes for e in entries)
    headers = {**headers, "content-length": str(length)}
    if request.method == "HEAD":
        slot.release()
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")

    async def body() -> AsyncIterator[bytes | memoryview]:
        try:
            yield header
            for m in made:
                for view in chunk_views(tensor_bytes_view(m.tensor)):
                    yield view
        finally:
            slot.release()
            made_list = list(made)
            made_list.clear()

    return StreamingResponse(body(), headers=headers, media_type="application/octet-stream")
