"""One table from service errors to HTTP statuses; anything else is a 500, and a 500 is a bug.

    RequestValidationError, RecipeError, DeviceUnavailable   422  {"detail": [{loc, msg, type}]}
    LimitExceeded                                            413  {"detail": msg, limit, value, env_var}
    QueueFull                                                429  + Retry-After
    DeviceOutOfMemory, WorkerDown, ShuttingDown              503  + Retry-After
    anything else (a bug)                                    500  {"detail": msg, "request_id": id}

A 422 teaches: an unknown key lists the names allowed where it was found (with a "did you mean"
for a near miss), and an unknown ``scheme`` or layer ``type`` suggests the closest known one.
The 500 is answered by ``UnexpectedErrorMiddleware``, innermost of the middleware, so the error
never reaches Starlette's ``ServerErrorMiddleware`` (whose plain-text 500 re-raises into the
server, which then closes the connection): the client gets JSON with the request id, the log
gets the traceback, and a keep-alive connection serves the next request.
"""

from __future__ import annotations

import difflib
import logging
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.middleware.request_log import current_request_id
from service.errors import (
    DeviceUnavailable,
    LimitExceeded,
    QueueFull,
    RecipeError,
    ServiceBusy,
)

log = logging.getLogger("initsvc.errors")

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


def did_you_mean(word: object, known: Iterable[str]) -> str | None:
    """The known name ``word`` most likely meant: the same name once a trailing underscore (torch's
    in-place suffix) and case are dropped, else the closest by ``difflib``; ``None`` if none is close."""
    if not isinstance(word, str):
        return None
    by_folded = {name.lower(): name for name in known}
    folded = word.strip().rstrip("_").lower()
    if folded in by_folded:
        return by_folded[folded]
    close = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _tags(tp: Any) -> set[str]:
    """The tags a union member answers to: its Tag(...) or the values of its Literal fields."""
    tags = {str(m.tag) for m in getattr(tp, "__metadata__", ()) if hasattr(m, "tag")}
    model = _unwrap(tp)
    if isinstance(model, type) and issubclass(model, BaseModel):
        for field in model.model_fields.values():
            if typing.get_origin(field.annotation) is Literal:
                tags.update(str(v) for v in typing.get_args(field.annotation))
    return tags


