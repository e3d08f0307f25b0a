"""The state of torch's CPU generator (32-bit MT19937): codec and jump-ahead.

Facts of torch 2.13's generator this module relies on (for the bit-identity ``docs/api.md`` §3
promises; ``tests/test_parallel_generation.py`` checks them against torch):

* ``Generator.get_state()`` is 5056 little-endian bytes (``_LAYOUT``): the full 64-bit initial seed,
  ``left``, ``seeded``, ``next``, the 624 state words widened to u64, then the cached double normal
  (``normal_y``/``normal_is_valid``) and the cached float normal. Padding bytes are zero.
* The engine draws with ``if (--left == 0) {twist; left = 624; next = 0}; return temper(state[next++])``.
  Seeding leaves ``left = 1, next = 0``, untwisted. After k >= 1 draws, k = 624q + r: the array has
  been twisted q+1 times with ``next = r, left = 625 - r`` if r > 0, else q times with
  ``left = 1, next = 624``.
* Window view: x_0..x_623 is the seeded array, x_{n+624} = x_{n+397} ^ f(x_n, x_{n+1}) with
  f(a, b) = ((a & 0x80000000) | (b & 0x7fffffff)) >> 1 ^ (b & 1)·0x9908b0df. One block twist maps the
  window W_n to W_{n+624}. With F the one-word step W_n -> W_{n+1}, F^J W = p(F) W for
  p = x^J mod c, c the characteristic polynomial of F (degree 19937, primitive, 135 terms).
* F kills the low 31 bits of word 0, so p(F) W can differ from F^J W only there; they are rebuilt
  from x_{n+623} ^ x_{n+396} = f(x_{n-1}, x_n). (Once twisted, those bits follow from the rest of
  the window and the identity is exact; the seeded array's x_0 does not, so jumps from a freshly
  seeded state need the fix whenever p has a constant term, e.g. x^(624·2^10) mod c.)

A jump by m blocks applies JT[i] = x^(624·2^i) mod c for each set bit i of m, each as one block
Horner pass (1.5–2 ms in numpy); the lowest ``DIRECT_TWIST_BITS`` bits of m are applied as plain
twists instead, which is cheaper for them. Everything here is numpy and Python ints; torch is only
used to seed an array and to load a state.

>>> g = generator_at(1234, 10**6)        # == torch.Generator().manual_seed(1234) after 10**6 draws

Longer than the ~300 lines most modules keep to: the generator's state, twist and jump-ahead polynomial arithmetic are one algorithm.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

N = 624  # words in the state array (one block)
M = 397  # the recurrence's middle offset
MATRIX_A = 0x9908B0DF
UPPER_MASK = 0x80000000
LOWER_MASK = 0x7FFFFFFF
DEGREE = 19937  # degree of the characteristic polynomial: 624·32 - 31
STATE_BYTES = 5056

# Measured on a 2-core EPYC (numpy 2.4): one twist takes about 23 µs and one table pass 1–1.8 ms,
# so bits below DIRECT_TWIST_BITS of a block count are applied as 2^k twists (at most 127 of them,
# 2.9 ms; bit 6 alone is a toss-up). ``jump_seconds`` turns these into a cost for chunk planning.
TWIST_S = 23e-6
PASS_S = 1.5e-3
DIRECT_TWIST_BITS = 7

_FIELDS: tuple[str, ...] = (
    "initial_seed", "left", "seeded", "next", "words", "normal_x", "normal_y",
    "normal_rho", "normal_is_valid", "float_normal", "float_normal_is_valid",
)
_LAYOUT = np.dtype(
    {
        "names": list(_FIELDS),
        "formats": ["<u8", "<i4", "<i4", "<u8", ("<u8", N), "<f8", "<f8", "<f8", "<i4", "<f4", "u1"],
        "offsets": [0, 8, 12, 16, 24, 5016, 5024, 5032, 5040, 5048, 5052],
        "itemsize": STATE_BYTES,
    }
)


@dataclass(frozen=True)
class MTState:
    """One decoded ``torch.Generator`` (CPU) state; ``words`` is a read-only uint32[624]."""

    initial_seed: int
    left: int
    next: int
    words: np.ndarray
    seeded: int = 1
    normal_x: float = 0.0
    normal_y: float = 0.0
    normal_rho: float = 0.0
    normal_is_valid: int = 0
    float_normal: float = 0.0
    float_normal_is_valid: int = 0


def decode_state(state: torch.Tensor) -> MTState:
    """Decode ``Generator.get_state()`` (a uint8 tensor of 5056 bytes) into an ``MTState``."""
    raw = state.detach().cpu().contiguous().numpy().tobytes()
    if len(raw) != STATE_BYTES:
        raise ValueError(f"a CPU generator state has {STATE_BYTES} bytes; got {len(raw)}")
    rec = np.frombuffer(raw, dtype=_LAYOUT)[0]
    words = rec["words"].astype(np.uint32)
    words.flags.writeable = False
    scalars = {name: rec[name].item() for name in _FIELDS if name != "words"}
    return MTState(words=words, **scalars)


def encode_state(state: MTState) -> torch.Tensor:
    """Encode an ``MTState`` as the uint8 tensor ``Generator.set_state`` takes (padding zeroed)."""
    rec = np.zeros(1, dtype=_LAYOUT)
    for field in _FIELDS:
        rec[field] = getattr(state, field)
    return torch.frombuffer(bytearray(rec.tobytes()), dtype=torch.uint8)


def twist(words: np.ndarray) -> np.ndarray:
    """One block step W_n -> W_{n+624}, as ATen's in-place twist, in four vectorised slices.

    new[i] = old[i+397] ^ f(old[i], old[i+1]) for i < 227; for 227 <= i < 623 the ``i+397`` word is
    already new (new[i-227]); new[623] = new[396] ^ f(old[623], new[0]). Linear over GF(2), so it
    also serves as F^624 on any linear combination of windows.
    """
    x = words
    y = np.empty(N, dtype=np.uint32)
    k = N - M  # 227
    y[:k] = x[M:] ^ _f(x[:k], x[1 : k + 1])
    y[k : 2 * k] = y[:k] ^ _f(x[k : 2 * k], x[k + 1 : 2 * k + 1])
    y[2 * k : N - 1] = y[k : N - 1 - k] ^ _f(x[2 * k : N - 1], x[2 * k + 1 : N])
    y[N - 1] = y[M - 1] ^ _f(x[N - 1 : N], y[0:1])[0]
    return y


def _f(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f(a, b) = ((a & UPPER) | (b & LOWER)) >> 1 ^ (b & 1)·MATRIX_A, elementwise on uint32."""
    mixed = ((a & np.uint32(UPPER_MASK)) | (b & np.uint32(LOWER_MASK))) >> np.uint32(1)
    return mixed ^ ((b & np.uint32(1)) * np.uint32(MATRIX_A))


