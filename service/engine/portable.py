"""portable-v1 on torch tensors, CPU or CUDA: the same bits as ``service.portable.generate``.

The recipe → parameters step, the slice planning and the sparse rule's definition are the
numpy core's (``service.portable``); this module only redoes the arithmetic with torch ops so
that a GPU can run it. The operation rules that keep it bit-exact:

* Philox's 32×32→64-bit products are int64 multiplies, which wrap mod 2^64; ``(p >> 32) &
  0xFFFFFFFF`` and ``p & 0xFFFFFFFF`` are then the exact hi and lo words. (torch's ``uint32``
  has no ``>>`` or ``+`` on CPU.)
* Everything else is float64, one eager op per IEEE operation, so nothing fuses into an FMA
  (``add(a, scalar)`` is ``a + 1*scalar``, exact either way). No ``torch.compile`` here: fused
  kernels contract ``a*b + c`` into FMAs.
* Division is tensor / tensor only: CUDA divides a tensor by a *CPU scalar* as ``a * (1/b)``,
  which is not the correctly rounded quotient.
* ``sqrt`` must be correctly rounded. CUDA's float64 ``torch.sqrt`` is (IEEE ``sqrt.rn.f64``);
  torch's CPU ``sqrt`` is not on x86 wheels (about 1.3% of float64 inputs come out 1 ulp off,
  whatever ``ATEN_CPU_CAPABILITY``), so on CPU the square root is numpy's, in place on the
  tensor's memory.
* float64 → float32 → float16/bfloat16 with ``.to()``, round to nearest even each.

Work goes in chunks of ``CHUNK`` elements, so scratch stays a few tens of MiB whatever the
tensor. Example::

    w = portable_fill([256, 784], {"scheme": "kaiming_uniform"}, seed=0, tid=0,
                      dtype=torch.float32, device=torch.device("cpu"))
    # == torch.from_numpy(service.portable.generate({"scheme": "kaiming_uniform"}, [256, 784], 0))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from service.portable.generate import MAX_ATTEMPTS, MAX_SEED, MAX_TID, Block, iter_blocks, normalize_slice
from service.portable.philox import M0, M1, MASK32, ROUNDS, W0, W1, split_seed
from service.portable.recipes import PortablePlan, PortableRecipeError, resolve_recipe
from service.portable.transforms import (
    AS241_A,
    AS241_B,
    AS241_C,
    AS241_D,
    CENTRAL_R0,
    LN2,
    LN_SERIES,
    SPLIT,
    SQRT2,
    TAIL_SHIFT,
    TWO_M24,
    TWO_M33,
    TWO_P33,
)

CHUNK = 1 << 20
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def portable_fill(
    shape: Sequence[int],
    recipe: Mapping[str, object],
    seed: int,
    tid: int,
    dtype: torch.dtype,
    device: torch.device,
    slice: Sequence[tuple[int, int] | None] | None = None,  # noqa: A002 (the spec's name)
) -> torch.Tensor | None:
    """The portable-v1 tensor of ``recipe`` on ``shape`` (or ``full[slice]``), on ``device``.

    Returns ``None`` for the deterministic schemes (constant, ones, zeros, eye, dirac): they
    draw nothing, so the caller makes them with torch's own fillers as in rng "torch".
    bfloat16 comes back as a real ``torch.bfloat16`` tensor (the numpy core returns its bits).
    Raises the ``service.portable`` errors (ValueErrors) for what portable-v1 cannot make.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise PortableRecipeError(f"seed must be an integer in [0, {MAX_SEED}]; got {seed!r}")
    if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid <= MAX_TID:
        raise PortableRecipeError(f"tid must be an integer in [0, {MAX_TID}]; got {tid!r}")
    if dtype not in DTYPES:
        raise PortableRecipeError(f"dtype must be one of {[str(d) for d in DTYPES]}; got {dtype}")
    plan = resolve_recipe(recipe, shape)
    if plan.family == "deterministic":
        return None
    shape = [int(d) for d in shape]
    bounds = normalize_slice(shape, slice)
    device = torch.device(device)
    out = torch.empty([b - a for a, b in bounds], dtype=dtype, device=device)
    if out.numel() == 0:
        return out
    flat = out.view(-1)
    stream = _Stream(seed, tid, device)
    for block in iter_blocks(shape, bounds, CHUNK):
        x = _values(plan, stream, block)
        dst = flat[block.pos : block.pos + block.count]
        dst.copy_(x if dtype == torch.float64 else x.to(torch.float32).to(dtype))
    if plan.family == "sparse":
        _zero_sparse(plan, stream, shape, bounds, out)
    return out


