"""Decoding a safetensors header: plain Python, shared by the server and the torch-free client.

Format (safetensors README): 8 bytes little-endian u64 ``N``, then ``N`` bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}``,
then the data, whose offsets count from ``8 + N``. ``service.codec.header`` writes it; the client
distribution (clients/python) ships this module beside ``service.formulas``.
"""

from __future__ import annotations

import json
import struct
from typing import Any


class HeaderError(ValueError):
    """Bytes that cannot hold a safetensors header: too short, or a length past their end."""


def decode_header(buf: bytes | bytearray | memoryview) -> tuple[dict[str, str], dict[str, dict[str, Any]], int]:
    """``(metadata, entries, data_start)`` from the first bytes of a safetensors file; entries'
    ``data_offsets`` count from ``data_start``."""
    if len(buf) < 8:
        raise HeaderError(f"answer too short for a safetensors file ({len(buf)} bytes)")
    (length,) = struct.unpack_from("<Q", buf, 0)
    if 8 + length > len(buf):
        raise HeaderError(f"safetensors header of {length} bytes overruns the {len(buf)}-byte answer")
    try:
        header = json.loads(bytes(buf[8 : 8 + length]))
    except ValueError as exc:  # invalid UTF-8 or JSON
        raise HeaderError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise HeaderError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    return metadata, header, 8 + length
