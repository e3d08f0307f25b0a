"""The baseline for small-request latency: a bare FastAPI endpoint returning N ready bytes."""

from fastapi import FastAPI, Response

app = FastAPI()
_PAYLOADS: dict[int, bytes] = {}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/bytes/{n}")
async def fixed_bytes(n: int) -> Response:
    payload = _PAYLOADS.setdefault(n, bytes(n))
    return Response(payload, media_type="application/octet-stream")
