"""portable-v1 tensors in numpy: any recipe of docs/api.md §3.1, any slice, bounded memory.

Element ``i`` (flat, row-major, of the full shape) of tensor ``tid`` is a pure function of
``(seed, tid, i)``, so a slice is made by generating its own elements only, in chunks of
``CHUNK`` elements::

    uniform family    float64  low + (high − low)*u(w)
    normal family     float64  mean + std*x(w)
    truncated family  float64  mean + std*x(w_k), the first attempt k = 0, 1, … with
                               alpha <= x(w_k) <= beta
    sparse            normal(0, std), then in column c the num_zeros rows r with the smallest
                      (word of element r*cols + c at attempt 1, r) are zero

then rounded to float32 (nearest even) and from there to float16/bfloat16 (nearest even);
float64 keeps the float64 value. Deterministic schemes (constant, ones, zeros, eye, dirac) are
as torch makes them, with the value rounded the same way.

The dtypes are numpy's, except **bfloat16, which numpy lacks: it comes back as a uint16 array
of bfloat16 bit patterns** (``torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)`` makes
it a torch tensor; ``(a.astype(np.uint32) << 16).view(np.float32)`` widens it exactly).

>>> generate({"scheme": "normal"}, [4], seed=0).view(np.uint32).tolist() == [
...     0xBE82FA50, 0x3F96BB4F, 0x3F2153B7, 0x3E88FDEB]
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from service.portable.philox import words_at, words_range
from service.portable.recipes import PortablePlan, PortableRecipeError, resolve_recipe
from service.portable.transforms import (
    DTYPES,
    Workspace,
    affine,
    bfloat16_bits,
    normal_from_words,
    redraw_outside,
    sparse_zero_mask,
    to_dtype,
    uniform_affine,
    uniform_from_words,
)

CHUNK = 1 << 15  # elements per pass: float64 scratch of 256 KiB a buffer
MAX_SEED = 2**64 - 1
MAX_TID = 2**32 - 1

Bounds = list[tuple[int, int]]


def generate(
    recipe: Mapping[str, object],
    shape: Sequence[int],
    seed: int,
    tid: int = 0,
    dtype: str = "float32",
    slice: Sequence[tuple[int, int] | None] | None = None,  # shadows the builtin: the API's field name
) -> np.ndarray:
    """The portable-v1 tensor of ``recipe`` on ``shape``, or exactly ``full[slice]`` of it.

    ``slice`` has one entry per dimension, ``(start, stop)`` or ``None`` for the whole
    dimension; fans and bounds always come from the full ``shape``. ``dtype`` is ``float32``,
    ``float64``, ``float16`` or ``bfloat16`` (uint16 bit patterns, see the module docstring).
    Raises ``PortableError`` subclasses (ValueErrors) for what portable-v1 cannot make.
    """
    _check_int("seed", seed, MAX_SEED)
    _check_int("tid", tid, MAX_TID)
    if dtype not in DTYPES:
        raise PortableRecipeError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    plan = resolve_recipe(recipe, shape)
    shape = [int(d) for d in shape]
    bounds = normalize_slice(shape, slice)
    out: np.ndarray = np.empty([b - a for a, b in bounds], dtype=DTYPES[dtype])
    if out.size == 0:
        return out
    if plan.family == "deterministic":
        return _fill_deterministic(plan, shape, bounds, dtype, out)
    flat = out.reshape(-1)
    ws = Workspace(CHUNK)
    x = np.empty(CHUNK, dtype=np.float64)
    wbuf = np.empty(CHUNK, dtype=np.uint32)
    for block in iter_blocks(shape, bounds, CHUNK):
        xs, ww = x[: block.count], wbuf[: block.count]
        _fill_block(plan, seed, tid, block, xs, ww, ws)
        to_dtype(xs, dtype, flat[block.pos : block.pos + block.count])
    if plan.family == "sparse":
        _zero_sparse(plan, seed, tid, shape, bounds, out)
    return out


def _check_int(name: str, value: object, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= top:
        raise PortableRecipeError(f"{name} must be an integer in [0, {top}]; got {value!r}")


def normalize_slice(shape: Sequence[int], slice: Sequence[tuple[int, int] | None] | None) -> Bounds:
    """``[(start, stop), ...]`` for every dimension; ``None`` entries mean the whole dimension."""
    if slice is None:
        return [(0, d) for d in shape]
    if len(slice) != len(shape):
        raise PortableRecipeError(
            f"slice needs one entry per dimension ({len(shape)}); got {len(slice)} entries"
        )
    bounds = []
    for dim, (size, entry) in enumerate(zip(shape, slice, strict=True)):
        if entry is None:
            bounds.append((0, size))
            continue
        start, stop = entry
        if not (isinstance(start, int) and isinstance(stop, int)) or not 0 <= start <= stop <= size:
            raise PortableRecipeError(
                f"slice[{dim}] must be [start, stop] with 0 <= start <= stop <= {size}; got {list(entry)}"
            )
        bounds.append((start, stop))
    return bounds


@dataclass(frozen=True)
class Block:
    """``count`` elements of the slice from output position ``pos``: the contiguous flat range
    from ``start``, or the flat indices ``index`` (uint64, ascending)."""

    pos: int
    count: int
    start: int | None = None
    index: np.ndarray | None = None

    def words(self, seed: int, tid: int, k: int, out: np.ndarray) -> np.ndarray:
        if self.index is None:
            assert self.start is not None  # a block is a range or an index, never neither
            return words_range(seed, tid, k, self.start, self.count, out=out)
        out[...] = words_at(seed, tid, k, self.index)
        return out

    def flat_index(self, positions: np.ndarray) -> np.ndarray:
        """Flat element indices (uint64) of the block's ``positions``."""
        if self.index is None:
            assert self.start is not None
            return positions.astype(np.uint64) + np.uint64(self.start)
        return self.index[positions]


