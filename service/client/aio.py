"""``AsyncInitClient``: ``InitClient``'s methods as coroutines. It performs the I/O its methods ask
for with ``httpx.AsyncClient``; ``_methods`` and ``_base`` do everything else.

    >>> from service.client import AsyncInitClient
    >>> async with AsyncInitClient("http://127.0.0.1:8000") as client:
    ...     w = (await client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0)).tensor
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import httpx

from service.client import _base, _methods
from service.client._base import DEFAULT_TIMEOUT, ClientConfig, Exchange, Plan, RetryPolicy, Step, method_of, request

P = ParamSpec("P")
T = TypeVar("T")


def awaiting(
    method: Callable[Concatenate[ClientConfig, P], Plan[T]],
) -> Callable[Concatenate[AsyncInitClient, P], Coroutine[Any, Any, T]]:
    """``method`` (one of ``_methods``' plans) as a coroutine method of ``AsyncInitClient``.
    Signature and docstring stay ``method``'s."""

    async def run(self: AsyncInitClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(method(self, *args, **kwargs))

    return method_of(run, method)


class AsyncInitClient(ClientConfig):
    """Async client for the init service (asyncio or trio), with ``InitClient``'s methods.

    ``base_url`` defaults to ``$INITSVC_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``$INITSVC_API_KEY`` (sent as ``Authorization: Bearer``). 429 and 503 answers are retried up
    to ``retries`` times, waiting ``Retry-After`` when the server sends it, else exponential backoff
    from ``backoff_s`` (a refused connection raises ``httpx.ConnectError`` at once); ``sleep`` does
    the waiting (tests pass a recorder). ``transport`` goes to ``httpx.AsyncClient``:
    ``httpx.MockTransport(handler)``, or ``httpx.ASGITransport(app)`` with the app's lifespan
    running, need no network. Use it with ``async with``, or await ``aclose()``.
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
        super().__init__(base_url, api_key, timeout, RetryPolicy(retries, backoff_s, backoff_max_s))
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def __aenter__(self) -> AsyncInitClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    tensor = awaiting(_methods.tensor)
    tensors = awaiting(_methods.tensors)
    module = awaiting(_methods.module)
    model = awaiting(_methods.model)
    stats = awaiting(_methods.stats)
    download = awaiting(_methods.download)
    schemes = awaiting(_methods.schemes)
    layers = awaiting(_methods.layers)
    models = awaiting(_methods.models)
    _models_answer = awaiting(_methods.models_answer)
    gain = awaiting(_methods.gain)
    fans = awaiting(_methods.fans)
    devices = awaiting(_methods.devices)

    # ---- I/O --------------------------------------------------------------------------------

    async def _run(self, plan: Plan[T]) -> T:
        """Perform each step of ``plan``, awaiting its I/O; what it returns."""
        exchange = Exchange(plan)
        try:
            while (step := exchange.next()) is not None:
                with exchange:  # an error is raised in the plan, where it asked for the step
                    exchange.reply(await self._perform(step))
            return exchange.result
        finally:
            for response in exchange.responses:
                await response.aclose()

    async def _perform(self, step: Step) -> Any:
        match step:
            case _base.Send(call):
                return await self._http.send(request(self._http, call), stream=True)
            case _base.Stream(response, feed):
                async for chunk in response.aiter_bytes():
                    feed(chunk)
            case _base.Pause(seconds):
                await self._sleep(seconds)
        return None
