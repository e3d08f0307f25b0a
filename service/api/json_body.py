"""JSON bodies read strictly: a key given twice in one object is refused, not resolved.

``json.loads`` keeps the last of two equal keys, so ``{"seed": 0, "seed": 5}`` would silently
mean seed 5; docs/api.md §6 says bodies are strict, so it is a 422 naming the key. Routes that
take a JSON body use ``StrictJSONRoute`` (FastAPI's documented way to give a route its own
``Request`` class); the error is rendered by ``errors.json_invalid``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DuplicateKey(ValueError):
    """An object of the body has ``key`` twice."""

    def __init__(self, key: str):
        super().__init__(f"the key {key!r} appears twice in one object; each key may appear once")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_keys)
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
