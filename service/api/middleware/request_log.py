"""Request ids and one access line per request, as plain text or JSON lines.

The request's id is the client's ``X-Request-ID`` when it is 1-128 printable ASCII characters,
else a new uuid4 hex (``request_id_from``). ``ObserverMiddleware`` (``observer.py``) echoes it in
the response's ``X-Request-ID``, puts it on ``request.state.request_id`` and, through
``set_request_id``, on every log record written while the request runs; at the answer's end its
``AccessLog`` hook logs one line on ``initsvc.access``::

    GET /v1/tensor 200 12.3ms 1048712B rid=5f0c...     (text)
    {"ts": "...", "level": "INFO", "logger": "initsvc.access", "msg": "GET /v1/tensor 200 ...",
     "method": "GET", "path": "/v1/tensor", "status": 200, "duration_ms": 12.3,
     "bytes": 1048712, "request_id": "5f0c...", "client": "127.0.0.1"}      (INITSVC_LOG_JSON=true)

The line is written when the last body byte is handed to the server (the last chunk, or the one
that completes ``Content-Length``; or when the request ends without an answer, as 499, or 500 if
it raised), so it is in the log before the client has the whole answer. ``duration_ms`` runs
from the first byte of the request to that moment; ``bytes`` counts body bytes only. The metrics
read the same observer, so the line and the counters agree on status and bytes.

Nothing is configured at import: ``create_app`` calls ``configure_logging``, which gives the
``initsvc`` logger one handler of ours (stderr) and leaves the root logger alone. Logging is
process-wide, so the last app built decides text or JSON. Headers are never logged, so neither
are API keys; the query string is left out too.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

if TYPE_CHECKING:
    from service.api.middleware.observer import ResponseObserver

ACCESS_LOGGER = "initsvc.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_REQUEST_ID_CHARS = 128
MAX_LOGGED_PATH_CHARS = 2048

_VALID_REQUEST_ID = re.compile(rf"^[\x20-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}$")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("initsvc_request_id", default=None)
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and goes in the JSON.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

access_log = logging.getLogger(ACCESS_LOGGER)


def _one_field(text: str) -> str:
    """``text`` as one field of a text log line: quoted (JSON) when it has a space, a quote or a
    backslash, so a client's request id cannot write fields of its own into the line."""
    return json.dumps(text) if re.search(r'[\s"\\]', text) else text


def request_id_from(value: bytes | None) -> str:
    """The client's id when it is 1-128 printable ASCII characters; otherwise a new uuid4 hex."""
    if value is not None:
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _VALID_REQUEST_ID.match(text):
            return text
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request this code runs for (``None`` outside a request)."""
    return _REQUEST_ID.get()


def set_request_id(request_id: str) -> contextvars.Token[str | None]:
    """Make ``request_id`` the current one (for ``RequestIdFilter``); ``reset_request_id`` undoes it."""
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _REQUEST_ID.reset(token)


def _printable(text: str, limit: int = MAX_LOGGED_PATH_CHARS) -> str:
    """``text`` with control and non-ASCII characters escaped, so one request stays one line."""
    text = text[:limit]
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class AccessLog:
    """The ``on_end`` hook of ``ObserverMiddleware`` that writes a request's access line."""

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or access_log

    def __call__(self, scope: Scope, observer: ResponseObserver) -> None:
        self._log(scope, observer.final_status(), observer.body_bytes, observer.duration_s * 1000.0,
                  observer.request_id or "-")

    def _log(self, scope: Scope, status: int, sent: int, duration_ms: float, request_id: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        method = scope.get("method", "")
        path = _printable(scope.get("path", ""))
        client = scope.get("client")
        self.logger.info(
            "%s %s %d %.1fms %dB rid=%s",
            method, path, status, duration_ms, sent, _one_field(request_id),
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "bytes": sent,
                "request_id": request_id,
                "client": client[0] if client else None,
            },
        )


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = _REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then the record's extras
    (``request_id``, ``status``, ...), and ``exc_info`` as text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=True)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as ``logging.lastResort``
    does), so a replaced stderr (a test's capture, a daemon's redirect) gets the lines."""

    def __init__(self, level: int = logging.NOTSET):
        logging.Handler.__init__(self, level)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def configure_logging(log_json: bool) -> logging.Handler:
    """Give the ``initsvc`` logger our stderr handler (once), text or JSON; level INFO if unset.

    Records still propagate, so an application that configures the root logger sees them too.
    """
    logger = logging.getLogger("initsvc")
    handler = next((h for h in logger.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_json else logging.Formatter(TEXT_FORMAT))
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler
