"""Liveness and readiness, for GET and HEAD (a probe may send either; HEAD is left out of the
OpenAPI document, whose GET describes the answer)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import PoolDep
from service.schemas.responses import Health, Readiness

router = APIRouter(tags=["health"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz")
async def healthz() -> Health:
    """Liveness: the event loop answers (it never runs torch work)."""
    return Health(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A device worker is down or the server is draining."}},
)
async def readyz(pool: PoolDep) -> JSONResponse:
    """Readiness: every device worker is up and the server is accepting requests."""
    workers = {name: w.alive for name, w in pool.workers.items()}
    ready = pool.ready
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, "workers": workers})
