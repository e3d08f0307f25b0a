"""``InitClient``: the blocking client. It performs the I/O its methods ask for with
``httpx.Client``; ``_methods`` and ``_base`` do everything else.

    >>> from service.client import InitClient
    >>> with InitClient("http://127.0.0.1:8000") as client:
    ...     w = client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0).tensor
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from service.client import _base, _methods
from service.client._base import DEFAULT_TIMEOUT, ClientConfig, Exchange, Plan, RetryPolicy, Step, method_of, request

P = ParamSpec("P")
T = TypeVar("T")


def blocking(method: Callable[Concatenate[ClientConfig, P], Plan[T]]) -> Callable[Concatenate[InitClient, P], T]:
    """``method`` (one of ``_methods``' plans) as a method of ``InitClient`` that returns its
    result. Signature and docstring stay ``method``'s."""

    def run(self: InitClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self, *args, **kwargs))

    return method_of(run, method)


class InitClient(ClientConfig):
    """Blocking client for the init service.

    ``base_url`` defaults to ``$INITSVC_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``$INITSVC_API_KEY`` (sent as ``Authorization: Bearer``). 429 and 503 answers are retried up
    to ``retries`` times, waiting ``Retry-After`` when the server sends it, else exponential backoff
    from ``backoff_s`` (a refused connection raises ``httpx.ConnectError`` at once); ``sleep`` does
    the waiting (tests pass a recorder). ``transport`` goes to ``httpx.Client``:
    ``httpx.MockTransport(handler)`` needs no network. Use it as a context manager, or call
    ``close()``.
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

    tensor = blocking(_methods.tensor)
    tensors = blocking(_methods.tensors)
    module = blocking(_methods.module)
    model = blocking(_methods.model)
    stats = blocking(_methods.stats)
    download = blocking(_methods.download)
    schemes = blocking(_methods.schemes)
    layers = blocking(_methods.layers)
    models = blocking(_methods.models)
    _models_answer = blocking(_methods.models_answer)
    gain = blocking(_methods.gain)
    fans = blocking(_methods.fans)
    devices = blocking(_methods.devices)

    # ---- I/O --------------------------------------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        """Perform each step of ``plan`` in the calling thread; what it returns."""
        exchange = Exchange(plan)
        try:
            while (step := exchange.next()) is not None:
                with exchange:  # an error is raised in the plan, where it asked for the step
                    exchange.reply(self._perform(step))
            return exchange.result
        finally:
            for response in exchange.responses:
                response.close()

    def _perform(self, step: Step) -> Any:
        match step:
            case _base.Send(call):
                return self._http.send(request(self._http, call), stream=True)
            case _base.Stream(response, feed):
                for chunk in response.iter_bytes():
                    feed(chunk)
            case _base.Pause(seconds):
                self._sleep(seconds)
        return None
