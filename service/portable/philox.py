"""Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3"), in numpy.

One call maps a 128-bit counter ``(c0, c1, c2, c3)`` and a 64-bit key ``(k0, k1)`` to four
32-bit words. Ten rounds; the key is bumped by the Weyl constants between rounds::

    (hi0, lo0) = M0 * c0          # the full 64-bit product of two 32-bit words
    (hi1, lo1) = M1 * c2
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    k = (k0 + W0 mod 2^32, k1 + W1 mod 2^32)

    M0 = 0xD2511F53  M1 = 0xCD9E8D57  W0 = 0x9E3779B9  W1 = 0xBB67AE85

as Random123's ``philox4x32_R(10, ctr, key)``; its known answer for counter 0, key 0 is
``6627e8d5 e169c58d bc57ac4c 9b00dbd8``.

portable-v1 layout (docs/api.md §3.1): key = (seed lo32, seed hi32); element ``i`` of tensor ``tid``,
attempt ``k`` is word ``i & 3`` of counter ``(j lo32, j hi32, tid, k)``, ``j = i >> 2``.

Products of two 32-bit words are exact in uint64, so ``>> 32`` and ``& 0xFFFFFFFF`` give hi and
lo. Work goes in blocks of ``BLOCK_COUNTERS`` counters so the scratch stays in cache.
"""

from __future__ import annotations

import numpy as np

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
ROUNDS = 10
MASK32 = 0xFFFFFFFF
BLOCK_COUNTERS = 4096  # six uint64 buffers of 32 KiB

_U64 = np.uint64
_MASK = np.uint64(MASK32)
_SHIFT = np.uint64(32)
_TWO = np.uint64(2)
_THREE = np.uint64(3)


def split_seed(seed: int) -> tuple[int, int]:
    """The Philox key of a seed in [0, 2^64 − 1]: ``(seed & 0xFFFFFFFF, seed >> 32)``."""
    return seed & MASK32, (seed >> 32) & MASK32


def round_keys(k0: int, k1: int) -> list[tuple[np.uint64, np.uint64]]:
    """The key of each of the ten rounds: ``(k0 + r*W0, k1 + r*W1) mod 2^32``, r = 0..9."""
    return [(_U64((k0 + r * W0) & MASK32), _U64((k1 + r * W1) & MASK32)) for r in range(ROUNDS)]


def _rounds(c0, c1, c2, c3, p0, p1, keys):
    """Ten rounds on the uint64 lanes ``c0..c3`` in their own buffers (``p0``, ``p1``: scratch).

    Returns the four output lanes: the same buffers, c0's and c2's swapped each round.
    """
    m0, m1 = _U64(M0), _U64(M1)
    for key0, key1 in keys:
        np.multiply(c0, m0, out=p0)  # hi0:lo0
        np.multiply(c2, m1, out=p1)  # hi1:lo1
        np.right_shift(p1, _SHIFT, out=c2)  # new c0 = hi1 ^ c1 ^ k0, in c2's buffer
        c2 ^= c1
        c2 ^= key0
        np.bitwise_and(p1, _MASK, out=c1)  # new c1 = lo1
        np.right_shift(p0, _SHIFT, out=c0)  # new c2 = hi0 ^ c3 ^ k1, in c0's buffer
        c0 ^= c3
        c0 ^= key1
        np.bitwise_and(p0, _MASK, out=c3)  # new c3 = lo0
        c0, c2 = c2, c0
    return c0, c1, c2, c3


class _Scratch:
    """The six block buffers of one call."""

    def __init__(self, size: int) -> None:
        self.bufs = [np.empty(size, dtype=_U64) for _ in range(6)]

    def lanes(self, m: int):
        return [b[:m] for b in self.bufs]


