"""Everything ``InitClient`` and ``AsyncInitClient`` share but I/O: configuration, request
bodies, the retry rule, and reading safetensors answers into tensors or numpy arrays.

torch and numpy are imported inside the calls that return them, never at import time, so the
client runs where only httpx is installed (``as_numpy=True`` needs numpy and no torch).
"""

from __future__ import annotations

import json
import operator
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import service
from service.client.errors import InitServiceError, MalformedAnswer

DEFAULT_URL = "http://127.0.0.1:8000"
# Generous read timeout: with stats on, the first byte waits until the whole tensor is made.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
RETRY_STATUSES = frozenset({429, 503})
# Body fields of a single-tensor request; other keyword arguments are the scheme's parameters.
TOP_LEVEL = frozenset({"dtype", "device", "seed", "name", "slice", "rng", "histogram_bins", "stats"})
INTEGER_FIELDS = frozenset({"seed", "histogram_bins"})
BINARY = "application/octet-stream"
JSON = "application/json"

# safetensors dtype -> (torch/numpy name, numpy little-endian type code); BF16 has no numpy type.
DTYPES: dict[str, tuple[str, str]] = {
    "F64": ("float64", "<f8"), "F32": ("float32", "<f4"), "F16": ("float16", "<f2"), "BF16": ("bfloat16", "<u2"),
    "I64": ("int64", "<i8"), "I32": ("int32", "<i4"), "I16": ("int16", "<i2"), "I8": ("int8", "i1"),
    "U64": ("uint64", "<u8"), "U32": ("uint32", "<u4"), "U16": ("uint16", "<u2"), "U8": ("uint8", "u1"),
    "BOOL": ("bool", "?"),
}


@dataclass(frozen=True)
class Call:
    """One request: method, path, JSON body or query, and the representation wanted."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    accept: str = JSON


@dataclass
class Result:
    """One tensor (``torch.Tensor``, or ``numpy.ndarray`` with ``as_numpy=True``) and its header:
    ``stats`` (``None`` when the request said ``stats=False``), the normalized ``request`` with
    the seed filled in, and the ``provenance`` (torch version, device, rng, warnings...)."""

    tensor: Any
    stats: dict[str, Any] | None
    request: dict[str, Any]
    provenance: dict[str, Any]
    name: str = "weight"

    @property
    def seed(self) -> int | None:
        return self.request.get("seed")


@dataclass
class TensorSet:
    """Several named tensors (a ``state_dict`` for ``module``), their stats by name, the normalized
    request and the provenance. ``result["name"]`` is a tensor; iterating gives the names."""

    tensors: dict[str, Any]
    stats: dict[str, dict[str, Any] | None]
    request: dict[str, Any]
    provenance: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


@dataclass
class Summary:
    """The JSON answer (``Accept: application/json``): everything but the data."""

    tensors: dict[str, dict[str, Any]]  # name -> {"dtype", "shape", "stats"}
    request: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def stats(self) -> dict[str, dict[str, Any] | None]:
        return {name: entry.get("stats") for name, entry in self.tensors.items()}


@dataclass
class Download:
    """A safetensors file written by ``download``: where, how many bytes, and the answer's headers."""

    path: Path
    nbytes: int
    seed: int | None
    device: str | None
    etag: str | None


@dataclass
class RetryPolicy:
    """Retry 429 and 503 (and connections that never opened) up to ``retries`` times.

    The wait is the server's ``Retry-After`` when it sent one, else ``backoff_s * 2**attempt``,
    capped at ``backoff_max_s``. A ``Retry-After`` longer than ``backoff_max_s`` is not waited
    out: the error is raised at once, carrying ``retry_after``, for the caller to decide.
    """

    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, error: InitServiceError | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.retries or (error is not None and error.status not in RETRY_STATUSES):
            return None
        if error is not None and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.backoff_max_s else None
        return min(self.backoff_max_s, self.backoff_s * 2**attempt)


