"""Pure-ASGI middleware, outermost first as ``service.app.add_middleware`` stacks them: the response
observer (X-Request-ID; the only wrapper of ``send``, whose end-of-answer hooks write the access
line and update the metrics), API keys, and the body-size limit. The request log and the metrics
read the same ``ResponseObserver``, so they agree on status and bytes."""
