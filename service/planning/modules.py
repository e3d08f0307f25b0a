"""From a validated ``ModuleRequest`` to a plan: names, sizes and overrides checked before anything is allocated.

In order, each step cheap enough to come before the next:

1. request-level rules (``rng``, ``histogram_bins``) and the device;
2. layer names that ``nn.Sequential`` would refuse ('forward', 'training', ...);
3. each layer's largest tensor in Python integers (``largest_elements``), so a layer whose size
   would overflow torch's int64 shape arithmetic is a 413 before torch sees it;
4. the whole stack built on ``meta`` (no memory, no draws): every state_dict key, shape and dtype,
   checked against ``INITSVC_MAX_TENSORS``, ``INITSVC_MAX_ELEMENTS`` and ``INITSVC_MAX_REQUEST_BYTES``;
5. every override: its parameter exists, and its recipe fits that parameter's shape and dtype;
6. ``tensors``: each key exists; on the CPU, without overrides, when every layer type passed its
   accounting self-test (``presets/accounting.py``, ``layer_self_test``) and nothing opaque comes
   before them, only their slice of the build is made, each draw from a generator jumped to its
   offset (``provenance.generation.path`` ``"jumped"``); else the whole stack is built and the keys
   kept (``"whole"`` and why). Admission counts what the job allocates;
7. ``slice`` (``planning/cuts.py``, shared with ``/v1/model``): each key exists (and is in
   ``tensors`` when given), bounds within its shape; with the keys made alone as in 6, a key made
   by one plain draw has only its part generated (``"direct"``), the others are cut (``"cut"``).
"""

from __future__ import annotations

import difflib
from typing import Any

from service.engine.checks import check_recipe, check_size
from service.engine.devices import base_provenance
from service.engine.layers import LayerCall, StateEntry, meta_entries, name_problem, torch_reason, value_problem
from service.engine.rng import DTYPES, draw_seed
from service.errors import LimitExceeded, Problem, RecipeError
from service.planning.cuts import (
    Bounds,
    CutPlan,
    check_cuts,
    cut_entries,
    no_such_key,
    plan_cuts,
    select_keys,
    whole_provenance,
)
from service.planning.plan import Plan
from service.planning.tensors import (
    check_histogram_bins,
    check_histogram_total,
    check_request_bytes,
    scheme_provenance,
)
from service.presets import accounting
from service.presets.accounting import Slice
from service.presets.recording import Recording
from service.schemas.layers_conv import LayerModel
from service.schemas.modules import ModuleRequest
from service.schemas.recipes import recipe_params
from service.settings import Settings
from service.workers.module_jobs import ModuleJob, OverrideCall, run_module_job
from service.workers.pool import WorkerPool

# How many parameter names a "no such parameter" message lists before it says "and N more".
LISTED_NAMES = 20


def layer_calls(named: list[tuple[str, LayerModel]], loc_of: Any, settings: Settings) -> list[LayerCall]:
    """Checked ``LayerCall``s: names ``nn.Sequential`` accepts, sizes that fit ``max_elements``."""
    calls = []
    for name, layer in named:
        problem = name_problem(name)
        if problem:
            raise RecipeError.at(loc_of(name), problem)
        largest = layer.largest_elements()
        if largest > settings.max_elements:
            raise LimitExceeded(
                f"layer {name!r} ({layer.type}) would have a tensor of {largest} elements",  # type: ignore[attr-defined]
                largest,
                settings.max_elements,
                "INITSVC_MAX_ELEMENTS",
            )
        calls.append(LayerCall(name, layer.type, layer.arguments()))  # type: ignore[attr-defined]
    return calls


def check_written_values(named: list[tuple[str, LayerModel]], dtype: str, loc_of: Any) -> None:
    """Each argument a constructor writes into a tensor as it is (PReLU's ``init``) fits ``dtype``:
    torch raises on a value past float32's range and makes ``inf`` past float16's; a 422 naming the
    argument, as ``/v1/tensor`` refuses a ``constant`` whose ``val`` does not fit (docs/api.md §2.3)."""
    for name, layer in named:
        for arg, value in layer.written_values().items():
            problem = value_problem(f"{layer.type} {arg}", value, DTYPES[dtype])  # type: ignore[attr-defined]
            if problem:
                raise RecipeError.at((*loc_of(name), arg), problem)


