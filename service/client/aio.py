"""``AsyncInitClient``: ``InitClient``'s methods as coroutines. It sends and receives; ``_base``
does everything else.

    >>> from service.client import AsyncInitClient
    >>> async with AsyncInitClient("http://127.0.0.1:8000") as client:
    ...     w = (await client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0)).tensor
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from service.client._base import DEFAULT_TIMEOUT, BaseClient, RetryPolicy


class AsyncInitClient(BaseClient):
    """Async client for the init service (asyncio or trio), with ``InitClient``'s methods.

    ``base_url`` defaults to ``$INITSVC_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``$INITSVC_API_KEY`` (sent as ``Authorization: Bearer``). 429 and 503 answers are retried up
    to ``retries`` times, waiting ``Retry-After`` when the server sends it, else exponential backoff
    from ``backoff_s`` (a refused connection raises ``httpx.ConnectError`` at once); ``sleep`` does
    the waiting (tests pass a recorder). ``transport`` goes to ``httpx.AsyncClient``:
    ``httpx.MockTransport(handler)``, or ``httpx.ASGITransport(app)`` with the app's lifespan
    running, need no network. Use it with ``async with``, or await ``aclose()``.
    """

    _http: httpx.AsyncClient

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
        super().__init__(base_url, api_key, timeout, RetryPolicy(retries, backoff_s, backoff_max_s))
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> AsyncInitClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # The public methods are BaseClient's coroutines, inherited as they are.

    # ---- I/O --------------------------------------------------------------------------------

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return await self._http.send(request, stream=True)

    async def _read(self, response: httpx.Response) -> bytes:
        return await response.aread()

    async def _stream(self, response: httpx.Response, feed: Callable[[bytes], None]) -> None:
        async for chunk in response.aiter_bytes():
            feed(chunk)

    async def _close(self, response: httpx.Response) -> None:
        await response.aclose()

    async def _pause(self, seconds: float) -> None:
        await self._sleep(seconds)
