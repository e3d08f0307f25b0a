"""``create_app(settings)`` builds the FastAPI app; ``app = create_app()`` is for uvicorn.

Importing this module builds the app object but starts nothing: the worker pool starts in the
lifespan, and stops there, in phases (see ``lifespan``).
"""

from __future__ import annotations

import os

# orthogonal_'s QR runs in MKL, whose results depend on the CPU's code path unless conditional
# numerical reproducibility is pinned; MKL reads this once, so it is set before torch loads (every
# import below may load it). ``service.cli`` does the same for ``initsvc serve``.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import service
from service.api import handlers, openapi
from service.engine import chunked
from service.api.auth import ApiKeyMiddleware, PublicPaths
from service.api.body_limit import BodyLimitMiddleware
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.request_log import RequestLogMiddleware, configure_logging
from service.api.routes import catalog, health, metrics, models, modules, playground, tensors
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
        # The self-test of chunked generation (chunked vs serial torch for each op and dtype):
        # anything that fails here is served serially, and /v1/devices says so.
        await pool.workers["cpu"].submit(chunked.self_test)
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
    for router in (tensors.router, modules.router, models.router, catalog.router, health.router, playground.router, metrics.router):
        app.include_router(router)
    add_middleware(app, settings)
    return app


# Headers a browser script may read from a cross-origin answer (CORS hides all but a few by default).
CORS_EXPOSED_HEADERS = ["ETag", "X-Init-Seed", "X-Init-Device", "Content-Length", "Content-Disposition", "X-Request-ID"]


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The middleware stack, outermost first (Starlette's ServerErrorMiddleware is always outside it):

    RequestLogMiddleware   X-Request-ID in and out, one access line: sees every answer below, 401/413 included
    MetricsMiddleware      requests, latency, bytes as they go out, by route template
    CORSMiddleware         only with INITSVC_CORS_ORIGINS; outside auth, so preflights need no key and a
                           401 still carries the CORS headers a browser needs to read it
    ApiKeyMiddleware       only with INITSVC_API_KEYS; before the body limit, so a client without a key
                           learns nothing about limits and no body of theirs is read
    BodyLimitMiddleware    innermost of ours, still outside routing: a body over the limit is refused
                           before FastAPI reads it whole

    Starlette wraps in reverse order of ``add_middleware`` calls, so they are added innermost first.
    """
    configure_logging(settings.log_json)
    app.state.metrics = Metrics(app.state)
    public = PublicPaths.of_routes(
        playground.router.routes,
        extra=["/", "/healthz", "/readyz", app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url],
    )
    openapi.install(app, public if settings.api_keys else None)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.api_keys:
        app.add_middleware(ApiKeyMiddleware, api_keys=settings.api_keys, public=public)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept", "If-None-Match", "X-Request-ID"],
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, routes=app.router.routes)
    app.add_middleware(RequestLogMiddleware)


app = create_app()