def model_at(root: Any, loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model found by following a validation error's ``loc`` (after ``body``) from ``root``
    through fields, list indices, dict keys and union tags; ``None`` if the path is not a model's."""
    tp = root
    parts = list(loc)
    while True:
        tp_bare = _unwrap(tp)
        origin = typing.get_origin(tp_bare)
        if origin in (Union, types.UnionType):
            members = typing.get_args(tp_bare)
            tagged = [m for m in members if parts and str(parts[0]) in _tags(m)]
            if tagged:
                tp, parts = tagged[0], parts[1:]
                continue
            models = [m for m in members if _unwrap(m) is not type(None)]
            if len(models) != 1:
                return None
            tp = models[0]
            continue
        if not parts:
            return tp_bare if isinstance(tp_bare, type) and issubclass(tp_bare, BaseModel) else None
        head = parts[0]
        if origin in (list, tuple) and isinstance(head, int):
            tp, parts = typing.get_args(tp_bare)[0], parts[1:]
        elif origin is dict:
            tp, parts = typing.get_args(tp_bare)[1], parts[1:]
        elif isinstance(tp_bare, type) and issubclass(tp_bare, BaseModel) and head in tp_bare.model_fields:
            field = tp_bare.model_fields[head]
            tp, parts = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation, parts[1:]
        else:
            return None


def _model_label(model: type[BaseModel]) -> str:
    for key, word in (("scheme", "scheme"), ("type", "layer type")):
        field = model.model_fields.get(key)
        if field is not None and typing.get_origin(field.annotation) is Literal:
            return f" for {word} {typing.get_args(field.annotation)[0]!r}"
    return ""


def _extra_message(root: Any, loc: Sequence[str | int]) -> str | None:
    """'unknown field 'sdt' for scheme 'normal' (did you mean 'std'?); allowed: mean, std'."""
    model = model_at(root, loc[:-1]) if root is not None and loc else None
    if model is None:
        return None
    key = loc[-1]
    allowed = [name for name in model.model_fields if name not in ("scheme", "type")]
    guess = did_you_mean(key, allowed)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    listed = ", ".join(allowed) if allowed else "none (this one takes no arguments)"
    return f"Extra inputs are not permitted: unknown field {key!r}{_model_label(model)}{hint}; allowed: {listed}"


def _tag_message(ctx: dict[str, Any]) -> str:
    """pydantic's union_tag_invalid, with a suggestion: "did you mean 'kaiming_uniform'?"."""
    known = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
    discriminator = str(ctx.get("discriminator", "")).strip("'\"")
    tag = ctx.get("tag")
    guess = did_you_mean(tag, known)
    hint = f"did you mean {guess!r}? " if guess else ""
    return f"unknown {discriminator} {tag!r}; {hint}{discriminator} must be one of: {', '.join(map(repr, known))}"


def _body_model(request: Request | None) -> Any:
    """The request body's model: the endpoint's parameter annotated with a pydantic model."""
    endpoint = request.scope.get("endpoint") if request is not None else None
    if endpoint is None:
        return None
    try:
        hints = typing.get_type_hints(endpoint, include_extras=False)
    except Exception:  # noqa: BLE001 - an endpoint whose hints do not resolve has no known body
        return None
    hints.pop("return", None)
    models = [
        h for h in hints.values()
        if isinstance(h, type) and issubclass(h, BaseModel) and not issubclass(h, BaseSettings)
    ]
    return models[0] if len(models) == 1 else None


def validation_detail(errors: list[dict[str, Any]], request: Request | None = None) -> list[dict[str, Any]]:
    """FastAPI's error shape without ``input``/``ctx``, which may hold NaN or huge values; an unknown
    key lists what is allowed there, an unknown scheme or layer type suggests the closest one."""
    root = _body_model(request)
    detail = []
    for e in errors:
        loc = list(e.get("loc", ()))
        msg, type_ = str(e.get("msg", "")), str(e.get("type", ""))
        if type_ == "extra_forbidden" and loc[:1] == ["body"]:
            msg = _extra_message(root, loc[1:]) or msg
        elif type_ == "union_tag_invalid":
            msg = _tag_message(e.get("ctx") or {})
        detail.append({"loc": loc, "msg": msg, "type": type_})
    return detail


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    content_type = request.headers.get("content-type", "")
    body_not_parsed = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type" for e in errors)
    if body_not_parsed and "json" not in content_type.lower():
        return JSONResponse(
            status_code=415,
            content={"detail": f"the body must be JSON: send Content-Type: application/json; got {content_type or 'none'!r}"},
        )
    return JSONResponse(status_code=422, content={"detail": validation_detail(errors, request)})


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


class UnexpectedErrorMiddleware:
    """Whatever the table above does not map is a bug: answer ``500 {"detail", "request_id"}``,
    log it with its traceback and the request id, and keep the connection open.

    Added first, so it is the innermost middleware (``RequestLogMiddleware`` outside it still adds
    ``X-Request-ID`` and logs the 500). An error after the answer has started cannot become a
    500: it is logged and re-raised, and the server closes the connection (the body is short of
    its ``Content-Length``, so the client knows it is incomplete).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the point: nothing unexpected escapes unanswered
            request_id = scope.get("state", {}).get("request_id") or current_request_id() or "-"
            where = f"{scope.get('method', '')} {scope.get('path', '')}"
            log.error(
                "unexpected %s on %s (request id %s)%s", type(exc).__name__, where, request_id,
                "; the answer had started, closing the connection" if started else "",
                exc_info=exc, extra={"request_id": request_id},
            )
            if started:
                raise
            response = JSONResponse(
                status_code=500,
                content={
                    "detail": f"internal error ({type(exc).__name__}) on {where}: this is a bug in initsvc; "
                    f"please report it with the request id {request_id}",
                    "request_id": request_id,
                },
            )
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(RecipeError, on_recipe_error)
    app.add_exception_handler(DeviceUnavailable, on_device_unavailable)
    app.add_exception_handler(LimitExceeded, on_limit)
    app.add_exception_handler(ServiceBusy, on_busy)
