"""``create_app(settings)`` builds the FastAPI app; ``app = create_app()`` is for uvicorn.

Importing this module builds the app object but starts nothing: the worker pool starts in the
lifespan, and stops there, in phases (see ``lifespan``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import service
from service.api import handlers
from service.api.body_limit import BodyLimitMiddleware
from service.api.routes import catalog, health, modules, playground, tensors
from service.settings import Settings
from service.workers.pool import WorkerPool

log = logging.getLogger("initsvc")

DESCRIPTION = """Initialized neural-network weights over HTTP, bit-identical to
`torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape))`.

Answers are safetensors files whose `__metadata__` carries `stats`, `request` (normalized, seed filled
in) and `provenance`; send `Accept: application/json` for everything but the data."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = WorkerPool(settings)
        app.state.pool = pool
        log.info("initsvc %s ready on %s (auto = %s)", service.__version__, ", ".join(pool.devices), pool.default)
        try:
            yield
        finally:
            # Phase 1: stop admitting new jobs. Phase 2 (in-flight responses finishing) is
            # uvicorn's own graceful shutdown, bounded by --timeout-graceful-shutdown.
            pool.stop_accepting()
            # Phase 3: stop the workers.
            pool.stop()

    app = FastAPI(
        title="initsvc",
        version=service.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    handlers.install(app)
    for router in (tensors.router, modules.router, catalog.router, health.router, playground.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


app = create_app()
