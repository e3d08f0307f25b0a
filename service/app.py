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
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute, Mount, Route

import service
from service.api import errors, openapi
from service.api.middleware.auth import ApiKeyMiddleware, PublicPaths
from service.api.middleware.body_limit import BodyLimitMiddleware
from service.api.middleware.metrics import Metrics, RequestMetrics
from service.api.middleware.observer import ObserverMiddleware
from service.api.middleware.request_log import AccessLog, configure_logging
from service.api.routes import catalog, health, metrics, models, modules, playground, tensors
from service.engine import chunked
from service.presets import accounting as preset_accounting
from service.settings import Settings
from service.workers.pool import WorkerPool

log = logging.getLogger("initsvc")

DESCRIPTION = """Initialized neural-network weights over HTTP, bit-identical to
`torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape))`.

Answers are safetensors files whose `__metadata__` carries `stats`, `request` (normalized, seed filled
in) and `provenance`; send `Accept: application/json` for everything but the data."""


# How long the start-up self-tests may take (a few seconds on 2 cores).
STARTUP_TIMEOUT_S = 600.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = WorkerPool(settings)
        app.state.pool = pool
        # The self-test of chunked generation (chunked vs serial torch for each op and dtype):
        # anything that fails here is served serially, and /v1/devices says so.
        # Start-up work, not a request: INITSVC_JOB_TIMEOUT_S (a hung request's bound, which may be
        # set low) does not apply; a self-test that hangs fails start-up after STARTUP_TIMEOUT_S.
        startup = max(settings.job_timeout_s, STARTUP_TIMEOUT_S)
        await pool.workers["cpu"].submit(chunked.self_test, timeout_s=startup)
        await pool.workers["cpu"].submit(preset_accounting.self_test, timeout_s=startup)  # presets' keys alone vs the whole build
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
        docs_url=None,  # served by docs_routes, from local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.router.routes.extend(docs_routes(app))
    errors.install(app)
    for router in (tensors.router, modules.router, models.router, catalog.router, health.router, playground.router, metrics.router):
        app.include_router(router)
    add_middleware(app, settings)
    return app


# ---- /docs and /redoc without a network --------------------------------------------------------

# FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN, so they are blank where
# there is no internet. The assets come from fastapi-offline (a maintained PyPI package that ships
# swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js and depends on FastAPI only; the
# Swagger-only packages have no ReDoc, and copying the files here would leave them unmaintained).
# Only its static directory is used: the pages are FastAPI's own HTML pointed at it.
DOCS_URL, REDOC_URL, DOCS_ASSETS_URL = "/docs", "/redoc", "/docs/assets"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def docs_routes(app: FastAPI) -> list[BaseRoute]:
    """``/docs`` (Swagger UI), its OAuth2 redirect, ``/redoc`` and the assets they load."""

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_URL}"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets(request)}/swagger-ui.css",
            swagger_favicon_url=f"{assets(request)}/favicon.png", swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets(request)}/redoc.standalone.js", redoc_favicon_url=f"{assets(request)}/favicon.png",
            with_google_fonts=False,
        )

    return [
        Mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets"),
        Route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False),
        Route(str(app.swagger_ui_oauth2_redirect_url), oauth2_redirect, methods=["GET"], include_in_schema=False),
        Route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False),
    ]


# Headers a browser script may read from a cross-origin answer (CORS hides all but a few by default).
CORS_EXPOSED_HEADERS = ["ETag", "X-Init-Seed", "X-Init-Device", "Content-Length", "Content-Disposition", "X-Request-ID"]


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The middleware stack, outermost first (Starlette's ServerErrorMiddleware is always outside it):

    ObserverMiddleware     X-Request-ID in and out; the one wrapper of ``send``: its ResponseObserver sees
                           every answer below, 401/413/500 included, and at the answer's end gives it to
                           RequestMetrics (requests, latency, bytes by route template) and AccessLog (one line)
    UnexpectedError...     a bug below it is a JSON 500 with the request id (api/errors.py), connection kept
    CORSMiddleware         only with INITSVC_CORS_ORIGINS; outside auth, so preflights need no key and a
                           401 still carries the CORS headers a browser needs to read it
    ApiKeyMiddleware       only with INITSVC_API_KEYS; before the body limit, so a client without a key
                           learns nothing about limits and no body of theirs is read
    BodyLimitMiddleware    still outside routing: a body over the limit is refused before FastAPI reads it
    UnexpectedError...     innermost (errors.install): a route's bug is a 500 that passes through CORS

    Starlette wraps in reverse order of ``add_middleware`` calls, so they are added innermost first.
    """
    configure_logging(settings.log_json)
    app.state.metrics = Metrics(app.state)
    docs = [r for r in app.router.routes if getattr(r, "path", None) in (DOCS_URL, REDOC_URL, DOCS_ASSETS_URL)]
    public = PublicPaths.of_routes(
        [*playground.router.routes, *docs],
        extra=["/", "/healthz", "/readyz", app.openapi_url, app.swagger_ui_oauth2_redirect_url],
    )
    openapi.install(app, public if settings.api_keys else None)
    app.add_middleware(
        BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, receive_timeout_s=settings.receive_timeout_s
    )
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
    # A bug in any middleware below is still a JSON 500 with the request id (errors.install adds the
    # same guard innermost, so the 500s that routes raise pass through CORS).
    app.add_middleware(errors.UnexpectedErrorMiddleware)
    app.add_middleware(ObserverMiddleware, on_end=[RequestMetrics(app.state.metrics, app.router.routes), AccessLog()])


app = create_app()
