"""What the client returns, and how each is read from an answer: ``Result`` and ``TensorSet`` from a
safetensors body, ``Summary`` from the JSON one, ``Download`` from a body written to a file.

Bodies are taken chunk by chunk (``feed``) by ``BodyBuffer`` (in memory) or ``BodyFile`` (on disk),
whichever client receives them; both refuse an answer whose length is not its ``Content-Length``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from service.client._safetensors import decode_tensors
from service.client.errors import MalformedAnswer

Progress = Callable[[int, int | None], None]


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


# ---- reading answers ----------------------------------------------------------------------------


def read_tensor_set(buf: bytearray, as_numpy: bool) -> TensorSet:
    """Tensors (views of ``buf``, no copy) and the metadata's ``stats``/``request``/``provenance``."""
    metadata, tensors = decode_tensors(buf, as_numpy)
    stats = json.loads(metadata["stats"]) if "stats" in metadata else {}
    request = json.loads(metadata.get("request", "{}"))
    provenance = json.loads(metadata.get("provenance", "{}"))
    return TensorSet(tensors, {name: stats.get(name) for name in tensors}, request, provenance)


def read_result(buf: bytearray, as_numpy: bool) -> Result:
    found = read_tensor_set(buf, as_numpy)
    if len(found.tensors) != 1:
        raise MalformedAnswer(200, f"expected one tensor in the answer; got {list(found.tensors)}")
    ((name, tensor),) = found.tensors.items()
    return Result(tensor, found.stats.get(name), found.request, found.provenance, name)


def read_summary(content: bytes) -> Summary:
    data = json.loads(content)
    return Summary(data.get("tensors", {}), data.get("request", {}), data.get("provenance", {}))


def read_download(path: Path, nbytes: int, headers: Mapping[str, str]) -> Download:
    seed = headers.get("x-init-seed")
    return Download(path, nbytes, int(seed) if seed and seed.isdigit() else None,
                    headers.get("x-init-device"), headers.get("etag"))


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


@dataclass
class BodyFile:
    """The answer's bytes written to ``file`` as they come; ``progress(done, total)`` is called once
    before the first chunk and after each one."""

    file: IO[bytes]
    total: int | None
    progress: Progress | None = None
    done: int = 0

    def __post_init__(self) -> None:
        if self.progress:
            self.progress(0, self.total)

    def feed(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.done += len(chunk)
        if self.progress:
            self.progress(self.done, self.total)

    def finish(self) -> int:
        check_length(self.done, self.total)
        return self.done


def check_length(done: int, total: int | None) -> None:
    if total is not None and done != total:
        raise MalformedAnswer(200, f"answer cut short: {done} of {total} bytes")


def expected_length(headers: Mapping[str, str]) -> int | None:
    """``Content-Length``, when it counts our bytes (with a content-encoding it counts the wire's)."""
    value = headers.get("content-length")
    if "content-encoding" in headers or not value or not value.isdigit():
        return None
    return int(value)


def partial_path(path: Path) -> Path:
    """Where a download is written until it is complete (then renamed over ``path``)."""
    return path.with_name(path.name + ".part")