class BaseClient:
    """Configuration and request building shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer; got {retries!r}")
        self.base_url = (base_url or os.environ.get("INITSVC_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else (os.environ.get("INITSVC_API_KEY") or None)
        self.timeout = timeout
        self.retry = RetryPolicy(retries, backoff_s, backoff_max_s)

    def __repr__(self) -> str:  # never shows the API key
        return f"{type(self).__name__}(base_url={self.base_url!r}, retries={self.retry.retries})"

    def _http_options(self) -> dict[str, Any]:
        headers = {"user-agent": f"initsvc-client/{service.__version__}"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return {"base_url": self.base_url, "timeout": self.timeout, "headers": headers}

    @staticmethod
    def _headers(call: Call) -> dict[str, str]:
        return {"accept": call.accept}

    # ---- requests -------------------------------------------------------------------------

    @staticmethod
    def _recipe_call(
        shape: Any = None,
        scheme: str | None = None,
        *,
        init: Any = None,
        tensors: Any = None,
        layers: Any = None,
        overrides: Any = None,
        accept: str = BINARY,
        **options: Any,
    ) -> Call:
        """``/v1/tensor`` for ``shape``, ``/v1/tensors`` for ``tensors``, ``/v1/module`` for ``layers``.

        For one tensor, ``options`` named in ``TOP_LEVEL`` are body fields and the rest are the
        scheme's parameters; for the others every option is a body field. ``None`` means "the
        server's default" and is left out.
        """
        choices = (("shape", shape), ("tensors", tensors), ("layers", layers))
        given = [what for what, value in choices if value is not None]
        if len(given) != 1:
            raise TypeError(f"pass exactly one of shape, tensors or layers; got {given or 'none'}")
        options = {k: integer(v) if k in INTEGER_FIELDS else v for k, v in options.items() if v is not None}
        if shape is not None:
            top = {k: v for k, v in options.items() if k in TOP_LEVEL}
            params = {k: v for k, v in options.items() if k not in TOP_LEVEL}
            return Call("POST", "/v1/tensor", tensor_body(shape, scheme, init, params, top), accept=accept)
        if scheme is not None or init is not None:
            raise TypeError("scheme and init go inside each entry of tensors= (or overrides=), not beside it")
        if tensors is not None:
            return Call("POST", "/v1/tensors", {**options, "tensors": tensor_list(tensors)}, accept=accept)
        body = {**options, "layers": layers}
        if overrides is not None:
            body["overrides"] = override_list(overrides)
        return Call("POST", "/v1/module", body, accept=accept)

    # ---- answers --------------------------------------------------------------------------

    @staticmethod
    def _tensor_result(buf: bytearray, as_numpy: bool) -> Result:
        found = decode_answer(buf, as_numpy)
        if len(found.tensors) != 1:
            raise MalformedAnswer(200, f"expected one tensor in the answer; got {list(found.tensors)}")
        ((name, tensor),) = found.tensors.items()
        return Result(tensor, found.stats.get(name), found.request, found.provenance, name)

    @staticmethod
    def _tensor_set(buf: bytearray, as_numpy: bool) -> TensorSet:
        return decode_answer(buf, as_numpy)

    @staticmethod
    def _summary(content: bytes) -> Summary:
        data = json.loads(content)
        return Summary(data.get("tensors", {}), data.get("request", {}), data.get("provenance", {}))

    @staticmethod
    def _download(path: Path, nbytes: int, headers: httpx.Headers) -> Download:
        seed = headers.get("x-init-seed")
        return Download(path, nbytes, int(seed) if seed and seed.isdigit() else None,
                        headers.get("x-init-device"), headers.get("etag"))


# ---- request bodies ---------------------------------------------------------------------------


def normalize_shape(shape: Any) -> list[Any]:
    """``[256, 784]``, ``(256, 784)``, ``torch.Size``, ``256`` or ``"256,784"`` -> ``[256, 784]``.
    Values that are not integers are passed on for the server to name in its 422."""
    if isinstance(shape, str):
        return [int(part) if part.strip().isdigit() else part for part in shape.split(",")] if shape.strip() else []
    if _is_scalar(shape):
        return [integer(shape)]
    return [integer(d) for d in shape]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int) or (hasattr(value, "__index__") and getattr(value, "ndim", 0) == 0)


def integer(value: Any) -> Any:
    """numpy and torch integers become ints (JSON has no others); anything else goes as it is, for
    the server to judge (a bool stays a bool: the server refuses it, as torch does)."""
    return operator.index(value) if _is_scalar(value) and not isinstance(value, bool) else value


def normalize_slice(value: Any, shape: Sequence[Any]) -> list[list[int] | None]:
    """A slice as the body wants it, one entry per dimension: ``None`` or ``[start, stop]``.

    Accepts that list, numpy notation without steps (``"0:128,:"``), or per dimension a Python
    ``slice`` without a step, an ``int`` (one index) or ``None``.
    """
    if isinstance(value, str):
        value = [_slice_text(part.strip()) for part in value.split(",")]
    elif isinstance(value, slice | int):
        value = [value]
    entries: list[list[int] | None] = []
    for dim, item in enumerate(value):
        size = shape[dim] if dim < len(shape) and isinstance(shape[dim], int) else None
        if item is None:
            entries.append(None)
        elif isinstance(item, slice):
            if item.step not in (None, 1):
                raise ValueError(f"slice steps are not supported; got {item} in dimension {dim}")
            stop = item.stop if item.stop is not None else size
            if stop is None:
                raise ValueError(f"slice {item} in dimension {dim} needs a stop: the shape has no size there")
            entries.append([item.start or 0, stop])
        elif isinstance(item, int) and not isinstance(item, bool):
            entries.append([item, item + 1])
        else:
            entries.append(list(item))
    return entries


def _slice_text(item: str) -> slice | int | None:
    if item in ("", ":"):
        return None
    start, sep, stop = item.partition(":")
    try:
        if not sep:
            return int(start)
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"slice entries are start:stop with integers (or ':'); got {item!r}") from None


def recipe(scheme: str | None, init: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``init`` object from ``scheme`` + parameters, or from ``init`` (a dict or a schema model)."""
    if init is not None:
        if scheme is not None or params:
            raise TypeError("pass either init={...} or scheme= with its parameters, not both")
        if hasattr(init, "model_dump"):  # a service.schemas.recipes model
            return init.model_dump(mode="json", exclude_unset=True)
        return dict(init)
    if scheme is None:
        raise TypeError("a scheme is required: tensor(shape, 'kaiming_uniform', a=...) or init={'scheme': ...}")
    return {"scheme": scheme, **params}


