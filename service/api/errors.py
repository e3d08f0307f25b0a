"""The HTTP side of errors, in one place: which status each service error is, its body and extra
headers, the OpenAPI responses that document them, and the raw-ASGI writer the middleware uses.

    RequestValidationError, RecipeError, DeviceUnavailable   422  {"detail": [{loc, msg, type}]}
    a body that does not parse as JSON (bad UTF-8, too deep)  422  {"detail": [{loc, msg, "json_invalid"}]}
    (a body that is not sent as JSON)                        415  {"detail": msg} naming the Content-Type
    LimitExceeded, a body over INITSVC_MAX_BODY_BYTES        413  {"detail": msg, limit, value, env_var}
    no body bytes for INITSVC_RECEIVE_TIMEOUT_S              408  {"detail": msg, env_var}, then close
    no or a wrong API key                                    401  {"detail": msg} + WWW-Authenticate
    QueueFull                                                429  + Retry-After
    DeviceOutOfMemory, WorkerDown, ShuttingDown              503  + Retry-After
    anything else (a bug)                                    500  {"detail": msg, "request_id": id}

``STATUS_OF`` maps the service's exceptions (``service/errors.py``) to their statuses and
``STATUSES`` says what each status means and which body schema it has; the exception handlers,
``ERROR_RESPONSES`` (what routes declare) and ``openapi_response`` (what ``api/openapi.py`` adds
to every operation) all read them. The API-key and body-limit middleware answer before any
route, with ``send_error``; every error body is compact JSON, as ``JSONResponse`` renders it.
``on_http_error`` answers Starlette's and FastAPI's own ``HTTPException``: the errors raised
from ``receive`` with their fields, FastAPI's 400 for a body its JSON parser gave up on as the
422 ``json_invalid`` a JSON syntax error is, and a 405's ``Allow`` with every method of the path.

A 422 teaches: an unknown key lists the names allowed where it was found (with a "did you mean"
for a near miss), and an unknown ``scheme`` or layer ``type`` suggests the closest known one.
A GET's location is ``["query", name]``: ``query_loc`` turns a recipe's location into the query
parameter that carries it.
The 500 is answered by ``UnexpectedErrorMiddleware``, innermost of the middleware, so the error
never reaches Starlette's ``ServerErrorMiddleware`` (whose plain-text 500 re-raises into the
server, which then closes the connection): the client gets JSON with the request id, the log
gets the traceback, and a keep-alive connection serves the next request.

Longer than the ~300 lines most modules keep to: the one error module: the status table, the handlers, the OpenAPI responses, the 500 middleware and the raw-ASGI writer.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.middleware.observer import observed
from service.api.middleware.request_log import current_request_id
from service.errors import (
    DeviceUnavailable,
    InitServiceError,
    LimitExceeded,
    QueueFull,
    RecipeError,
    ServiceBusy,
)
from service.schemas.recipes import RECIPE_MODELS

log = logging.getLogger("initsvc.errors")


@dataclass(frozen=True)
class ErrorStatus:
    """What an error status means (its OpenAPI description) and its body's schema."""

    schema: str
    description: str


STATUSES: dict[int, ErrorStatus] = {
    408: ErrorStatus("ErrorMessage", "The client sent no body bytes for INITSVC_RECEIVE_TIMEOUT_S seconds; the connection is closed."),
    401: ErrorStatus("ErrorMessage", "API keys are configured and the request carries none or a wrong one (WWW-Authenticate: Bearer)."),
    413: ErrorStatus("LimitError", "Over a size limit (the body over INITSVC_MAX_BODY_BYTES, or a tensor limit); the detail names "
                     "the limit, its value and its INITSVC_ variable."),
    415: ErrorStatus("ErrorMessage", "The body must be sent as JSON (Content-Type: application/json)."),
    422: ErrorStatus("HTTPValidationError", "Invalid input: each entry's loc names the field and msg says what is allowed."),
    429: ErrorStatus("ErrorMessage", "The device's queue is full; retry after Retry-After seconds."),
    503: ErrorStatus("ErrorMessage", "The device is out of memory, its worker is down, or the server is shutting down."),
}

# Each service exception's status (the most derived class listed wins); one not listed is a bug (500).
STATUS_OF: dict[type[InitServiceError], int] = {
    RecipeError: 422,
    DeviceUnavailable: 422,
    LimitExceeded: 413,
    QueueFull: 429,
    ServiceBusy: 503,
}

