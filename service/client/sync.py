"""``InitClient``: the blocking client. It sends and receives; ``_base`` does everything else.

    >>> from service.client import InitClient
    >>> with InitClient("http://127.0.0.1:8000") as client:
    ...     w = client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0).tensor
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import httpx

from service.client._base import DEFAULT_TIMEOUT, BaseClient, RetryPolicy

P = ParamSpec("P")
T = TypeVar("T")


def blocking(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """``method`` (one of ``BaseClient``'s coroutines) as a plain method that returns its result.

    ``InitClient``'s I/O blocks instead of awaiting, so the coroutine never suspends: one step
    runs it to its end, in the calling thread. Signature and docstring stay ``method``'s.
    """

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        coroutine = method(*args, **kwargs)
        try:
            coroutine.send(None)
        except StopIteration as finished:
            return finished.value
        coroutine.close()
        raise RuntimeError(f"{method.__qualname__} waited on something other than InitClient's own I/O")

    return run


# BaseClient's public coroutines as blocking functions, made at module level: in the class body mypy
# would infer ``blocking``'s result type from the coroutine each one overrides.
_blocking_tensor = blocking(BaseClient.tensor)
_blocking_tensors = blocking(BaseClient.tensors)
_blocking_module = blocking(BaseClient.module)
_blocking_model = blocking(BaseClient.model)
_blocking_stats = blocking(BaseClient.stats)
_blocking_download = blocking(BaseClient.download)
_blocking_schemes = blocking(BaseClient.schemes)
_blocking_layers = blocking(BaseClient.layers)
_blocking_models = blocking(BaseClient.models)
_blocking_models_answer = blocking(BaseClient._models_answer)
_blocking_gain = blocking(BaseClient.gain)
_blocking_fans = blocking(BaseClient.fans)
_blocking_devices = blocking(BaseClient.devices)


class InitClient(BaseClient):
    """Blocking client for the init service.

    ``base_url`` defaults to ``$INITSVC_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``$INITSVC_API_KEY`` (sent as ``Authorization: Bearer``). 429 and 503 answers are retried up
    to ``retries`` times, waiting ``Retry-After`` when the server sends it, else exponential backoff
    from ``backoff_s`` (a refused connection raises ``httpx.ConnectError`` at once); ``sleep`` does
    the waiting (tests pass a recorder). ``transport`` goes to ``httpx.Client``:
    ``httpx.MockTransport(handler)`` needs no network. Use it as a context manager, or call
    ``close()``.
    """

    _http: httpx.Client

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        super().__init__(base_url, api_key, timeout, RetryPolicy(retries, backoff_s, backoff_max_s))
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self._http_options())

    def __enter__(self) -> InitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # Each replaces a BaseClient coroutine with a blocking method of the same parameters: an override
    # that is incompatible by design (an InitClient is never used where an async client is expected).
    tensor = _blocking_tensor  # type: ignore[assignment]
    tensors = _blocking_tensors  # type: ignore[assignment]
    module = _blocking_module  # type: ignore[assignment]
    model = _blocking_model  # type: ignore[assignment]
    stats = _blocking_stats  # type: ignore[assignment]
    download = _blocking_download  # type: ignore[assignment]
    schemes = _blocking_schemes  # type: ignore[assignment]
    layers = _blocking_layers  # type: ignore[assignment]
    models = _blocking_models  # type: ignore[assignment]
    _models_answer = _blocking_models_answer  # type: ignore[assignment]
    gain = _blocking_gain  # type: ignore[assignment]
    fans = _blocking_fans  # type: ignore[assignment]
    devices = _blocking_devices  # type: ignore[assignment]

    # ---- I/O --------------------------------------------------------------------------------

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return self._http.send(request, stream=True)

    async def _read(self, response: httpx.Response) -> bytes:
        return response.read()

    async def _stream(self, response: httpx.Response, feed: Callable[[bytes], None]) -> None:
        for chunk in response.iter_bytes():
            feed(chunk)

    async def _close(self, response: httpx.Response) -> None:
        response.close()

    async def _pause(self, seconds: float) -> None:
        self._sleep(seconds)