def tensor_body(shape: Any, scheme: str | None, init: Any, params: Mapping[str, Any], top: dict[str, Any]) -> dict:
    dims = normalize_shape(shape)
    body = {"shape": dims, "init": recipe(scheme, init, params), **top}
    if "slice" in body:
        body["slice"] = normalize_slice(body["slice"], dims)
    return body


def tensor_list(tensors: Any) -> list[dict[str, Any]]:
    """A list of ``{name, shape, init, ...}``, or a mapping ``name -> {shape, init, ...}`` (in order)."""
    items = [{"name": name, **spec} for name, spec in tensors.items()] if isinstance(tensors, Mapping) else tensors
    out = []
    for item in items:
        entry = {k: integer(v) if k in INTEGER_FIELDS else v for k, v in item.items()}
        if "shape" in entry:
            entry["shape"] = normalize_shape(entry["shape"])
        if entry.get("slice") is not None:
            entry["slice"] = normalize_slice(entry["slice"], entry.get("shape", []))
        out.append(entry)
    return out


def override_list(overrides: Any) -> list[dict[str, Any]]:
    """``[{"param", "init"}, ...]``, or a mapping ``param -> init`` (in order)."""
    if isinstance(overrides, Mapping):
        return [{"param": name, "init": dict(spec)} for name, spec in overrides.items()]
    return [dict(item) for item in overrides]


# ---- safetensors answers ------------------------------------------------------------------------


def decode_header(buf: bytes | bytearray | memoryview) -> tuple[dict[str, str], dict[str, dict[str, Any]], int]:
    """``(metadata, entries, data_start)``: 8-byte little-endian length ``N``, then ``N`` bytes of
    JSON (the safetensors format); entries' ``data_offsets`` count from ``data_start``."""
    if len(buf) < 8:
        raise MalformedAnswer(200, f"answer too short for a safetensors file ({len(buf)} bytes)")
    (length,) = struct.unpack_from("<Q", buf, 0)
    if 8 + length > len(buf):
        raise MalformedAnswer(200, f"safetensors header of {length} bytes overruns the {len(buf)}-byte answer")
    header = json.loads(bytes(buf[8 : 8 + length]))
    metadata = header.pop("__metadata__", None) or {}
    return metadata, header, 8 + length


