"""Reading a safetensors answer into torch tensors or numpy arrays: views of the answer's bytes.

torch and numpy are imported inside the calls that return them, never at import time, so the
client runs where only httpx is installed (``as_numpy=True`` needs numpy and no torch).
"""

from __future__ import annotations

import json
from typing import Any

from service import safetensors_header
from service.client.errors import MalformedAnswer

# safetensors dtype -> (torch/numpy name, numpy little-endian type code); BF16 has no numpy type.
DTYPES: dict[str, tuple[str, str]] = {
    "F64": ("float64", "<f8"), "F32": ("float32", "<f4"), "F16": ("float16", "<f2"), "BF16": ("bfloat16", "<u2"),
    "I64": ("int64", "<i8"), "I32": ("int32", "<i4"), "I16": ("int16", "<i2"), "I8": ("int8", "i1"),
    "U64": ("uint64", "<u8"), "U32": ("uint32", "<u4"), "U16": ("uint16", "<u2"), "U8": ("uint8", "u1"),
    "BOOL": ("bool", "?"),
}


def decode_header(buf: bytes | bytearray | memoryview) -> tuple[dict[str, str], dict[str, dict[str, Any]], int]:
    """``(metadata, entries, data_start)`` (``service.safetensors_header``); a body that cannot
    hold a header is a ``MalformedAnswer``."""
    try:
        return safetensors_header.decode_header(buf)
    except safetensors_header.HeaderError as exc:
        raise MalformedAnswer(200, str(exc)) from None


def decode_tensors(buf: bytearray, as_numpy: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """``(metadata, tensors)``: the tensors are views of ``buf`` (no copy), in the answer's order:
    that of their data (the header's keys are sorted), and among tensors of no bytes, which share
    an offset, the order the normalized request names them in."""
    metadata, entries, start = decode_header(buf)
    make = _numpy_array if as_numpy else _torch_tensor
    rank = {name: i for i, name in enumerate(_answer_order(metadata))}
    try:
        ordered = sorted(entries.items(), key=lambda item: (item[1]["data_offsets"][0], rank.get(item[0], len(rank))))
        return metadata, {name: make(buf, entry, start, len(buf)) for name, entry in ordered}
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise MalformedAnswer(200, f"safetensors header entry is not a tensor the body holds: {exc}") from None


def _answer_order(metadata: dict[str, str]) -> list[str]:
    """The answer's tensor names in order, as the normalized request gives them (a list of
    tensors or keys asked for, or a preset's ``tensor_order``); empty when it gives none."""
    try:
        request = json.loads(metadata.get("request", "{}"))
    except ValueError:
        return []
    listed = request.get("tensors") if isinstance(request, dict) else None
    if isinstance(listed, list):
        return [t["name"] if isinstance(t, dict) else t for t in listed if isinstance(t, dict | str)]
    order = request.get("tensor_order") if isinstance(request, dict) else None
    return [k for k in order if isinstance(k, str)] if isinstance(order, list) else []


def _entry(entry: dict[str, Any], start: int, size: int) -> tuple[str, list[int], int, int]:
    dtype = entry["dtype"]
    if dtype not in DTYPES:
        raise MalformedAnswer(200, f"unsupported safetensors dtype {dtype!r}; known: {', '.join(DTYPES)}")
    begin, end = entry["data_offsets"]
    if not 0 <= begin <= end or start + end > size:
        raise MalformedAnswer(200, f"data_offsets [{begin}, {end}] are not within the {size - start} bytes of data")
    return dtype, list(entry["shape"]), start + begin, start + end


def _numpy_array(buf: bytearray, entry: dict[str, Any], start: int, size: int) -> Any:
    """A numpy array; ``bfloat16`` (which numpy lacks) becomes float32, exactly: a bfloat16 is the
    top 16 bits of a float32, so ``(bits << 16).view(float32)`` is the same number."""
    np = _import("numpy")
    dtype, shape, begin, end = _entry(entry, start, size)
    code = DTYPES[dtype][1]
    count = (end - begin) // np.dtype(code).itemsize
    flat = np.frombuffer(buf, dtype=code, count=count, offset=begin) if count else np.empty(0, dtype=code)
    if dtype == "BF16":
        flat = (flat.astype("<u4") << 16).view("<f4")
    return flat.astype(flat.dtype.newbyteorder("="), copy=False).reshape(shape)


def _torch_tensor(buf: bytearray, entry: dict[str, Any], start: int, size: int) -> Any:
    torch = _import("torch")
    dtype, shape, begin, end = _entry(entry, start, size)
    torch_dtype = getattr(torch, DTYPES[dtype][0])
    count = (end - begin) // torch_dtype.itemsize
    if count == 0:
        return torch.empty(shape, dtype=torch_dtype)
    return torch.frombuffer(buf, dtype=torch_dtype, count=count, offset=begin).reshape(shape)


_INSTALL_HINTS = {
    "torch": "install torch (pip install torch), or pass as_numpy=True for numpy arrays",
    "numpy": "install numpy (pip install numpy)",
}


def _import(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed for this call: {_INSTALL_HINTS[module]}") from exc
