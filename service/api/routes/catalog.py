"""The catalog: ``/v1/schemes``, ``/v1/gain``, ``/v1/fans``, ``/v1/devices``."""

from __future__ import annotations

from typing import Any

import torch
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

import service
from service.api.deps import PoolDep, SettingsDep
from service.api.query import parse_int_list, parse_number, query_pairs, single_values
from service.engine import chunked
from service.engine.catalog import CATALOG, shape_rule
from service.engine.devices import device_facts
from service.engine.fans import compute_fans
from service.engine.gains import calculate_gain
from service.errors import RecipeError
from service.presets import accounting as preset_accounting
from service.schemas.recipes import RECIPE_MODELS, Nonlinearity
from service.schemas.responses import DevicesAnswer, SchemeCatalog

router = APIRouter(prefix="/v1", tags=["catalog"])


class GainAnswer(BaseModel):
    nonlinearity: str
    param: float | None
    gain: float


class FansAnswer(BaseModel):
    fan_in: int
    fan_out: int
    receptive_field: int


def _parameters(scheme: str) -> list[dict[str, Any]]:
    schema = RECIPE_MODELS[scheme].model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        if name == "scheme":
            continue
        entry = {k: v for k, v in prop.items() if k not in ("title",)}
        entry.update(name=name, required=name in required)
        params.append(entry)
    return params


@router.head("/schemes", response_model=SchemeCatalog, include_in_schema=False)
@router.get("/schemes", response_model=SchemeCatalog)
async def list_schemes() -> dict[str, Any]:
    """Every init scheme: its parameters (types, defaults, constraints), shape rule, formula, the torch
    call it reproduces, what `stats.expected` reports, and the `rng` modes that serve it."""
    schemes = {}
    for name, model in RECIPE_MODELS.items():
        entry = CATALOG[name]
        schemes[name] = {
            "description": (model.__doc__ or "").strip(),
            "parameters": _parameters(name),
            "shape_rule": shape_rule(name),
            "formula": entry.formula,
            "reference": entry.reference,
            "expected": entry.expected,
            "rng": ["torch", "portable-v1"] if entry.portable else ["torch"],
        }
    return {"schemes": schemes}


def _strict_query(allowed: tuple[str, ...], numbers: tuple[str, ...] = ()) -> Any:
    """A dependency that reads the raw query string before FastAPI's parameters do: a parameter
    given twice, or one not in ``allowed``, is a 422 naming it (FastAPI would keep the last value,
    or ignore it), a value that is not UTF-8 is a 422, and ``numbers`` must be JSON numbers."""

    async def check(request: Request) -> None:
        raw = single_values(query_pairs(request), allowed)
        for name in numbers:
            if name in raw:
                parse_number(raw[name], name)

    return Depends(check)


@router.head("/gain", dependencies=[_strict_query(("nonlinearity", "param"), numbers=("param",))], include_in_schema=False)
@router.get("/gain", dependencies=[_strict_query(("nonlinearity", "param"), numbers=("param",))])
async def gain(
    nonlinearity: Nonlinearity = Query(description="Name of the nonlinearity."),
    param: float | None = Query(None, allow_inf_nan=False, description="leaky_relu's negative slope (default 0.01)."),
) -> GainAnswer:
    """`torch.nn.init.calculate_gain(nonlinearity, param)`."""
    effective = 0.01 if nonlinearity == "leaky_relu" and param is None else param
    try:
        value = calculate_gain(nonlinearity, param)
    except ValueError as exc:
        raise RecipeError.at(("param",), str(exc)) from None
    return GainAnswer(nonlinearity=nonlinearity, param=effective, gain=value)


@router.head("/fans", dependencies=[_strict_query(("shape",))], include_in_schema=False)
@router.get("/fans", dependencies=[_strict_query(("shape",))])
async def fans(
    settings: SettingsDep, shape: str = Query(description="Comma-separated shape, at least 2-D, e.g. 64,3,7,7.")
) -> FansAnswer:
    """Fan-in, fan-out and receptive field of a weight shape `[out, in, *kernel]`, as
    `torch.nn.init._calculate_fan_in_and_fan_out`."""
    dims = parse_int_list(shape, "shape")
    if len(dims) < 2 or len(dims) > settings.max_dims:
        raise RecipeError.at(
            ("shape",), f"fans need a shape with 2 to {settings.max_dims} dimensions; got {len(dims)}-D shape {dims}"
        )
    f = compute_fans(dims)
    return FansAnswer(fan_in=f.fan_in, fan_out=f.fan_out, receptive_field=f.receptive_field)


@router.head("/devices", response_model=DevicesAnswer, response_model_exclude_unset=True, include_in_schema=False)
@router.get("/devices", response_model=DevicesAnswer, response_model_exclude_unset=True)
async def devices(pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    """Devices this server can use, which one `auto` means, and the torch version."""
    listed = []
    for name, worker in pool.workers.items():
        facts = dict(device_facts(name))
        facts.update(
            alive=worker.alive,
            queued=worker.queued,
            in_flight_bytes=pool.admissions[name].in_flight_bytes,
            max_inflight_bytes=pool.admissions[name].limit_bytes,
        )
        if name == "cpu":
            facts["threads"] = settings.cpu_threads
            facts["parallel_generation"] = chunked.capability()
            facts["preset_tensors_alone"] = preset_accounting.capability()
        listed.append(facts)
    return {
        "devices": listed,
        "default": pool.default,
        "torch": torch.__version__,
        "service_version": service.__version__,
        "limits": {
            "max_elements": settings.max_elements,
            "max_request_bytes": settings.max_request_bytes,
            "max_tensors": settings.max_tensors,
            "max_body_bytes": settings.max_body_bytes,
        },
    }
