"""The module job a device worker runs: build the stack under the seeded global RNG, apply the
overrides, and summarize each state_dict entry.

Runs on the device's worker thread. Construction and overrides are the only draws, and both
happen inside ``global_rng.seeded_global_rng`` (see there why and at what cost); stats run after
the section is left. The tensors stay where they were made: the serving path sends CPU memory as
it is and copies device memory out through its pinned buffers.

Torch's warnings (an LSTM's dropout with one layer, a ``trunc_normal`` override far outside its
window) are attached to the first tensor of the layer that raised them, or to the overridden
parameter, so they reach ``provenance.warnings`` prefixed with that tensor's key.

With ``keys`` only those entries are answered, in that order. With ``slice`` too (planning found
them accountable: the CPU, no overrides) only their part of the build is made, each draw from a
generator jumped to its offset (``presets/accounting.py``), bytes identical to the whole build;
the stack is also built on ``meta`` for the keys' layers, defaults and warnings. With ``cuts``
(the request's ``slice``) each sliced key answers ``full[...]``: ``direct`` keys (one plain draw)
generate only that part, the others are cut from the key made whole. Stats describe the part;
``expected`` is the layer's distribution, the same for every element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from service.engine.distributions import Distribution, describe
from service.engine.global_rng import seeded_global_rng
from service.engine.layers import LayerCall, build_sequential, default_distributions, state_entries
from service.engine.maker import MadeTensor, TensorSpec, fill
from service.engine.rng import DTYPES, compute_dtype
from service.engine.stats import expected_fields, observe
from service.presets.accounting import Slice, cut, make_cuts, stack_recording


@dataclass(frozen=True)
class OverrideCall:
    """``nn.init.<scheme>_(param, **params)`` on the parameter with state_dict key ``param``."""

    param: str
    scheme: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ModuleJob:
    layers: Sequence[LayerCall]
    overrides: Sequence[OverrideCall]
    seed: int
    device: str
    dtype: str
    histogram_bins: int = 0
    with_stats: bool = True
    qr_threads: int = 1
    keys: tuple[str, ...] | None = None  # only these entries, in this order (None: all)
    slice: Slice | None = None  # make only the keys' slice of the build (CPU, no overrides)
    # ``slice`` of the request: key -> bounds of the part answered; ``direct`` keys generate only that part.
    cuts: Mapping[str, tuple[tuple[int, int], ...]] | None = None
    direct: frozenset[str] = frozenset()


def _apply_overrides(module: torch.nn.Module, job: ModuleJob, streams: Any) -> dict[str, list[str]]:
    parameters = dict(module.named_parameters())
    warned: dict[str, list[str]] = {}
    for o in job.overrides:
        p = parameters[o.param]  # planning checked the key
        spec = TensorSpec(name=o.param, shape=tuple(p.shape), scheme=o.scheme, params=o.params, dtype=job.dtype)
        warned.setdefault(o.param, []).extend(fill(p.data, spec, streams, job.qr_threads))
    return warned


def run_module_job(job: ModuleJob) -> list[MadeTensor]:
    device = torch.device(job.device)
    state: Mapping[str, torch.Tensor]
    if job.slice is not None or job.direct:
        module, layer_warnings = build_sequential(job.layers, "meta", DTYPES[job.dtype])
        override_warnings: dict[str, list[str]] = {}
        state = make_cuts(stack_recording(job.layers, job.dtype), job.slice, job.direct, job.cuts or {}, job.seed)
    else:
        with seeded_global_rng(job.seed, device) as streams:
            module, layer_warnings = build_sequential(job.layers, device, DTYPES[job.dtype])
            override_warnings = _apply_overrides(module, job, streams)
        state = module.state_dict()
    entries = state_entries(module)
    defaults = default_distributions(module)
    overridden = {o.param: o for o in job.overrides}  # the last override of a key decides its stats

    if job.keys is not None:  # the keys asked for, in that order; warnings go to the keys answered
        by_key = {e.key: e for e in entries}
        entries = [by_key[k] for k in job.keys]
        override_warnings = {k: v for k, v in override_warnings.items() if k in job.keys}
    first_of_layer: dict[str, str] = {}
    for entry in entries:
        first_of_layer.setdefault(entry.layer, entry.key)
    fallback = entries[0].key if entries and job.keys is None else None
    warnings: dict[str, list[str]] = {key: list(found) for key, found in override_warnings.items()}
    for layer, messages in layer_warnings.items():
        key = first_of_layer.get(layer, fallback)
        if key is not None:
            warnings[key] = messages + warnings.get(key, [])

    made = []
    for entry in entries:
        t = state[entry.key]
        if job.cuts and entry.key in job.cuts and entry.key not in job.direct:
            t = cut(t, job.cuts[entry.key])
        if entry.key in overridden:
            o = overridden[entry.key]
            scheme, params = o.scheme, dict(o.params)
            dist: Distribution | None = describe(scheme, params, entry.shape)
            work = compute_dtype(scheme, entry.dtype)
        else:
            scheme, dist = defaults.get(entry.key, ("default", None))
            params, work = {}, entry.dtype
        spec = TensorSpec(
            name=entry.key, shape=tuple(t.shape), scheme=scheme, params=params, dtype=entry.dtype,
            histogram_bins=job.histogram_bins, with_stats=job.with_stats,
        )
        stats = None
        if job.with_stats:
            stats = {**observe(t, job.histogram_bins), **expected_fields(dist or Distribution(None))}
        made.append(
            MadeTensor(spec, t, stats, warnings.get(entry.key, []), work if work != entry.dtype else None)
        )
    return made
