"""The safetensors header, written deterministically: ``encode_header`` (``decode_header`` is
``service.safetensors_header``'s, which the torch-free client shares).

Format (safetensors README): 8 bytes little-endian u64 ``N``, then ``N`` bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}``,
then the data. We write keys sorted, compact separators, floats in Python's shortest round-trip
form, and pad the JSON with spaces to a multiple of 8 bytes (the format allows trailing spaces),
so the same request gives the same bytes in every process (``safetensors.torch.save`` orders
``__metadata__`` keys differently from one process to the next).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.safetensors_header import decode_header

__all__ = ["HEADER_ALIGNMENT", "TensorEntry", "body_length", "decode_header", "dumps", "encode_header"]

HEADER_ALIGNMENT = 8


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's header entry; its data follows the previous entry's in list order."""

    name: str
    dtype: str  # safetensors dtype: F16, BF16, F32, F64
    shape: tuple[int, ...]
    nbytes: int


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, compact, no NaN/Infinity (they are not JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def encode_header(entries: Sequence[TensorEntry], metadata: Mapping[str, str]) -> bytes:
    """The length prefix and JSON header for ``entries``, laid out in order after it."""
    body: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for entry in entries:
        body[entry.name] = {
            "dtype": entry.dtype,
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = dumps(body).encode("utf-8")
    text += b" " * (-len(text) % HEADER_ALIGNMENT)
    return struct.pack("<Q", len(text)) + text


def body_length(header: bytes, entries: Sequence[TensorEntry]) -> int:
    return len(header) + sum(e.nbytes for e in entries)
