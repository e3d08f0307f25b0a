"""Baselines: a bare FastAPI endpoint returning N ready bytes (small-request latency), and N bytes
streamed from a ready pinned buffer (the GPU path's ceiling)."""

from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

app = FastAPI()
_PAYLOADS: dict[int, bytes] = {}
_PINNED: dict[int, object] = {}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/pinned/{n}")
async def pinned_bytes(n: int) -> StreamingResponse:
    """The GPU ceiling: n bytes from a ready pinned host buffer, in 1 MiB views, as initsvc sends."""
    import torch

    buffer = _PINNED.get(n)
    if buffer is None:
        buffer = _PINNED[n] = torch.zeros(n, dtype=torch.uint8, pin_memory=True)
    view = memoryview(buffer.numpy())

    async def body():
        for start in range(0, n, 1 << 20):
            yield view[start : start + (1 << 20)]

    return StreamingResponse(body(), media_type="application/octet-stream", headers={"content-length": str(n)})


@app.post("/bytes/{n}")
async def fixed_bytes(n: int) -> Response:
    payload = _PAYLOADS.setdefault(n, bytes(n))
    return Response(payload, media_type="application/octet-stream")
