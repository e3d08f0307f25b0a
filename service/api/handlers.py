"""One table from service errors to HTTP statuses; anything else is a 500, and a 500 is a bug.

    RequestValidationError, RecipeError, DeviceUnavailable   422  {"detail": [{loc, msg, type}]}
    LimitExceeded                                            413  {"detail": msg, limit, value, env_var}
    QueueFull                                                429  + Retry-After
    DeviceOutOfMemory, WorkerDown, ShuttingDown              503  + Retry-After
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.errors import (
    DeviceUnavailable,
    LimitExceeded,
    QueueFull,
    RecipeError,
    ServiceBusy,
)

BUSY_STATUS: dict[type[ServiceBusy], int] = {QueueFull: 429}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Over a size limit; the detail names the limit, its value and its INITSVC_ variable."},
    415: {"description": "The body is not JSON (Content-Type must be application/json)."},
    422: {"description": "Invalid recipe: the detail names each field and what is allowed."},
    429: {"description": "The device's queue is full; retry after Retry-After seconds."},
    503: {"description": "The device is out of memory, its worker is down, or the server is shutting down."},
}


def _where(request: Request) -> str:
    return "body" if request.method == "POST" else "query"


def _loc(request: Request, loc: tuple) -> list:
    if _where(request) == "query" and loc[:1] == ("init",):
        loc = loc[1:]  # query strings carry the recipe's parameters at the top level
    return [_where(request), *loc]


def validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI's error shape without ``input``/``ctx``, which may hold NaN or huge values."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    content_type = request.headers.get("content-type", "")
    body_not_parsed = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type" for e in errors)
    if body_not_parsed and "json" not in content_type.lower():
        return JSONResponse(
            status_code=415,
            content={"detail": f"the body must be JSON: send Content-Type: application/json; got {content_type or 'none'!r}"},
        )
    return JSONResponse(status_code=422, content={"detail": validation_detail(errors)})


async def on_recipe_error(request: Request, exc: RecipeError) -> JSONResponse:
    detail = [{"loc": _loc(request, p.loc), "msg": p.msg, "type": p.type} for p in exc.problems]
    return JSONResponse(status_code=422, content={"detail": detail})


async def on_device_unavailable(request: Request, exc: DeviceUnavailable) -> JSONResponse:
    detail = [{"loc": [_where(request), "device"], "msg": str(exc), "type": "device_unavailable"}]
    return JSONResponse(status_code=422, content={"detail": detail})


async def on_limit(request: Request, exc: LimitExceeded) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={"detail": str(exc), "limit": exc.limit, "value": exc.value, "env_var": exc.env_var},
    )


async def on_busy(request: Request, exc: ServiceBusy) -> JSONResponse:
    status = BUSY_STATUS.get(type(exc), 503)
    return JSONResponse(
        status_code=status, content={"detail": str(exc)}, headers={"Retry-After": str(exc.retry_after)}
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(RecipeError, on_recipe_error)
    app.add_exception_handler(DeviceUnavailable, on_device_unavailable)
    app.add_exception_handler(LimitExceeded, on_limit)
    app.add_exception_handler(ServiceBusy, on_busy)
