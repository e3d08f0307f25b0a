"""The jobs device workers run: make the tensors of one request and hand back host memory.

Runs on a worker thread, never on the event loop. Each request gets its own private streams
(SPEC §3): one shared stream seeded with the request's seed, and a fresh one for any tensor that
carries its own seed (which therefore does not advance the shared one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.engine.maker import MadeTensor, TensorSpec, make_tensor
from service.engine.rng import open_streams


@dataclass(frozen=True)
class TensorJob:
    specs: Sequence[TensorSpec]
    seed: int
    device: str
    qr_threads: int = 1
    own_seeds: Sequence[int | None] = ()
    cpu_threads: int = 1


def to_host(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor with the same bytes (a copy only when the tensor is elsewhere)."""
    if t.device.type != "cpu":
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        torch.cuda.current_stream(t.device).synchronize()
        return host
    return t.contiguous()


def run_tensor_job(job: TensorJob) -> list[MadeTensor]:
    device = torch.device(job.device)
    shared = open_streams(job.seed, device)
    made = []
    for i, spec in enumerate(job.specs):
        own = job.own_seeds[i] if i < len(job.own_seeds) else None
        streams = shared if own is None else open_streams(own, device)
        result = make_tensor(spec, streams, device, job.qr_threads, job.cpu_threads)
        result.tensor = to_host(result.tensor)
        made.append(result)
    return made
