"""Annotated dependencies read from ``app.state``: ``SettingsDep``, ``PoolDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.settings import Settings
from service.workers.pool import WorkerPool


# ``async`` so FastAPI calls them on the loop: a plain ``def`` dependency is run in a thread pool,
# a thread hop per dependency per request for an attribute read.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_pool(request: Request) -> WorkerPool:
    return request.app.state.pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[WorkerPool, Depends(get_pool)]
