"""The model-preset job a CPU worker runs: replay the reference's build and init under the seeded
global generators, keep the keys asked for, cast, and summarize each tensor.

Runs on the CPU worker's thread, admitted like every job. Without ``tensors`` (or when the keys
cannot be made alone) the whole model is built (its draws are serial: each tensor's bytes depend
on every draw before it), then only the chosen keys are kept; the rest is freed when the job
returns. With ``slice`` set (planning found the keys accountable and the preset passed its
self-test) only the chosen keys' storages are allocated, each draw from a generator jumped to its
offset in the stream (``presets/accounting.py``): the same bytes. Tied weights are one tensor under several keys, as
``state_dict()`` gives them, so the body sends the same memory twice.

``stats.init`` is the reference's init rule for the key, in words (``normal(0, 0.02)``).
``expected`` is null: a preset tensor's distribution is the reference's, described by ``init``.
The reference's config warnings, and torch's warnings during the build, are attached to the first
tensor, so they reach ``provenance.warnings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.engine.distributions import Distribution
from service.engine.maker import MadeTensor, TensorSpec, captured_warnings
from service.engine.rng import DTYPES
from service.engine.stats import expected_fields, observe
from service.presets import Preset
from service.presets.accounting import Slice, make, recording
from service.presets.replay import replay


@dataclass(frozen=True)
class ModelJob:
    preset: Preset
    config: Mapping[str, Any]  # resolved: every field filled in and checked
    seed: int
    dtype: str
    keys: tuple[str, ...]  # the answer's keys, in order
    histogram_bins: int = 0
    with_stats: bool = True
    warnings: tuple[str, ...] = ()  # the reference's config warnings
    slice: Slice | None = None  # make only these keys' slice of the build (None: the whole build)


def run_model_job(job: ModelJob) -> list[MadeTensor]:
    if job.slice is not None:
        rec = recording(job.preset, job.config)
        with captured_warnings() as warned:
            state = make(rec, job.slice, job.seed)
        build_warnings = list(dict.fromkeys([*rec.warnings, *warned]))
    else:
        state, build_warnings = replay(job.preset, job.config, job.seed)
    warnings = [*job.warnings, *build_warnings]
    made = []
    for i, key in enumerate(job.keys):
        t = state[key]
        if t.is_floating_point() and t.dtype != DTYPES[job.dtype]:
            t = t.to(DTYPES[job.dtype])
        dtype = str(t.dtype).removeprefix("torch.")
        spec = TensorSpec(
            name=key, shape=tuple(t.shape), scheme="preset", params={}, dtype=dtype,
            histogram_bins=job.histogram_bins, with_stats=job.with_stats,
        )
        stats = None
        if job.with_stats:
            stats = {**observe(t, job.histogram_bins), **expected_fields(Distribution(None)), "init": job.preset.rule_for(key)}
        made.append(MadeTensor(spec, t, stats, warnings if i == 0 else []))
    return made
