"""The model-preset job a CPU worker runs: replay the reference's build and init under the seeded
global generators, keep the keys asked for, cast, and summarize each tensor.

Runs on the CPU worker's thread, admitted like every job. Three paths, the same bytes:

* **whole** (the preset failed its accounting self-test, or some key depends on an opaque op): the
  whole model is built serially (each tensor's bytes depend on every draw before it), then only
  the chosen keys are kept; the rest is freed when the job returns.
* **jumped subset** (``slice`` set: ``tensors`` names keys that can be made alone): only their
  storages are allocated, each draw from a generator jumped to its offset in the stream
  (``presets/accounting.py``).
* **parallel** (``units`` set: every key can be made alone): each key, and each piece of a big key
  whose slice is one plain draw, is a unit made from its own jumped generator on a small thread
  pool of ``threads`` (torch releases the GIL in its kernels). The job's own thread walks the
  stream in key order (the jumps) and hands units out, so jumping and generating overlap. When
  the answer is streamed (``progressive``: ``stats: false``, header already sent), each unit's
  bytes are queued in key order as soon as it and the units before it are done, and released once
  the socket took them; new units start only while fewer than ``ahead_bytes`` are made but not
  yet sent (one unit alone may pass it), so the job holds a bounded working set whatever the
  model's size. A tied key is made again there (its first key's bytes may be long gone).

Tied weights are one tensor under several keys, as ``state_dict()`` gives them; outside streaming
the body sends the same memory twice.

``stats.init`` is the reference's init rule for the key, in words (``normal(0, 0.02)``).
``expected`` is null: a preset tensor's distribution is the reference's, described by ``init``.
The reference's config warnings, and torch's warnings during the build, are attached to the first
tensor, so they reach ``provenance.warnings``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from service.codec.body import tensor_bytes_view
from service.engine.distributions import Distribution
from service.engine.maker import MadeTensor, TensorSpec, captured_warnings
from service.engine.rng import DTYPES
from service.engine.stats import expected_fields, observe
from service.presets import Preset
from service.presets.accounting import Slice, StreamWalk, Unit, cut, make, make_cuts, make_piece, recording
from service.presets.replay import replay
from service.workers.buffers import PinnedBuffers
from service.workers.streaming import Segments, deliver

# Streamed answers: at most this many bytes made ahead of the socket (units in flight included).
AHEAD_BYTES = 64 << 20


@dataclass(frozen=True)
class _Counted:
    scheme: str = "preset"


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
    units: tuple[Unit, ...] | None = None  # the parallel path: every key from its own generator
    threads: int = 1
    ahead_bytes: int = AHEAD_BYTES
    # ``slice``: key -> bounds of the part answered; ``direct`` keys generate only that part.
    cuts: Mapping[str, tuple[tuple[int, int], ...]] | None = None
    direct: frozenset[str] = frozenset()

    @property
    def specs(self) -> list[_Counted]:
        """What ``/metrics`` counts for a streamed answer: one preset tensor per key."""
        return [_Counted()] * len(self.keys)


def run_model_job(
    job: ModelJob,
    segments: Segments | None = None,
    progressive: bool = False,
    buffers: PinnedBuffers | None = None,
) -> list[MadeTensor]:
    stream = segments if progressive else None
    try:
        if job.units is not None:
            return _parallel(job, stream)
        made = _made(job, *_build(job))
        if stream is not None:
            stream.start()
            deliver([m.tensor for m in made], stream, None)
        return made
    except BaseException as exc:
        if stream is not None:
            stream.close(exc)
        raise


def _build(job: ModelJob) -> tuple[dict[str, torch.Tensor], list[str]]:
    if job.slice is not None or job.direct:
        rec = recording(job.preset, job.config)
        with captured_warnings() as warned:
            state = make_cuts(rec, job.slice, job.direct, job.cuts or {}, job.seed)
        return state, list(dict.fromkeys([*rec.warnings, *warned]))
    return replay(job.preset, job.config, job.seed)


def _made(job: ModelJob, state: Mapping[str, torch.Tensor], build_warnings: list[str]) -> list[MadeTensor]:
    warnings = [*job.warnings, *build_warnings]
    made = []
    for i, key in enumerate(job.keys):
        t = state[key]
        if job.cuts and key in job.cuts and key not in job.direct:
            t = cut(t, job.cuts[key])
        if t.is_floating_point() and t.dtype != DTYPES[job.dtype]:
            t = t.to(DTYPES[job.dtype])
        dtype = str(t.dtype).removeprefix("torch.")
        spec = TensorSpec(
            name=key, shape=tuple(t.shape), scheme="preset", params={}, dtype=dtype,
            histogram_bins=job.histogram_bins, with_stats=job.with_stats,
        )
        stats = None
        if job.with_stats:
            stats = {**observe(t, job.histogram_bins), **expected_fields(Distribution(None)), "init": job.preset.rule_for(key, job.config)}
        made.append(MadeTensor(spec, t, stats, warnings if i == 0 else []))
    return made


# --- the parallel path ----------------------------------------------------------------------------


class _Window:
    """Bytes of units started but not yet handed to the socket."""

    def __init__(self, limit: float):
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()

    def take(self, n: int) -> bool:
        """Count ``n`` more if they fit (or nothing is outstanding); False otherwise."""
        with self._cond:
            if self.used and self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()

    def wait(self, seconds: float = 0.05) -> None:
        with self._cond:
            self._cond.wait(seconds)


def answer_dtype(t_dtype: torch.dtype, dtype: str) -> torch.dtype:
    return DTYPES[dtype] if t_dtype.is_floating_point else t_dtype


def unit_cost(unit: Unit, storage_dtype: torch.dtype, dtype: str) -> int:
    """Bytes a unit holds while it is in flight: its storages, and its cast copy if any."""
    out = answer_dtype(storage_dtype, dtype)
    return unit.generated + (unit.numel * out.itemsize if out != storage_dtype else 0)


def _make_unit(job: ModelJob, rec, unit: Unit, walk: StreamWalk, out: torch.Tensor | None) -> torch.Tensor:
    """The unit's elements in the answer's dtype, flat (into ``out`` when given)."""
    storage_dtype = rec.keys[unit.key].dtype
    want = answer_dtype(storage_dtype, job.dtype)
    if unit.op is not None:
        made = make_piece(rec, unit, walk, out)
    else:
        made = make(rec, unit.slice, job.seed, walk)[unit.key].reshape(-1)
    if out is not None:
        if made.data_ptr() != out.data_ptr():
            out.copy_(made)
        return out
    return made.to(want) if made.dtype != want else made.contiguous()


def _parallel(job: ModelJob, segments: Segments | None) -> list[MadeTensor]:
    rec = recording(job.preset, job.config)
    units = job.units or ()
    walk = StreamWalk(rec, sorted({i for u in units for i in u.slice.needed}), job.seed)
    state: dict[str, torch.Tensor] = {}
    if segments is not None:
        segments.start()  # the header is known: the answer may begin
        window = _Window(job.ahead_bytes)
    else:
        window = _Window(float("inf"))
        first: dict[int, str] = {}
        for key in job.keys:  # the answer's tensors, each unit writing its part; tied keys share one
            ref = rec.keys[key]
            if ref.sid in first:
                state[key] = state[first[ref.sid]]
                continue
            first[ref.sid] = key
            state[key] = torch.empty(ref.size, dtype=answer_dtype(ref.dtype, job.dtype))
        units = tuple(u for u in units if first[rec.keys[u.key].sid] == u.key)
    pending: collections.deque[tuple[Unit, int, Future]] = collections.deque()

    def emit() -> None:
        unit, cost, future = pending.popleft()
        piece = future.result()
        if segments is None:
            return
        segments.put(tensor_bytes_view(piece), _giver(window, cost))

    with captured_warnings() as warned, ThreadPoolExecutor(job.threads, thread_name_prefix="initsvc-model") as pool:
        try:
            i = 0
            while i < len(units) or pending:
                if segments is not None and segments.cancelled():
                    break
                while pending and pending[0][2].done():
                    emit()
                if i < len(units) and len(pending) <= job.threads:
                    unit = units[i]
                    cost = unit_cost(unit, rec.keys[unit.key].dtype, job.dtype)
                    if window.take(cost):
                        i += 1
                        for op in unit.slice.needed:  # the jumps, on this thread
                            if rec.ops[op].draws_rng:
                                walk.state(op)
                        out = state[unit.key].view(-1)[unit.start : unit.stop] if segments is None else None
                        pending.append((unit, cost, pool.submit(_make_unit, job, rec, unit, walk, out)))
                        continue
                if pending:
                    emit()
                else:
                    window.wait()
        finally:
            for _, _, future in pending:
                future.cancel()
    if segments is not None:
        segments.close()
        return []
    return _made(job, state, list(dict.fromkeys([*rec.warnings, *warned])))


def _giver(window: _Window, cost: int):
    def release() -> None:
        window.give(cost)

    return release
