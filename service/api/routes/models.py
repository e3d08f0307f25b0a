"""``/v1/model`` and ``/v1/models``: well-known architectures' from-scratch ``state_dict``s (model presets)."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.answer import answer
from service.api.deps import PoolDep, SettingsDep
from service.api.errors import ERROR_RESPONSES
from service.api.json_body import StrictJSONRoute
from service.api.query import parse_bool, parse_int, parse_number, parse_slice, query_error, query_pairs, single_values
from service.api.routes.tensors import BINARY_RESPONSE, URL_RESPONSE, cache_control
from service.engine.devices import base_provenance
from service.errors import RecipeError
from service.planning.models import find_preset, plan_model
from service.presets import PRESETS, Field, Preset
from service.presets.base import summary
from service.presets.replay import meta_entries
from service.schemas.models import ModelRequest, ModelsCatalog

router = APIRouter(prefix="/v1", tags=["models"], route_class=StrictJSONRoute)

# A name the path cannot hold (a newline, say) matches no route.
NO_SUCH_PATH: dict[int | str, dict[str, Any]] = {404: {"description": "No route matches the path (a preset name with characters a path cannot hold)."}}
# Query parameters of the GET form that are not config fields.
REQUEST_PARAMETERS = ("seed", "dtype", "stats", "tensors", "histogram_bins", "rng")


@router.post("/model", responses={**BINARY_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def post_model(body: ModelRequest, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """A model preset's whole from-scratch `state_dict`, bit-identical, key for key, to
    `torch.manual_seed(seed); Reference(**config).state_dict()` built on the CPU in float32, each floating
    tensor then cast to `dtype` (integer buffers keep theirs). See `GET /v1/models` for the presets, their
    config fields and the library versions they match.

    `tensors` keeps only those keys (same bytes as in the whole answer). `slice` answers only
    `full[start0:stop0, ...]` of a key (`{"lm_head.weight": [[0, 128], null]}`); a key whose last op is a
    plain uniform_/normal_ draw has only that part generated. With `stats: false` the answer streams: the
    header goes out at once and each tensor as it is made, in bounded memory (a whole state_dict is made
    in parallel, each key from its own jumped generator). Tied weights appear under each of
    their keys. Each tensor's stats carry `init`, the reference's init rule for it in words; the normalized
    request's `tensor_order` lists the keys in `state_dict` order. The answer counts against
    `INITSVC_MAX_REQUEST_BYTES`.
    \f
    Planning builds the model on `meta` (no memory, no draws) in the threadpool; the build itself runs on the
    CPU worker, admitted like every job."""
    plan = await run_in_threadpool(plan_model, body, settings, pool)
    return await answer(request, plan, pool)


def _json_value(name: str, text: str) -> Any:
    """A JSON-typed field's text as the JSON value it spells; ``NaN``, ``Infinity`` and ``1e999`` are
    not finite JSON numbers (a 422). Text that is not JSON passes through as a string, for the
    preset to refuse by name."""

    def refuse(constant: str) -> Any:
        raise query_error((name,), f"{name} must be JSON text with finite numbers; got {constant} in {text!r}")

    def number(literal: str) -> float:
        value = float(literal)
        return refuse(literal) if math.isinf(value) else value

    try:
        return json.loads(text, parse_constant=refuse, parse_float=number)
    except ValueError:
        return text


def _config_value(field: Field | None, name: str, text: str) -> Any:
    """A config field's query text as the JSON value its type takes, by the strict parsers of the
    other GET forms (unknown names pass through as text: the preset then refuses them by name)."""
    if text == "null":
        return None
    kind = field.type if field is not None else "str"
    if kind == "int":
        return parse_int(text, name)
    if kind == "float":
        return parse_number(text, name)
    if kind == "bool":
        return parse_bool(text, name)
    if kind == "json":
        return _json_value(name, text)
    return text


SLICE_PREFIX = "slice."


def _slice_value(name: str, text: str) -> list[list[int] | None]:
    """``0:128,:`` -> ``[[0, 128], None]``: per dimension ``start:stop`` or ``:`` (all of it)."""
    entries = parse_slice(text, name)
    bounded = [part == ":" or (part.count(":") == 1 and "" not in part.split(":")) for part in text.split(",")]
    if text == "" or not all(bounded):
        raise query_error(
            (name,), f"{name} takes one 'start:stop' or ':' per dimension, comma-separated (e.g. 0:128,:); got {text!r}"
        )
    return entries


def model_request_from_query(preset: Preset, pairs: list[tuple[str, str]]) -> ModelRequest:
    """``?seed=0&n_layer=2&tensors=a,b`` → the same ``ModelRequest`` a POST body would give."""
    fields = {f.name: f for f in preset.fields}
    body: dict[str, Any] = {"model": preset.name, "config": {}}
    for key, text in single_values(pairs).items():
        if key.startswith(SLICE_PREFIX) and key not in fields:
            body.setdefault("slice", {})[key[len(SLICE_PREFIX):]] = _slice_value(key, text)
        elif key in REQUEST_PARAMETERS and key not in fields:
            if key in ("seed", "histogram_bins"):
                body[key] = parse_int(text, key)
            elif key == "stats":
                body[key] = parse_bool(text, key)
            elif key == "tensors":
                keys = text.split(",")
                if not all(keys):
                    raise query_error((key,), f"tensors is state_dict keys separated by commas, none empty; got {text!r}")
                body[key] = keys
            else:
                body[key] = text
        else:
            body["config"][key] = _config_value(fields.get(key), key, text)
    try:
        return ModelRequest.model_validate(body)
    except ValidationError as exc:
        errors = [
            {"loc": ("query", *(e["loc"][1:] if e["loc"][:1] == ("config",) else e["loc"])), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        raise RequestValidationError(errors) from None


@router.get("/model/{name:path}", responses={**URL_RESPONSE, **ERROR_RESPONSES, **NO_SUCH_PATH}, response_class=Response)
async def get_model(name: str, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """The same request as a URL: `/v1/model/transformers/GPT2LMHeadModel?seed=0&n_layer=2&n_embd=64`.

    Config fields go by name (`true`/`false`, numbers, `null`; a JSON-typed field takes JSON text);
    `tensors` is comma-separated; `slice.<key>=0:128,:` slices a key (one `start:stop` or `:` per
    dimension, comma-separated); `seed`, `dtype`, `stats`, `histogram_bins` as in the body. With an
    explicit `seed` the answer carries `Cache-Control: public, max-age=31536000, immutable` (presets are
    always built on the CPU); without one, `no-store`. `HEAD` gives the headers alone."""
    try:
        preset = find_preset(name, ("model",))
    except RecipeError as exc:
        raise query_error(("model",), exc.problems[0].msg, "literal_error") from None
    body = model_request_from_query(preset, query_pairs(request))
    plan = await run_in_threadpool(plan_model, body, settings, pool, ())
    return await answer(request, plan, pool, cache_control(plan))


@router.head("/model/{name:path}", responses={**URL_RESPONSE, **ERROR_RESPONSES, **NO_SUCH_PATH}, response_class=Response)
async def head_model(name: str, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """The headers `GET /v1/model/{name}` would send (exact `Content-Length`, `ETag`), without the body."""
    return await get_model(name, request, settings, pool)


@functools.cache
def _catalog() -> dict[str, Any]:
    models: dict[str, dict[str, Any]] = {}
    for name, preset in PRESETS.items():
        entries = meta_entries(preset, preset.defaults())
        models[name] = {
            "library": preset.library,
            "reference": preset.reference,
            "versions": preset.versions,
            "doc": preset.doc,
            "fields": [f.describe() for f in preset.fields],
            "default_config": {**summary(entries), "tensors": len(entries)},
        }
    facts = base_provenance("cpu")
    return {"models": models, "torch": facts["torch"], "cpu_capability": facts.get("cpu_capability")}


@router.head("/models", response_model=ModelsCatalog, include_in_schema=False)
@router.get("/models", response_model=ModelsCatalog)
async def list_models() -> dict[str, Any]:
    """The model presets: for each, the reference constructor it replays, the library and the version range
    whose keys and bytes it matches, every config field with its type and default (and whether it changes the
    weights), and the default config's size: parameters (tied tensors once), state_dict elements and bytes
    (every key), and its number of keys."""
    return await run_in_threadpool(_catalog)
