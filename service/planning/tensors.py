"""From a validated request to a plan: checked specs, the seed, the device, provenance, ETag.

Everything here happens before anything is allocated: limits (413), the shape and dtype rules
(422), and the device. The plan's ETag is derived from the normalized request and the
provenance, so it is known before generation and equal for every response with the same bytes.
"""

from __future__ import annotations

from typing import Any

from service.engine.checks import check_recipe, check_size, tensor_bytes
from service.engine.devices import base_provenance, mkl_cbwr
from service.engine.maker import Output, TensorSpec, made_bytes, may_warn
from service.engine.rng import compute_dtype, draw_seed
from service.errors import LimitExceeded, Problem, RecipeError
from service.planning.plan import Plan
from service.portable import (
    PortableError,
    PortableUnsupportedError,
    PortableWindowError,
    resolve_recipe,
)
from service.schemas.recipes import recipe_params
from service.schemas.requests import TensorRequest, TensorsRequest
from service.settings import Settings
from service.workers.jobs import TensorJob
from service.workers.pool import WorkerPool


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
    for dim, (entry, size) in enumerate(zip(raw, shape, strict=True)):
        start, stop = (0, size) if entry is None else entry
        if not 0 <= start <= stop <= size:
            raise RecipeError.at(
                (*loc, dim), f"slice of dimension {dim} needs 0 <= start <= stop <= {size}; got [{start}, {stop}]"
            )
        bounds.append((start, stop))
    return tuple(bounds)


def sliced_shape(shape: tuple[int, ...], bounds: tuple[tuple[int, int], ...] | None) -> tuple[int, ...]:
    return shape if bounds is None else tuple(stop - start for start, stop in bounds)


def check_request_bytes(nbytes: int, settings: Settings, answer_bytes: int | None = None) -> None:
    """``nbytes`` (what the request allocates) within ``INITSVC_MAX_REQUEST_BYTES``; ``answer_bytes``,
    when smaller, is what the answer holds (the rest is whole tensors its slices are cut from)."""
    if nbytes > settings.max_request_bytes:
        what = f"the request's tensors take {nbytes} bytes"
        if answer_bytes is not None and answer_bytes < nbytes:
            what = (
                f"the request makes {nbytes} bytes of tensors for an answer of {answer_bytes}: a slice of a scheme "
                "that is not generated alone (docs/api.md §4.2) is cut from the whole tensor, which counts"
            )
        raise LimitExceeded(what, nbytes, settings.max_request_bytes, "INITSVC_MAX_REQUEST_BYTES")


def scheme_provenance(scheme: str, dtype: str, settings: Settings) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    work = compute_dtype(scheme, dtype)
    if work != dtype:
        extra["dtype_fallback"] = {"computed_in": work, "cast_to": dtype}
    if scheme == "orthogonal":
        extra["mkl_cbwr"] = mkl_cbwr()
        extra["qr_threads"] = settings.qr_threads
    return extra


def check_histogram_bins(histogram_bins: int, settings: Settings) -> None:
    if histogram_bins > settings.max_histogram_bins:
        raise RecipeError.at(
            ("histogram_bins",),
            f"histogram_bins must be at most {settings.max_histogram_bins} (INITSVC_MAX_HISTOGRAM_BINS); got {histogram_bins}",
        )


# Histogram bins of one answer, all tensors together: the stats (with their histograms) travel in
# the safetensors header, which loaders refuse past 100 MB; a bin takes up to ~35 bytes there.
MAX_TOTAL_HISTOGRAM_BINS = 1 << 21


def check_histogram_total(bins: list[int]) -> None:
    """The histograms of every tensor of an answer fit in a loadable safetensors header."""
    total = sum(bins)
    if total > MAX_TOTAL_HISTOGRAM_BINS:
        raise RecipeError.at(
            ("histogram_bins",),
            f"{len([b for b in bins if b])} tensors with histograms ask for {total} bins in all; an answer "
            f"carries at most {MAX_TOTAL_HISTOGRAM_BINS} (its stats are in the safetensors header, which "
            "loaders refuse past 100 MB): ask for fewer bins or fewer tensors",
        )


def check_portable(scheme: str, params: dict[str, Any], shape: tuple[int, ...]) -> None:
    """What portable-v1 cannot make (``orthogonal``; a truncation window under 1e-4) is a 422."""
    try:
        resolve_recipe({"scheme": scheme, **params}, shape)
    except PortableUnsupportedError:
        raise RecipeError.at(
            ("rng",), f"rng 'portable-v1' does not cover {scheme} in v1; use rng 'torch' for it"
        ) from None
    except PortableWindowError as exc:
        raise RecipeError.at(("init", "b"), str(exc)) from None
    except PortableError as exc:
        raise RecipeError.at(("init",), str(exc)) from None


def build_spec(
    entry, dtype: str, histogram_bins: int, with_stats: bool, settings: Settings, rng: str = "torch", tid: int = 0
) -> TensorSpec:
    """A checked ``TensorSpec`` from a request entry (anything with shape, init, name, slice)."""
    shape = check_shape(entry.shape, settings)
    bounds = check_slice(entry.slice, shape)
    check_size(shape, dtype, settings.max_elements)
    params = recipe_params(entry.init)
    check_recipe(entry.init.scheme, params, shape, dtype)
    if rng == "portable-v1":
        check_portable(entry.init.scheme, params, shape)
    return TensorSpec(
        name=entry.name,
        shape=shape,
        scheme=entry.init.scheme,
        params=params,
        dtype=dtype,
        histogram_bins=histogram_bins,
        with_stats=with_stats,
        slice=bounds,
        rng=rng,
        tid=tid,
    )


