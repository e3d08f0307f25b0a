"""``AsyncInitClient``: ``InitClient``'s methods as coroutines. It sends and receives; ``_base``
does everything else.

    >>> from service.client import AsyncInitClient
    >>> async with AsyncInitClient("http://127.0.0.1:8000") as client:
    ...     w = (await client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0)).tensor
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import httpx

from service.client._base import (
    BINARY,
    DEFAULT_TIMEOUT,
    JSON,
    BaseClient,
    BodyBuffer,
    Call,
    Download,
    Result,
    Summary,
    TensorSet,
    check_length,
    expected_length,
    partial_path,
    shape_text,
)
from service.client.errors import error_from_response
from service.schemas.requests import DType, Rng

Progress = Callable[[int, int | None], None]
RETRIED_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


class AsyncInitClient(BaseClient):
    """Async client for the init service (asyncio or trio), with ``InitClient``'s methods.

    ``base_url`` defaults to ``$INITSVC_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``$INITSVC_API_KEY`` (sent as ``Authorization: Bearer``). 429 and 503 answers (and connections
    that never opened) are retried up to ``retries`` times, waiting ``Retry-After`` when the server
    sends it, else exponential backoff from ``backoff_s``; ``sleep`` does the waiting (tests pass a
    recorder). ``transport`` goes to ``httpx.AsyncClient``: ``httpx.MockTransport(handler)``, or
    ``httpx.ASGITransport(app)`` with the app's lifespan running, need no network. Use it with
    ``async with``, or await ``aclose()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ):
        super().__init__(base_url, api_key, timeout=timeout, retries=retries, backoff_s=backoff_s,
                         backoff_max_s=backoff_max_s)
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> AsyncInitClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

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
        call = self._recipe_call(shape, scheme, init=init, dtype=dtype, device=device, seed=seed, name=name,
                                 slice=slice, rng=rng, histogram_bins=histogram_bins, stats=stats, **params)
        buf, _ = await self._fetch(call)
        return self._tensor_result(buf, as_numpy)

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
        call = self._recipe_call(tensors=tensors, seed=seed, dtype=dtype, device=device, **fields)
        return self._tensor_set((await self._fetch(call))[0], as_numpy)

    async def module(
        self,
        layers: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
        *,
        overrides: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
        seed: int | None = None,
        dtype: DType | None = None,
        device: str | None = None,
        as_numpy: bool = False,
        **fields: Any,
    ) -> TensorSet:
        """The ``state_dict`` of ``nn.Sequential(*layers)`` with PyTorch's default init
        (``POST /v1/module``); ``overrides`` is ``[{"param", "init"}]`` or ``{param: init}``."""
        call = self._recipe_call(layers=layers, overrides=overrides, seed=seed, dtype=dtype, device=device, **fields)
        return self._tensor_set((await self._fetch(call))[0], as_numpy)

    async def stats(
        self, shape: Any = None, scheme: str | None = None, *, init: Mapping[str, Any] | None = None,
        tensors: Any = None, layers: Any = None, overrides: Any = None, **options: Any,
    ) -> Summary:
        """Stats, normalized request and provenance without the data (``Accept: application/json``).
        Takes what ``tensor`` takes, or ``tensors=`` / ``layers=`` for the other endpoints."""
        call = self._recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                                 accept=JSON, **options)
        async with self._open(call) as response:
            return self._summary(await response.aread())

    async def download(
        self, shape: Any = None, scheme: str | None = None, *, path: str | os.PathLike[str] | IO[bytes],
        progress: Progress | None = None, init: Mapping[str, Any] | None = None, tensors: Any = None,
        layers: Any = None, overrides: Any = None, **options: Any,
    ) -> Download:
        """Stream the safetensors answer to ``path`` (a file name, or a binary file object) without
        holding it in memory. ``progress(done, total)`` is called after each chunk; ``total`` is the
        ``Content-Length``, or ``None`` when the server sent none. A file name is written under
        ``<path>.part`` and renamed when complete. Takes what ``stats`` takes."""
        call = self._recipe_call(shape, scheme, init=init, tensors=tensors, layers=layers, overrides=overrides,
                                 accept=BINARY, **options)
        async with self._open(call) as response:
            total = expected_length(response)
            if not isinstance(path, str | os.PathLike):
                done = await self._copy(response, path, total, progress)
                return self._download(Path(getattr(path, "name", "-")), done, response.headers)
            target = Path(path)
            part = partial_path(target)
            try:
                with open(part, "wb") as file:
                    done = await self._copy(response, file, total, progress)
                os.replace(part, target)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            return self._download(target, done, response.headers)

    # ---- catalog ----------------------------------------------------------------------------

    async def schemes(self) -> dict[str, Any]:
        """``GET /v1/schemes``: scheme name -> parameters, shape rule, formula, reference."""
        return (await self._json(Call("GET", "/v1/schemes")))["schemes"]

    async def layers(self) -> dict[str, Any]:
        """``GET /v1/layers``: the layer types ``module`` accepts, with their arguments."""
        return await self._json(Call("GET", "/v1/layers"))

    async def gain(self, nonlinearity: str, param: float | None = None) -> float:
        """``torch.nn.init.calculate_gain(nonlinearity, param)``, computed by the server."""
        params = {"nonlinearity": nonlinearity} | ({} if param is None else {"param": param})
        return (await self._json(Call("GET", "/v1/gain", params=params)))["gain"]

    async def fans(self, shape: Any) -> dict[str, int]:
        """``{"fan_in", "fan_out", "receptive_field"}`` of a weight shape ``[out, in, *kernel]``."""
        return await self._json(Call("GET", "/v1/fans", params={"shape": shape_text(shape)}))

    async def devices(self) -> dict[str, Any]:
        """``GET /v1/devices``: the devices, which one ``auto`` means, torch version and limits."""
        return await self._json(Call("GET", "/v1/devices"))

    # ---- I/O --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _open(self, call: Call) -> AsyncIterator[httpx.Response]:
        """A 2xx response, streaming; error answers raise, after retries where they apply."""
        attempt = 0
        while True:
            request = self._http.build_request(call.method, call.path, json=call.body, params=call.params,
                                               headers=self._headers(call))
            try:
                response = await self._http.send(request, stream=True)
            except RETRIED_CONNECT_ERRORS:
                delay = self.retry.delay(attempt, None)
                if delay is None:
                    raise
            else:
                if response.is_success:
                    break
                try:
                    error = error_from_response(response.status_code, response.headers, await response.aread())
                finally:
                    await response.aclose()
                delay = self.retry.delay(attempt, error)
                if delay is None:
                    raise error
            await self._sleep(delay)
            attempt += 1
        try:
            yield response
        finally:
            await response.aclose()

    async def _fetch(self, call: Call) -> tuple[bytearray, httpx.Headers]:
        async with self._open(call) as response:
            body = BodyBuffer(expected_length(response))
            async for chunk in response.aiter_bytes():
                body.feed(chunk)
            return body.finish(), response.headers

    async def _json(self, call: Call) -> Any:
        async with self._open(call) as response:
            return json.loads(await response.aread())

    @staticmethod
    async def _copy(response: httpx.Response, file: IO[bytes], total: int | None, progress: Progress | None) -> int:
        done = 0
        if progress:
            progress(0, total)
        async for chunk in response.aiter_bytes():
            file.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        check_length(done, total)
        return done
