"""What the client raises when the service answers with an error.

    InitServiceError(Exception)        any non-2xx answer; .status, .detail, .retry_after
    ├── Unauthorized                   401: API keys are configured; ours is missing or wrong
    ├── TooLarge                       413: over a size limit; .limit, .value, .env_var
    ├── InvalidRecipe(ValueError)      422: .problems, one {loc, msg, type} per field
    ├── Busy                           429: the device's queue is full; retried, then raised
    ├── Unavailable                    503: out of memory, worker down or draining; retried, then raised
    └── MalformedAnswer                a 2xx answer that is not the safetensors file it claims to be

Network failures stay httpx's own exceptions (``httpx.ConnectError``, ``httpx.ReadTimeout``).
``str(error)`` is one line, the way the CLI prints it: ``InvalidRecipe: body.init.normal.std: ...``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any


class InitServiceError(Exception):
    """The service answered with an error status.

    ``status`` is the HTTP status, ``detail`` the server's ``detail`` exactly as sent (a string,
    or for 422 a list of ``{loc, msg, type}``), ``retry_after`` the ``Retry-After`` seconds when
    the server sent one, and ``body`` the whole decoded JSON answer (or its text).
    """

    def __init__(self, status: int, detail: Any, *, retry_after: float | None = None, body: Any = None):
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.body = body
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The server's detail as one line."""
        return _one_line(_render(self.detail) or f"HTTP {self.status}")

    def __str__(self) -> str:
        return self.message


class Unauthorized(InitServiceError):
    """401: the server has API keys and the request carried none or a wrong one (``api_key=`` or
    ``INITSVC_API_KEY``)."""


class TooLarge(InitServiceError):
    """413: over a size limit. ``limit``, ``value`` and ``env_var`` name it, e.g.
    ``INITSVC_MAX_ELEMENTS``."""

    @property
    def limit(self) -> int | None:
        return self.body.get("limit") if isinstance(self.body, Mapping) else None

    @property
    def value(self) -> int | None:
        return self.body.get("value") if isinstance(self.body, Mapping) else None

    @property
    def env_var(self) -> str | None:
        return self.body.get("env_var") if isinstance(self.body, Mapping) else None


class InvalidRecipe(InitServiceError, ValueError):
    """422: the recipe is invalid. ``problems`` lists ``{loc, msg, type}``, one per field."""

    @property
    def problems(self) -> list[dict[str, Any]]:
        if isinstance(self.detail, list):
            return [dict(p) for p in self.detail if isinstance(p, Mapping)]
        return [{"loc": [], "msg": str(self.detail), "type": "value_error"}]


class Busy(InitServiceError):
    """429: the device's queue is full. The client retries after ``Retry-After``; this is raised
    when the retries run out."""


class Unavailable(InitServiceError):
    """503: the device ran out of memory, its worker is down, or the server is shutting down.
    Retried like ``Busy``."""


class MalformedAnswer(InitServiceError):
    """A success status whose body is cut short or is not a safetensors file we can read."""


ERRORS_BY_STATUS: dict[int, type[InitServiceError]] = {
    401: Unauthorized,
    413: TooLarge,
    422: InvalidRecipe,
    429: Busy,
    503: Unavailable,
}


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> InitServiceError:
    """The exception for an error answer: its class from the status, its detail from the body."""
    try:
        body: Any = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = content.decode("utf-8", "replace")
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    cls = ERRORS_BY_STATUS.get(status, InitServiceError)
    return cls(status, detail, retry_after=parse_retry_after(headers.get("retry-after")), body=body)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _render(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_render_problem(p) for p in detail)
    return json.dumps(detail, sort_keys=True)


def _render_problem(problem: Any) -> str:
    if not isinstance(problem, Mapping):
        return str(problem)
    loc = ".".join(str(part) for part in problem.get("loc", []))
    msg = str(problem.get("msg", ""))
    return f"{loc}: {msg}" if loc else msg


def _one_line(text: str) -> str:
    return " ".join(text.split())
