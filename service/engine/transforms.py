"""torch's CPU ``uniform_``/``normal_`` at selected positions of its MT19937 stream; the rest is skipped.

A shard of an inner dimension (``full[:, 1024:2048]`` of ``[4096, 8192]``) is many short runs of
the flat index space with gaps shorter than a jump is worth, so ``slices`` generates through the
gaps with torch: as costly as the whole tensor. Here a small C kernel walks the stream instead. It
advances the 624-word array by block twists (about 0.1 ns a word; tempering, the float transform
and the store are what cost torch ~2 ns an element) and tempers and transforms only the words of
the runs (for ``normal_``, the 16-element blocks that hold them). Threads take disjoint spans of
the runs, each from a generator state jumped to its first draw (``mt19937.state_at``); ctypes
releases the GIL during the call. Gaps of ``JUMP_MIN_DRAWS`` or more start a new span (a jump).

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

* float32 ``normal_`` (n >= 16, ``normal_fill_AVX2``): the uniforms of a 16-element block are
  ``uniform(0, 1)`` of its 16 draws (block b: draws 16b..16b+15; if n % 16 != 0 elements
  [n - 16, n) come from 16 more draws after all n); then Box–Muller on pairs (j, j + 8) with
  avx_mathfun's Cephes log and sincos polynomials. ``box_muller16`` restates that arithmetic lane by
  lane, with ``fmaf`` where GCC contracts a multiply that feeds an add in torch's AVX2 build (the
  Horner steps, ``y·z + e·q1`` with ``y·z`` fused, the ``DP1..DP3`` reduction, ``y·z - z/2``,
  ``y2·x + x``). Measured on 8M elements: these choices match torch, and the two alternatives for the
  ambiguous steps do not. A host whose torch computes ``normal_`` otherwise (e.g. the scalar path
  of ``ATEN_CPU_CAPABILITY=default``, which calls libm) fails the self-test and keeps torch.

Not served here (they keep the torch path, which is exact): float64 ``normal_`` (scalar libm
``log``/``cos``/``sin``, not reproducible without that libm), float16/bfloat16 (reduced-precision
``to - from``, casts and clamps), and ``normal_`` with n < 16 (``normal_distribution<double>``).

Longer than the ~300 lines most modules keep to: the selection kernel's C source, its loader and its self-test against torch belong together.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
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
SERVED: frozenset[tuple[str, torch.dtype]] = frozenset(
    {("uniform", torch.float32), ("uniform", torch.float64), ("normal", torch.float32)}
)

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

/* The next n words of the stream, tempered, into w: a block at a time, so the loops vectorize. */
static void draw_words(uint32_t *s, int64_t *pos, int64_t n, uint32_t *w) {
    while (n > 0) {
        if (*pos == MT_N) { twist(s); *pos = 0; }
        int64_t m = MT_N - *pos;
        if (m > n) m = n;
        const uint32_t *from = s + *pos;
        for (int64_t j = 0; j < m; j++) w[j] = temper(from[j]);
        w += m; *pos += m; n -= m;
    }
}

/* n float32 uniforms into o, a block of the state at a time (the loops vectorize). */
static void uniform_f32_run(uint32_t *s, int64_t *pos, int64_t n, int fused, float f, float t, float *o) {
    const float range = t - f;
    const float div = 1.0f / 16777216.0f;
    while (n > 0) {
        if (*pos == MT_N) { twist(s); *pos = 0; }
        int64_t m = MT_N - *pos;
        if (m > n) m = n;
        const uint32_t *w = s + *pos;
        if (fused) {
            for (int64_t j = 0; j < m; j++) {
                float x = (float)(int32_t)(temper(w[j]) & 0xffffffu) * div;
                float p = fmaf(x, range, f);
                o[j] = p == t ? f : p;
            }
        } else {
            for (int64_t j = 0; j < m; j++) {
                float x = (float)(int32_t)(temper(w[j]) & 0xffffffu) * div;
                float p = x * range;
                p = p + f;
                o[j] = p == t ? f : p;
            }
        }
        o += m; *pos += m; n -= m;
    }
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
        for (int64_t i = 0; i < nseg; i++) {
            skip(s, &pos, starts[i] - at);
            at = starts[i];
            int64_t n = lens[i];
            uniform_f32_run(s, &pos, n, fused, f, t, o);
            o += n;
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
static inline uint32_t fbits(float f) { union { float f; uint32_t u; } v; v.f = f; return v.u; }
static inline float bitsf(uint32_t u) { union { float f; uint32_t u; } v; v.u = u; return v.f; }

/* The Box-Muller step of ATen's normal_fill_16_AVX2 for one 16-element block, lane by lane:
   u1 = 1 - U[j], u2 = U[j + 8]; radius = sqrt(-2 log u1); theta = 2pi u2;
   out[j] = fma(radius cos theta, std, mean), out[j + 8] = fma(radius sin theta, std, mean).
   log and sincos are the Cephes single-precision polynomials (as in avx_mathfun); each fmaf below
   stands where a multiply feeds an add in that code (GCC contracts those where FMA is enabled). */
static void box_muller16(const float *u, float mean, float std, float *out) {
    for (int j = 0; j < 8; j++) {
        /* log(u1), u1 in [2^-24, 1] */
        float u1 = 1.0f - u[j];
        uint32_t b = fbits(u1 > 1.17549435e-38f ? u1 : 1.17549435e-38f); /* _mm256_max_ps(u1, min) */
        float e = (float)((int32_t)(b >> 23) - 127);
        float m = bitsf((b & ~0x7f800000u) | 0x3f000000u);
        e = e + 1.0f;
        uint32_t lt = -(uint32_t)(m < (float)0.707106781186547524); /* all ones or zero */
        float keep = bitsf(fbits(m) & lt);
        m = m - 1.0f;
        e = e - bitsf(fbits(1.0f) & lt);
        m = m + keep;
        float z = m * m;
        float y = (float)7.0376836292E-2;
        y = fmaf(y, m, (float)-1.1514610310E-1);
        y = fmaf(y, m, (float)1.1676998740E-1);
        y = fmaf(y, m, (float)-1.2420140846E-1);
        y = fmaf(y, m, (float)1.4249322787E-1);
        y = fmaf(y, m, (float)-1.6668057665E-1);
        y = fmaf(y, m, (float)2.0000714765E-1);
        y = fmaf(y, m, (float)-2.4999993993E-1);
        y = fmaf(y, m, (float)3.3333331174E-1);
        y = y * m;
        y = fmaf(y, z, e * (float)-2.12194440e-4); /* y*z fused, e*q1 rounded first */
        y = fmaf(-z, 0.5f, y);
        float lg = fmaf(e, 0.693359375f, m + y);
        float radius = sqrtf(-2.0f * lg);

        /* sincos(theta), theta in [0, 2pi) */
        float x = (float)(2.0 * 3.14159265358979323846) * u[j + 8];
        uint32_t sign_sin = fbits(x) & 0x80000000u;
        x = bitsf(fbits(x) & 0x7fffffffu);
        int32_t q = (int32_t)(x * (float)1.27323954473516);
        q = (q + 1) & ~1;
        float yq = (float)q;
        uint32_t swap_sin = ((uint32_t)(q & 4)) << 29;
        uint32_t poly = -(uint32_t)((q & 2) == 0);
        x = fmaf(yq, -0.78515625f, x);
        x = fmaf(yq, (float)-2.4187564849853515625e-4, x);
        x = fmaf(yq, (float)-3.77489497744594108e-8, x);
        uint32_t sign_cos = ((uint32_t)(~(q - 2) & 4)) << 29;
        sign_sin ^= swap_sin;
        float zz = x * x;
        float yc = (float)2.443315711809948E-005;
        yc = fmaf(yc, zz, (float)-1.388731625493765E-003);
        yc = fmaf(yc, zz, (float)4.166664568298827E-002);
        yc = yc * zz;
        yc = fmaf(yc, zz, -(zz * 0.5f));         /* y*z fused, z*0.5 (exact) subtracted */
        yc = yc + 1.0f;
        float ys = (float)-1.9515295891E-4;
        ys = fmaf(ys, zz, (float)8.3321608736E-3);
        ys = fmaf(ys, zz, (float)-1.6666654611E-1);
        ys = ys * zz;
        ys = fmaf(ys, x, x);
        float ysin2 = bitsf(fbits(ys) & poly);
        float ysin1 = bitsf(fbits(yc) & ~poly);
        ys = ys - ysin2;
        yc = yc - ysin1;
        float s = bitsf(fbits(ysin1 + ysin2) ^ sign_sin);
        float c = bitsf(fbits(yc + ys) ^ sign_cos);
        out[j] = fmaf(radius * c, std, mean);
        out[j + 8] = fmaf(radius * s, std, mean);
    }
}

#define MOMENT_LANES 16
/* The stats of x[0..n) (n >= 1) in one pass, around k = x[0] in double, 16 lanes in a fixed
   order (the same bits on every run): out = {sum(x - k), sum((x - k)^2), min, max, zeros,
   non-finite}. Used by engine.stats; with a NaN or an infinity the caller takes torch's path. */
void moments_f32(const float *x, int64_t n, double *out) {
    const double k = x[0];
    double s1[MOMENT_LANES] = {0}, s2[MOMENT_LANES] = {0};
    float lo[MOMENT_LANES], hi[MOMENT_LANES];
    int64_t z[MOMENT_LANES] = {0}, bad[MOMENT_LANES] = {0};
    for (int j = 0; j < MOMENT_LANES; j++) { lo[j] = x[0]; hi[j] = x[0]; }
    int64_t i = 0;
    for (; i + MOMENT_LANES <= n; i += MOMENT_LANES) {
        for (int j = 0; j < MOMENT_LANES; j++) {
            float v = x[i + j];
            double d = (double)v - k;
            s1[j] += d;
            s2[j] += d * d;
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
            z[j] += v == 0.0f;
            bad[j] += !(fabsf(v) <= 3.40282347e38f);
        }
    }
    for (int j = 0; i < n; i++, j++) {
        float v = x[i];
        double d = (double)v - k;
        s1[j] += d; s2[j] += d * d;
        lo[j] = v < lo[j] ? v : lo[j]; hi[j] = v > hi[j] ? v : hi[j];
        z[j] += v == 0.0f; bad[j] += !(fabsf(v) <= 3.40282347e38f);
    }
    double t1 = 0, t2 = 0; float mn = lo[0], mx = hi[0]; int64_t tz = 0, tb = 0;
    for (int j = 0; j < MOMENT_LANES; j++) {
        t1 += s1[j]; t2 += s2[j]; tz += z[j]; tb += bad[j];
        mn = lo[j] < mn ? lo[j] : mn; mx = hi[j] > mx ? hi[j] : mx;
    }
    out[0] = t1; out[1] = t2; out[2] = mn; out[3] = mx; out[4] = (double)tz; out[5] = (double)tb;
}

/* All of float32 normal_ (n >= 16) from the stream's position: the uniforms of up to 39 blocks
   at a time, then each block's Box-Muller straight into o; torch's tail rule last (the n % 16
   draws of the partial block are skipped, 16 more make elements [n - 16, n)). */
static void normal_f32_run(uint32_t *s, int64_t *pos, int64_t n, float mean, float std, float *o) {
    const int64_t whole = n - n % 16;
    uint32_t w[MT_N];
    float u[MT_N];
    for (int64_t done = 0; done < whole;) {
        int64_t m = whole - done < MT_N ? whole - done : MT_N;
        draw_words(s, pos, m, w);
        for (int64_t j = 0; j < m; j++) u[j] = (float)(int32_t)(w[j] & 0xffffffu) * (1.0f / 16777216.0f);
        for (int64_t b = 0; b < m; b += 16) box_muller16(u + b, mean, std, o + done + b);
        done += m;
    }
    if (n % 16) {
        skip(s, pos, n % 16);
        draw_words(s, pos, 16, w);
        for (int j = 0; j < 16; j++) u[j] = (float)(int32_t)(w[j] & 0xffffffu) * (1.0f / 16777216.0f);
        box_muller16(u, mean, std, o + n - 16);
    }
}

/* float32 normal_ (n >= 16) at selected elements. The stream is at the draw of element `origin`
   (a multiple of 16, or n for the tail block). Block b (16b + 16 <= n) uses draws [16b, 16b + 16);
   if n % 16 != 0, elements [n - 16, n) come from the tail block, draws [n, n + 16).
   Segments: absolute element starts (increasing) and lengths. Returns the draws consumed. */
int64_t select_normal_f32(uint32_t *s, int64_t pos, int64_t origin, int64_t n, const int64_t *starts,
                          const int64_t *lens, int64_t nseg, double mean_d, double std_d, float *o) {
    const float mean = (float)mean_d, std = (float)std_d;
    const int64_t tail_from = (n % 16) ? n - 16 : n;
    int64_t at = 0, have = -1; /* relative draw position; block origin held in blk (-1: none) */
    float u[16], blk[16];
    uint32_t w16[16];
    if (origin == 0 && nseg == 1 && starts[0] == 0 && lens[0] == n) { /* the whole tensor */
        normal_f32_run(s, &pos, n, mean, std, o);
        return n + (n % 16 ? 16 : 0);
    }
    for (int64_t i = 0; i < nseg; i++) {
        for (int64_t k = starts[i], stop = starts[i] + lens[i]; k < stop;) {
            int64_t first = k >= tail_from ? n : k - k % 16;      /* draw of the block's first uniform */
            int64_t base_el = k >= tail_from ? n - 16 : first;     /* its first element */
            if (first != have) {
                skip(s, &pos, first - origin - at);
                draw_words(s, &pos, 16, w16);
                for (int j = 0; j < 16; j++) u[j] = (float)(int32_t)(w16[j] & 0xffffffu) * (1.0f / 16777216.0f);
                at = first - origin + 16;
                box_muller16(u, mean, std, blk);
                have = first;
            }
            int64_t end = base_el + 16 < stop ? base_el + 16 : stop;
            if (k < tail_from && end > tail_from) end = tail_from;
            for (; k < end; k++) *o++ = blk[k - base_el];
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
    # -ffp-contract=off: only the explicit fmaf/fma calls fuse. -fno-math-errno lets sqrtf be the
    # (correctly rounded) instruction; -fno-trapping-math lets GCC vectorize the selects of
    # box_muller16. Neither changes a result: no reassociation, no flush to zero, signed zeros kept.
    flags = [
        "-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC",
    ]
    tag = hashlib.sha256((_SOURCE + " ".join(flags) + sys.platform).encode()).hexdigest()[:16]
    folder = tempfile.mkdtemp(prefix="initsvc-select-")
    src, lib = os.path.join(folder, f"select_{tag}.c"), os.path.join(folder, f"select_{tag}.so")
    with open(src, "w") as fh:
        fh.write(_SOURCE)
    try:
        command = [cc, *flags, src, "-o", lib, "-lm"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _reason.append(f"compiling the selection kernel failed: {exc}")
        return None
    if done.returncode != 0:
        _reason.append(f"compiling the selection kernel failed: {done.stderr.strip()[:300]}")
        return None
    handle = ctypes.CDLL(lib)
    shutil.rmtree(folder, ignore_errors=True)  # the mapping stays valid; nothing is left in /tmp
    fn = handle.select_uniform
    fn.restype = ctypes.c_int64
    fn.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_int, ctypes.c_int, ctypes.c_double, ctypes.c_double, ctypes.c_void_p,
    ]
    fn = handle.select_normal_f32
    fn.restype = ctypes.c_int64
    fn.argtypes = [
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_double, ctypes.c_void_p,
    ]
    fn = handle.moments_f32
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    return handle


def moments_f32(flat: torch.Tensor) -> tuple[float, float, float, float, int] | None:
    """(Σ(x − k), Σ(x − k)², min, max, zeros) of contiguous float32 CPU ``flat`` (k = flat[0]) in
    one pass, or ``None``: no kernel, another dtype or device, empty, or a NaN or infinity in it."""
    if flat.dtype != torch.float32 or flat.device.type != "cpu" or flat.numel() == 0 or not flat.is_contiguous():
        return None
    lib = library()
    if lib is None:
        return None
    out = np.zeros(6, dtype=np.float64)
    lib.moments_f32(flat.data_ptr(), flat.numel(), out.ctypes.data)
    s1, s2, low, high, zeros, bad = out.tolist()
    return None if bad else (s1, s2, low, high, int(zeros))


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


def fill_run_(out_flat: torch.Tensor, op: str, p1: float, p2: float, state: mt19937.MTState) -> bool:
    """``out_flat.uniform_(p1, p2)`` or ``.normal_(p1, p2)`` from a generator holding ``state``,
    all of contiguous 1-D ``out_flat``, by the kernel; ``False`` (nothing written) where it does
    not serve (op, dtype) or ``normal_`` of fewer than 16 elements. A block of the state at a time,
    the loops vectorize: several times torch's element-by-element ``uniform_``, twice its ``normal_``
    (``bench/parallel_cpu.py``)."""
    n = out_flat.numel()
    dtype = out_flat.dtype
    if n == 0 or not serves(op, dtype) or (op == "normal" and n < 16):
        return False
    fused = _fused_mode(dtype) if op == "uniform" else 1
    if fused < 0:
        return False
    whole = np.zeros(1, dtype=np.int64), np.full(1, n, dtype=np.int64)
    if op == "uniform":
        _call(state, *whole, dtype, fused, p1, p2, out_flat)
    else:
        _call_normal(state, 0, n, *whole, p1, p2, out_flat)
    return True


def _call_normal(
    state: mt19937.MTState, origin: int, numel: int, starts: np.ndarray, lens: np.ndarray,
    mean: float, std: float, out: torch.Tensor,
) -> None:
    """Run the float32 ``normal_`` kernel from ``state`` (at the draw of element ``origin``) for the
    runs ``starts``/``lens`` of a ``numel``-element tensor, into contiguous ``out``."""
    lib = library()
    assert lib is not None
    words = np.array(state.words, dtype=np.uint32)  # the kernel twists its own copy
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lens = np.ascontiguousarray(lens, dtype=np.int64)
    lib.select_normal_f32(
        words.ctypes.data, mt19937.N if state.left == 1 else state.next, origin, numel,
        starts.ctypes.data, lens.ctypes.data, starts.size, mean, std, out.data_ptr(),
    )


def fill_runs_selected(
    out_flat: torch.Tensor,
    run_starts: np.ndarray,
    length: int,
    op: str,
    p1: float,
    p2: float,
    seed: int,
    base_draws: int,
    numel: int,
    threads: int = 1,
    thread_min_draws: int = THREAD_MIN_DRAWS,
) -> bool:
    """Fill contiguous 1-D ``out_flat`` with ``full.flatten()[s : s + length]`` for each run start
    s (increasing, disjoint), ``full`` being the ``numel``-element ``uniform_(p1, p2)`` or
    ``normal_(p1, p2)`` from ``manual_seed(seed)`` after ``base_draws`` draws. Returns ``False``
    (and writes nothing) when the kernel does not serve it (``normal_`` needs ``numel >= 16``).
    """
    dtype = out_flat.dtype
    if not serves(op, dtype) or length == 0 or run_starts.size == 0:
        return False
    if op == "normal" and numel < 16:
        return False
    fused = _fused_mode(dtype) if op == "uniform" else 1
    if fused < 0:
        return False
    d = 2 if dtype == torch.float64 else 1
    segs = _segments(np.asarray(run_starts, dtype=np.int64), length, d, max(1, threads), thread_min_draws)
    tail_from = numel - 16 if numel % 16 else numel

    def work(seg: tuple[int, np.ndarray, np.ndarray, int]) -> None:
        first, starts, lens, offset = seg
        part = out_flat[offset : offset + int(lens.sum())]
        if op == "uniform":
            state = mt19937.state_at(seed, base_draws + d * first)
            _call(state, d * (starts - first), lens, dtype, fused, p1, p2, part)
            return
        origin = numel if first >= tail_from else first - first % 16
        _call_normal(mt19937.state_at(seed, base_draws + origin), origin, numel, starts, lens, p1, p2, part)

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
    for lo, hi in itertools.pairwise(splits):
        s, e = int(run_starts[lo]), int(ends[hi - 1])
        parts = max(1, min(threads, (e - s) * d // max(1, thread_min_draws)))
        cuts = [s + (e - s) * k // parts for k in range(parts)] + [e]
        starts, stops = run_starts[lo:hi], ends[lo:hi]
        for a, b in itertools.pairwise(cuts):
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
