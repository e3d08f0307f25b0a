"""Pure-ASGI middleware, outermost first as ``service.app.add_middleware`` stacks them: the request
log (X-Request-ID, one access line), metrics (requests, latency, bytes by route), API keys, and the
body-size limit. The request log and metrics observe the same response messages."""
