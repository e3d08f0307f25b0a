"""The jobs device workers run: make the tensors of one request.

Runs on a worker thread, never on the event loop. Each request gets its own private streams
(docs/api.md §3, §4.4): one shared stream seeded with the request's seed, and a fresh one for any tensor that
carries its own seed (which therefore does not advance the shared one).

With ``progressive`` (a body without stats, whose header is already sent), each CPU tensor's bytes
are queued on ``segments`` as soon as they are final, piece by piece on the parallel path; device
tensors are made first and then copied out through pinned buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.codec.body import tensor_bytes_view
from service.engine.maker import MadeTensor, TensorSpec, make_tensor
from service.engine.rng import open_streams
from service.workers.buffers import PinnedBuffers
from service.workers.streaming import Segments, deliver


@dataclass(frozen=True)
class TensorJob:
    specs: Sequence[TensorSpec]
    seed: int
    device: str
    qr_threads: int = 1
    own_seeds: Sequence[int | None] = ()
    cpu_threads: int = 1


class _Progress:
    """Queues each newly final byte range of the tensor being made (CPU, progressive mode)."""

    def __init__(self, segments: Segments):
        self.segments = segments
        self.sent = 0

    def __call__(self, t: torch.Tensor, elements: int) -> None:
        self.segments.start()  # the first tensor exists: the response may begin
        end = elements * t.element_size()
        if end > self.sent:
            self.segments.put(tensor_bytes_view(t)[self.sent : end])
            self.sent = end


def run_tensor_job(
    job: TensorJob,
    segments: Segments | None = None,
    progressive: bool = False,
    buffers: PinnedBuffers | None = None,
) -> list[MadeTensor]:
    device = torch.device(job.device)
    on_cpu = device.type == "cpu"
    cancelled = segments.cancelled if segments is not None else None
    shared = open_streams(job.seed, device)
    made: list[MadeTensor] = []
    try:
        for i, spec in enumerate(job.specs):
            if cancelled is not None and cancelled():
                break
            own = job.own_seeds[i] if i < len(job.own_seeds) else None
            streams = shared if own is None else open_streams(own, device)
            on_ready = _Progress(segments) if progressive and on_cpu and segments is not None else None
            made.append(make_tensor(spec, streams, device, job.qr_threads, job.cpu_threads, on_ready, cancelled))
    except BaseException as exc:
        if progressive and segments is not None:
            segments.close(exc)
        raise
    if progressive and segments is not None:
        segments.start()  # every tensor is made (a device's, or none at all)
        if on_cpu:
            segments.close()
        else:
            deliver([m.tensor for m in made], segments, buffers)
    return made
