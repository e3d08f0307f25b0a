"""What ``InitClient`` and ``AsyncInitClient`` share but I/O: configuration, the retry rule, and
the exchanges they perform, written once without I/O ("sans-I/O").

An exchange is a generator (a ``Plan``). Each time it needs I/O it yields a step (``Send`` a
request, ``Stream`` a response's body, ``Pause`` before a retry) and is sent back the step's
outcome; it returns what the public method returns. ``service.client._methods`` holds the public
methods as plans; ``InitClient`` performs the steps with ``httpx.Client`` and ``AsyncInitClient``
with ``httpx.AsyncClient``, each through an ``Exchange``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeAlias, TypeVar

import httpx

import service
from service.client._answers import BodyBuffer, BodyFile, Progress, expected_length, parse_json
from service.client._requests import Call
from service.client.errors import InitServiceError, MalformedAnswer, error_from_response

DEFAULT_URL = "http://127.0.0.1:8000"
# Generous read timeout: with stats on, the first byte waits until the whole tensor is made.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
RETRY_STATUSES = frozenset({429, 503})

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def with_scheme(url: str) -> str:
    """``localhost:8000`` is ``http://localhost:8000`` (as curl reads it); a URL with a scheme is kept."""
    return url if "://" in url else f"http://{url}"


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


