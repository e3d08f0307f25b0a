"""``/v1/tensor``: one tensor, as a POST body or as a URL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.answer import answer
from service.api.deps import PoolDep, SettingsDep
from service.api.errors import ERROR_RESPONSES
from service.api.json_body import StrictJSONRoute
from service.api.query import query_pairs, request_from_query
from service.planning.plan import Plan
from service.planning.tensors import plan_tensor, plan_tensors
from service.schemas.requests import TensorRequest, TensorsRequest
from service.schemas.responses import TensorAnswer

router = APIRouter(prefix="/v1", tags=["tensors"], route_class=StrictJSONRoute)

# ``model`` puts TensorAnswer in the components and references it as the application/json content
# (the JSON representation, ``delivery.json_response``), next to the binary one.
_OK: dict[str, Any] = {
    "description": "A safetensors file (default), or with `Accept: application/json` everything but the data.",
    "model": TensorAnswer,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
# If-None-Match matching the ETag: 304 for GET/HEAD, 412 for POST (RFC 9110).
BINARY_RESPONSE: dict[int | str, dict[str, Any]] = {200: _OK, 412: {"description": "If-None-Match matched this response's ETag; nothing was generated."}}
URL_RESPONSE: dict[int | str, dict[str, Any]] = {200: _OK, 304: {"description": "If-None-Match matched this response's ETag."}}


def cache_control(plan: Plan) -> str:
    if not plan.seeded:
        return "no-store"
    if plan.concrete_device:
        return "public, max-age=31536000, immutable"
    return "no-cache"  # "auto" may mean another device after a redeploy: revalidate by ETag


@router.post("/tensor", responses={**BINARY_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def post_tensor(body: TensorRequest, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """Make one tensor from a recipe: `torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape))`,
    bit for bit, as a safetensors file whose `__metadata__` carries `stats`, `request` and `provenance`."""
    return await answer(request, plan_tensor(body, settings, pool), pool)


@router.get("/tensor", responses={**URL_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def get_tensor(request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """The same recipe as query parameters, so a tensor is a URL:
    `/v1/tensor?shape=256,784&scheme=kaiming_uniform&a=2.236&seed=0`.

    Scheme parameters go by name; `gain` is a number or `gain_nonlinearity` (+ `gain_param`); `slice` is
    numpy notation without steps (`0:128,:`). With an explicit `seed` and device type the answer carries
    `Cache-Control: public, max-age=31536000, immutable`; without a seed, `no-store`. `HEAD` gives the
    headers alone, with the exact `Content-Length`."""
    plan = plan_tensor(request_from_query(query_pairs(request)), settings, pool)
    return await answer(request, plan, pool, cache_control(plan))


@router.head("/tensor", responses={**URL_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def head_tensor(request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """The headers `GET /v1/tensor` would send (exact `Content-Length`, `ETag`), without the body."""
    return await get_tensor(request, settings, pool)


@router.post("/tensors", responses={**BINARY_RESPONSE, **ERROR_RESPONSES}, response_class=Response)
async def post_tensors(body: TensorsRequest, request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    """Several named tensors in one safetensors file, drawn in list order from one stream seeded with
    `seed`: the same bytes as a torch script that calls `torch.manual_seed(seed)` and initializes them in
    that order. A tensor with its own `seed` uses a fresh stream and does not advance the shared one.
    Per-tensor stats are in `__metadata__["stats"]` under each name."""
    return await answer(request, plan_tensors(body, settings, pool), pool)
