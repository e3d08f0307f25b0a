"""What the client returns, and how each is read from an answer: ``Result`` and ``TensorSet`` from a
safetensors body, ``Summary`` from the JSON one, ``Download`` from a body written to a file.

Bodies are taken chunk by chunk (``feed``) by ``BodyBuffer`` (in memory) or ``BodyFile`` (on disk),
whichever client receives them; both refuse an answer whose length is not its ``Content-Length``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from service.client._safetensors import decode_header, decode_tensors
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


def parse_json(content: str | bytes | bytearray) -> Any:
    """A 2xx answer's JSON (or a JSON string of its metadata); anything else is a ``MalformedAnswer``."""
    try:
        return json.loads(content)
    except ValueError as exc:
        raise MalformedAnswer(200, f"answer is not the JSON it should be: {exc}") from None


def read_tensor_set(buf: bytearray, as_numpy: bool) -> TensorSet:
    """Tensors (views of ``buf``, no copy) and the metadata's ``stats``/``request``/``provenance``."""
    metadata, tensors = decode_tensors(buf, as_numpy)
    stats = parse_json(metadata["stats"]) if "stats" in metadata else {}
    request = parse_json(metadata.get("request", "{}"))
    provenance = parse_json(metadata.get("provenance", "{}"))
    return TensorSet(tensors, {name: stats.get(name) for name in tensors}, request, provenance)


def read_result(buf: bytearray, as_numpy: bool) -> Result:
    found = read_tensor_set(buf, as_numpy)
    if len(found.tensors) != 1:
        raise MalformedAnswer(200, f"expected one tensor in the answer; got {list(found.tensors)}")
    ((name, tensor),) = found.tensors.items()
    return Result(tensor, found.stats.get(name), found.request, found.provenance, name)


def read_summary(content: bytes) -> Summary:
    data = parse_json(content)
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


# Safetensors loaders refuse headers over 100 MB; a longer one is not waited for.
MAX_HEADER_END = 8 + 100_000_000


@dataclass
class BodyFile:
    """The answer's bytes written to ``file`` as they come; ``progress(done, total)`` is called once
    before the first chunk and after each one."""

    file: IO[bytes]
    total: int | None
    progress: Progress | None = None
    done: int = 0
    head: bytearray | None = field(default_factory=bytearray)  # until the safetensors header is checked

    def __post_init__(self) -> None:
        if self.progress:
            self.progress(0, self.total)

    def feed(self, chunk: bytes) -> None:
        if self.head is not None:
            self.head += chunk
            self._check_header(final=False)
        self.file.write(chunk)
        self.done += len(chunk)
        if self.progress:
            self.progress(self.done, self.total)

    def finish(self) -> int:
        check_length(self.done, self.total)
        if self.head is not None:
            self._check_header(final=True)
        return self.done

    def _check_header(self, final: bool) -> None:
        """Once the header has arrived: it parses, and its tensors end where the body does."""
        assert self.head is not None
        if not final and len(self.head) < 8:
            return
        header_end = 8 + int.from_bytes(self.head[:8], "little")
        if header_end > min(self.total or MAX_HEADER_END, MAX_HEADER_END):
            raise MalformedAnswer(200, f"safetensors header of {header_end - 8} bytes cannot be in this answer")
        if not final and len(self.head) < header_end:
            return
        _, entries, start = decode_header(self.head)
        ends = [entry.get("data_offsets", [0, 0])[1] for entry in entries.values() if isinstance(entry, dict)]
        size = start + max(ends, default=0)
        if len(ends) != len(entries) or (self.total is not None and size != self.total):
            raise MalformedAnswer(200, f"safetensors header describes {size} bytes; the answer has {self.total}")
        self.head = None


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
    """Where a download is written until it is complete (then renamed over ``path``): a hidden
    name of its own beside it (``.w.safetensors.3f9a0c1e.part``), never a file of the user's."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")


def check_target(path: Path) -> None:
    """A download can be written to ``path``: checked before anything is asked of the server."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the file to write, e.g. {path / 'w.safetensors'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory, so {path} cannot be written")
