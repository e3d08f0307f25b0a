"""Observed stats of a tensor, the scheme's expected moments, and an optional histogram.

Speed: float32 chunks (most tensors) are summarized in one pass by the compiled kernel
(``transforms.moments_f32``: around the chunk's first value, in float64, 16 lanes in a fixed
order), 0.09 ms for 256x784 against 0.2–0.8 ms for torch's four reductions. Without it, or for
other dtypes: ``torch.var_mean`` and ``(t == 0).sum()`` run near 1.5 GB/s on these CPUs, while ``sum``,
``dot``, ``aminmax`` and ``count_nonzero`` run at 30–40 GB/s, so each chunk uses only the fast
ones, straight on the tensor when its mean is near zero (``Partial.of``). Accuracy: otherwise a
chunk of ``STATS_CHUNK_ELEMENTS`` is summarized in float64 around one of its own values K (so Σd²
does not cancel when the mean is far from zero; a constant chunk gives exactly 0), and chunks are
merged in order with Chan et al.'s pairwise update::

    d = x − K,  mean = K + Σd/n,  M2 = Σd² − (Σd)²/n
    merge: δ = mean_b − mean_a,  mean = mean_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n

``std`` is unbiased, as ``torch.std``: sqrt(M2 / (n − 1)). Chunks sit on a fixed grid of the
flat tensor and merge in grid order, so the stats are the same bytes however the tensor was
generated (serially, by threads, or while streaming). Nothing non-finite leaves this module: a
value that does not exist (the std of one element, the bounds of a normal) is ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from service.engine import transforms
from service.engine.distributions import Distribution

# 4 Mi elements: a 32 MiB float64 working chunk, big enough that per-call overhead vanishes.
STATS_CHUNK_ELEMENTS = 1 << 22
DOT_ELEMENTS = 1 << 16


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Partial:
    """Mergeable summary of a run of elements."""

    n: int
    mean: float
    m2: float
    low: float
    high: float
    zeros: int

    @staticmethod
    def of(chunk: torch.Tensor, scratch: torch.Tensor | None = None) -> Partial:
        """Summary of a 1-D ``chunk``: float32 in one pass of the compiled kernel around one of its
        own values in float64 (``transforms.moments_f32``) where it is built; else plain sums where
        they are accurate, else the exact path.

        For float32/float64 data centred near zero (the initializers' case) Σx and Σx² are read
        straight from the tensor: M2 = Σx² − (Σx)²/n loses at most a factor 2 of precision when
        M2 >= Σx²/2, i.e. mean² <= variance. Anything else (a far mean, a constant, a reduced
        dtype) takes ``exact``, shifted by one of the chunk's own values, in float64.
        """
        n = chunk.numel()
        one_pass = transforms.moments_f32(chunk)
        if one_pass is not None:
            d1, d2, low, high, zeros = one_pass
            k = float(chunk[0])
            return Partial(n, k + d1 / n, max(d2 - d1 * d1 / n, 0.0), low, high, zeros)
        if chunk.dtype in (torch.float32, torch.float64):
            lo, hi = torch.aminmax(chunk)
            # dot() accumulates in the data's precision: over 64 Ki elements at a time, then the
            # partial sums in float64, Σx² keeps ~1e-7 relative accuracy (1e-5 in one call).
            squares = [torch.dot(part, part) for part in chunk.split(DOT_ELEMENTS)]
            sums = torch.stack([chunk.sum(), lo, hi, *squares]).to(torch.float64).tolist()
            s1, low, high, s2 = sums[0], sums[1], sums[2], math.fsum(sums[3:])
            m2 = s2 - s1 * s1 / n
            if math.isfinite(s2) and m2 >= 0.5 * s2 and n > 1:
                return Partial(n, s1 / n, m2, low, high, n - int(torch.count_nonzero(chunk)))
        return Partial.exact(chunk, scratch)

    @staticmethod
    def exact(chunk: torch.Tensor, scratch: torch.Tensor | None = None) -> Partial:
        """Float64 around one of the chunk's own values: accurate however far the mean is from 0."""
        n = chunk.numel()
        lo, hi = torch.aminmax(chunk)
        nonzero = torch.count_nonzero(chunk)
        if scratch is None or scratch.numel() < n:
            scratch = torch.empty(n, dtype=torch.float64, device=chunk.device)
        d = scratch[:n].copy_(chunk)  # a float64 copy: never in place on the tensor itself
        shift = d[0].clone()
        d.sub_(shift)
        s1, s2 = d.sum(), torch.dot(d, d)
        values = torch.stack([shift, s1, s2, lo.to(torch.float64), hi.to(torch.float64)]).tolist()
        k, s1_, s2_, low, high = values
        return Partial(n, k + s1_ / n, s2_ - s1_ * s1_ / n, low, high, n - int(nonzero))

    def merge(self, other: Partial) -> Partial:
        n = self.n + other.n
        delta = other.mean - self.mean
        return Partial(
            n,
            self.mean + delta * other.n / n,
            self.m2 + other.m2 + delta * delta * self.n * other.n / n,
            min(self.low, other.low),
            max(self.high, other.high),
            self.zeros + other.zeros,
        )


def grid_chunks(n: int) -> list[tuple[int, int]]:
    """The fixed grid of [start, stop) chunks stats are computed on."""
    return [(s, min(s + STATS_CHUNK_ELEMENTS, n)) for s in range(0, n, STATS_CHUNK_ELEMENTS)]


class StatsAccumulator:
    """Stats fed chunk by chunk, in grid order, as the tensor's bytes become ready."""

    def __init__(self, flat: torch.Tensor):
        self.flat = flat
        self.chunks = grid_chunks(flat.numel())
        self.done = 0
        self.total: Partial | None = None
        self._scratch: torch.Tensor | None = None  # reused: fresh 32 MiB buffers cost page faults

    def feed(self, ready_elements: int) -> None:
        """Summarize every grid chunk that lies wholly within the first ``ready_elements``."""
        while self.done < len(self.chunks) and self.chunks[self.done][1] <= ready_elements:
            start, stop = self.chunks[self.done]
            if self._scratch is None:
                self._scratch = torch.empty(self.chunks[0][1], dtype=torch.float64, device=self.flat.device)
            part = Partial.of(self.flat[start:stop], self._scratch)
            self.total = part if self.total is None else self.total.merge(part)
            self.done += 1

    def result(self, histogram_bins: int = 0) -> dict[str, Any]:
        self.feed(self.flat.numel())
        self._scratch = None
        return finish(self.total, self.flat, histogram_bins)


def finish(total: Partial | None, flat: torch.Tensor, histogram_bins: int) -> dict[str, Any]:
    if total is None:
        empty: dict[str, Any] = dict(numel=0, mean=None, std=None, min=None, max=None, zero_fraction=None)
        if histogram_bins:
            empty["histogram"] = {"edges": [], "counts": []}
        return empty
    n = total.n
    stats: dict[str, Any] = dict(
        numel=n,
        mean=_finite(total.mean),
        std=_finite(math.sqrt(max(total.m2, 0.0) / (n - 1))) if n > 1 else None,
        min=_finite(total.low),
        max=_finite(total.high),
        zero_fraction=total.zeros / n,
    )
    if histogram_bins:
        stats["histogram"] = histogram(flat, histogram_bins, total.low, total.high)
    return stats


def observe(t: torch.Tensor, histogram_bins: int = 0) -> dict[str, Any]:
    """``numel``, ``mean``, ``std`` (unbiased), ``min``, ``max``, ``zero_fraction`` and, with
    ``histogram_bins`` > 0, ``histogram: {edges, counts}`` over [min, max] (numpy's rule: a
    constant tensor gets the range [v − 0.5, v + 0.5])."""
    return StatsAccumulator(t.reshape(-1)).result(histogram_bins)


def histogram(flat: torch.Tensor, bins: int, low: float, high: float) -> dict[str, list]:
    """``bins`` equal-width bins over [low, high]; the last bin includes ``high`` (``torch.histc``)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return {"edges": [], "counts": []}
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts = torch.zeros(bins, dtype=torch.float64, device=flat.device)
    for start, stop in grid_chunks(flat.numel()):
        chunk = flat[start:stop]
        counts += torch.histc(chunk.to(torch.float64), bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts.cpu()]}


def expected_fields(dist: Distribution) -> dict[str, Any]:
    """``expected`` and the scheme's ``fan_in``, ``fan_out``, ``gain``, ``bound``, ``std_used``."""
    e = dist.expected
    expected = (
        None
        if e is None
        else {"mean": _finite(e.mean), "std": _finite(e.std), "low": _finite(e.low), "high": _finite(e.high)}
    )
    return {
        "expected": expected,
        "fan_in": dist.fan_in,
        "fan_out": dist.fan_out,
        "gain": _finite(dist.gain),
        "bound": _finite(dist.bound),
        "std_used": _finite(dist.std_used),
    }