class _Stream:
    """Philox words of one (seed, tid) on one device, as int64 tensors holding 32-bit values."""

    def __init__(self, seed: int, tid: int, device: torch.device) -> None:
        k0, k1 = split_seed(seed)
        self.keys = [((k0 + r * W0) & MASK32, (k1 + r * W1) & MASK32) for r in range(ROUNDS)]
        self.tid = tid
        self.device = device

    def counters(self, j: torch.Tensor, k: int) -> torch.Tensor:
        """Philox4x32-10 of counters ``(j lo, j hi, tid, k)``: int64 words of shape (n, 4)."""
        c0 = j & MASK32
        c1 = j >> 32
        c2 = torch.full_like(j, self.tid)
        c3 = torch.full_like(j, k)
        for key0, key1 in self.keys:
            p0 = c0 * M0  # wraps mod 2^64
            p1 = c2 * M1
            c0, c1, c2, c3 = (
                ((p1 >> 32) & MASK32) ^ c1 ^ key0,
                p1 & MASK32,
                ((p0 >> 32) & MASK32) ^ c3 ^ key1,
                p0 & MASK32,
            )
        return torch.stack((c0, c1, c2, c3), dim=1)

    def words_range(self, start: int, count: int, k: int) -> torch.Tensor:
        j = torch.arange(start >> 2, ((start + count - 1) >> 2) + 1, dtype=torch.int64, device=self.device)
        off = start & 3
        return self.counters(j, k).reshape(-1)[off : off + count]

    def words_at(self, index: torch.Tensor, k: int) -> torch.Tensor:
        """Words at int64 flat ``index``; neighbours sharing a counter share its computation."""
        uj, row = torch.unique_consecutive(index >> 2, return_inverse=True)
        return self.counters(uj, k)[row, index & 3]

    def block_words(self, block: Block, k: int) -> torch.Tensor:
        if block.index is None:
            return self.words_range(block.start, block.count, k)
        return self.words_at(self._index(block), k)

    def _index(self, block: Block) -> torch.Tensor:
        return torch.from_numpy(block.index.astype(np.int64)).to(self.device)


def _horner(coef: tuple[float, ...], r: torch.Tensor) -> torch.Tensor:
    acc = r * coef[-1]
    acc.add_(coef[-2])
    for c in reversed(coef[:-2]):
        acc.mul_(r).add_(c)
    return acc