def stack_entries(calls: list[LayerCall], dtype: str, loc_of: Any) -> list[StateEntry]:
    """The state_dict the stack would have, from a build on ``meta``. A constructor that still
    refuses arguments the schema let through is a 422 naming the layer, with torch's reason."""
    try:
        return meta_entries(calls, DTYPES[dtype])
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        failed = calls[0].name
        for call in calls:  # find the layer that refuses, to name it
            try:
                meta_entries([call], DTYPES[dtype])
            except (ValueError, TypeError, AssertionError, RuntimeError):
                failed = call.name
                break
        raise RecipeError.at(loc_of(failed), f"torch.nn refused this layer: {torch_reason(exc)}") from None


def check_entries(entries: list[StateEntry], settings: Settings) -> int:
    """``INITSVC_MAX_TENSORS``, ``INITSVC_MAX_ELEMENTS`` per tensor, ``INITSVC_MAX_REQUEST_BYTES``; the bytes."""
    if len(entries) > settings.max_tensors:
        raise LimitExceeded(
            f"the module has {len(entries)} parameters and buffers", len(entries), settings.max_tensors, "INITSVC_MAX_TENSORS"
        )
    for e in entries:
        check_size(e.shape, e.dtype, settings.max_elements, where=f"{e.key}: shape")
    nbytes = sum(e.nbytes for e in entries)
    check_request_bytes(nbytes, settings)
    return nbytes


