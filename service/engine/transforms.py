"""torch's CPU ``uniform_`` at selected positions of its MT19937 stream, skipping the rest cheaply.

A shard of an inner dimension (``full[:, 1024:2048]`` of ``[4096, 8192]``) is many short runs of
the flat index space with gaps shorter than a jump is worth, so ``slices`` generates through the
gaps with torch: as costly as the whole tensor. Here a small C kernel walks the stream instead. It
advances the 624-word array by block twists (about 0.1 ns a word; tempering, the float transform
and the store are what cost torch ~2 ns an element) and tempers and transforms only the words of
the runs. Threads take disjoint spans of the runs, each from a generator state jumped to its first
draw (``mt19937.state_at``); ctypes releases the GIL during the call.

The transforms restate ATen (``cpu/DistributionTemplates.h`` ``uniform_kernel``,
``core/TransformationHelper.h`` ``uniform_real``; torch 2.13):

* float32: ``x = (float)(w & (2^24 - 1)) · 2^-24`` (exact), ``x · (to - from) + from`` in float with
  ``from``/``to`` cast to float first.
* float64: ``v = random64 = (first << 32 | second)``, ``x = (double)(v & (2^53 - 1)) · 2^-53``,
  ``x · (to - from) + from`` in double.
* then a value that rounded up to ``to`` becomes ``from`` (the result stays in [from, to)).

Whether the last step is one fused multiply-add depends on how torch's kernel was compiled for this
CPU capability (GCC contracts it where FMA is enabled), so ``_fused_mode`` probes torch once with
operands whose fused and unfused results differ, and the kernel computes exactly that form (it is
built with ``-ffp-contract=off`` and calls ``fma``/``fmaf`` explicitly). ``chunked.self_test``
then checks the whole path against serial torch; on a mismatch, without a C compiler, or with
``INITSVC_NATIVE_SELECT=0`` the service keeps the torch path (``slices``).

Not served here (they keep the torch path, which is exact): ``normal_`` (its AVX2 Box–Muller uses
avx_mathfun's log/sincos polynomials, whose fused operations follow the compiler's contraction
choices in torch's build) and float16/bfloat16 ``uniform_`` (reduced-precision ``to - from``,
a cast and a clamp).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from service.engine import mt19937

log = logging.getLogger(__name__)

# (op, dtype) pairs the kernel serves; everything else stays on the torch path.
SERVED: frozenset[tuple[str, torch.dtype]] = frozenset({("uniform", torch.float32), ("uniform", torch.float64)})

# A jump (10–20 ms in numpy) pays for itself against skipping at ~0.1 ns a word only past ~10^8 words.
JUMP_MIN_DRAWS = 1 << 27
# Spans shorter than this many draws are not split between threads (a jump costs ~10 ms).
THREAD_MIN_DRAWS = 1 << 24

_SOURCE = r"""
#include <stdint.h>
#include <math.h>

#define MT_N 624
#define MT_M 397