def philox4x32(c0, c1, c2, c3, k0: int, k1: int) -> np.ndarray:
    """Philox4x32-10 of counters given lane by lane: uint32 words of shape ``(n, 4)``.

    ``c0``..``c3`` are arrays or scalars of 32-bit values, broadcast together; ``k0``, ``k1``
    are ints. Row r holds the four words of counter r in order.

    >>> philox4x32(0, 0, 0, 0, 0, 0)[0].tolist() == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    True
    """
    lanes = [np.asarray(c, dtype=_U64).ravel() for c in np.broadcast_arrays(c0, c1, c2, c3)]
    n = lanes[0].shape[0]
    out = np.empty((n, 4), dtype=np.uint32)
    keys = round_keys(k0, k1)
    scratch = _Scratch(min(n, BLOCK_COUNTERS))
    for lo in range(0, n, BLOCK_COUNTERS):
        hi = min(n, lo + BLOCK_COUNTERS)
        x0, x1, x2, x3, p0, p1 = scratch.lanes(hi - lo)
        for x, lane in zip((x0, x1, x2, x3), lanes, strict=True):
            x[...] = lane[lo:hi]
        y = _rounds(x0, x1, x2, x3, p0, p1, keys)
        for col in range(4):
            out[lo:hi, col] = y[col]
    return out


def words_range(seed: int, tid: int, k: int, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
    """Words of the contiguous elements ``start .. start+count−1``, attempt ``k``: uint32[count]."""
    if out is None:
        out = np.empty(count, dtype=np.uint32)
    if count <= 0:
        return out
    keys = round_keys(*split_seed(seed))
    scratch = _Scratch(BLOCK_COUNTERS)
    block = np.empty((BLOCK_COUNTERS, 4), dtype=np.uint32)
    step = np.arange(BLOCK_COUNTERS, dtype=_U64)
    j = start >> 2
    j_end = ((start + count - 1) >> 2) + 1
    skip = start & 3  # words of the first counter before `start`
    pos = 0
    while j < j_end:
        m = min(BLOCK_COUNTERS, j_end - j)
        x0, x1, x2, x3, p0, p1 = scratch.lanes(m)
        np.add(step[:m], _U64(j), out=p0)  # j, exact below 2^64
        np.bitwise_and(p0, _MASK, out=x0)
        np.right_shift(p0, _SHIFT, out=x1)
        x2.fill(tid)
        x3.fill(k)
        y = _rounds(x0, x1, x2, x3, p0, p1, keys)
        blk = block[:m]
        for col in range(4):
            blk[:, col] = y[col]
        flat = blk.reshape(-1)[skip:]
        take = min(flat.shape[0], count - pos)
        out[pos : pos + take] = flat[:take]
        pos += take
        skip = 0
        j += m
    return out


def words_at(seed: int, tid: int, k: int, index: np.ndarray) -> np.ndarray:
    """Words of the elements at flat ``index`` (uint64), attempt ``k``: uint32, same length.

    Neighbouring indices that share a counter ``index >> 2`` share its computation, so a sorted
    dense index costs about a quarter of a counter per element; any order gives the same words.
    """
    index = np.asarray(index, dtype=_U64).ravel()
    if index.size == 0:
        return np.empty(0, dtype=np.uint32)
    j = index >> _TWO
    new = np.empty(j.shape, dtype=bool)
    new[0] = True
    np.not_equal(j[1:], j[:-1], out=new[1:])
    uj = j[new]
    row = np.cumsum(new) - 1
    k0, k1 = split_seed(seed)
    w = philox4x32(uj & _MASK, uj >> _SHIFT, _U64(tid), _U64(k), k0, k1)
    return w[row, (index & _THREE).astype(np.intp)]


def words_attempts(seed: int, tid: int, k: int, attempts: int, index: np.ndarray) -> np.ndarray:
    """Words of attempts ``k .. k+attempts−1`` of the elements at flat ``index``:
    uint32 of shape ``(len(index), attempts)`` (row: element, column: attempt)."""
    index = np.asarray(index, dtype=_U64).ravel()
    j = np.repeat(index >> _TWO, attempts)
    kk = np.tile(np.arange(k, k + attempts, dtype=_U64), index.shape[0])
    k0, k1 = split_seed(seed)
    w = philox4x32(j & _MASK, j >> _SHIFT, _U64(tid), kk, k0, k1)
    lane = np.repeat((index & _THREE).astype(np.intp), attempts)
    return w[np.arange(w.shape[0]), lane].reshape(index.shape[0], attempts)
