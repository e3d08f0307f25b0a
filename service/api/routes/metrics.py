"""``GET /metrics`` (and ``HEAD``, left out of the OpenAPI document): the app's Prometheus metrics
(see ``service.api.middleware.metrics`` for the list)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["metrics"])

EXPOSITION = {
    200: {
        "description": "Prometheus text format (version 0.0.4), or OpenMetrics when the Accept header asks for it.",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}},
        },
    }
}


@router.head("/metrics", response_class=Response, include_in_schema=False)
@router.get("/metrics", response_class=Response, responses=EXPOSITION)
async def metrics(request: Request) -> Response:
    """Requests by route and status, latency, bytes sent, tensors made by scheme, and per device the
    queue depth, bytes in flight, memory in use and worker state. Needs an API key when keys are set."""
    body, content_type = request.app.state.metrics.render(request.headers.get("accept", ""))
    return Response(content=body, media_type=content_type)
