"""From a validated ``ModelRequest`` to a plan: the preset, its config, the keys, every limit, before
anything is allocated.

In order, each step cheap enough to come before the next:

1. request-level rules (``rng``, ``histogram_bins``) and the preset's name (a near miss gets a
   "did you mean");
2. the config: every field the reference's config class names, with its defaults, checked as the
   reference checks it (``ConfigError`` names the field), and the reference's warnings kept;
3. the model built on ``meta`` (no memory, no draws), stopping early past ``INITSVC_MAX_TENSORS``:
   every ``state_dict`` key, shape and dtype;
4. ``tensors``: each key exists (unknown keys are listed beside a few valid ones);
5. the limits on the answer: tensors, elements per tensor, and the answer's bytes
   (``INITSVC_MAX_REQUEST_BYTES``, the message suggests ``tensors``). The admission slot counts what
   the job really holds: the whole model in float32 while it is built, plus any cast copies; or,
   when ``tensors`` can be made alone (``presets/accounting.py``), only their storages.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine.checks import check_size
from service.engine.devices import base_provenance
from service.engine.layers import torch_reason
from service.engine.maker import Output
from service.engine.rng import DTYPES, draw_seed
from service.errors import LimitExceeded, RecipeError
from service.planning.cuts import check_cuts, cut_entries, no_such_key, plan_cuts, select_keys, whole_provenance
from service.planning.plan import Plan
from service.planning.tensors import check_histogram_bins, check_histogram_total
from service.presets import PRESETS, ConfigError, Preset, PresetEntry, accounting
from service.presets.accounting import Slice, Unit
from service.presets.replay import Reach, TooManyTensors, meta_entries, meta_reach
from service.schemas.models import ModelRequest
from service.settings import Settings
from service.workers.model_jobs import AHEAD_BYTES, ModelJob, run_model_job, unit_cost
from service.workers.pool import WorkerPool


def find_preset(name: str, loc: tuple) -> Preset:
    """The preset called ``name``; a 422 at ``loc`` listing them (with a "did you mean") otherwise."""
    preset = PRESETS.get(name)
    if preset is not None:
        return preset
    by_lower = {n.lower(): n for n in PRESETS}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=2, cutoff=0.5)]
    close += [n for n in PRESETS if n.split("/")[-1].lower() == name.split("/")[-1].lower() and n not in close]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise RecipeError.at(loc, f"no model preset {name!r}; {hint}presets: {', '.join(PRESETS)}", "literal_error")


def resolve_config(preset: Preset, config: Mapping[str, Any], loc: tuple) -> tuple[dict[str, Any], list[str]]:
    """Every field filled in and checked; a ``ConfigError`` becomes a 422 naming the field under ``loc``."""
    try:
        return preset.resolve(config)
    except ConfigError as exc:
        raise RecipeError.at((*loc, exc.field) if exc.field else loc, exc.msg) from None


# A planning build stops past this many registered tensors (``TooManyTensors``): four times
# ``INITSVC_MAX_TENSORS``, and never fewer than this, so a model with more keys than the limit is
# counted exactly (the 413 gives the real count) and ``tensors`` can still pick a few of its keys.
PLANNING_TENSORS_FLOOR = 16384

# torch's words for a size that overflows its int64 arithmetic (or a Python int it cannot unpack).
_SIZE_OVERFLOW = (
    "overflow when unpacking long", "storage size calculation overflowed", "integer multiplication overflow",
    "int too large", "without overflow", "too large to convert",
)


def planning_budget(settings: Settings) -> int:
    return max(4 * settings.max_tensors, PLANNING_TENSORS_FLOOR)


def plan_entries(preset: Preset, config: Mapping[str, Any], settings: Settings, loc: tuple) -> list[PresetEntry]:
    """The state_dict the config gives, from a build on ``meta``; a build the reference's own
    constructor would refuse (a size torch cannot make) is a 422 on the config, or a 413 naming
    ``INITSVC_MAX_ELEMENTS`` when a size field is past it. torch's own text is cut to its first
    line (no C++ backtrace, no paths)."""
    budget = planning_budget(settings)
    try:
        return meta_entries(preset, config, budget=budget)
    except TooManyTensors:
        raise LimitExceeded(
            f"the model registers more than {budget} parameters and buffers, where planning stops "
            f"(4 x INITSVC_MAX_TENSORS, at least {PLANNING_TENSORS_FLOOR})", budget + 1, settings.max_tensors,
            "INITSVC_MAX_TENSORS",
        ) from None
    except (ValueError, TypeError, AssertionError, RuntimeError, OverflowError, MemoryError) as exc:
        reason = torch_reason(exc)
        if any(words in str(exc).lower() for words in _SIZE_OVERFLOW):
            sizes = sorted(
                ((config[f.name], f.name) for f in preset.fields
                 if f.type == "int" and isinstance(config.get(f.name), int) and config[f.name] > 1),
                reverse=True,
            )
            if sizes:
                value, name = sizes[0]  # the largest size: the one that overflows
                if value > settings.max_elements:
                    raise LimitExceeded(
                        f"config.{name}={value} makes a tensor larger than torch can size", value,
                        settings.max_elements, "INITSVC_MAX_ELEMENTS",
                    ) from None
                raise RecipeError.at(
                    (*loc, name), f"{name}={value} makes a tensor whose size overflows torch's int64 arithmetic; "
                    f"use a smaller {name} (each tensor may have at most INITSVC_MAX_ELEMENTS = "
                    f"{settings.max_elements} elements)",
                ) from None
            reason = "a tensor's size overflows torch's int64 arithmetic"
        raise RecipeError.at(loc, f"{preset.name} cannot be built with this config: {reason}") from None


def check_values(preset: Preset, config: Mapping[str, Any], dtype: str, budget: int, loc: tuple) -> None:
    """Every value the build writes from a scalar (a ``fill_``, a ``normal_``'s reach of 10 stds,
    a ``uniform_``'s bounds) fits float32, the dtype the reference builds in, and the answer's
    ``dtype``: the rule ``/v1/tensor`` applies to a recipe (docs/api.md §2.3). torch would raise
    on some (``fill_(1e39)``) and silently make ``inf`` of others; either is a 422 naming the
    config field that does it (found by putting each float field back to its default)."""
    reach = meta_reach(preset, config, budget)
    for name in dict.fromkeys(("float32", dtype)):
        if name not in DTYPES or reach.fits(DTYPES[name]):
            continue
        culprit = _value_culprit(preset, config, DTYPES[name], budget)
        where = (*loc, culprit) if culprit else loc
        said = f"{culprit}={config[culprit]!r}" if culprit else "this config"
        raise RecipeError.at(where, f"{said} makes {preset.name} write values in {_span(reach)}, which do not fit "
                             f"{name} (largest finite value {torch.finfo(DTYPES[name]).max:g}, and one draw's range "
                             "must not exceed it); use a smaller value or a wider dtype")


def _span(reach: Reach) -> str:
    return f"[{reach.low:g}, {reach.high:g}]"


def _value_culprit(preset: Preset, config: Mapping[str, Any], dtype: torch.dtype, budget: int) -> str | None:
    """The float config field whose default makes the build's values fit ``dtype``, if one does."""
    for f in preset.fields:
        if f.type != "float" or config.get(f.name) == f.default:
            continue
        try:
            if meta_reach(preset, {**config, f.name: f.default}, budget).fits(dtype):
                return f.name
        except Exception:  # noqa: BLE001 - a default that does not build here names nothing
            continue
    return None


def answer_dtype(entry: PresetEntry, dtype: str) -> str:
    """Floating tensors are cast to the request's dtype; integer buffers keep theirs."""
    return dtype if entry.dtype in DTYPES else entry.dtype


def check_limits(
    entries: list[PresetEntry], chosen: list[PresetEntry], dtype: str, settings: Settings, built: int | None = None
) -> tuple[int, int]:
    """The answer's bytes and the bytes the job holds at its peak; 413s past the limits.

    ``built``: the bytes a job that makes only the chosen keys' slice allocates (None: the whole
    model is built, every untied tensor in float32)."""
    if len(chosen) > settings.max_tensors:
        raise LimitExceeded(
            f"the answer has {len(chosen)} tensors; ask for fewer with 'tensors'", len(chosen), settings.max_tensors,
            "INITSVC_MAX_TENSORS",
        )
    for e in chosen:
        check_size(e.shape, answer_dtype(e, dtype), settings.max_elements, where=f"{e.key}: shape")
    answer_bytes = sum(e.numel * DTYPES[dtype].itemsize if e.dtype in DTYPES else e.nbytes for e in chosen)
    if answer_bytes > settings.max_request_bytes:
        raise LimitExceeded(
            f"the answer takes {answer_bytes} bytes in {dtype}; ask for some keys with 'tensors'",
            answer_bytes, settings.max_request_bytes, "INITSVC_MAX_REQUEST_BYTES",
        )
    if built is None:
        built = sum(e.nbytes for e in entries if e.tied_to is None)
    cast = answer_bytes if dtype != "float32" else 0
    return answer_bytes, built + cast


@dataclass
class Generation:
    """How the job makes the chosen keys (see ``plan_generation``)."""

    slice: Slice | None = None
    units: tuple[Unit, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    build_warnings: list[str] | None = None  # torch's warnings of the build, when recorded
    direct: frozenset[str] = frozenset()  # sliced keys whose part alone is generated
    direct_bytes: int = 0


def plan_cut_generation(
    preset: Preset, config: Mapping[str, Any], chosen: list[PresetEntry], cuts: Mapping[str, Any]
) -> Generation:
    """With ``slice``: a key made by one plain draw has only its part generated (``"direct"``);
    the other keys are made alone (or by the whole build) and cut (``"cut"``)."""
    if not accounting.usable(preset.name):
        return Generation(provenance=whole_provenance(
            f"{preset.name} failed the accounting self-test (see /v1/devices)", cuts))
    rec = accounting.recording(preset, config)
    planned = plan_cuts(rec, [e.key for e in chosen], cuts)
    if isinstance(planned, str):
        return Generation(provenance=whole_provenance(planned, cuts))
    return Generation(
        slice=planned.slice, provenance=planned.provenance, build_warnings=list(rec.warnings),
        direct=planned.direct, direct_bytes=planned.direct_bytes,
    )


def plan_generation(preset: Preset, config: Mapping[str, Any], chosen: list[PresetEntry], subset: bool) -> Generation:
    """How the job makes the chosen keys, when the preset passed its self-test and nothing opaque
    comes before them: a subset (``tensors``) as their slice alone, the whole state_dict as units
    made in parallel, each draw from a generator jumped to its offset (``"path": "jumped"``); else
    the whole build (``"path": "whole"`` and why). ``regenerated``: unaccountable draws (torch's
    ``trunc_normal_``) run from their known offset on the way."""
    if not accounting.usable(preset.name):
        return Generation(provenance={"path": "whole", "reason": f"{preset.name} failed the accounting self-test (see /v1/devices)"})
    rec = accounting.recording(preset, config)
    keys = [e.key for e in chosen]
    sliced = accounting.plan_slice(rec, keys)
    if sliced.whole:
        return Generation(provenance={"path": "whole", "reason": sliced.reason}, build_warnings=list(rec.warnings))
    generation: dict[str, Any] = {"path": "jumped"}
    if sliced.regenerated:
        generation["regenerated"] = [
            {"op": "torch.nn.init.trunc_normal_", "elements": rec.ops[i].draw_target.numel} for i in sliced.regenerated
        ]
    if subset:
        return Generation(slice=sliced, provenance=generation, build_warnings=list(rec.warnings))
    units = accounting.plan_units(rec, keys)
    if isinstance(units, str):
        return Generation(provenance={"path": "whole", "reason": units}, build_warnings=list(rec.warnings))
    return Generation(units=tuple(units), provenance=generation, build_warnings=list(rec.warnings))


def parallel_bytes(gen: Generation, entries: list[PresetEntry], dtype: str, answer_bytes: int, threads: int,
                   streamed: bool) -> int:
    """What a parallel job holds at its peak: the answer and a unit's storages per thread; streamed,
    ``AHEAD_BYTES`` ahead of the socket (or the largest unit alone) and a unit more."""
    storage_dtypes = {e.key: DTYPES.get(e.dtype) or getattr(torch, e.dtype) for e in entries}
    costs = [unit_cost(u, storage_dtypes[u.key], dtype) for u in gen.units or ()]
    largest = max(costs, default=0)
    if streamed:
        return min(max(AHEAD_BYTES, largest) + largest, answer_bytes + (threads + 1) * largest)
    return answer_bytes + (threads + 1) * largest


def plan_model(req: ModelRequest, settings: Settings, pool: WorkerPool, config_loc: tuple = ("config",)) -> Plan:
    """``config_loc``: where config fields sit in the request (``("config",)`` in a body, ``()`` in a query)."""
    if req.rng != "torch":
        raise RecipeError.at(
            ("rng",),
            f"rng {req.rng!r}: portable mode does not cover model presets in v1 (the references draw from torch's "
            "own generators); use rng 'torch'",
        )
    check_histogram_bins(req.histogram_bins, settings)
    preset = find_preset(req.model, ("model",))
    config, warnings = resolve_config(preset, req.config, config_loc)
    entries = plan_entries(preset, config, settings, config_loc or ("model",))
    check_values(preset, config, req.dtype, planning_budget(settings), config_loc or ("model",))
    chosen = select_keys(entries, req.tensors, "the model")
    if req.stats:
        check_histogram_total([req.histogram_bins] * len(chosen))
    keys = [e.key for e in entries]
    cuts = check_cuts(req.slice, entries, req.tensors, lambda key: no_such_key(key, keys, "the model"))
    if cuts:
        gen = plan_cut_generation(preset, config, chosen, cuts)
        chosen = cut_entries(chosen, cuts)
    else:
        gen = plan_generation(preset, config, chosen, req.tensors is not None)
    built = None
    if gen.slice is not None or gen.direct:
        built = (gen.slice.nbytes if gen.slice is not None else 0) + gen.direct_bytes
    answer_bytes, held_bytes = check_limits(entries, chosen, req.dtype, settings, built=built)
    # Without stats the header is known now, so the answer streams -- unless torch warns during
    # the build (then provenance is known only afterwards, as for tensors).
    streamable = not req.stats and not warnings and gen.build_warnings == []
    if gen.units is not None:
        held_bytes = parallel_bytes(gen, entries, req.dtype, answer_bytes, settings.cpu_threads, streamable)
    device = pool.resolve("cpu")  # the references build on the CPU in float32

    seed = req.seed if req.seed is not None else draw_seed()
    normalized = req.model_dump(mode="json")
    normalized.update(seed=seed, config=config, tensor_order=[e.key for e in chosen])
    return Plan(
        job=ModelJob(
            preset=preset, config=config, seed=seed, dtype=req.dtype, keys=tuple(e.key for e in chosen),
            histogram_bins=req.histogram_bins, with_stats=req.stats, warnings=tuple(warnings), slice=gen.slice,
            units=gen.units, threads=settings.cpu_threads, cuts=cuts or None, direct=gen.direct,
        ),
        device=device,
        seed=seed,
        request=normalized,
        provenance={
            **base_provenance(device),
            "rng": req.rng,
            "reference": {"library": preset.library, "constructor": preset.reference, "versions": preset.versions},
            "generation": gen.provenance,
        },
        nbytes=held_bytes,
        filename=preset.name.rsplit("/", 1)[-1],
        seeded=req.seed is not None,
        concrete_device=True,
        run=run_model_job,
        streamable=streamable,
        outputs=[
            Output(e.key, answer_dtype(e, req.dtype), e.shape, e.numel * _itemsize(answer_dtype(e, req.dtype)))
            for e in chosen
        ],
    )


def _itemsize(dtype: str) -> int:
    return (DTYPES.get(dtype) or getattr(torch, dtype)).itemsize
