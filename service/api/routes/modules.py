"""``/v1/module`` and ``/v1/layers``: whole ``torch.nn`` stacks with PyTorch's default init."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.answer import answer
from service.api.deps import PoolDep, SettingsDep
from service.api.errors import ERROR_RESPONSES, did_you_mean
from service.api.json_body import StrictJSONRoute
from service.api.query import (
    JSON_INT,
    JSON_NUMBER,
    parse_int,
    parse_number,
    query_error,
    query_pairs,
    refuse_unknown,
    single_values,
)
from service.api.routes.tensors import BINARY_RESPONSE
from service.planning.layers import LayerQuery, describe_layer, layer_catalog
from service.planning.modules import plan_module
from service.schemas.layers import LAYER_MODELS
from service.schemas.modules import ModuleRequest
from service.schemas.requests import DType
from service.schemas.responses import LayerCatalog, LayerStateDict

router = APIRouter(prefix="/v1", tags=["modules"], route_class=StrictJSONRoute)

_WORDS = {"true": True, "false": False, "null": None}
_DTYPES: tuple[str, ...] = get_args(DType)


@router.post("/module", responses={**BINARY_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def post_module(body: ModuleRequest, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """The `state_dict` (parameters and buffers) of a stack of `torch.nn` layers with PyTorch's default init:
    the bytes of `torch.manual_seed(seed); m = nn.Sequential(...)` built on that device in that dtype, then each
    override `nn.init.<scheme>_(param)` in order from the same global stream. It loads with
    `m.load_state_dict(..., strict=True)`.

    `layers` is a list (keys `0.weight`, ...) or an object of named layers (keys `<name>.weight`, ...); each is
    `{"type": <class>, ...its constructor's keyword arguments}` (see `GET /v1/layers`). `rng: "portable-v1"` is a
    422: portable mode does not cover modules in v1. Per-tensor stats compare each entry with the distribution
    its layer's `reset_parameters` draws from (or the override's). Buffers such as BatchNorm's
    `num_batches_tracked` keep their own dtype (int64).
    `tensors` answers only some keys; `slice` (`{key: [[start, stop] | null, ...]}`) only `full[...]` of some keys.
    \f
    Planning builds the stack on `meta` (no memory, no draws) to check names, limits and overrides before the
    job is admitted; it runs in the threadpool so a long stack never blocks the event loop."""
    plan = await run_in_threadpool(plan_module, body, settings, pool)
    return await answer(request, plan, pool)


def _token(text: str, name: str) -> Any:
    """Text as the JSON value it spells, by JSON's own grammar: an integer (``3``, ``-1``), a number
    (``1e-5``, ``0.5``), ``true``/``false``/``null``; anything else stays text (``+3``, `` 3`` and
    ``3.`` are text, which a numeric argument refuses)."""
    if JSON_INT.fullmatch(text):
        return parse_int(text, name)
    if JSON_NUMBER.fullmatch(text):
        return parse_number(text, name)
    return _WORDS.get(text, text)


def _layer_from_query(pairs: list[tuple[str, str]]) -> LayerQuery:
    """``type=Conv2d&in_channels=3&kernel_size=3,3`` → the validated layer model and the dtype."""
    raw = single_values(pairs)
    kind = raw.pop("type", None)
    if kind is None:
        raise query_error(("type",), f"type is required to describe a layer; one of: {', '.join(LAYER_MODELS)}", "missing")
    model = LAYER_MODELS.get(kind)
    if model is None:
        guess = did_you_mean(kind, LAYER_MODELS)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise query_error(
            ("type",), f"unknown type {kind!r}; {hint}type must be one of: {', '.join(LAYER_MODELS)}", "literal_error"
        )
    arguments = [name for name in model.model_fields if name != "type"]
    refuse_unknown(raw, ["type", *arguments, "dtype"], f" for layer type {kind!r}")
    dtype = raw.pop("dtype", "float32")
    if dtype not in _DTYPES:
        raise query_error(("dtype",), f"dtype must be one of: {', '.join(_DTYPES)}; got {dtype!r}", "literal_error")
    body: dict[str, Any] = {"type": kind}
    for key, text in raw.items():
        body[key] = [_token(t, key) for t in text.split(",")] if "," in text else _token(text, key)
    try:
        return LayerQuery(model.model_validate(body), dtype)
    except ValidationError as exc:
        errors = [{"loc": ("query", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise RequestValidationError(errors) from None


@router.head("/layers", response_model=LayerCatalog | LayerStateDict, include_in_schema=False)
@router.get(
    "/layers",
    response_model=LayerCatalog | LayerStateDict,
    responses={422: ERROR_RESPONSES[422], 413: ERROR_RESPONSES[413]},
)
async def list_layers(request: Request, settings: SettingsDep) -> LayerCatalog | LayerStateDict:
    """The layer types `POST /v1/module` accepts, with their arguments.

    Without parameters: every supported type (its torch class, description, and each constructor argument with
    its JSON type, default and whether it is required), taken from the same Pydantic models that validate
    `/v1/module` bodies, so the catalog cannot drift from what is accepted. Layers are built only from this fixed
    list; nothing in a request is imported or looked up by name.

    With `type` and the layer's arguments as query parameters, e.g. `?type=Linear&in_features=3&out_features=4`
    (optional `dtype`, default `float32`): the state_dict that layer would produce — each key, shape, dtype,
    whether it is a parameter or a buffer, and the default init torch gives it with what `stats.expected` would
    report — computed by building the layer on torch's `meta` device (no memory is allocated, nothing is drawn).
    Values are read as JSON would spell them: `3`, `1e-5`, `true`, `null`; a list is comma-separated
    (`kernel_size=3,5`). The same validation as the POST body applies: a bad argument is a 422 naming it."""
    pairs = query_pairs(request)
    if not pairs:
        return layer_catalog()
    return await run_in_threadpool(describe_layer, _layer_from_query(pairs), settings)
