"""Running the app under uvicorn with a drain on SIGTERM.

Shutdown, in phases (as uvicorn's own ``Server.shutdown``):
1. SIGTERM: the pool stops admitting work, so any request that still reaches a route gets a 503
   with ``Retry-After``, and ``/readyz`` turns 503 so load balancers stop sending.
2. uvicorn stops listening and lets in-flight responses finish, up to ``shutdown_timeout_s``.
3. The lifespan stops the device workers.
"""

from __future__ import annotations

import uvicorn

from service.settings import Settings


class DrainingServer(uvicorn.Server):
    """A uvicorn server that marks the app's worker pool as draining when asked to exit."""

    def handle_exit(self, sig: int, frame) -> None:
        drain(self.config.loaded_app if self.config.loaded else None)
        super().handle_exit(sig, frame)


def drain(app) -> None:
    """Phase 1: stop admitting. Works through middleware wrappers to the FastAPI app's state."""
    while app is not None and not hasattr(app, "state"):
        app = getattr(app, "app", None)
    pool = getattr(getattr(app, "state", None), "pool", None)
    if pool is not None:
        pool.stop_accepting()


def run(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``create_app(settings)`` in this process until SIGTERM/SIGINT."""
    from service.app import create_app

    settings = settings or Settings()
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        access_log=False,  # the app logs one access line per request, with its request id
    )
    DrainingServer(config).run()