static inline uint32_t mix(uint32_t u, uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

/* One block twist of the 624-word array, in place, in the order ATen's next_state() uses. */
static void twist(uint32_t *s) {
    int k;
    for (k = 0; k < MT_N - MT_M; k++) s[k] = s[k + MT_M] ^ mix(s[k], s[k + 1]);
    for (; k < MT_N - 1; k++) s[k] = s[k + MT_M - MT_N] ^ mix(s[k], s[k + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ mix(s[MT_N - 1], s[0]);
}

static inline uint32_t temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* The stream: s[624] and pos, the index of the next word (pos == 624: twist first). */
static inline uint32_t draw(uint32_t *s, int64_t *pos) {
    if (*pos == MT_N) { twist(s); *pos = 0; }
    return temper(s[(*pos)++]);
}

static void skip(uint32_t *s, int64_t *pos, int64_t k) {
    int64_t room = MT_N - *pos;
    if (k <= room) { *pos += k; return; }
    k -= room;
    *pos = MT_N;
    while (k > MT_N) { twist(s); k -= MT_N; }
    twist(s);
    *pos = k;
}

/* Segments i = 0..nseg-1: skip to draw starts[i] (counted from the stream position on entry,
   increasing, not overlapping), then write lens[i] elements to out, one after another.
   mode 0: float32 uniform, 1 draw each; mode 1: float64 uniform, 2 draws each (random64, first
   draw = high half). fused: x * range + from as one fma (1) or as a product then a sum (0).
   Returns the draws consumed (the final stream position). */
int64_t select_uniform(uint32_t *s, int64_t pos, const int64_t *starts, const int64_t *lens,
                       int64_t nseg, int mode, int fused, double from, double to, void *out) {
    int64_t at = 0;
    if (mode == 0) {
        float *o = (float *)out;
        const float f = (float)from, t = (float)to;
        const float range = t - f;
        const float div = 1.0f / 16777216.0f;
        for (int64_t i = 0; i < nseg; i++) {
            skip(s, &pos, starts[i] - at);
            at = starts[i];
            int64_t n = lens[i];
            for (int64_t j = 0; j < n; j++) {
                float x = (float)(draw(s, &pos) & 0xffffffu) * div;
                float p;
                if (fused) { p = fmaf(x, range, f); } else { p = x * range; p = p + f; }
                *o++ = p == t ? f : p;
            }
            at += n;
        }
    } else {
        double *o = (double *)out;
        const double range = to - from;
        const double div = 1.0 / 9007199254740992.0;
        for (int64_t i = 0; i < nseg; i++) {
            skip(s, &pos, starts[i] - at);
            at = starts[i];
            int64_t n = lens[i];
            for (int64_t j = 0; j < n; j++) {
                uint64_t hi = draw(s, &pos);
                uint64_t lo = draw(s, &pos);
                double x = (double)(((hi << 32) | lo) & ((1ull << 53) - 1)) * div;
                double p;
                if (fused) { p = fma(x, range, from); } else { p = x * range; p = p + from; }
                *o++ = p == to ? from : p;
            }
            at += 2 * n;
        }
    }
    return at;
}
"""

_lock = threading.Lock()
_lib: list[ctypes.CDLL | None] = []  # [] not tried yet; [None] unavailable
_reason: list[str] = []
_fused: dict[torch.dtype, int] = {}


def _build() -> ctypes.CDLL | None:
    if os.environ.get("INITSVC_NATIVE_SELECT", "1") == "0":
        _reason.append("disabled by INITSVC_NATIVE_SELECT=0")
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        _reason.append("no C compiler found")
        return None
    flags = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]
    tag = hashlib.sha256((_SOURCE + " ".join(flags) + sys.platform).encode()).hexdigest()[:16]
    folder = tempfile.mkdtemp(prefix="initsvc-select-")
    src, lib = os.path.join(folder, f"select_{tag}.c"), os.path.join(folder, f"select_{tag}.so")
    with open(src, "w") as fh:
        fh.write(_SOURCE)
    try:
        done = subprocess.run([cc, *flags, src, "-o", lib, "-lm"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _reason.append(f"compiling the selection kernel failed: {exc}")
        return None
    if done.returncode != 0:
        _reason.append(f"compiling the selection kernel failed: {done.stderr.strip()[:300]}")
        return None
    handle = ctypes.CDLL(lib)
    fn = handle.select_uniform
    fn.restype = ctypes.c_int64
    fn.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double, ctypes.c_void_p,
    ]
    return handle


def library() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use, into a temporary folder), or ``None``."""
    with _lock:
        if not _lib:
            try:
                _lib.append(_build())
            except Exception as exc:  # noqa: BLE001 - any failure means "use the torch path"
                _reason.append(f"loading the selection kernel failed: {exc}")
                _lib.append(None)
            if _lib[0] is None:
                log.info("selected-draw kernel unavailable: %s", "; ".join(_reason))
        return _lib[0]


def unavailable_reason() -> str | None:
    """Why the kernel is not in use, or ``None`` when it is built."""
    return None if library() is not None else "; ".join(_reason) or "unavailable"


def serves(op: str, dtype: torch.dtype) -> bool:
    """Whether (op, dtype) has a kernel transform (the self-test still has to pass)."""
    return (op, dtype) in SERVED and library() is not None


def _fused_mode(dtype: torch.dtype) -> int:
    """1 if torch's ``uniform_`` computes ``x·(to - from) + from`` as one fma on this host, else 0.

    Probe: ranges (-0.3, 0.3) and (-3, 7.5), where the product x·range has more bits than the
    format keeps, so fused and unfused roundings differ for about half the draws (measured: 2050
    and 1646 of 4096 in float32). The pattern that matches every element of both wins (else -1).
    """
    with _lock:
        if dtype in _fused:
            return _fused[dtype]
    n, found = 4096, -1
    for fused in (1, 0):
        same = True
        for lo, hi in ((-0.3, 0.3), (-3.0, 7.5)):
            expected = torch.empty(n, dtype=dtype).uniform_(lo, hi, generator=torch.Generator().manual_seed(7))
            got = torch.empty(n, dtype=dtype)
            _call(mt19937.state_at(7, 0), np.array([0]), np.array([n]), dtype, fused, lo, hi, got)
            same = same and torch.equal(got.view(torch.uint8), expected.view(torch.uint8))
        if same:
            found = fused
            break
    with _lock:
        _fused[dtype] = found
    return found


def _call(
    state: mt19937.MTState,
    starts: np.ndarray,
    lens: np.ndarray,
    dtype: torch.dtype,
    fused: int,
    lo: float,
    hi: float,
    out: torch.Tensor,
) -> None:
    """Run the kernel from ``state`` (draw offsets ``starts`` relative to it) into contiguous ``out``."""
    lib = library()
    assert lib is not None
    words = np.array(state.words, dtype=np.uint32)  # the kernel twists its own copy
    pos = mt19937.N if state.left == 1 else state.next
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lens = np.ascontiguousarray(lens, dtype=np.int64)
    mode = 0 if dtype == torch.float32 else 1
    lib.select_uniform(
        words.ctypes.data, pos, starts.ctypes.data, lens.ctypes.data, starts.size,
        mode, fused, lo, hi, out.data_ptr(),
    )


def fill_runs_uniform(
    out_flat: torch.Tensor,
    run_starts: np.ndarray,
    length: int,
    p1: float,
    p2: float,
    seed: int,
    base_draws: int,
    threads: int = 1,
    thread_min_draws: int = THREAD_MIN_DRAWS,
) -> bool:
    """Fill contiguous 1-D ``out_flat`` with ``full.flatten()[s : s + length]`` for each run start
    s (increasing, disjoint), ``full`` being ``uniform_(p1, p2)`` from ``manual_seed(seed)`` after
    ``base_draws`` draws. Returns ``False`` (and writes nothing) when the kernel cannot serve it.
    """
    dtype = out_flat.dtype
    if not serves("uniform", dtype) or length == 0 or run_starts.size == 0:
        return False
    fused = _fused_mode(dtype)
    if fused < 0:
        return False
    d = 2 if dtype == torch.float64 else 1
    segs = _segments(np.asarray(run_starts, dtype=np.int64), length, d, max(1, threads), thread_min_draws)

    def work(seg: tuple[int, np.ndarray, np.ndarray, int]) -> None:
        first, starts, lens, offset = seg
        state = mt19937.state_at(seed, base_draws + d * first)
        total = int(lens.sum())
        _call(state, d * (starts - first), lens, dtype, fused, p1, p2, out_flat[offset : offset + total])

    if len(segs) == 1:
        work(segs[0])
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(segs)), thread_name_prefix="initsvc-select") as pool:
            for f in [pool.submit(work, s) for s in segs]:
                f.result()
    return True


def _segments(
    run_starts: np.ndarray, length: int, d: int, threads: int, thread_min_draws: int
) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
    """Split the runs into spans (first element, segment starts, segment lengths, out offset).

    A new span starts where a gap is worth a jump (``JUMP_MIN_DRAWS``); each span is cut into up to
    ``threads`` parts of about equal draw count, each of at least ``thread_min_draws`` draws (a
    run may be split between two parts).
    """
    ends = run_starts + length
    gaps = run_starts[1:] - ends[:-1]
    splits = [0, *(np.flatnonzero(gaps * d >= JUMP_MIN_DRAWS) + 1).tolist(), run_starts.size]
    spans: list[tuple[int, np.ndarray, np.ndarray, int]] = []
    for lo, hi in zip(splits, splits[1:]):
        s, e = int(run_starts[lo]), int(ends[hi - 1])
        parts = max(1, min(threads, (e - s) * d // max(1, thread_min_draws)))
        cuts = [s + (e - s) * k // parts for k in range(parts)] + [e]
        starts, stops = run_starts[lo:hi], ends[lo:hi]
        for a, b in zip(cuts, cuts[1:]):
            seg_starts = np.clip(starts, a, b)
            seg_stops = np.clip(stops, a, b)
            keep = seg_stops > seg_starts
            if not keep.any():
                continue
            seg_starts, seg_stops = seg_starts[keep], seg_stops[keep]
            offset = lo * length + _elements_before(starts, stops, a)
            spans.append((int(seg_starts[0]), seg_starts, seg_stops - seg_starts, offset))
    return spans


def _elements_before(starts: np.ndarray, stops: np.ndarray, x: int) -> int:
    """How many run elements of this span lie before flat index x."""
    return int((np.clip(stops, None, x) - starts).clip(min=0).sum())
