"""portable-v1 transforms: 32-bit Philox words to uniform and normal floats, in numpy.

Every step is an IEEE-754 binary64 ``+ − × ÷`` or ``sqrt`` rounded to nearest even, one ufunc
call per operation (numpy never fuses two calls into an FMA), so any language that rounds each
operation on its own gets the same bits. numpy's ``sqrt`` is the hardware's correctly rounded
one; torch's CPU ``sqrt`` is not (see ``service/engine/portable.py``).

Uniform, exact in float32 and float64::

    u = (w >> 8) * 2^-24                                   in [0, 1 − 2^-24]

Normal: the inverse normal CDF at the odd grid point ``p = (2w + 1) * 2^-33`` (Wichura 1988,
AS241 "PPND16", the same rational functions and coefficients as CPython's
``statistics._normal_dist_inv_cdf``)::

    n = 2w + 1;  p = n * 2^-33;  q = p − 0.5                 (all exact)
    |q| <= 0.425:  r = 0.180625 − q*q;  x = (q * A(r)) / B(r)
    otherwise:     m = n if q < 0 else 2^33 − n             (an exact odd integer)
                   L = ln(m * 2^-33)                        (``log_ratio`` below)
                   r = sqrt(−L) − 1.6;  x = C(r) / D(r);  x = −x if q < 0

Polynomials are Horner from the top coefficient (``acc = c7; acc = acc*r + c6; ...``). Since
``p >= 2^-33``, ``r <= 4.79`` and AS241's third region (r > 5) never occurs; ``|x| <= 6.338``.
The output is exactly antisymmetric: ``normal(w) == −normal(2^32 − 1 − w)``.

Truncation (``redraw_outside``): an element outside [alpha, beta] takes the normal of its
first attempt ``k = 1, 2, …`` inside. Sparse zeros (``sparse_zero_mask``): per column, the
rows with the smallest attempt-1 words. Rounding to the dtype: ``to_dtype``.

Example: ``normal_from_words(np.array([0x12345678], np.uint32)).astype(np.float32)`` has bits
``0xbfbbd932``.

Longer than the ~300 lines most modules keep to: the whole portable-v1 float transform (uniform, normal, truncated) in numpy, mirrored section by section by docs/portable-v1.md.
"""

from __future__ import annotations

import math

import numpy as np

from service.portable.philox import words_at, words_attempts

# AS241 PPND16, Wichura (1988), Applied Statistics 37(3) 477-484; lowest degree first.
# Central region |q| <= 0.425: x = q*A(r)/B(r), r = 0.180625 - q^2.
AS241_A = (
    3.387132872796366608,
    133.14166789178437745,
    1971.5909503065514427,
    13731.693765509461125,
    45921.953931549871457,
    67265.770927008700853,
    33430.575583588128105,
    2509.0809287301226727,
)
AS241_B = (
    1.0,
    42.313330701600911252,
    687.1870074920579083,
    5394.1960214247511077,
    21213.794301586595867,
    39307.89580009271061,
    28729.085735721942674,
    5226.495278852854561,
)
# Intermediate tail region: x = C(r)/D(r), r = sqrt(-ln(min(p, 1-p))) - 1.6.
AS241_C = (
    1.42343711074968357734,
    4.6303378461565452959,
    5.7694972214606914055,
    3.64784832476320460504,
    1.27045825245236838258,
    0.24178072517745061177,
    0.0227238449892691845833,
    7.7454501427834140764e-4,
)
AS241_D = (
    1.0,
    2.05319162663775882187,
    1.6763848301838038494,
    0.68976733498510000455,
    0.14810397642748007459,
    0.0151986665636164571966,
    5.475938084995344946e-4,
    1.05075007164441684324e-9,
)
SPLIT = 0.425  # |q| at or below it: central region
CENTRAL_R0 = 0.180625  # 0.425^2
TAIL_SHIFT = 1.6

# ln(1+s)-ln(1-s) = 2*atanh(s) = s * G(s^2), G(t) = sum 2/(2k+1) t^k; |s| <= 0.1716 (f in
# [SQRT2/2, SQRT2]), so ten terms leave a truncation error below 2^-60 relative.
LN_SERIES = tuple(2.0 / (2 * k + 1) for k in range(10))
LN2 = float.fromhex("0x1.62e42fefa39efp-1")  # 0x3FE62E42FEFA39EF, nearest double to ln 2
SQRT2 = float.fromhex("0x1.6a09e667f3bcdp+0")  # 0x3FF6A09E667F3BCD, nearest double to sqrt 2

MAX_ATTEMPTS = 2**32  # k is a 32-bit counter word
MAX_DRAWS_PER_PASS = 1 << 15  # rejection: attempts drawn in one pass, all pending elements

TWO_M24 = 2.0**-24
TWO_M33 = 2.0**-33
TWO_P33 = 2.0**33