def no_such_parameter(param: str, entries: list[StateEntry]) -> str:
    parameters = [e.key for e in entries if e.parameter]
    buffers = {e.key for e in entries if not e.parameter}
    if param in buffers:
        return f"{param!r} is a buffer, not a parameter; overrides apply to parameters: {_listing(parameters)}"
    close = difflib.get_close_matches(param, parameters, n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"the module has no parameter {param!r}; {hint}parameters: {_listing(parameters)}"


def _listing(names: list[str]) -> str:
    if not names:
        return "none (the module has no parameters)"
    shown = ", ".join(names[:LISTED_NAMES])
    return shown + (f", and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else "")


def override_calls(req: ModuleRequest, entries: list[StateEntry]) -> list[OverrideCall]:
    by_key = {e.key: e for e in entries if e.parameter}
    calls = []
    for i, override in enumerate(req.overrides):
        entry = by_key.get(override.param)
        if entry is None:
            raise RecipeError.at(("overrides", i, "param"), no_such_parameter(override.param, entries))
        params = recipe_params(override.init)
        try:
            check_recipe(override.init.scheme, params, entry.shape, entry.dtype)
        except RecipeError as exc:  # "shape" is the parameter's: name the param
            raise RecipeError(
                [Problem(("overrides", i, *(("param",) if p.loc == ("shape",) else p.loc)), f"{override.param}: {p.msg}", p.type) for p in exc.problems]
            ) from None
        calls.append(OverrideCall(override.param, override.init.scheme, params))
    return calls


def overrides_provenance(calls: list[OverrideCall], dtype: str, settings: Settings) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    fallbacks = {}
    for call in calls:
        found = scheme_provenance(call.scheme, dtype, settings)
        if "dtype_fallback" in found:
            fallbacks[call.param] = found.pop("dtype_fallback")
        extra.update(found)
    if fallbacks:
        extra["dtype_fallback"] = fallbacks
    return extra


def stack_record(req: ModuleRequest, calls: list[LayerCall], device: str) -> Recording | str:
    """The stack's recorded build when its keys can be made alone (the CPU, no overrides, every
    layer type passed its self-test); else why the whole stack is built."""
    if device != "cpu":
        return f"keys are made alone on the CPU only; the device is {device}"
    if req.overrides:
        return "overrides draw after construction: the whole stack is built"
    if not accounting.layer_usable([c.type for c in calls]):
        failed = sorted({c.type for c in calls} - set(accounting.capability()["layer_types"]["jumped"]))
        return f"{', '.join(failed)} failed the accounting self-test (see /v1/devices)"
    return accounting.stack_recording(calls, req.dtype)


def plan_subset(
    req: ModuleRequest, calls: list[LayerCall], chosen: list[StateEntry], device: str
) -> tuple[Slice | None, dict[str, Any]]:
    """How the job makes ``tensors``: their slice alone (``"jumped"``) or the whole stack and why."""
    rec = stack_record(req, calls, device)
    if isinstance(rec, str):
        return None, {"path": "whole", "reason": rec}
    sliced = accounting.plan_slice(rec, [e.key for e in chosen])
    if sliced.whole:
        return None, {"path": "whole", "reason": sliced.reason}
    return sliced, {"path": "jumped"}


def plan_module_cuts(
    req: ModuleRequest, calls: list[LayerCall], chosen: list[StateEntry], cuts: dict[str, Bounds], device: str
) -> CutPlan | dict[str, Any]:
    """With ``slice``: the keys made alone, a plain draw's part generated alone (``"direct"``), the
    others cut (``"cut"``); or the whole stack built and every sliced key cut (its provenance)."""
    rec = stack_record(req, calls, device)
    planned = rec if isinstance(rec, str) else plan_cuts(rec, [e.key for e in chosen], cuts)
    return whole_provenance(planned, cuts) if isinstance(planned, str) else planned


def plan_module(req: ModuleRequest, settings: Settings, pool: WorkerPool) -> Plan:
    if req.rng != "torch":
        raise RecipeError.at(
            ("rng",),
            f"rng {req.rng!r}: portable mode does not cover modules in v1 (torch's layer constructors draw from "
            "torch's own generators); use rng 'torch', or /v1/tensors with portable-v1 for each parameter",
        )
    check_histogram_bins(req.histogram_bins, settings)
    device = pool.resolve(req.device)
    calls = layer_calls(req.named_layers(), req.layer_loc, settings)
    check_written_values(req.named_layers(), req.dtype, req.layer_loc)
    entries = stack_entries(calls, req.dtype, req.layer_loc)
    chosen = select_keys(entries, req.tensors, "the module")
    if req.stats:
        check_histogram_total([req.histogram_bins] * len(chosen))
    keys = [e.key for e in entries]
    cuts = check_cuts(req.slice, entries, req.tensors, lambda key: no_such_key(key, keys, "the module"))
    nbytes = check_entries(cut_entries(entries if req.tensors is None else chosen, cuts), settings)
    overrides = override_calls(req, entries)
    extra: dict[str, Any] = {}
    sliced = None
    direct: frozenset[str] = frozenset()
    held = nbytes
    if cuts:  # the answer's cut copies, and what the build allocates
        planned = plan_module_cuts(req, calls, chosen, cuts, device)
        if isinstance(planned, CutPlan):
            sliced, direct, extra["generation"] = planned.slice, planned.direct, planned.provenance
            held = nbytes + planned.built
        else:
            extra["generation"] = planned
            held = nbytes + sum(e.nbytes for e in entries)
    elif req.tensors is not None:
        sliced, extra["generation"] = plan_subset(req, calls, chosen, device)
        held = sliced.nbytes if sliced is not None else sum(e.nbytes for e in entries)

    seed = req.seed if req.seed is not None else draw_seed()
    normalized = req.model_dump(mode="json")
    normalized.update(seed=seed, device=device)
    if isinstance(req.layers, dict):  # the header sorts object keys: keep the build order explicit
        normalized["layer_order"] = [call.name for call in calls]
    return Plan(
        job=ModuleJob(
            layers=calls, overrides=overrides, seed=seed, device=device, dtype=req.dtype,
            histogram_bins=req.histogram_bins, with_stats=req.stats, qr_threads=settings.qr_threads,
            keys=None if req.tensors is None else tuple(e.key for e in chosen), slice=sliced,
            cuts=cuts or None, direct=direct,
        ),
        device=device,
        seed=seed,
        request=normalized,
        provenance={
            **base_provenance(device), "rng": req.rng, **overrides_provenance(overrides, req.dtype, settings), **extra
        },
        nbytes=held,
        filename="module",
        seeded=req.seed is not None,
        concrete_device=req.device != "auto",
        run=run_module_job,
    )