def seeded_state(seed: int) -> MTState:
    """The state right after ``torch.Generator().manual_seed(seed)`` (torch does the seeding)."""
    return decode_state(torch.Generator().manual_seed(seed).get_state())


# --- characteristic polynomial and jump table (built once, lazily, under a lock) ------------------

_lock = threading.Lock()
_charpoly: list[int] = []  # [c] once computed; c as a Python int, bit k = coefficient of x^k
_table: list[np.ndarray] = []  # _table[i] = coefficients of x^(624·2^i) mod c, shape (32, 624)
_table_top: list[int] = []  # [the last table entry as an int], to square for the next one


def characteristic_polynomial() -> int:
    """c(x) of the one-word step F, by Berlekamp–Massey over 2·19937 state-word LSBs.

    Computed on first use (about 0.3 s in pure Python) and cached; its degree must be 19937.
    Any nonzero sequence works because c is primitive (x^(2^19937) = x mod c, checked in the note).
    """
    with _lock:
        if not _charpoly:
            _charpoly.append(_berlekamp_massey_charpoly())
        return _charpoly[0]


def _berlekamp_massey_charpoly() -> int:
    words = seeded_state(5489).words
    blocks = []
    for _ in range(-(-2 * DEGREE // N) + 1):
        words = twist(words)
        blocks.append(words & np.uint32(1))
    bits = np.concatenate(blocks)[: 2 * DEGREE].tolist()
    conn, prev, length, shift = 1, 1, 0, 1  # C(x), B(x), L, m of the textbook algorithm
    recent = 0  # bit i = s_{n-i}
    for n, s in enumerate(bits):
        recent = (recent << 1) | s
        if (conn & recent).bit_count() & 1:  # discrepancy d = sum c_i s_{n-i}
            saved = conn
            conn ^= prev << shift
            if 2 * length <= n:
                length, prev, shift = n + 1 - length, saved, 1
                continue
        shift += 1
    if length != DEGREE:
        raise RuntimeError(f"MT19937 recurrence must have linear complexity {DEGREE}; got {length}")
    # c(x) = x^L C(1/x): reverse the L+1 coefficients of the connection polynomial.
    return int(format(conn, f"0{length + 1}b")[::-1], 2)


# _SPREAD[b] puts bit k of the byte b at bit 2k: (sum p_k x^k)^2 = sum p_k x^(2k) over GF(2).
_SPREAD = np.array([sum(((b >> k) & 1) << (2 * k) for k in range(8)) for b in range(256)], "<u2")


def _square_mod(p: int, taps: tuple[int, ...]) -> int:
    """p(x)^2 mod c: spread the bits (squaring is linear over GF(2)), then fold by c's taps."""
    raw = np.frombuffer(p.to_bytes((p.bit_length() + 7) // 8 or 1, "little"), dtype=np.uint8)
    sq = int.from_bytes(_SPREAD[raw].tobytes(), "little")
    mask = (1 << DEGREE) - 1
    while high := sq >> DEGREE:
        sq &= mask
        for t in taps:
            sq ^= high << t
    return sq


def _coefficients(p: int) -> np.ndarray:
    """Bits of p as a (32, 624) uint8 array: row a holds the coefficients of x^(624a .. 624a+623)."""
    raw = np.frombuffer(p.to_bytes(N * 4, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little").reshape(32, N)


def jump_coefficients(i: int) -> np.ndarray:
    """JT[i] = x^(624·2^i) mod c as (32, 624) coefficient rows; the table grows on demand."""
    if i < len(_table):
        return _table[i]
    c = characteristic_polynomial()
    taps = tuple(k for k in range(DEGREE) if (c >> k) & 1)
    with _lock:
        while len(_table) <= i:
            poly = _square_mod(_table_top.pop(), taps) if _table_top else 1 << N
            _table.append(_coefficients(poly))
            _table_top.append(poly)
        return _table[i]


def _apply_polynomial(words: np.ndarray, coeff: np.ndarray) -> np.ndarray:
    """p(F) W by block Horner: p(F)W = sum_a F^(624a) (sum_b p_{624a+b} W_b), then fix word 0.

    W_b (b < 624) are the rows of a sliding window over x_0..x_1246, so each inner sum is one XOR
    reduction of selected rows; F^624 is ``twist``.
    """
    ext = np.concatenate([words, twist(words)])
    windows = sliding_window_view(ext[: 2 * N - 1], N)
    acc = np.zeros(N, dtype=np.uint32)
    for a in range(coeff.shape[0] - 1, -1, -1):
        acc = twist(acc)
        rows = np.flatnonzero(coeff[a])
        if rows.size:
            acc ^= np.bitwise_xor.reduce(windows[rows], axis=0)
    return _fix_word0(acc)


def _fix_word0(words: np.ndarray) -> np.ndarray:
    """Rebuild the low 31 bits of x_n from y = x_{n+623} ^ x_{n+396} = f(x_{n-1}, x_n).

    Bit 31 of y is lsb(x_n) (it says whether MATRIX_A was XORed in); without it, bits 0..29 of y are
    bits 1..30 of x_n.
    """
    y = int(words[N - 1] ^ words[M - 1])
    lsb = y >> 31
    if lsb:
        y ^= MATRIX_A
    out = words.copy()
    out[0] = (int(out[0]) & UPPER_MASK) | ((y << 1) & 0x7FFFFFFE) | lsb
    return out


def advance_words(words: np.ndarray, blocks: int) -> np.ndarray:
    """F^(624·blocks) W: the array after ``blocks`` more twists (read-only uint32[624])."""
    if blocks < 0:
        raise ValueError(f"a jump needs blocks >= 0; got blocks={blocks}")
    out = np.array(words, dtype=np.uint32)
    for _ in range(blocks & ((1 << DIRECT_TWIST_BITS) - 1)):
        out = twist(out)
    high, i = blocks >> DIRECT_TWIST_BITS, DIRECT_TWIST_BITS
    while high:
        if high & 1:
            out = _apply_polynomial(out, jump_coefficients(i))
        high, i = high >> 1, i + 1
    out.flags.writeable = False
    return out


def jump_seconds(blocks: int) -> float:
    """Estimated cost of ``advance_words(words, blocks)``: twists for the low bits, passes above."""
    low = blocks & ((1 << DIRECT_TWIST_BITS) - 1)
    return low * TWIST_S + (blocks >> DIRECT_TWIST_BITS).bit_count() * PASS_S


def jump(state: MTState, blocks: int) -> MTState:
    """Advance ``state`` by ``blocks``·624 draws: the array moves on ``blocks`` twists.

    ``left`` is kept; once the array has been twisted, ``next = 625 - left`` (for a freshly seeded
    state, ``left = 1, next = 0`` becomes ``left = 1, next = 624``). Caches are kept as they are:
    word draws never touch them.
    """
    if blocks == 0:
        return state
    words = advance_words(state.words, blocks)
    return dataclasses.replace(state, words=words, next=N + 1 - state.left)


class StreamCursor:
    """Positions on one seed's stream, each jumping on from the previous one, not from the seed.

    The state after ``draws`` has been twisted ceil(draws/624) times (see the module docstring), so
    moving from one position to a later one costs a jump by the difference of the twist counts.
    """

    def __init__(self, seed: int) -> None:
        self._seeded = seeded_state(seed)
        self._twists = 0
        self._words = self._seeded.words

    @property
    def twists(self) -> int:
        """How many times the cursor's array has been twisted (ceil(draws/624) of its position)."""
        return self._twists

    def state(self, draws: int) -> MTState:
        """The state after ``draws`` 32-bit draws (cheapest when positions only increase)."""
        if draws < 0:
            raise ValueError(f"draws must be >= 0; got draws={draws}")
        if draws == 0:
            return self._seeded
        twists = -(-draws // N)
        if twists < self._twists:
            self._twists, self._words = 0, self._seeded.words
        self._words = advance_words(self._words, twists - self._twists)
        self._twists = twists
        r = draws % N
        left, next_ = (1, N) if r == 0 else (N + 1 - r, r)
        return dataclasses.replace(self._seeded, words=self._words, left=left, next=next_)


def state_at(seed: int, draws: int) -> MTState:
    """The state of ``torch.Generator().manual_seed(seed)`` after ``draws`` 32-bit draws.

    draws = 624q + r: r = 0 needs q twists (``left = 1, next = 624``); r > 0 needs q + 1 twists with
    ``next = r, left = 625 - r``, so no draw is ever burnt.
    """
    return StreamCursor(seed).state(draws)


def generator_at(seed: int, draws: int) -> torch.Generator:
    """A CPU generator whose ``get_state()`` equals that of ``manual_seed(seed)`` after ``draws``."""
    return load_state(state_at(seed, draws))


def load_state(state: MTState) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` holding ``state``."""
    g = torch.Generator()
    g.set_state(encode_state(state))
    return g


def advance_state(state: MTState, draws: int) -> MTState:
    """``state`` after ``draws`` more 32-bit draws, from any state (seeded, jumped or loaded).

    ``left - 1`` draws are left in the current array; past them the array is twisted as from
    ``left = 1, next = 624`` (the same rule as ``StreamCursor.state``). Caches are kept: word draws
    never touch them.
    """
    if draws < 0:
        raise ValueError(f"draws must be >= 0; got draws={draws}")
    pre = state.left - 1
    if draws <= pre:
        return dataclasses.replace(state, left=state.left - draws, next=state.next + draws)
    rest = draws - pre
    words = advance_words(state.words, -(-rest // N))
    r = rest % N
    left, next_ = (1, N) if r == 0 else (N + 1 - r, r)
    return dataclasses.replace(state, words=words, left=left, next=next_)