def uniform_from_words(w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``u = (w >> 8) * 2^-24`` for uint32 words; float32 by default (exact in any float)."""
    if out is None:
        out = np.empty(w.shape, dtype=np.float32)
    np.right_shift(w, np.uint32(8), out=out, casting="unsafe")
    out *= TWO_M24
    return out


def _horner(coef: tuple[float, ...], r: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """``acc = coef[-1]; acc = acc*r + coef[i]`` down to ``coef[0]``, every op rounded."""
    np.multiply(r, coef[-1], out=acc)
    acc += coef[-2]
    for c in reversed(coef[:-2]):
        acc *= r
        acc += c
    return acc


class Workspace:
    """Scratch buffers for ``normal_from_words``, reused from chunk to chunk.

    Every step writes into these with ``out=``: allocating fresh 100 KiB+ temporaries for each
    chunk costs more in page faults than the arithmetic on many machines.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        f64 = [np.empty(capacity, dtype=np.float64) for _ in range(7)]
        self.n, self.q, self.r, self.acc, self.den, self.f, self.g = f64
        self.ex = np.empty(capacity, dtype=np.int32)
        self.negative = np.empty(capacity, dtype=bool)
        self.mask = np.empty(capacity, dtype=bool)
        self.neg_t = np.empty(capacity, dtype=bool)


def log_ratio(m: np.ndarray, ws: Workspace | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``L = ln(m * 2^-33)`` for odd integers ``1 <= m < 2^33`` held in float64, no libm.

    ``e = floor(log2 m)``, ``f = m * 2^-e`` (frexp, exact); if ``f > SQRT2``: ``f = f*0.5``,
    ``e = e + 1``; ``s = (f − 1)/(f + 1)``; ``L = (e − 33)*LN2 + G(s*s)*s``.
    """
    k = m.shape[0]
    if ws is None:
        ws = Workspace(k)
    f, g, ex, big = ws.f[:k], ws.g[:k], ws.ex[:k], ws.mask[:k]
    out = np.empty(k, dtype=np.float64) if out is None else out
    np.frexp(m, out=(f, ex))  # m = f * 2^ex with f in [0.5, 1): e = ex - 1, m*2^-e = 2f
    f *= 2.0
    np.greater(f, SQRT2, out=big)
    np.multiply(f, 0.5, out=f, where=big)
    ex -= 34  # e - 33
    ex += big
    np.subtract(f, 1.0, out=g)
    f += 1.0
    s = np.divide(g, f, out=g)  # s = (f-1)/(f+1)
    t = np.multiply(s, s, out=f)
    _horner(LN_SERIES, t, out)  # G(t)
    out *= s
    lead = np.multiply(ex, LN2, out=f)  # (e-33)*LN2, the int converted exactly
    out += lead
    return out


def normal_from_words(w: np.ndarray, out: np.ndarray | None = None, ws: Workspace | None = None) -> np.ndarray:
    """The AS241 normal of each uint32 word, float64 (see the module docstring)."""
    k = w.shape[0]
    if ws is None or ws.capacity < k:
        ws = Workspace(k)
    if out is None:
        out = np.empty(k, dtype=np.float64)
    n, q, r, acc, den = ws.n[:k], ws.q[:k], ws.r[:k], ws.acc[:k], ws.den[:k]
    negative, tail = ws.negative[:k], ws.mask[:k]
    np.multiply(w, 2.0, out=n)
    n += 1.0  # n = 2w + 1, exact
    np.multiply(n, TWO_M33, out=q)
    q -= 0.5  # q = p - 0.5, exact
    np.less(q, 0.0, out=negative)
    np.abs(q, out=r)
    np.greater(r, SPLIT, out=tail)

    # central region on every lane (a gather of the ~85% central lanes costs more than it saves)
    np.multiply(q, q, out=r)
    np.subtract(CENTRAL_R0, r, out=r)
    _horner(AS241_A, r, acc)
    acc *= q  # q*A(r)
    _horner(AS241_B, r, den)
    np.divide(acc, den, out=out)

    # tail region on the ~15% of lanes that need it
    idx = np.flatnonzero(tail)
    t = idx.size
    if t:
        nt = np.take(n, idx, out=ws.q[:t])  # q is no longer needed
        neg_t = np.take(negative, idx, out=ws.neg_t[:t])
        m = np.subtract(TWO_P33, nt, out=r[:t])
        np.copyto(m, nt, where=neg_t)  # m = n if q < 0 else 2^33 - n
        lnm = log_ratio(m, ws, out=acc[:t])
        np.negative(lnm, out=lnm)
        rt = np.sqrt(lnm, out=lnm)  # correctly rounded (IEEE sqrt)
        rt -= TAIL_SHIFT
        cden = _horner(AS241_D, rt, den[:t])
        cnum = _horner(AS241_C, rt, m)
        xt = np.divide(cnum, cden, out=cnum)
        np.negative(xt, out=xt, where=neg_t)
        out[idx] = xt
    return out


def affine(x: np.ndarray, mean: float, std: float, out: np.ndarray | None = None) -> np.ndarray:
    """``mean + std*x`` in float64: a multiply, then an add (never fused)."""
    out = np.multiply(x, std, out=out)
    out += mean
    return out


def uniform_affine(u: np.ndarray, a: float, b: float, out: np.ndarray | None = None) -> np.ndarray:
    """``a + (b − a)*u`` in float64: ``b − a`` first, then the multiply, then the add."""
    out = np.multiply(u, b - a, out=out, dtype=np.float64)
    out += a
    return out


def to_dtype(x: np.ndarray, dtype: str, out: np.ndarray) -> np.ndarray:
    """Round float64 ``x`` into ``out`` as portable-v1 does for ``dtype``.

    float64 keeps ``x``; float32 is nearest even; float16 is float64 → float32 → float16, each
    nearest even (numpy's casts); bfloat16 is float64 → float32, then the top 16 bits rounded to
    nearest even, stored as uint16 bit patterns (numpy has no bfloat16).
    """
    if dtype == "float64":
        np.copyto(out, x)
    elif dtype == "float32":
        np.copyto(out, x, casting="same_kind")
    elif dtype == "float16":
        np.copyto(out, x.astype(np.float32), casting="same_kind")
    elif dtype == "bfloat16":
        np.copyto(out, bfloat16_bits(x.astype(np.float32)))
    else:
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    return out


def bfloat16_bits(x32: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even.

    ``(bits + 0x7FFF + ((bits >> 16) & 1)) >> 16``, as torch's ``c10::BFloat16`` does; NaN keeps
    a quiet NaN (portable values are never NaN).
    """
    bits = x32.view(np.uint32).astype(np.uint64)
    lsb = (bits >> np.uint64(16)) & np.uint64(1)
    bits += np.uint64(0x7FFF)
    bits += lsb
    out = (bits >> np.uint64(16)).astype(np.uint16)
    nan = np.isnan(x32)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def redraw_outside(x, flat_index, seed: int, tid: int, alpha: float, beta: float, probability: float,
                   ws: Workspace | None = None) -> np.ndarray:
    """Truncation by rejection, in place: every ``x[p]`` outside ``[alpha, beta]`` becomes the
    normal of its first attempt ``k = 1, 2, …`` that falls inside.

    ``flat_index(positions)`` gives the flat element indices (uint64) of positions of ``x``.
    Attempt ``k`` of element ``i`` is the word of counter ``(i >> 2, ., tid, k)``, so each
    element depends on its own sub-stream only. A pass draws several attempts of every pending
    element (``attempts_per_pass``); that changes the number of passes, never the result.
    """
    pending = np.flatnonzero((x < alpha) | (x > beta))
    k = 1
    while pending.size:
        if k >= MAX_ATTEMPTS:
            raise RuntimeError(f"{pending.size} elements rejected {MAX_ATTEMPTS - 1} times")
        batch = attempts_per_pass(pending.size, probability, MAX_ATTEMPTS - k)
        w = words_attempts(seed, tid, k, batch, flat_index(pending))
        fits = ws is not None and w.size <= ws.capacity
        xk = normal_from_words(w.reshape(-1), ws=ws if fits else None).reshape(w.shape)
        ok = (xk >= alpha) & (xk <= beta)
        hit = ok.any(axis=1)
        first = ok.argmax(axis=1)
        rows = np.flatnonzero(hit)
        x[pending[rows]] = xk[rows, first[rows]]
        pending = pending[~hit]
        k += batch
    return x


def attempts_per_pass(pending: int, probability: float, left: int) -> int:
    """Attempts of each pending element one rejection pass draws: about 2/p (so a pass
    usually settles an element), at most ``MAX_DRAWS_PER_PASS`` draws and ``left`` attempts."""
    want = math.ceil(2.0 / probability) if probability > 0 else MAX_DRAWS_PER_PASS
    return max(1, min(want, MAX_DRAWS_PER_PASS // max(pending, 1), left))


def sparse_zero_mask(seed: int, tid: int, rows: int, cols: int, c0: int, c1: int, num_zeros: int) -> np.ndarray:
    """docs/api.md §3.1's sparse rule for columns ``c0 .. c1−1`` of a ``rows × cols`` weight:
    bool[rows, c1 − c0], True at the ``num_zeros`` rows of each column with the smallest key
    ``word(r*cols + c, attempt 1) * 2^32 + r`` (smallest word; ties to the smaller row)."""
    nc = c1 - c0
    if num_zeros <= 0:
        return np.zeros((rows, nc), dtype=bool)
    if num_zeros >= rows:
        return np.ones((rows, nc), dtype=bool)
    r = np.arange(rows, dtype=np.uint64)
    index = (r[:, None] * np.uint64(cols) + np.arange(c0, c1, dtype=np.uint64)[None, :]).reshape(-1)
    key = words_at(seed, tid, 1, index).astype(np.uint64).reshape(rows, nc)
    key <<= np.uint64(32)
    key |= r[:, None]
    kth = np.partition(key, num_zeros - 1, axis=0)[num_zeros - 1]
    return key <= kth[None, :]


DTYPES: dict[str, type] = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": np.uint16,
}
