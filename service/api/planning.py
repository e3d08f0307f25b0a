"""From a validated request to a plan: checked specs, the seed, the device, provenance, ETag.

Everything here happens before anything is allocated: limits (413), the shape and dtype rules
(422), and the device. The plan's ETag is derived from the normalized request and the
provenance, so it is known before generation and equal for every response with the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.codec.header import dumps
from service.engine.checks import check_recipe, check_size, tensor_bytes
from service.engine.devices import base_provenance, mkl_cbwr
from service.engine.maker import TensorSpec
from service.engine.rng import compute_dtype, draw_seed
from service.errors import LimitExceeded, RecipeError
from service.schemas.recipes import recipe_params
from service.schemas.requests import TensorRequest
from service.settings import Settings
from service.engine.maker import MadeTensor
from service.workers.jobs import TensorJob, run_tensor_job
from service.workers.pool import WorkerPool


@dataclass
class Plan:
    """What a route hands to ``answer``: a job for the device's worker and how to label the result.

    ``run(job)`` runs on the worker thread of ``device`` and returns the made tensors in order.
    """

    job: Any
    device: str
    seed: int
    request: dict[str, Any]  # the normalized request, seed filled in
    provenance: dict[str, Any]
    nbytes: int
    filename: str
    seeded: bool  # the client gave the seed (so the answer never changes)
    concrete_device: bool  # the client named the device type (not "auto")
    run: Callable[[Any], Sequence[MadeTensor]] = run_tensor_job
    etag_base: str = field(default="")

    def __post_init__(self) -> None:
        if not self.etag_base:
            digest = hashlib.sha256(dumps({"request": self.request, "provenance": self.provenance}).encode())
            self.etag_base = digest.hexdigest()[:32]

    def etag(self, representation: str) -> str:
        return f'"{self.etag_base}-{representation}"'


def check_shape(shape: list[int], settings: Settings, loc: tuple = ("shape",)) -> tuple[int, ...]:
    if len(shape) > settings.max_dims:
        raise RecipeError.at(
            loc, f"shape has {len(shape)} dimensions; at most {settings.max_dims} are allowed (INITSVC_MAX_DIMS)"
        )
    return tuple(shape)


def check_slice(raw: list | None, shape: tuple[int, ...], loc: tuple = ("slice",)) -> tuple[tuple[int, int], ...] | None:
    """``[start, stop]`` or ``None`` per dimension, within the shape."""
    if raw is None:
        return None
    if len(raw) != len(shape):
        raise RecipeError.at(loc, f"slice needs one entry per dimension ({len(shape)}); got {len(raw)}")
    bounds = []
    for dim, (entry, size) in enumerate(zip(raw, shape)):
        start, stop = (0, size) if entry is None else entry
        if not 0 <= start <= stop <= size:
            raise RecipeError.at(
                (*loc, dim), f"slice of dimension {dim} needs 0 <= start <= stop <= {size}; got [{start}, {stop}]"
            )
        bounds.append((start, stop))
    return tuple(bounds)


def sliced_shape(shape: tuple[int, ...], bounds: tuple[tuple[int, int], ...] | None) -> tuple[int, ...]:
    return shape if bounds is None else tuple(stop - start for start, stop in bounds)


def check_request_bytes(nbytes: int, settings: Settings) -> None:
    if nbytes > settings.max_request_bytes:
        raise LimitExceeded(
            f"the request's tensors take {nbytes} bytes", nbytes, settings.max_request_bytes, "INITSVC_MAX_REQUEST_BYTES"
        )


def scheme_provenance(scheme: str, dtype: str, settings: Settings) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    work = compute_dtype(scheme, dtype)
    if work != dtype:
        extra["dtype_fallback"] = {"computed_in": work, "cast_to": dtype}
    if scheme == "orthogonal":
        extra["mkl_cbwr"] = mkl_cbwr()
        extra["qr_threads"] = settings.qr_threads
    return extra


def plan_tensor(req: TensorRequest, settings: Settings, pool: WorkerPool) -> Plan:
    shape = check_shape(req.shape, settings)
    if req.histogram_bins > settings.max_histogram_bins:
        raise RecipeError.at(
            ("histogram_bins",),
            f"histogram_bins must be at most {settings.max_histogram_bins}; got {req.histogram_bins}",
        )
    if req.rng != "torch":
        raise RecipeError.at(("rng",), f"rng {req.rng!r} is not served by this server yet; use 'torch'")
    device = pool.resolve(req.device)
    bounds = check_slice(req.slice, shape)
    check_size(shape, req.dtype, settings.max_elements)
    nbytes = tensor_bytes(sliced_shape(shape, bounds), req.dtype)
    check_request_bytes(nbytes, settings)
    params = recipe_params(req.init)
    check_recipe(req.init.scheme, params, shape, req.dtype)

    seed = req.seed if req.seed is not None else draw_seed()
    spec = TensorSpec(
        name=req.name,
        shape=shape,
        scheme=req.init.scheme,
        params=params,
        dtype=req.dtype,
        histogram_bins=req.histogram_bins,
        with_stats=req.stats,
        slice=bounds,
    )
    normalized = req.model_dump(mode="json")
    normalized.update(seed=seed, device=device)
    provenance = {
        **base_provenance(device),
        "rng": req.rng,
        **scheme_provenance(req.init.scheme, req.dtype, settings),
    }
    return Plan(
        job=TensorJob(specs=[spec], seed=seed, device=device, qr_threads=settings.qr_threads),
        device=device,
        seed=seed,
        request=normalized,
        provenance=provenance,
        nbytes=nbytes,
        filename=req.name,
        seeded=req.seed is not None,
        concrete_device=req.device != "auto",
    )