# What routes that make tensors declare in ``responses=``; ``api/openapi.py`` adds the bodies' schemas.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": STATUSES[status].description} for status in (413, 415, 422, 429, 503)
}


def status_of(exc: InitServiceError) -> int:
    """``exc``'s status from ``STATUS_OF``, by its class's method resolution order."""
    return next(STATUS_OF[cls] for cls in type(exc).__mro__ if cls in STATUS_OF)


def headers_of(exc: InitServiceError) -> dict[str, str]:
    """The extra headers of ``exc``'s answer: ``Retry-After`` when trying later may succeed."""
    return {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServiceBusy) else {}


def openapi_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of an error status: its description and body schema."""
    known = STATUSES[status]
    ref = f"#/components/schemas/{known.schema}"
    return {"description": known.description, "content": {"application/json": {"schema": {"$ref": ref}}}}


class ReceiveError(HTTPException):
    """An error raised from ``receive`` while the body is read: over ``INITSVC_MAX_BODY_BYTES``
    (413) or no bytes for ``INITSVC_RECEIVE_TIMEOUT_S`` (408). An ``HTTPException`` so FastAPI's
    body reader lets it through (any other exception there becomes its 400); ``on_http_error``
    answers ``{"detail", **fields}`` with ``Connection: close``, since the rest of the body is
    never read. ``fields``: a 413's ``limit``, ``value`` and ``env_var``, a 408's ``env_var``."""

    def __init__(self, status: int, detail: str, **fields: Any):
        super().__init__(status, detail, headers={"Connection": "close"})
        self.fields = fields


def body_too_large(value: int, limit: int) -> ReceiveError:
    """The 413 of a body of ``value`` bytes (declared, or received so far) over ``limit``."""
    return ReceiveError(
        413, f"request body of {value} bytes is over the limit; INITSVC_MAX_BODY_BYTES is {limit}",
        limit=limit, value=value, env_var="INITSVC_MAX_BODY_BYTES",
    )


def receive_timed_out(timeout_s: float) -> ReceiveError:
    """The 408 of a body whose client sent nothing for ``timeout_s`` seconds."""
    return ReceiveError(
        408, f"no request body bytes arrived for {timeout_s:g} s; INITSVC_RECEIVE_TIMEOUT_S is {timeout_s:g}: "
        "send the whole body (all its Content-Length, or every chunk to the last) without pausing that long",
        env_var="INITSVC_RECEIVE_TIMEOUT_S",
    )


def error_body(detail: Any, **fields: Any) -> bytes:
    """``{"detail": detail, **fields}`` as every error answer renders it (``JSONResponse``'s compact JSON)."""
    return bytes(JSONResponse({"detail": detail, **fields}).body)


async def send_error(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = (), **fields: Any
) -> None:
    """Answer ``status {"detail": detail, **fields}`` from raw ASGI (middleware in front of the
    routes), with ``headers`` after Content-Type and Content-Length."""
    body = error_body(detail, **fields)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _where(request: Request) -> str:
    return "body" if request.method == "POST" else "query"


def query_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Where a recipe's field is in a GET's query string: the recipe's parameters sit at the top
    level, so ``init`` goes, and so does the scheme tag pydantic puts after it (``init.normal.std``
    is ``std``); ``query`` is not included."""
    loc = tuple(loc)
    if loc[:1] != ("init",):
        return loc
    rest = loc[1:]
    if len(rest) > 1 and rest[0] in RECIPE_MODELS:
        rest = rest[1:]
    return rest or loc  # ``init`` alone is a parameter of its own (PReLU's, in /v1/layers)


def _loc(request: Request, loc: Sequence[str | int]) -> list[str | int]:
    where = _where(request)
    return [where, *(query_loc(loc) if where == "query" else loc)]


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


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    # FastAPI parses a body as JSON only under Content-Type application/json or application/*+json
    # (parameters allowed; none at all is not JSON): any other body reaches validation as the bytes
    # it was, and fails there because it was not sent as JSON.
    not_sent_as_json = isinstance(exc.body, (bytes, bytearray)) and any(
        tuple(e.get("loc", ()))[:1] == ("body",) for e in errors
    )
    if not_sent_as_json:
        content_type = request.headers.get("content-type", "")
        return JSONResponse(
            status_code=415,
            content={
                "detail": f"the body must be JSON: send Content-Type: application/json; got {content_type or 'none'!r} "
                "(allowed: application/json or application/<name>+json, with optional parameters such as charset)"
            },
        )
    return JSONResponse(status_code=422, content={"detail": validation_detail(errors, request)})


# FastAPI's answer to a body its JSON parser raised on with something other than a syntax error.
FASTAPI_PARSE_ERROR = "There was an error parsing the body"


def json_invalid(cause: BaseException) -> dict[str, Any]:
    """The 422 entry of a body the JSON parser could not read (``cause``: what it raised)."""
    loc: list[str | int] = ["body"]
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start:cause.start + 1]
        loc.append(cause.start)
        msg = f"JSON decode error: the body is not valid UTF-8 (byte 0x{bad.hex()} at offset {cause.start}); send JSON text in UTF-8"
    elif isinstance(cause, RecursionError):
        msg = "JSON decode error: arrays and objects are nested too deeply to parse; no request needs more than a few levels"
    elif isinstance(cause, ValueError) and "digits" in str(cause):
        msg = f"JSON decode error: a number has more than {sys.get_int_max_str_digits()} digits"
    else:
        msg = f"JSON decode error: {cause}"
    return {"loc": loc, "msg": msg, "type": "json_invalid"}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path (routing's own 405 names
    only the first route whose path matched)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: routes are flat already
        contexts: Iterable[Any] = list(request.app.router.routes)
    else:
        contexts = iter_route_contexts(list(request.app.router.routes))
    path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
    path = path[len(root):] if root and path.startswith(root) else path
    methods: set[str] = set()
    for route in contexts:
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        served = getattr(route, "methods", None)
        if template and served and compile_path(template)[0].match(path):
            methods.update(served)
    return sorted(methods)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's ``HTTPException`` (404, 405, the ``ReceiveError`` of a body),
    in the same compact JSON; see the module's docstring."""
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ReceiveError):
        return JSONResponse({"detail": exc.detail, **exc.fields}, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 400 and exc.detail == FASTAPI_PARSE_ERROR and exc.__cause__ is not None:
        return JSONResponse({"detail": [json_invalid(exc.__cause__)]}, status_code=422)
    if exc.status_code == 405:
        methods = allowed_methods(request)
        if methods:
            return JSONResponse({"detail": exc.detail}, status_code=405, headers={**(exc.headers or {}), "Allow": ", ".join(methods)})
    return await http_exception_handler(request, exc)


def _service_error_body(request: Request, exc: InitServiceError) -> dict[str, Any]:
    if isinstance(exc, RecipeError):
        return {"detail": [{"loc": _loc(request, p.loc), "msg": p.msg, "type": p.type} for p in exc.problems]}
    if isinstance(exc, DeviceUnavailable):
        return {"detail": [{"loc": [_where(request), "device"], "msg": str(exc), "type": "device_unavailable"}]}
    if isinstance(exc, LimitExceeded):
        return {"detail": str(exc), "limit": exc.limit, "value": exc.value, "env_var": exc.env_var}
    return {"detail": str(exc)}


async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
    """A service exception listed in ``STATUS_OF``: its status, body and headers."""
    assert isinstance(exc, InitServiceError)
    return JSONResponse(status_code=status_of(exc), content=_service_error_body(request, exc), headers=headers_of(exc))


class UnexpectedErrorMiddleware:
    """Whatever ``STATUS_OF`` does not map is a bug: answer ``500 {"detail", "request_id"}``,
    log it with its traceback and the request id, and keep the connection open.

    Added first, so it is the innermost middleware (``ObserverMiddleware`` outside it still adds
    ``X-Request-ID``, logs and counts the 500); ``add_middleware`` puts a second one just inside
    ``ObserverMiddleware``, for bugs in the middleware. Neither wraps ``send``: the request's
    ``ResponseObserver`` says whether the answer has started. An error after the answer has
    started cannot become a 500: it is logged and re-raised, and the server closes the connection
    (the body is short of its ``Content-Length``, so the client knows it is incomplete).
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observer, send = observed(scope, send)  # whether the answer has started, without wrapping send
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the point: nothing unexpected escapes unanswered
            started = observer.started
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
    app.add_exception_handler(HTTPException, on_http_error)
    for exc_class in STATUS_OF:
        app.add_exception_handler(exc_class, on_service_error)
