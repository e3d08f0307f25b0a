"""``Plan``: what planning hands to ``service.api.answer``, for every endpoint that makes tensors.

A plan is made before anything is allocated; its ETag is derived from the normalized request and
the provenance, so it is known before generation and equal for every response with the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.codec.header import dumps
from service.engine.maker import MadeTensor, Output
from service.workers.jobs import run_tensor_job


@dataclass
class Plan:
    """What a route hands to ``answer``: a job for the device's worker and how to label the result.

    ``run(job)`` runs on the worker thread of ``device`` and returns the made tensors in order.
    """

    job: Any
    device: str
    seed: int
    request: dict[str, Any]  # the normalized request, seed filled in
    provenance: dict[str, Any]
    nbytes: int
    filename: str
    seeded: bool  # the client gave the seed (so the answer never changes)
    concrete_device: bool  # the client named the device type (not "auto")
    run: Callable[..., Sequence[MadeTensor]] = run_tensor_job
    # Streamable plans (stats: false, nothing that can warn) get their header before the job runs:
    # ``run(job, segments, True, buffers)`` then queues each piece as it is made.
    streamable: bool = False
    outputs: list[Output] = field(default_factory=list)
    etag_base: str = field(default="")

    def __post_init__(self) -> None:
        if not self.etag_base:
            digest = hashlib.sha256(dumps({"request": self.request, "provenance": self.provenance}).encode())
            self.etag_base = digest.hexdigest()[:32]

    def etag(self, representation: str) -> str:
        return f'"{self.etag_base}-{representation}"'
