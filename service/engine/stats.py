"""Observed stats of a tensor, the scheme's expected moments, and an optional histogram.

Speed: ``torch.var_mean`` and ``(t == 0).sum()`` run near 1.5 GB/s on these CPUs, while ``sum``,
``dot``, ``aminmax`` and ``count_nonzero`` run at 30–40 GB/s, so one pass over float64 chunks
uses only the fast ones. Accuracy: the variance uses the shifted-data formula

    d = x − K,   var = (Σd² − (Σd)²/n) / (n − 1),   mean = K + Σd / n

with K one of the tensor's own values, so ``Σd²`` does not cancel catastrophically when the mean
is far from zero (a constant tensor gives exactly 0). ``std`` is unbiased, as ``torch.std``.
Nothing non-finite leaves this module: a value that does not exist (the std of one element, the
bounds of a normal) is ``None``, which JSON writes as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from service.engine.distributions import Distribution

# 4 Mi elements: a 32 MiB float64 working chunk, big enough that per-call overhead vanishes.
STATS_CHUNK_ELEMENTS = 1 << 22


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _chunks(flat: torch.Tensor):
    for start in range(0, flat.numel(), STATS_CHUNK_ELEMENTS):
        yield flat[start : start + STATS_CHUNK_ELEMENTS]


def observe(t: torch.Tensor, histogram_bins: int = 0) -> dict[str, Any]:
    """``numel``, ``mean``, ``std`` (unbiased), ``min``, ``max``, ``zero_fraction`` and, with
    ``histogram_bins`` > 0, ``histogram: {edges, counts}`` over [min, max] (numpy's rule: a
    constant tensor gets the range [v − 0.5, v + 0.5])."""
    flat = t.reshape(-1)
    n = flat.numel()
    if n == 0:
        empty: dict[str, Any] = dict(numel=0, mean=None, std=None, min=None, max=None, zero_fraction=None)
        if histogram_bins:
            empty["histogram"] = {"edges": [], "counts": []}
        return empty

    shift = flat[0].to(torch.float64, copy=True)
    s1 = torch.zeros((), dtype=torch.float64, device=t.device)
    s2 = torch.zeros((), dtype=torch.float64, device=t.device)
    nonzero = torch.zeros((), dtype=torch.int64, device=t.device)
    lows, highs = [], []
    for chunk in _chunks(flat):
        lo, hi = torch.aminmax(chunk)
        lows.append(lo)
        highs.append(hi)
        nonzero += torch.count_nonzero(chunk)
        d = chunk.to(torch.float64, copy=True).sub_(shift)  # never in place on the tensor itself
        s1 += d.sum()
        s2 += torch.dot(d, d)
    low = float(torch.stack(lows).min())
    high = float(torch.stack(highs).max())
    s1_, s2_, k = float(s1), float(s2), float(shift)
    mean = k + s1_ / n
    std = math.sqrt(max(s2_ - s1_ * s1_ / n, 0.0) / (n - 1)) if n > 1 else None
    stats: dict[str, Any] = dict(
        numel=n,
        mean=_finite(mean),
        std=_finite(std),
        min=_finite(low),
        max=_finite(high),
        zero_fraction=(n - int(nonzero)) / n,
    )
    if histogram_bins:
        stats["histogram"] = histogram(flat, histogram_bins, low, high)
    return stats


def histogram(flat: torch.Tensor, bins: int, low: float, high: float) -> dict[str, list]:
    """``bins`` equal-width bins over [low, high]; the last bin includes ``high`` (``torch.histc``)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return {"edges": [], "counts": []}
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts = torch.zeros(bins, dtype=torch.float64, device=flat.device)
    for chunk in _chunks(flat):
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


def summarize(t: torch.Tensor, dist: Distribution, histogram_bins: int = 0) -> dict[str, Any]:
    """The ``stats`` entry of one tensor: observed values first, then what the scheme promises."""
    return {**observe(t, histogram_bins), **expected_fields(dist)}
