"""Optional API keys (``INITSVC_API_KEYS``): every request but the public ones must carry a key.

A key comes as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. A request without one, or
with a wrong one, is answered ``401 {"detail": ...}`` with ``WWW-Authenticate: Bearer
realm="initsvc"``, before its body is read. With no keys configured the middleware is not
installed at all.

Public (no key needed), because they serve no tensors and tell nothing about traffic:

    /healthz, /readyz                    probes must work without secrets
    /docs, /redoc, /openapi.json         the API's description, which says how to authenticate
    /, /playground/{name}                the playground's static page and assets (the page's own
                                         calls to /v1/* still need a key)

Everything else needs a key, ``/metrics`` included (traffic and memory figures are not for
everyone). Open paths match exactly (a prefix only for a mounted directory of the playground),
so ``/healthz/../v1/tensor`` is not open.

Keys are compared in constant time: the SHA-256 of what the client sent against the SHA-256 of
every configured key, with ``hmac.compare_digest`` and no early exit, so neither which key
matched nor how long a key is leaks through timing. The middleware keeps only those digests;
the keys stay ``SecretStr`` in ``Settings`` and are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence

from pydantic import SecretStr
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import send_error

REALM = 'Bearer realm="initsvc"'
MISSING = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
INVALID = "invalid API key"


class PublicPaths:
    """Paths served without a key: exact paths, route templates (``/playground/{name}``, matched
    by the route's own regex, so a parameter never spans a ``/``) and mounted directories."""

    def __init__(self, exact: Iterable[str], prefixes: Iterable[str] = (), patterns: Iterable[re.Pattern] = ()):
        self.exact = frozenset(exact)
        self.prefixes = tuple(p.rstrip("/") + "/" for p in prefixes)
        self.patterns = tuple(patterns)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        return path in self.exact or path.startswith(self.prefixes) or any(p.match(path) for p in self.patterns)

    @classmethod
    def of_routes(cls, routes: Iterable[object], extra: Iterable[str | None] = ()) -> PublicPaths:
        """``extra`` paths plus every route of ``routes`` (a ``Mount`` opens its whole directory)."""
        exact = {p for p in extra if p}
        prefixes, patterns = [], []
        for route in routes:
            path = getattr(route, "path", None)
            if not path:
                continue
            if isinstance(route, Mount):
                prefixes.append(path)
            elif "{" in path and getattr(route, "path_regex", None) is not None:
                patterns.append(route.path_regex)
            else:
                exact.add(path)
        return cls(exact, prefixes, patterns)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request carries: ``Authorization: Bearer KEY`` (scheme in any case) and ``X-API-Key``."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


class ApiKeyMiddleware:
    """401 for HTTP requests outside ``public`` without a valid key (pure ASGI: the body is never
    touched, and an accepted request passes through unchanged)."""

    def __init__(self, app: ASGIApp, api_keys: Sequence[SecretStr], public: PublicPaths | None = None):
        if not api_keys:
            raise ValueError("ApiKeyMiddleware needs at least one key; leave it out when INITSVC_API_KEYS is empty")
        self.app = app
        self.public = public or PublicPaths(())
        self._digests = tuple(_digest(k.get_secret_value().encode("utf-8")) for k in api_keys)

    def __repr__(self) -> str:
        return f"ApiKeyMiddleware({len(self._digests)} keys)"

    def accepts(self, presented: Iterable[bytes]) -> bool:
        """Whether any presented key equals a configured one; every pair is compared."""
        ok = False
        for key in presented:
            digest = _digest(key)
            for expected in self._digests:
                ok |= hmac.compare_digest(digest, expected)
        return ok

    def _route_path(self, scope: Scope) -> str:
        path, root = scope.get("path", ""), scope.get("root_path", "")
        return path[len(root):] if root and path.startswith(root) else path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._route_path(scope) in self.public:
            await self.app(scope, receive, send)
            return
        presented = presented_keys(scope.get("headers", ()))
        if self.accepts(presented):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, 401, INVALID if presented else MISSING, headers=[(b"www-authenticate", REALM.encode())])
