"""Make one tensor from a checked recipe on a device: allocate, fill, summarize.

This is the unit of work a device worker runs. It never touches torch's global RNG: the caller
passes the request's ``Streams``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine.distributions import describe
from service.engine.rng import DTYPES, Streams, compute_dtype
from service.engine.schemes import SCHEMES
from service.engine.stats import summarize

# warnings.catch_warnings swaps process-wide state (Python < 3.14), so captures take turns.
_WARNINGS_LOCK = threading.RLock()


@contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect the warnings torch emits inside the block as strings, instead of printing them."""
    messages: list[str] = []
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    messages.append(text)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor's recipe, validated: torch's parameter names, defaults filled in."""

    name: str
    shape: tuple[int, ...]
    scheme: str
    params: Mapping[str, Any]
    dtype: str = "float32"
    histogram_bins: int = 0
    with_stats: bool = True
    # [start, stop) per dimension: the answer is full[start0:stop0, ...]; fans come from ``shape``.
    slice: tuple[tuple[int, int], ...] | None = None


@dataclass
class MadeTensor:
    spec: TensorSpec
    tensor: torch.Tensor
    stats: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)
    compute_dtype: str | None = None  # set when torch ran the scheme in another dtype


def fill(t: torch.Tensor, spec: TensorSpec, streams: Streams, qr_threads: int = 1) -> list[str]:
    """Fill ``t`` (allocated with the spec's shape and dtype) in place; return torch's warnings."""
    with captured_warnings() as messages, torch.no_grad():
        SCHEMES[spec.scheme].fill(t, spec.params, streams, qr_threads)
    return messages


def cut(t: torch.Tensor, bounds: tuple[tuple[int, int], ...] | None) -> torch.Tensor:
    """``t[start0:stop0, ...]`` as a contiguous tensor (``t`` itself without a slice)."""
    if bounds is None:
        return t
    return t[tuple(slice(start, stop) for start, stop in bounds)].contiguous()


def make_tensor(spec: TensorSpec, streams: Streams, device: torch.device, qr_threads: int = 1) -> MadeTensor:
    t = torch.empty(spec.shape, dtype=DTYPES[spec.dtype], device=device)
    messages = fill(t, spec, streams, qr_threads)
    t = cut(t, spec.slice)
    stats = summarize(t, describe(spec.scheme, spec.params, spec.shape), spec.histogram_bins) if spec.with_stats else None
    work = compute_dtype(spec.scheme, spec.dtype)
    return MadeTensor(spec, t, stats, messages, work if work != spec.dtype else None)
