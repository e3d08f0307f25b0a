"""Everything ``InitClient`` and ``AsyncInitClient`` share but I/O: configuration, the public
methods, the retry rule, and what is done with each answer.

The public methods are written once, here, as coroutines whose only awaits are the five I/O
methods at the bottom (``_send``, ``_read``, ``_stream``, ``_close``, ``_pause``).
``AsyncInitClient`` inherits them as they are and does that I/O with ``httpx.AsyncClient``;
``InitClient`` does it with ``httpx.Client``, so its awaits never suspend, and it runs each
method to its end in the calling thread (``service.client.sync.blocking``).

Longer than the ~300 lines most modules keep to: every public client method written once over five I/O hooks, shared by the sync and async clients.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

import service
from service.client._answers import (
    BodyBuffer,
    BodyFile,
    Download,
    Progress,
    Result,
    Summary,
    TensorSet,
    expected_length,
    partial_path,
    read_download,
    read_result,
    read_summary,
    read_tensor_set,
)
from service.client._requests import BINARY, JSON, Call, DType, Rng, recipe_call, shape_text
from service.client.errors import InitServiceError, error_from_response

DEFAULT_URL = "http://127.0.0.1:8000"
# Generous read timeout: with stats on, the first byte waits until the whole tensor is made.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
RETRY_STATUSES = frozenset({429, 503})


@dataclass
class RetryPolicy:
    """Retry 429 and 503 up to ``retries`` times. A connection that cannot be opened is not
    retried: nothing is listening there, and waiting would only hide it (``httpx.ConnectError``).

    The wait is the server's ``Retry-After`` when it sent one, else ``backoff_s * 2**attempt``,
    capped at ``backoff_max_s``. A ``Retry-After`` longer than ``backoff_max_s`` is not waited
    out: the error is raised at once, carrying ``retry_after``, for the caller to decide.
    """

    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be a non-negative integer; got {self.retries!r}")

    def delay(self, attempt: int, error: InitServiceError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.retries or error.status not in RETRY_STATUSES:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.backoff_max_s else None
        return min(self.backoff_max_s, self.backoff_s * 2**attempt)


class BaseClient:
    """Configuration, the public methods and the retry loop shared by the sync and async clients."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout | None,
                 retry: RetryPolicy):
        self.base_url = (base_url or os.environ.get("INITSVC_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else (os.environ.get("INITSVC_API_KEY") or None)
        self.timeout = timeout
        self.retry = retry

    def __repr__(self) -> str:  # never shows the API key
        return f"{type(self).__name__}(base_url={self.base_url!r}, retries={self.retry.retries})"

    def _http_options(self) -> dict[str, Any]:
        headers = {"user-agent": f"initsvc-client/{service.__version__}"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return {"base_url": self.base_url, "timeout": self.timeout, "headers": headers}

    # ---- tensors ----------------------------------------------------------------------------

    async def tensor(
        self,
        shape: Any,
        scheme: str | None = None,
        *,
        init: Mapping[str, Any] | None = None,
        dtype: DType | None = None,
        device: str | None = None,
        seed: int | None = None,
        name: str | None = None,
        slice: Any = None,
        rng: Rng | None = None,
        histogram_bins: int | None = None,
        stats: bool | None = None,
        as_numpy: bool = False,
        **params: Any,
    ) -> Result:
        """One tensor, as ``torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape))``.

        ``client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0)``, or the recipe as a
        dict: ``init={"scheme": "kaiming_uniform", "a": 2.236}``. ``slice`` is ``[[0, 128], None]``,
        ``"0:128,:"`` or ``(slice(0, 128), None)``. Options left ``None`` take the server's
        defaults. ``as_numpy=True`` returns a numpy array and needs no torch (bfloat16 comes back as
        float32 holding exactly the same values).
        """
        call = recipe_call(shape, scheme, init=init, dtype=dtype, device=device, seed=seed, name=name,
                           slice=slice, rng=rng, histogram_bins=histogram_bins, stats=stats, **params)
        return read_result(await self._fetch(call), as_numpy)

    async def tensors(
        self,
        tensors: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
        *,
        seed: int | None = None,
        dtype: DType | None = None,
        device: str | None = None,
        as_numpy: bool = False,
        **fields: Any,
    ) -> TensorSet:
        """Several named tensors drawn in order from one generator (``POST /v1/tensors``).

        ``tensors`` is a list of ``{"name", "shape", "init", ...}`` or a mapping name -> the rest.
        ``fields`` are further top-level body fields (``rng=``, ``histogram_bins=``...).
        """
        call = recipe_call(tensors=tensors, seed=seed, dtype=dtype, device=device, **fields)
        return read_tensor_set(await self._fetch(call), as_numpy)

    async def module(
        self,
        layers: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
        *,
        overrides: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
        seed: int | None = None,
        dtype: DType | None = None,
        device: str | None = None,
        as_numpy: bool = False,
        tensors: Sequence[str] | str | None = None,
        slice: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> TensorSet:
        """The ``state_dict`` of ``nn.Sequential(*layers)`` with PyTorch's default init
        (``POST /v1/module``); ``overrides`` is ``[{"param", "init"}]`` or ``{param: init}``.
        ``tensors`` and ``slice`` as for ``model``: ``tensors=["0.weight"]``,
        ``slice={"0.weight": "0:128,:"}``."""
        call = recipe_call(layers=layers, overrides=overrides, seed=seed, dtype=dtype, device=device,
                           tensors=tensors, slice=slice, **fields)
        return read_tensor_set(await self._fetch(call), as_numpy)

    async def model(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        dtype: DType = "float32",
        tensors: Sequence[str] | str | None = None,
        stats: bool = True,
        histogram_bins: int = 0,
        as_numpy: bool = False,
        slice: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> TensorSet:
        """The ``state_dict`` of a model preset (``POST /v1/model``), as its library initializes it.

        ``client.model("transformers/GPT2LMHeadModel", {"n_layer": 2}, seed=0)``. ``config`` holds
        the preset's fields (``models()`` lists them with their defaults); ``tensors`` the keys
        wanted (a list or ``"key,key"``; ``None``: all of them). ``slice`` answers only part of
        some keys: ``{"lm_head.weight": [[0, 128], None]}`` (or ``"0:128,:"``). ``fields`` are
        further body fields. Returns what ``module`` returns: a ``TensorSet`` keyed as the model's
        ``state_dict``.
        """
        call = recipe_call(model=name, config=config, seed=seed, dtype=dtype, tensors=tensors, stats=stats,
                           histogram_bins=histogram_bins, slice=slice, **fields)
        return read_tensor_set(await self._fetch(call), as_numpy)

    async def stats(
        self, shape: Any = None, scheme: str | None = None, *, init: Mapping[str, Any] | None = None,
        tensors: Any = None, layers: Any = None, overrides: Any = None, model: str | None = None,
        **options: Any,
    ) -> Summary:
        """Stats, normalized request and provenance without the data (``Accept: application/json``).
        Takes what ``tensor`` takes, or ``tensors=`` / ``layers=`` / ``model=`` for the other
        endpoints."""
        call = recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                           model=model, accept=JSON, **options)
        return read_summary(await self._content(call))

    async def download(
        self, shape: Any = None, scheme: str | None = None, *, path: str | os.PathLike[str] | IO[bytes],
        progress: Progress | None = None, init: Mapping[str, Any] | None = None, tensors: Any = None,
        layers: Any = None, overrides: Any = None, model: str | None = None, **options: Any,
    ) -> Download:
        """Stream the safetensors answer to ``path`` (a file name, or a binary file object) without
        holding it in memory. ``progress(done, total)`` is called after each chunk; ``total`` is the
        ``Content-Length``, or ``None`` when the server sent none. A file name is written under
        ``<path>.part`` and renamed when complete. Takes what ``stats`` takes."""
        call = recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                           model=model, accept=BINARY, **options)
        response = await self._open(call)
        try:
            if not isinstance(path, str | os.PathLike):
                done = await self._write(response, path, progress)
                return read_download(Path(getattr(path, "name", "-")), done, response.headers)
            target = Path(path)
            part = partial_path(target)
            try:
                with open(part, "wb") as file:
                    done = await self._write(response, file, progress)
                os.replace(part, target)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            return read_download(target, done, response.headers)
        finally:
            await self._close(response)

    # ---- catalog ----------------------------------------------------------------------------

    async def schemes(self) -> dict[str, Any]:
        """``GET /v1/schemes``: scheme name -> parameters, shape rule, formula, reference."""
        return json.loads(await self._content(Call("GET", "/v1/schemes")))["schemes"]

    async def layers(self) -> dict[str, Any]:
        """``GET /v1/layers``: the layer types ``module`` accepts, with their arguments."""
        return json.loads(await self._content(Call("GET", "/v1/layers")))

    async def models(self) -> dict[str, Any]:
        """``GET /v1/models``: preset name -> library, reference, versions, doc, config fields
        (name, type, default, nullable, affects_weights...) and the default config's size."""
        return json.loads(await self._content(Call("GET", "/v1/models")))["models"]

    async def _models_answer(self) -> dict[str, Any]:
        """The whole ``GET /v1/models`` answer (with the server's torch version), for the CLI."""
        return json.loads(await self._content(Call("GET", "/v1/models")))

    async def gain(self, nonlinearity: str, param: float | None = None) -> float:
        """``torch.nn.init.calculate_gain(nonlinearity, param)``, computed by the server."""
        params = {"nonlinearity": nonlinearity} | ({} if param is None else {"param": param})
        return json.loads(await self._content(Call("GET", "/v1/gain", params=params)))["gain"]

    async def fans(self, shape: Any) -> dict[str, int]:
        """``{"fan_in", "fan_out", "receptive_field"}`` of a weight shape ``[out, in, *kernel]``."""
        return json.loads(await self._content(Call("GET", "/v1/fans", params={"shape": shape_text(shape)})))

    async def devices(self) -> dict[str, Any]:
        """``GET /v1/devices``: the devices, which one ``auto`` means, torch version and limits."""
        return json.loads(await self._content(Call("GET", "/v1/devices")))

    # ---- one exchange -----------------------------------------------------------------------

    async def _open(self, call: Call) -> httpx.Response:
        """A 2xx response, streaming, for the caller to close; error answers raise, after retries
        where they apply."""
        attempt = 0
        while True:
            request = self._http.build_request(call.method, call.path, json=call.body, params=call.params,
                                               headers={"accept": call.accept})
            response = await self._send(request)
            if response.is_success:
                return response
            try:
                error = error_from_response(response.status_code, response.headers, await self._read(response))
            finally:
                await self._close(response)
            delay = self.retry.delay(attempt, error)
            if delay is None:
                raise error
            await self._pause(delay)
            attempt += 1

    async def _fetch(self, call: Call) -> bytearray:
        """The whole answer in one buffer, for tensors to be views of."""
        response = await self._open(call)
        try:
            body = BodyBuffer(expected_length(response.headers))
            await self._stream(response, body.feed)
            return body.finish()
        finally:
            await self._close(response)

    async def _content(self, call: Call) -> bytes:
        response = await self._open(call)
        try:
            return await self._read(response)
        finally:
            await self._close(response)

    async def _write(self, response: httpx.Response, file: IO[bytes], progress: Progress | None) -> int:
        body = BodyFile(file, expected_length(response.headers), progress)
        await self._stream(response, body.feed)
        return body.finish()

    # ---- I/O: each client does these, and nothing else --------------------------------------

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the response's body is read by ``_read`` or ``_stream``."""
        raise NotImplementedError

    async def _read(self, response: httpx.Response) -> bytes:
        """The whole body."""
        raise NotImplementedError

    async def _stream(self, response: httpx.Response, feed: Callable[[bytes], None]) -> None:
        """``feed(chunk)`` for each chunk of the body, as it arrives."""
        raise NotImplementedError

    async def _close(self, response: httpx.Response) -> None:
        raise NotImplementedError

    async def _pause(self, seconds: float) -> None:
        """Wait before a retry, with the ``sleep`` the client was given."""
        raise NotImplementedError