def iter_blocks(shape: Sequence[int], bounds: Bounds, chunk: int) -> Iterator[Block]:
    """The slice in row-major order, as blocks of at most ``chunk`` elements.

    The slice is runs of ``run`` consecutive flat elements (the trailing full dimensions and
    the last partial one); long runs go in contiguous blocks, short ones ``chunk // run`` runs
    a block as index arrays.
    """
    nd = len(shape)
    strides = [math.prod(shape[i + 1 :]) for i in range(nd)]
    partial = [i for i in range(nd) if bounds[i] != (0, shape[i])]
    d = partial[-1] if partial else 0
    run = (bounds[d][1] - bounds[d][0]) * strides[d] if nd else 1
    run_start = bounds[d][0] * strides[d] if nd else 0
    outer = [bounds[i][1] - bounds[i][0] for i in range(d)]
    n_runs = math.prod(outer)
    pos = 0
    if run * 8 >= chunk or n_runs == 1:
        for r in range(n_runs):
            base = run_start + _outer_offset(r, outer, bounds, strides)
            for lo in range(0, run, chunk):
                n = min(chunk, run - lo)
                yield Block(pos, n, start=base + lo)
                pos += n
        return
    per = max(1, chunk // run)
    step = np.arange(run, dtype=np.uint64)
    for r0 in range(0, n_runs, per):
        rs = np.arange(r0, min(n_runs, r0 + per), dtype=np.int64)
        idx = np.unravel_index(rs, outer)
        bases = np.full(rs.shape, run_start, dtype=np.uint64)
        for i in range(d):
            bases += (idx[i].astype(np.uint64) + np.uint64(bounds[i][0])) * np.uint64(strides[i])
        index = (bases[:, None] + step[None, :]).reshape(-1)
        yield Block(pos, index.shape[0], index=index)
        pos += index.shape[0]


def _outer_offset(r: int, outer: list[int], bounds: Bounds, strides: list[int]) -> int:
    off = 0
    for i in range(len(outer) - 1, -1, -1):
        r, j = divmod(r, outer[i])
        off += (bounds[i][0] + j) * strides[i]
    return off


def _fill_block(plan: PortablePlan, seed: int, tid: int, block: Block, x, w, ws: Workspace) -> None:
    """float64 values of the block's elements into ``x`` (``w``: word scratch)."""
    block.words(seed, tid, 0, w)
    # resolve_recipe sets the fields of the plan's family; the asserts say so to the type checker
    if plan.family == "uniform":
        assert plan.low is not None and plan.high is not None
        uniform_affine(uniform_from_words(w, out=x), plan.low, plan.high, out=x)
        return
    normal_from_words(w, out=x, ws=ws)
    if plan.family == "truncated":
        assert plan.alpha is not None and plan.beta is not None and plan.probability is not None
        redraw_outside(x, block.flat_index, seed, tid, plan.alpha, plan.beta, plan.probability, ws)
    assert plan.mean is not None and plan.std is not None
    affine(x, plan.mean, plan.std, out=x)


def _zero_sparse(plan: PortablePlan, seed: int, tid: int, shape, bounds: Bounds, out: np.ndarray) -> None:
    rows, cols = shape
    (r0, r1), (c0, c1) = bounds
    assert plan.num_zeros is not None  # set for the sparse family
    width = max(1, CHUNK // max(rows, 1))
    for ca in range(c0, c1, width):
        cb = min(c1, ca + width)
        mask = sparse_zero_mask(seed, tid, rows, cols, ca, cb, plan.num_zeros)[r0:r1]
        out[:, ca - c0 : cb - c0][mask] = 0


def _fill_deterministic(plan: PortablePlan, shape, bounds: Bounds, dtype: str, out: np.ndarray) -> np.ndarray:
    """constant/ones/zeros, eye, dirac: the value rounded float64 → float32 → dtype, as torch."""
    if plan.fill == "constant":
        assert plan.value is not None  # set for fill "constant"
        out.fill(_scalar(plan.value, dtype))
        return out
    out.fill(0)
    one = _scalar(1.0, dtype)
    if plan.fill == "eye":
        (r0, r1), (c0, c1) = bounds
        diag = np.arange(max(r0, c0), min(r1, c1))
        out[diag - r0, diag - c0] = one
        return out
    # dirac: ones at (g*out_per_group + d, d, k2//2, ...) for d < min(out_per_group, in)
    assert plan.groups is not None  # set for fill "dirac"
    per_group = shape[0] // plan.groups
    g, d = np.meshgrid(np.arange(plan.groups), np.arange(min(per_group, shape[1])), indexing="ij")
    coords = [(g * per_group + d).ravel(), d.ravel()] + [
        np.full(g.size, size // 2) for size in shape[2:]
    ]
    inside = np.ones(g.size, dtype=bool)
    for c, (a, b) in zip(coords, bounds, strict=True):
        inside &= (c >= a) & (c < b)
    out[tuple(c[inside] - a for c, (a, _) in zip(coords, bounds, strict=True))] = one
    return out


def _scalar(value: float, dtype: str):
    """One float64 value rounded as portable-v1 rounds it for ``dtype``."""
    v = np.array([value], dtype=np.float64)
    if dtype == "bfloat16":
        return bfloat16_bits(v.astype(np.float32))[0]
    res: np.ndarray = np.empty(1, dtype=DTYPES[dtype])
    return to_dtype(v, dtype, res)[0]