def output_bytes(spec: TensorSpec) -> int:
    return tensor_bytes(sliced_shape(spec.shape, spec.slice), spec.dtype)


def torch_device_type(device: str) -> str:
    """``"cuda:1"`` → ``"cuda"``."""
    return device.split(":", 1)[0]


def specs_provenance(specs: list[TensorSpec], settings: Settings) -> dict[str, Any]:
    """Scheme-dependent provenance: per tensor name when there are several."""
    per_tensor = {s.name: scheme_provenance(s.scheme, s.dtype, settings) for s in specs}
    if len(specs) == 1:
        return per_tensor[specs[0].name]
    merged: dict[str, Any] = {}
    fallbacks = {name: p["dtype_fallback"] for name, p in per_tensor.items() if "dtype_fallback" in p}
    if fallbacks:
        merged["dtype_fallback"] = fallbacks
    if any(s.scheme == "orthogonal" for s in specs):
        merged.update(mkl_cbwr=mkl_cbwr(), qr_threads=settings.qr_threads)
    return merged


def plan_tensor(req: TensorRequest, settings: Settings, pool: WorkerPool) -> Plan:
    check_histogram_bins(req.histogram_bins, settings)
    device = pool.resolve(req.device)
    spec = build_spec(req, req.dtype, req.histogram_bins, req.stats, settings, req.rng)
    nbytes = made_bytes([spec], torch_device_type(device))
    check_request_bytes(nbytes, settings, output_bytes(spec))
    seed = req.seed if req.seed is not None else draw_seed()
    normalized = req.model_dump(mode="json")
    normalized.update(seed=seed, device=device)
    return Plan(
        job=TensorJob(
            specs=[spec], seed=seed, device=device, qr_threads=settings.qr_threads, cpu_threads=settings.cpu_threads
        ),
        device=device,
        seed=seed,
        request=normalized,
        provenance={**base_provenance(device), "rng": req.rng, **specs_provenance([spec], settings)},
        nbytes=nbytes,
        filename=req.name,
        seeded=req.seed is not None,
        concrete_device=req.device != "auto",
        streamable=not req.stats and not may_warn(spec),
        outputs=[Output.of(spec)],
    )


def _within(prefix: tuple, exc: RecipeError) -> RecipeError:
    return RecipeError([Problem((*prefix, *p.loc), p.msg, p.type) for p in exc.problems])


def plan_tensors(req: TensorsRequest, settings: Settings, pool: WorkerPool) -> Plan:
    """``/v1/tensors``: one shared stream in list order; entries with their own seed get their own."""
    check_histogram_bins(req.histogram_bins, settings)
    if len(req.tensors) > settings.max_tensors:
        raise LimitExceeded(
            f"the request has {len(req.tensors)} tensors", len(req.tensors), settings.max_tensors, "INITSVC_MAX_TENSORS"
        )
    seen: dict[str, int] = {}
    for i, entry in enumerate(req.tensors):
        if entry.name in seen:
            raise RecipeError.at(
                ("tensors", i, "name"), f"tensor names must be unique; {entry.name!r} is also tensor {seen[entry.name]}"
            )
        seen[entry.name] = i
    device = pool.resolve(req.device)
    specs = []
    for i, entry in enumerate(req.tensors):
        bins = req.histogram_bins if entry.histogram_bins is None else entry.histogram_bins
        try:
            check_histogram_bins(bins, settings)
            tid = 0 if entry.seed is not None else i  # an own seed is its own stream: tid 0 under it
            specs.append(build_spec(entry, entry.dtype or req.dtype, bins, req.stats, settings, req.rng, tid))
        except RecipeError as exc:
            raise _within(("tensors", i), exc) from None
    if req.stats:
        check_histogram_total([s.histogram_bins for s in specs])
    nbytes = made_bytes(specs, torch_device_type(device), [e.seed for e in req.tensors])
    check_request_bytes(nbytes, settings, sum(output_bytes(s) for s in specs))
    seed = req.seed if req.seed is not None else draw_seed()
    normalized = req.model_dump(mode="json")
    normalized.update(seed=seed, device=device)
    for entry_json, spec in zip(normalized["tensors"], specs, strict=True):
        entry_json["dtype"] = spec.dtype
    return Plan(
        job=TensorJob(
            specs=specs, seed=seed, device=device, qr_threads=settings.qr_threads,
            own_seeds=[e.seed for e in req.tensors], cpu_threads=settings.cpu_threads,
        ),
        device=device,
        seed=seed,
        request=normalized,
        provenance={**base_provenance(device), "rng": req.rng, **specs_provenance(specs, settings)},
        nbytes=nbytes,
        filename="tensors",
        seeded=req.seed is not None,
        concrete_device=req.device != "auto",
        streamable=not req.stats and not any(may_warn(s) for s in specs),
        outputs=[Output.of(s) for s in specs],
    )