class ClientConfig:
    """Where the server is, how to authenticate, how long to wait and when to retry: what both
    clients are configured with."""

    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout | None,
                 retry: RetryPolicy):
        self.base_url = with_scheme((base_url or os.environ.get("INITSVC_URL") or DEFAULT_URL).rstrip("/"))
        self._api_key = api_key if api_key is not None else (os.environ.get("INITSVC_API_KEY") or None)
        self.timeout = timeout
        self.retry = retry

    def __repr__(self) -> str:  # never shows the API key
        return f"{type(self).__name__}(base_url={self.base_url!r}, retries={self.retry.retries})"

    def _http_options(self) -> dict[str, Any]:
        """``httpx.Client``'s or ``httpx.AsyncClient``'s arguments."""
        headers = {"user-agent": f"initsvc-client/{service.__version__}"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return {"base_url": self.base_url, "timeout": self.timeout, "headers": headers}


# ---- the steps a plan asks its client to perform ------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``call`` (``request(http, call)``); the outcome is the response, its body unread."""

    call: Call


@dataclass(frozen=True)
class Stream:
    """``feed(chunk)`` for each chunk of ``response``'s body, as it arrives; the outcome is ``None``."""

    response: httpx.Response
    feed: Callable[[bytes], None]


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` before a retry, with the ``sleep`` the client was given."""

    seconds: float


Step: TypeAlias = Send | Stream | Pause
Plan: TypeAlias = Generator[Step, Any, T]


def request(http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    """``call`` as a request of ``http``, with its base URL and headers."""
    headers = {"accept": call.accept}
    if call.body is None:
        return http.build_request(call.method, call.path, params=call.params, headers=headers)
    body = json.dumps(call.body, default=_plain).encode()
    return http.build_request(call.method, call.path, content=body, params=call.params,
                              headers={**headers, "content-type": "application/json"})


def _plain(value: Any) -> Any:
    """numpy and torch scalars (``np.float32(0.5)``, a 0-d tensor) as the Python numbers they
    hold, and a ``torch.dtype`` or numpy dtype as its name, for the JSON body."""
    module = type(value).__module__.split(".")[0]
    if module == "torch" and type(value).__name__ == "dtype":
        return str(value).removeprefix("torch.")
    if module == "numpy" and hasattr(value, "itemsize") and hasattr(value, "kind") and not hasattr(value, "item"):
        return value.name  # a numpy dtype
    if isinstance(value, type) and value.__module__.split(".")[0] == "numpy" and hasattr(value, "dtype"):
        return value.__name__  # a numpy scalar type: np.float32
    if module in ("numpy", "torch") and callable(getattr(value, "item", None)) and getattr(value, "ndim", 0) == 0:
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not something a JSON body can carry")


def method_of(run: F, plan: Callable[..., Any]) -> F:
    """``run``, the client method that performs ``plan``, with ``plan``'s name, docstring and
    signature, written as a method's: ``self`` first, and returning the plan's result."""
    functools.update_wrapper(run, plan)
    signature = inspect.signature(plan)
    client, *parameters = signature.parameters.values()
    receiver = client.replace(name="self", kind=client.POSITIONAL_OR_KEYWORD, annotation=client.empty)
    returns = signature.return_annotation  # "Plan[Result]": _methods' annotations are strings
    run.__dict__["__signature__"] = signature.replace(
        parameters=[receiver, *parameters], return_annotation=returns.removeprefix("Plan[").removesuffix("]"))
    return run


@dataclass
class Exchange(Generic[T]):
    """A plan run one step at a time by a client that performs the steps::

        exchange = Exchange(plan)
        try:
            while (step := exchange.next()) is not None:
                with exchange:
                    exchange.reply(<perform step>)
            return exchange.result
        finally:
            <close exchange.responses>

    An error raised while a step is performed (inside ``with exchange``) is raised inside the plan,
    where it asked for the step, so the plan's own handlers run (a download removes its partial
    file). The client closes every response the plan was sent when the exchange ends; a body read
    to its end is closed already.
    """

    plan: Plan[T]
    responses: list[httpx.Response] = field(default_factory=list)
    _outcome: Any = None
    _error: BaseException | None = None

    def next(self) -> Step | None:
        """The next step, or ``None`` when the plan has returned its ``result``."""
        try:
            if self._error is not None:
                error, self._error = self._error, None
                return self.plan.throw(error)
            return self.plan.send(self._outcome)
        except StopIteration as finished:
            self.result: T = finished.value
            return None

    def reply(self, outcome: Any) -> None:
        """The last step's outcome."""
        if isinstance(outcome, httpx.Response):
            self.responses.append(outcome)
        self._outcome = outcome

    def __enter__(self) -> Exchange[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        """Keep the step's error for ``next()`` to raise inside the plan."""
        self._error = error
        return error is not None


# ---- the exchanges every public method is made of -----------------------------------------------


def answer(client: ClientConfig, call: Call) -> Plan[httpx.Response]:
    """A 2xx response, its body unread; error answers raise, after retries where they apply."""
    attempt = 0
    while True:
        try:
            response: httpx.Response = yield Send(call)
        except httpx.ConnectError as exc:
            raise httpx.ConnectError(
                f"nothing answers at {client.base_url} ({exc}); start a server with 'initsvc serve', or point "
                "base_url (or INITSVC_URL) at a running one", request=exc.request,
            ) from exc
        if response.is_success:
            return response
        error = error_from_response(response.status_code, response.headers, (yield from read(response)))
        delay = client.retry.delay(attempt, error)
        if delay is None:
            raise error
        yield Pause(delay)
        attempt += 1


def stream(response: httpx.Response, feed: Callable[[bytes], None], done: Callable[[], int]) -> Plan[None]:
    """``response``'s body fed to ``feed`` as it arrives. A 2xx body the connection cuts short
    (the server's ``Content-Length`` not reached, a broken chunk) is a ``MalformedAnswer``, as a
    short one that ends cleanly is; an error answer's body is read as it comes."""
    try:
        yield Stream(response, feed)
    except httpx.RemoteProtocolError as exc:
        if not response.is_success:
            raise
        total = response.headers.get("content-length")
        raise MalformedAnswer(
            response.status_code, f"answer cut short: {done()} of {total or 'unknown'} bytes ({exc})"
        ) from exc


def read(response: httpx.Response) -> Plan[bytes]:
    """The whole body."""
    body = bytearray()
    yield from stream(response, body.extend, lambda: len(body))
    return bytes(body)


def content(client: ClientConfig, call: Call) -> Plan[bytes]:
    """The whole answer, for JSON."""
    return (yield from read((yield from answer(client, call))))


def json_content(client: ClientConfig, call: Call) -> Plan[Any]:
    """The whole answer, parsed as JSON; a 2xx answer that is not JSON is a ``MalformedAnswer``."""
    body = yield from content(client, call)
    return parse_json(body)


def fetch(client: ClientConfig, call: Call) -> Plan[bytearray]:
    """The whole answer in one buffer sized from ``Content-Length``, for tensors to be views of."""
    response = yield from answer(client, call)
    body = BodyBuffer(expected_length(response.headers))
    yield from stream(response, body.feed, lambda: body.done)
    return body.finish()


def write(response: httpx.Response, file: IO[bytes], progress: Progress | None) -> Plan[int]:
    """``response``'s body written to ``file`` as it arrives; the number of bytes written."""
    body = BodyFile(file, expected_length(response.headers), progress)
    yield from stream(response, body.feed, lambda: body.done)
    return body.finish()