def decode_answer(buf: bytearray, as_numpy: bool) -> TensorSet:
    """Tensors (views of ``buf``, no copy) and the metadata's ``stats``/``request``/``provenance``."""
    metadata, entries, start = decode_header(buf)
    make = _numpy_array if as_numpy else _torch_tensor
    # The header's keys are sorted; the data is laid out in the request's order (a state_dict's).
    ordered = sorted(entries.items(), key=lambda item: item[1]["data_offsets"][0])
    tensors = {name: make(buf, entry, start) for name, entry in ordered}
    stats = json.loads(metadata["stats"]) if "stats" in metadata else {}
    request = json.loads(metadata.get("request", "{}"))
    provenance = json.loads(metadata.get("provenance", "{}"))
    return TensorSet(tensors, {name: stats.get(name) for name in tensors}, request, provenance)


def _entry(entry: dict[str, Any], start: int) -> tuple[str, list[int], int, int]:
    dtype = entry["dtype"]
    if dtype not in DTYPES:
        raise MalformedAnswer(200, f"unsupported safetensors dtype {dtype!r}; known: {', '.join(DTYPES)}")
    begin, end = entry["data_offsets"]
    return dtype, list(entry["shape"]), start + begin, start + end


def _numpy_array(buf: bytearray, entry: dict[str, Any], start: int) -> Any:
    """A numpy array; ``bfloat16`` (which numpy lacks) becomes float32, exactly: a bfloat16 is the
    top 16 bits of a float32, so ``(bits << 16).view(float32)`` is the same number."""
    np = _import("numpy")
    dtype, shape, begin, end = _entry(entry, start)
    code = DTYPES[dtype][1]
    count = (end - begin) // np.dtype(code).itemsize
    flat = np.frombuffer(buf, dtype=code, count=count, offset=begin) if count else np.empty(0, dtype=code)
    if dtype == "BF16":
        flat = (flat.astype("<u4") << 16).view("<f4")
    return flat.astype(flat.dtype.newbyteorder("="), copy=False).reshape(shape)


def _torch_tensor(buf: bytearray, entry: dict[str, Any], start: int) -> Any:
    torch = _import("torch")
    dtype, shape, begin, end = _entry(entry, start)
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


# ---- bodies in memory and on disk -------------------------------------------------------------


@dataclass
class BodyBuffer:
    """The answer's bytes in one ``bytearray`` sized from ``Content-Length`` (one copy, writable,
    so tensors can be views of it)."""

    total: int | None
    buf: bytearray = field(init=False)
    done: int = 0

    def __post_init__(self) -> None:
        self.buf = bytearray(self.total or 0)

    def feed(self, chunk: bytes) -> None:
        end = self.done + len(chunk)
        if self.total is None:
            self.buf += chunk
        elif end > self.total:
            raise MalformedAnswer(200, f"answer longer than its Content-Length {self.total}")
        else:
            self.buf[self.done : end] = chunk
        self.done = end

    def finish(self) -> bytearray:
        check_length(self.done, self.total)
        return self.buf


def check_length(done: int, total: int | None) -> None:
    if total is not None and done != total:
        raise MalformedAnswer(200, f"answer cut short: {done} of {total} bytes")


def expected_length(response: httpx.Response) -> int | None:
    """``Content-Length``, when it counts our bytes (with a content-encoding it counts the wire's)."""
    value = response.headers.get("content-length")
    if "content-encoding" in response.headers or not value or not value.isdigit():
        return None
    return int(value)


def shape_text(shape: Any) -> str:
    """``[64, 3, 7, 7]`` -> ``"64,3,7,7"``, the query-string form."""
    return ",".join(str(d) for d in normalize_shape(shape))


def partial_path(path: Path) -> Path:
    """Where a download is written until it is complete (then renamed over ``path``)."""
    return path.with_name(path.name + ".part")
