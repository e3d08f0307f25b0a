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

Longer than the ~300 lines most modules keep to: the torch engine of portable-v1, each transform mirroring service/portable/transforms.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from service.engine.dtypes import SERVED_TORCH
from service.portable.generate import MAX_SEED, MAX_TID, Block, iter_blocks, normalize_slice
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
    MAX_ATTEMPTS,
    SPLIT,
    SQRT2,
    TAIL_SHIFT,
    TWO_M24,
    TWO_M33,
    TWO_P33,
    attempts_per_pass,
)

CHUNK = 1 << 18  # elements per pass: about 24 MiB of scratch
DTYPES = SERVED_TORCH


def portable_fill(
    shape: Sequence[int],
    recipe: Mapping[str, object],
    seed: int,
    tid: int,
    dtype: torch.dtype,
    device: torch.device,
    slice: Sequence[tuple[int, int] | None] | None = None,  # shadows the builtin: the API's field name
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
    ws = _Work(min(CHUNK, out.numel()), device)
    stream = _Stream(seed, tid, device, ws)
    for block in iter_blocks(shape, bounds, CHUNK):
        x = _values(plan, stream, block, ws)
        dst = flat[block.pos : block.pos + block.count]
        dst.copy_(x if dtype == torch.float64 else x.to(torch.float32).to(dtype))
    if plan.family == "sparse":
        _zero_sparse(plan, stream, shape, bounds, out)
    return out


class _Work:
    """Scratch tensors for one chunk, reused: fresh multi-MiB temporaries for every op cost
    more in page faults than the arithmetic (every step below writes with ``out=``)."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.capacity = capacity
        counters = (capacity >> 2) + 2
        i64, f64 = torch.int64, torch.float64
        self.c = [torch.empty(counters, dtype=i64, device=device) for _ in range(6)]  # c0..c3, p0, p1
        self.words = torch.empty(counters, 4, dtype=i64, device=device)
        self.n, self.q, self.r, self.acc, self.den, self.f, self.g, self.t, self.x = (
            torch.empty(capacity, dtype=f64, device=device) for _ in range(9)
        )
        self.ex = torch.empty(capacity, dtype=torch.int32, device=device)
        self.negative, self.central, self.big = (
            torch.empty(capacity, dtype=torch.bool, device=device) for _ in range(3)
        )


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, c2, c3, k0: int, k1: int, ws: _Work | None = None
) -> torch.Tensor:
    """Philox4x32-10 on int64 lanes holding 32-bit values (``c2``, ``c3`` may be ints):
    int64 words of shape (n, 4), in ``ws``'s buffers when given."""
    m = c0.shape[0]
    if ws is None or ws.c[0].shape[0] < m:
        lanes = [torch.empty(m, dtype=torch.int64, device=c0.device) for _ in range(6)]
        words = torch.empty(m, 4, dtype=torch.int64, device=c0.device)
    else:
        lanes, words = [b[:m] for b in ws.c], ws.words[:m]
    x0, x1, x2, x3, p0, p1 = lanes
    x0.copy_(c0)
    x1.copy_(c1)
    x2.copy_(c2) if isinstance(c2, torch.Tensor) else x2.fill_(c2)
    x3.copy_(c3) if isinstance(c3, torch.Tensor) else x3.fill_(c3)
    for r in range(ROUNDS):
        key0, key1 = (k0 + r * W0) & MASK32, (k1 + r * W1) & MASK32
        torch.mul(x0, M0, out=p0)  # hi0:lo0, wrapping mod 2^64
        torch.mul(x2, M1, out=p1)  # hi1:lo1
        torch.bitwise_right_shift(p1, 32, out=x2)  # new c0 = hi1 ^ c1 ^ k0, in x2
        x2.bitwise_and_(MASK32).bitwise_xor_(x1).bitwise_xor_(key0)
        torch.bitwise_and(p1, MASK32, out=x1)  # new c1 = lo1
        torch.bitwise_right_shift(p0, 32, out=x0)  # new c2 = hi0 ^ c3 ^ k1, in x0
        x0.bitwise_and_(MASK32).bitwise_xor_(x3).bitwise_xor_(key1)
        torch.bitwise_and(p0, MASK32, out=x3)  # new c3 = lo0
        x0, x2 = x2, x0
    for col, lane in enumerate((x0, x1, x2, x3)):
        words[:, col] = lane
    return words


class _Stream:
    """Philox words of one (seed, tid) on one device, as int64 tensors holding 32-bit values."""

    def __init__(self, seed: int, tid: int, device: torch.device, ws: _Work) -> None:
        self.k0, self.k1 = split_seed(seed)
        self.tid = tid
        self.device = device
        self.ws = ws

    def counters(self, j: torch.Tensor, k) -> torch.Tensor:
        """Words of counters ``(j lo, j hi, tid, k)`` (``k`` an int or a tensor): (n, 4)."""
        return philox4x32(j & MASK32, j >> 32, self.tid, k, self.k0, self.k1, self.ws)

    def words_range(self, start: int, count: int, k: int) -> torch.Tensor:
        j0, j1 = start >> 2, ((start + count - 1) >> 2) + 1
        j = torch.arange(j0, j1, dtype=torch.int64, device=self.device)
        off = start & 3
        return self.counters(j, k).reshape(-1)[off : off + count]

    def words_at(self, index: torch.Tensor, k: int) -> torch.Tensor:
        """Words at int64 flat ``index``; neighbours sharing a counter share its computation."""
        uj, row = torch.unique_consecutive(index >> 2, return_inverse=True)
        return self.counters(uj, k)[row, index & 3]

    def words_attempts(self, index: torch.Tensor, k: int, attempts: int) -> torch.Tensor:
        """Words of attempts ``k .. k+attempts−1`` at ``index``: (len(index), attempts)."""
        j = torch.repeat_interleave(index >> 2, attempts)
        kk = torch.arange(k, k + attempts, dtype=torch.int64, device=self.device).repeat(index.shape[0])
        lane = torch.repeat_interleave(index & 3, attempts)
        w = self.counters(j, kk)
        return w[torch.arange(w.shape[0], device=self.device), lane].reshape(index.shape[0], attempts)

    def block_words(self, block: Block, k: int) -> torch.Tensor:
        if block.index is None:
            assert block.start is not None  # a block is a range or an index, never neither
            return self.words_range(block.start, block.count, k)
        return self.words_at(self._index(block), k)

    def _index(self, block: Block) -> torch.Tensor:
        assert block.index is not None
        return torch.from_numpy(block.index.astype(np.int64)).to(self.device)


def _horner(coef: tuple[float, ...], r: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """``acc = coef[-1]; acc = acc*r + coef[i]`` down to ``coef[0]``, each op rounded."""
    torch.mul(r, coef[-1], out=acc)
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


def uniform_from_words(w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``(w >> 8) * 2^-24`` in float64 (exact), into ``out``."""
    out.copy_(w >> 8)
    return out.mul_(TWO_M24)


def normal_from_words(
    w: torch.Tensor, out: torch.Tensor, ws: _Work | None = None, gather_tail: bool | None = None
) -> torch.Tensor:
    """AS241 inverse CDF at ``(2w + 1) * 2^-33``, float64; the numpy core's steps, op for op.

    With ``gather_tail`` (the default on CPU) the tail runs on its own ~15% of lanes; without
    it (the default on CUDA) both regions run on every lane and ``where`` picks (no
    data-dependent shapes, so no device sync). Both give the same bits.
    """
    k = w.shape[0]
    if ws is None or ws.capacity < k:
        ws = _Work(k, w.device)
    n, q, r, acc, den = ws.n[:k], ws.q[:k], ws.r[:k], ws.acc[:k], ws.den[:k]
    negative, central = ws.negative[:k], ws.central[:k]
    n.copy_(w).mul_(2.0).add_(1.0)  # 2w + 1, exact
    torch.mul(n, TWO_M33, out=q).sub_(0.5)  # q = p - 0.5, exact
    torch.lt(q, 0.0, out=negative)
    torch.abs(q, out=r)
    torch.le(r, SPLIT, out=central)

    torch.mul(q, q, out=r)
    r.neg_().add_(CENTRAL_R0)  # 0.180625 - q*q (x - y is exactly x + (-y))
    _horner(AS241_A, r, acc).mul_(q)  # q*A(r)
    torch.div(acc, _horner(AS241_B, r, den), out=out)

    if gather_tail is None:
        gather_tail = out.device.type == "cpu"
    if gather_tail:
        idx = torch.nonzero(torch.logical_not(central)).flatten()
        t = idx.numel()
        if t:
            nt = torch.index_select(n, 0, idx, out=q[:t])  # q is free now
            xt = _tail(nt, torch.index_select(negative, 0, idx), ws, t)
            out.index_copy_(0, idx, xt)
        return out
    xt = _tail(n, negative, ws, k)  # every lane, picked by where: no data-dependent shapes
    torch.where(central, out, xt, out=out)
    return out


def _tail(n: torch.Tensor, negative: torch.Tensor, ws: _Work, k: int) -> torch.Tensor:
    """C(r)/D(r) with r = sqrt(-ln(m * 2^-33)) - 1.6, m = n if q < 0 else 2^33 - n; negated
    where q < 0. Returns a view of ``ws.den``."""
    m = ws.r[:k]
    torch.neg(n, out=m).add_(TWO_P33)
    torch.where(negative, n, m, out=m)
    rt = _sqrt_(_log_ratio(m, ws, k).neg_()).sub_(TAIL_SHIFT)  # in ws.t
    acc, den = ws.acc[:k], ws.den[:k]
    cnum = _horner(AS241_C, rt, acc)
    xt = torch.div(cnum, _horner(AS241_D, rt, den), out=acc)
    return _neg_where(xt, negative, den)  # -x where q < 0


def _neg_where(x: torch.Tensor, mask: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    torch.neg(x, out=scratch)
    return torch.where(mask, scratch, x, out=scratch)


def _log_ratio(m: torch.Tensor, ws: _Work, k: int) -> torch.Tensor:
    """ln(m * 2^-33) as the numpy core's ``log_ratio``: frexp, a SQRT2 fold, atanh series.

    Uses ``ws.f``, ``ws.g``, ``ws.ex``, ``ws.big``; the result is in ``ws.t``.
    """
    f, g, t, ex, big = ws.f[:k], ws.g[:k], ws.t[:k], ws.ex[:k], ws.big[:k]
    torch.frexp(m, out=(f, ex))  # m = f * 2^ex, f in [0.5, 1): e = ex - 1, m*2^-e = 2f
    f.mul_(2.0)
    torch.gt(f, SQRT2, out=big)
    torch.mul(f, 0.5, out=g)
    torch.where(big, g, f, out=f)
    ex.sub_(34).add_(big)  # e - 33
    torch.sub(f, 1.0, out=g)
    f.add_(1.0)
    s = g.div_(f)  # s = (f-1)/(f+1)
    torch.mul(s, s, out=f)
    _horner(LN_SERIES, f, t).mul_(s)  # G(s*s)*s
    f.copy_(ex)  # e - 33 as float64, exact
    return t.add_(f.mul_(LN2))


def _values(plan: PortablePlan, stream: _Stream, block: Block, ws: _Work) -> torch.Tensor:
    """float64 values of one block, in ``ws.x``."""
    x = ws.x[: block.count]
    w = stream.block_words(block, 0)
    # resolve_recipe sets the fields of the plan's family; the asserts say so to the type checker
    if plan.family == "uniform":
        assert plan.low is not None and plan.high is not None
        return uniform_from_words(w, x).mul_(plan.high - plan.low).add_(plan.low)
    normal_from_words(w, x, ws)
    if plan.family == "truncated":
        _reject(plan, stream, block, x)
    assert plan.mean is not None and plan.std is not None
    return x.mul_(plan.std).add_(plan.mean)


def _reject(plan: PortablePlan, stream: _Stream, block: Block, x: torch.Tensor) -> None:
    """The numpy core's rejection: attempts k = 1, 2, … per element, several a pass."""
    alpha, beta, probability = plan.alpha, plan.beta, plan.probability
    assert alpha is not None and beta is not None and probability is not None  # the truncated family's
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
            raise RuntimeError(f"{pending.numel()} elements rejected {MAX_ATTEMPTS - 1} times")
        batch = attempts_per_pass(pending.numel(), probability, MAX_ATTEMPTS - k)
        w = stream.words_attempts(index_of(pending), k, batch)
        xk = torch.empty(w.numel(), dtype=torch.float64, device=x.device)
        xk = normal_from_words(w.reshape(-1), xk, stream.ws).reshape(w.shape)
        ok = (xk >= alpha) & (xk <= beta)
        hit = ok.any(dim=1)
        first = ok.to(torch.uint8).argmax(dim=1)
        rows = torch.nonzero(hit).flatten()
        x[pending[rows]] = xk[rows, first[rows]]
        pending = pending[~hit]
        k += batch


def _zero_sparse(plan: PortablePlan, stream: _Stream, shape, bounds, out: torch.Tensor) -> None:
    """Zeros of ``sparse``: per column the ``num_zeros`` smallest attempt-1 words, ties to the
    smaller row (a stable sort), as ``service.portable.transforms.sparse_zero_mask``."""
    rows, cols = shape
    (r0, r1), (c0, c1) = bounds
    nz = plan.num_zeros
    assert nz is not None  # set for the sparse family
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
