"""The body: memoryviews of each tensor's own memory, in header order, never copied whole.

``chunk_views`` slices a contiguous CPU tensor's bytes into views of at most ``chunk_bytes``
(starlette's ``StreamingResponse`` sends a memoryview as it is). Whoever made the chunks (a CPU
tensor, or a device worker's pinned buffers) owns their memory; this module only slices.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

# 1 MiB writes: large enough for loopback throughput, small enough to stop promptly on a disconnect.
DEFAULT_CHUNK_BYTES = 1 << 20


def tensor_bytes_view(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without a copy (bfloat16 included)."""
    if t.device.type != "cpu":
        raise ValueError(f"tensor_bytes_view needs a CPU tensor; got one on {t.device}")
    if not t.is_contiguous():
        raise ValueError("tensor_bytes_view needs a contiguous tensor; call .contiguous() first")
    if t.numel() == 0:
        return memoryview(b"")
    return t.reshape(-1).view(torch.uint8).numpy().data.cast("B")


def chunk_views(view: memoryview, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[memoryview]:
    for start in range(0, len(view), chunk_bytes):
        yield view[start : start + chunk_bytes]