def _sqrt_(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float64 sqrt, in place (numpy's on CPU, see the module docstring)."""
    if x.device.type == "cpu":
        a = x.numpy()
        np.sqrt(a, out=a)
        return x
    return x.sqrt_()


def uniform_from_words(w: torch.Tensor) -> torch.Tensor:
    """``(w >> 8) * 2^-24`` in float64 (exact)."""
    return (w >> 8).to(torch.float64).mul_(TWO_M24)


def normal_from_words(w: torch.Tensor) -> torch.Tensor:
    """AS241 inverse CDF at ``(2w + 1) * 2^-33``, float64; the numpy core's steps, op for op."""
    n = w.to(torch.float64).mul_(2.0).add_(1.0)
    q = (n * TWO_M33).sub_(0.5)
    negative = q < 0.0
    central = q.abs() <= SPLIT

    r = torch.rsub(q * q, CENTRAL_R0)  # 0.180625 - q*q
    num = _horner(AS241_A, r).mul_(q)
    x = num.div_(_horner(AS241_B, r))

    m = torch.where(negative, n, torch.rsub(n, TWO_P33))
    rt = _sqrt_(_log_ratio(m).neg_()).sub_(TAIL_SHIFT)
    xt = _horner(AS241_C, rt).div_(_horner(AS241_D, rt))
    xt = torch.where(negative, xt.neg(), xt)
    return torch.where(central, x, xt)


def _log_ratio(m: torch.Tensor) -> torch.Tensor:
    """ln(m * 2^-33) as the numpy core's ``log_ratio``: frexp, a SQRT2 fold, atanh series."""
    f, ex = torch.frexp(m)
    f.mul_(2.0)
    big = f > SQRT2
    f = torch.where(big, f * 0.5, f)
    e = (ex.to(torch.int64) - 34 + big.to(torch.int64)).to(torch.float64)  # e - 33, exact
    s = (f - 1.0).div_(f + 1.0)
    g = _horner(LN_SERIES, s * s).mul_(s)
    return e.mul_(LN2).add_(g)


def _values(plan: PortablePlan, stream: _Stream, block: Block) -> torch.Tensor:
    """float64 values of one block."""
    w = stream.block_words(block, 0)
    if plan.family == "uniform":
        return uniform_from_words(w).mul_(plan.high - plan.low).add_(plan.low)
    x = normal_from_words(w)
    if plan.family == "truncated":
        _reject(plan, stream, block, x)
    return x.mul_(plan.std).add_(plan.mean)


def _reject(plan: PortablePlan, stream: _Stream, block: Block, x: torch.Tensor) -> None:
    alpha, beta = plan.alpha, plan.beta
    pending = torch.nonzero((x < alpha) | (x > beta)).flatten()
    if pending.numel() == 0:
        return
    if block.index is None:
        base = torch.tensor(block.start, dtype=torch.int64, device=x.device)
        index_of = lambda p: p + base  # noqa: E731
    else:
        full = stream._index(block)
        index_of = lambda p: full[p]  # noqa: E731
    k = 1
    while pending.numel():
        if k >= MAX_ATTEMPTS:
            raise RuntimeError(f"{pending.numel()} elements rejected {MAX_ATTEMPTS} times")
        xk = normal_from_words(stream.words_at(index_of(pending), k))
        ok = (xk >= alpha) & (xk <= beta)
        x[pending[ok]] = xk[ok]
        pending = pending[~ok]
        k += 1


def _zero_sparse(plan: PortablePlan, stream: _Stream, shape, bounds, out: torch.Tensor) -> None:
    """Zeros of ``sparse``: per column the ``num_zeros`` smallest attempt-1 words, ties to the
    smaller row (a stable sort), as ``service.portable.generate.sparse_zero_mask``."""
    rows, cols = shape
    (r0, r1), (c0, c1) = bounds
    nz = plan.num_zeros
    if nz <= 0:
        return
    if nz >= rows:
        out.zero_()
        return
    width = max(1, CHUNK // max(rows, 1))
    r = torch.arange(rows, dtype=torch.int64, device=out.device)
    for ca in range(c0, c1, width):
        cb = min(c1, ca + width)
        c = torch.arange(ca, cb, dtype=torch.int64, device=out.device)
        index = (r[:, None] * cols + c[None, :]).reshape(-1)
        w = stream.words_at(index, 1).reshape(rows, cb - ca)
        order = torch.sort(w, dim=0, stable=True).indices[:nz]
        mask = torch.zeros(rows, cb - ca, dtype=torch.bool, device=out.device)
        mask.scatter_(0, order, True)
        out[:, ca - c0 : cb - c0][mask[r0:r1]] = 0
