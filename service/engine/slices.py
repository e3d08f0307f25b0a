"""Hyperslabs of a torch-identical tensor, generated without the rest of it.

``full[s0:e0, s1:e1, ...]`` of a row-major tensor is a set of equally long runs of its flat index
space: if j is the last dimension the slice does not cover whole, each run is
(e_j - s_j)·prod(shape[j+1:]) elements long and there is one per index of the dimensions before j.
Runs whose gap is under ``SKIP_MIN_DRAWS`` draws are generated through (cheaper than a jump);
each group of runs is widened by ``draws.generation_range`` (normal_'s 16-element blocks and tail
rule) and generated from one generator placed at its first draw by a ``StreamCursor``, which jumps
on from the previous group (``_cheap_start`` may start a little earlier, where the jump has fewer
table passes, and drop what it generates before the group). A group is generated in pieces of at
most ``PIECE_ELEMENTS`` with the same generator (a piece of whole blocks takes exactly d·len
draws), straight into ``out`` where a piece lies inside one run, else into a scratch buffer that
is scattered into ``out``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from service.engine import mt19937
from service.engine.draws import BLOCK, ELEMENT_S, Op, draws_per_element, fill_serial_, generation_range

# Gaps shorter than this many draws are generated through: ~4.5 ms at torch's ~2.2 ns per draw,
# about a jump of 2–3 table passes (1–1.8 ms each); a plain twist costs ~37 ns per skipped draw.
SKIP_MIN_DRAWS = 1 << 21
PIECE_ELEMENTS = 1 << 22  # at most this much scratch memory (elements) per piece
LONG_RUN = 1 << 12  # runs at least this long are copied one by one, shorter ones by index_select


@dataclass(frozen=True)
class RunPlan:
    """The runs of a slice: ``starts[r]`` (flat, increasing) fills ``out[r·length:(r+1)·length]``."""

    shape: tuple[int, ...]
    total: int
    starts: np.ndarray
    length: int


def plan_runs(full_shape: Sequence[int], slice_bounds: Sequence[tuple[int, int]]) -> RunPlan:
    """Runs of ``full[s0:e0, ...]`` for a row-major tensor of ``full_shape``."""
    full_shape = tuple(int(x) for x in full_shape)
    if len(slice_bounds) != len(full_shape):
        raise ValueError(
            f"slice_bounds needs one (start, end) per dimension of {list(full_shape)}; "
            f"got {len(slice_bounds)}"
        )
    for dim, ((s, e), size) in enumerate(zip(slice_bounds, full_shape, strict=True)):
        if not 0 <= s <= e <= size:
            raise ValueError(f"slice_bounds[{dim}] must satisfy 0 <= start <= end <= {size}; got {(s, e)}")
    shape = tuple(e - s for s, e in slice_bounds)
    total = math.prod(full_shape)
    if math.prod(shape) == 0:
        return RunPlan(shape, total, np.zeros(0, dtype=np.int64), 0)
    strides = [math.prod(full_shape[i + 1 :]) for i in range(len(full_shape))]
    partial = [i for i, (s, e) in enumerate(slice_bounds) if (s, e) != (0, full_shape[i])]
    if not partial:
        return RunPlan(shape, total, np.zeros(1, dtype=np.int64), total)
    j = partial[-1]
    s_j, e_j = slice_bounds[j]
    starts = np.array([s_j * strides[j]], dtype=np.int64)
    for i in range(j - 1, -1, -1):
        s_i, e_i = slice_bounds[i]
        starts = (np.arange(s_i, e_i, dtype=np.int64)[:, None] * strides[i] + starts).reshape(-1)
    return RunPlan(shape, total, starts, (e_j - s_j) * strides[j])


def fill_runs(
    out_flat: torch.Tensor,
    plan: RunPlan,
    op: Op,
    p1: float,
    p2: float,
    seed: int,
    base_draws: int,
) -> torch.Tensor:
    """Generate every run of ``plan`` into contiguous 1-D ``out_flat`` (see the module docstring).

    Needs normal_'s n >= 16 (a smaller tensor is one serial call: generate it whole).
    """
    if plan.starts.size == 0:
        return out_flat
    d = draws_per_element(out_flat.dtype)
    cursor, done = mt19937.StreamCursor(seed), 0
    for s, e, lo, hi in _groups(plan, op, d):
        s = _cheap_start(cursor.twists, base_draws, d, s, done, BLOCK if op == "normal" else 1)
        g = mt19937.load_state(cursor.state(base_draws + d * s))
        done = e
        cuts = _cuts(plan, op, s, e, lo, hi)
        for x, y in pairwise(cuts):
            r = int(np.searchsorted(plan.starts, x, side="right")) - 1
            if r >= 0 and y <= plan.starts[r] + plan.length:  # the piece lies inside run r
                o = r * plan.length + x - int(plan.starts[r])
                fill_serial_(out_flat[o : o + y - x], op, p1, p2, g)
            else:
                buf = fill_serial_(torch.empty(y - x, dtype=out_flat.dtype), op, p1, p2, g)
                _scatter(buf, x, plan, out_flat)
    return out_flat


def _groups(plan: RunPlan, op: Op, d: int) -> list[tuple[int, int, int, int]]:
    """(s, e, lo, hi): generate elements [s, e) for runs lo..hi-1; ranges are disjoint, increasing."""
    starts, length = plan.starts, plan.length
    gaps = starts[1:] - (starts[:-1] + length)
    splits = [0, *(np.flatnonzero(gaps * d >= SKIP_MIN_DRAWS) + 1).tolist(), starts.size]
    groups: list[tuple[int, int, int, int]] = []
    for lo, hi in pairwise(splits):
        s, e = generation_range(op, plan.total, int(starts[lo]), int(starts[hi - 1]) + length)
        if groups and s <= groups[-1][1]:  # widened ranges touch: one generator for both
            s0, _, lo0, _ = groups.pop()
            s, lo = s0, lo0
        groups.append((s, e, lo, hi))
    return groups


def _cheap_start(twists: int, base: int, d: int, s: int, floor: int, align: int) -> int:
    """Where to start generating for a group that starts at s: some s' in [floor, s], align | s'.

    Reaching draw base + d·s costs a jump of ceil((base + d·s)/624) - ``twists`` blocks. Starting
    at s' where that count has fewer set bits (its leading bits, the rest zero) can be cheaper even
    though [s', s) is generated and dropped: s' minimises jump_seconds(blocks) + ELEMENT_S·(s - s').
    """

    def blocks(x: int) -> int:
        return -(-(base + d * x) // mt19937.N) - twists

    target = blocks(s)
    best, best_cost = s, mt19937.jump_seconds(target)
    top = target.bit_length()
    for keep in range(1, top):
        reach = mt19937.N * (twists + ((target >> (top - keep)) << (top - keep)))  # last such draw
        x = (reach - base) // d
        x -= x % align
        if floor <= x < s and blocks(x) >= 0:
            cost = mt19937.jump_seconds(blocks(x)) + ELEMENT_S * (s - x)
            best, best_cost = (x, cost) if cost < best_cost else (best, best_cost)
    return best


def _cuts(plan: RunPlan, op: Op, s: int, e: int, lo: int, hi: int) -> list[int]:
    """Piece bounds in [s, e): every ``PIECE_ELEMENTS``, plus the edges of long runs.

    For normal_ a cut is a multiple of 16 and leaves >= 16 elements after it, so each piece is whole
    blocks and the last one (which may hold torch's tail rule) stays on the n >= 16 path.
    """
    cuts = set(range(s, e, PIECE_ELEMENTS))
    if plan.length >= PIECE_ELEMENTS // 4:
        first = plan.starts[lo:hi]
        cuts.update(first.tolist())
        cuts.update((first + plan.length).tolist())
    if op == "normal":
        cuts = {c - c % BLOCK for c in cuts if c <= e - BLOCK}
    return sorted({c for c in cuts if s < c < e} | {s, e})


def _scatter(buf: torch.Tensor, x: int, plan: RunPlan, out_flat: torch.Tensor) -> None:
    """Copy the parts of the runs that fall in [x, x + len(buf)) from ``buf`` into ``out_flat``."""
    starts, length, y = plan.starts, plan.length, x + buf.numel()
    lo = int(np.searchsorted(starts + length, x, side="right"))
    hi = int(np.searchsorted(starts, y, side="left"))
    if lo >= hi:  # the piece lies in a gap that was generated through
        return
    inner_lo = lo if starts[lo] >= x else lo + 1
    inner_hi = hi if starts[hi - 1] + length <= y else hi - 1
    if length >= LONG_RUN or inner_hi - inner_lo < 2:
        inner_lo = inner_hi = hi  # copy every run one by one
    for r in [*range(lo, inner_lo), *range(inner_hi, hi)]:
        a, b = max(int(starts[r]), x), min(int(starts[r]) + length, y)
        o = r * length + a - int(starts[r])
        out_flat[o : o + b - a].copy_(buf[a - x : b - x])
    if inner_hi > inner_lo:
        idx = (starts[inner_lo:inner_hi, None] - x) + np.arange(length, dtype=np.int64)
        dest = out_flat[inner_lo * length : inner_hi * length]
        torch.index_select(buf, 0, torch.from_numpy(idx.reshape(-1)), out=dest)
