"""Seeds, private generators, dtypes and the dtype fallback rule.

The service never touches torch's global RNG: it is process-wide state shared by concurrent
requests. A fresh ``torch.Generator(dev).manual_seed(seed)`` draws exactly what the global
generator of ``dev`` draws after ``torch.manual_seed(seed)``, so private generators give the
same bytes as the reference script of docs/api.md §3.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from service.engine import mt19937
from service.engine.dtypes import REDUCED, SAFETENSORS, SERVED

SEED_MAX = 2**64 - 1

# Read from service.engine.dtypes' table: the served floats and every dtype's safetensors code.
DTYPES: dict[str, torch.dtype] = SERVED
SAFETENSORS_DTYPES: dict[str, str] = SAFETENSORS

# Schemes whose torch implementation cannot run in reduced precision (LAPACK's QR has no
# float16/bfloat16 kernels): they run in float32 and the result is cast.
REDUCED_DTYPES = REDUCED
FLOAT32_ONLY_SCHEMES = frozenset({"orthogonal"})


def draw_seed() -> int:
    """A fresh 64-bit seed for a request that gave none (reported back, so it is reproducible)."""
    return secrets.randbits(64)


def compute_dtype(scheme: str, dtype: str) -> str:
    """The dtype torch runs ``scheme`` in: ``dtype`` itself, or float32 where torch cannot."""
    if scheme in FLOAT32_ONLY_SCHEMES and dtype in REDUCED_DTYPES:
        return "float32"
    return dtype


@dataclass
class Streams:
    """The private random streams of one request.

    ``values`` is the device's generator, as ``torch.manual_seed(seed)`` seeds it; ``mask`` is a
    CPU generator for ``sparse_``'s ``randperm``, which torch always draws from the CPU stream.
    On a CPU device both are the same object, as the global generator is in the reference script.

    On CPU the stream's position is also tracked as ``draws`` (32-bit draws since seeding) while
    it is known from the draw accounting; fast paths then fill from generators jumped to that
    position and leave ``values`` behind (``stale``) until ``sync`` catches it up. After an op
    whose consumption is not known (rejection sampling, ``randperm``, a cached normal) ``draws``
    is ``None`` and only ``values`` itself is used from then on.
    """

    seed: int
    values: torch.Generator
    mask: torch.Generator
    draws: int | None = 0
    stale: bool = False

    def advance(self, draws: int | None) -> None:
        """Record ``draws`` more draws taken (by a fast path, so ``values`` is now behind)."""
        if self.draws is not None and draws is not None:
            self.draws += draws
            self.stale = self.stale or draws > 0
        else:
            self.draws = None

    def sync(self) -> torch.Generator:
        """``values``, moved to the tracked position if fast paths went ahead of it."""
        if self.stale and self.draws is not None:
            self.values.set_state(mt19937.encode_state(mt19937.state_at(self.seed, self.draws)))
            self.stale = False
        return self.values


def open_streams(seed: int, device: torch.device) -> Streams:
    values = torch.Generator(device=device).manual_seed(seed)
    mask = values if device.type == "cpu" else torch.Generator().manual_seed(seed)
    return Streams(seed=seed, values=values, mask=mask, draws=0 if device.type == "cpu" else None)
