"""One filler per scheme. Torch's schemes call ``torch.nn.init`` with the request's generator.

A filler is ``fill(tensor, params, streams, qr_threads) -> tensor``: it fills ``tensor`` in place
(hence the trailing underscore of the torch functions it wraps) and returns it. ``params`` use
torch's keyword names and are already validated (``checks.py``). Two schemes need more than a call:

* ``sparse_`` draws its zero mask with ``torch.randperm(rows)`` from the *global CPU* generator
  even when given a generator. We restate its six lines with the mask drawn from the request's
  private CPU stream (on a CPU tensor that is the values' generator, as in the reference script).
* ``orthogonal_``'s QR depends on MKL's code path and thread count, so it runs with
  ``MKL_CBWR=COMPATIBLE`` (set by ``service.app`` and ``service.cli`` before torch loads) and exactly
  ``qr_threads`` intra-op threads; in float16/bfloat16 torch has no QR, so it runs in float32
  and is cast (``rng.compute_dtype``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import init

from service.engine import variance
from service.engine.distributions import resolve_gain
from service.engine.dtypes import NAMES, REDUCED
from service.engine.gains import torch_nonlinearity
from service.engine.rng import Streams
from service.scheme_table import SCHEME_TABLE, ShapeRule, check_covers

Filler = Callable[[torch.Tensor, Mapping[str, Any], Streams, int], torch.Tensor]

# torch.set_num_threads is process-wide (MKL's count, which LAPACK's QR reads, is global): one QR
# at a time changes it, and puts it back. Reading the count to skip the change is not safe: under
# OpenMP each thread reports its own, so equal counts do not mean MKL's is what the QR needs.
_THREADS_LOCK = threading.Lock()


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    with _THREADS_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def orthogonal_(t: torch.Tensor, p: Mapping[str, Any], s: Streams, qr_threads: int) -> torch.Tensor:
    """(Semi-)orthogonal matrix, Saxe et al. 2013: QR of a N(0, 1) matrix, signs fixed by diag(R)."""
    gain = resolve_gain(p["gain"])
    with intra_op_threads(qr_threads):
        if NAMES.get(t.dtype) in REDUCED:
            full = torch.empty(t.shape, dtype=torch.float32, device=t.device)
            init.orthogonal_(full, gain, generator=s.values)
            with torch.no_grad():
                return t.copy_(full)
        return init.orthogonal_(t, gain, generator=s.values)


def sparse_(t: torch.Tensor, p: Mapping[str, Any], s: Streams, qr_threads: int) -> torch.Tensor:
    """``torch.nn.init.sparse_`` with its ``randperm`` mask drawn from ``s.mask`` (Martens 2010).

    Each column gets ``ceil(sparsity·rows)`` zeros at the first rows of ``randperm(rows)``; the
    other elements are N(0, std²).
    """
    rows, cols = t.shape
    if t.numel() == 0:  # no draws either way (randperm(0) takes none); skips a loop over cols
        return t
    num_zeros = math.ceil(p["sparsity"] * rows)
    with torch.no_grad():
        t.normal_(0, p["std"], generator=s.values)
        for col_idx in range(cols):
            row_indices = torch.randperm(rows, generator=s.mask)
            zero_indices = row_indices[:num_zeros]
            t[zero_indices.to(t.device), col_idx] = 0
    return t


def dirac_(t: torch.Tensor, p: Mapping[str, Any], s: Streams, qr_threads: int) -> torch.Tensor:
    """``torch.nn.init.dirac_``: zeros, and 1 at the centre of each kernel of the first
    ``min(shape[0] // groups, shape[1])`` channel pairs of each group; draws nothing.

    On a zero-element tensor torch's loop still indexes the centre of a zero-size kernel
    dimension (``[2, 2, 0]`` raises IndexError), while its sibling fills treat zero elements as
    a no-op; here such a tensor is left as it is (it has nothing to set), as ``docs/api.md`` says.
    Every other shape goes to torch unchanged.
    """
    if t.numel() == 0:
        return t
    return init.dirac_(t, p["groups"])


def _kaiming(fn):
    def fill(t, p, s, qr_threads):
        return fn(t, p["a"], p["mode"], torch_nonlinearity(p["nonlinearity"]), generator=s.values)

    return fill


def _xavier(fn):
    def fill(t, p, s, qr_threads):
        return fn(t, resolve_gain(p["gain"]), generator=s.values)

    return fill


# One filler per registry scheme (``service.scheme_table``, which holds the shape rules).
_FILLERS: dict[str, Filler] = {
    "uniform": lambda t, p, s, q: init.uniform_(t, p["a"], p["b"], generator=s.values),
    "normal": lambda t, p, s, q: init.normal_(t, p["mean"], p["std"], generator=s.values),
    "trunc_normal": lambda t, p, s, q: init.trunc_normal_(t, p["mean"], p["std"], p["a"], p["b"], generator=s.values),
    "constant": lambda t, p, s, q: init.constant_(t, p["val"]),
    "ones": lambda t, p, s, q: init.ones_(t),
    "zeros": lambda t, p, s, q: init.zeros_(t),
    "eye": lambda t, p, s, q: init.eye_(t),
    "dirac": dirac_,
    "xavier_uniform": _xavier(init.xavier_uniform_),
    "xavier_normal": _xavier(init.xavier_normal_),
    "kaiming_uniform": _kaiming(init.kaiming_uniform_),
    "kaiming_normal": _kaiming(init.kaiming_normal_),
    "orthogonal": orthogonal_,
    "sparse": sparse_,
    "variance_scaling": lambda t, p, s, q: variance.variance_scaling_(t, p["scale"], p["mode"], p["distribution"], s.values),
    "lecun_uniform": lambda t, p, s, q: variance.lecun_uniform_(t, s.values),
    "lecun_normal": lambda t, p, s, q: variance.lecun_normal_(t, s.values),
    "trunc_normal_tf": lambda t, p, s, q: variance.trunc_normal_tf_(t, p["mean"], p["std"], p["a"], p["b"], s.values),
}
check_covers(_FILLERS, "engine fillers")


@dataclass(frozen=True)
class Scheme:
    fill: Filler
    shape_rule: ShapeRule
    random: bool = True


SCHEMES: dict[str, Scheme] = {
    name: Scheme(_FILLERS[name], row.shape, row.random) for name, row in SCHEME_TABLE.items()
}


def deterministic_slice_(
    t: torch.Tensor, scheme: str, params: Mapping[str, Any], shape: tuple[int, ...], bounds: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """``full[bounds]`` of a scheme that draws nothing, made in ``t`` (the slice's shape) alone.

    ``constant``/``ones``/``zeros`` hold one value everywhere, so torch's own filler on the slice
    gives it; ``eye`` puts 1 where the full row index equals the column index; ``dirac`` puts 1 at
    ``(g·(shape[0] // groups) + d, d, k₂ // 2, …)`` for each group g and d < min(shape[0] // groups,
    shape[1]), the positions ``torch.nn.init.dirac_`` sets, kept where they fall inside ``bounds``.
    """
    if scheme not in ("eye", "dirac"):
        return _FILLERS[scheme](t, params, None, 1)  # type: ignore[arg-type]  # draws nothing
    t.zero_()
    if t.numel() == 0:
        return t
    starts = [start for start, _ in bounds]
    if scheme == "eye":
        (r0, r1), (c0, c1) = bounds
        low = max(r0, c0)
        diagonal = torch.arange(low, max(low, min(r1, c1)))
        t[diagonal - r0, diagonal - c0] = 1
        return t
    per_group = shape[0] // params["groups"]
    channels = torch.arange(min(per_group, shape[1]))
    groups = torch.arange(params["groups"])
    out_channel = (groups[:, None] * per_group + channels[None, :]).reshape(-1)
    in_channel = channels.repeat(params["groups"])
    coords = [out_channel, in_channel] + [torch.full_like(out_channel, size // 2) for size in shape[2:]]
    inside = torch.ones_like(out_channel, dtype=torch.bool)
    for c, (start, stop) in zip(coords, bounds, strict=True):
        inside &= (c >= start) & (c < stop)
    t[tuple(c[inside] - start for c, start in zip(coords, starts, strict=True))] = 1
    return t
