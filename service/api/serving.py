"""Serve a plan: the conditional check, admission, the device worker, then the response.

Every endpoint that makes tensors (``/v1/tensor``, ``/v1/tensors``, ``/v1/module``) ends here.
"""

from __future__ import annotations

from fastapi import Request, Response

from service.api.delivery import (
    content_disposition,
    etag_matches,
    json_response,
    not_modified,
    provenance_with_outcome,
    representation,
    safetensors_response,
    wants_json,
)
from service.api.planning import Plan
from service.workers.pool import WorkerPool


async def answer(request: Request, plan: Plan, pool: WorkerPool, cache_control: str | None = None) -> Response:
    """Conditional check, admission, generation on the device's worker, then the response."""
    etag = plan.etag(representation(request))
    headers = {
        "etag": etag,
        "x-init-seed": str(plan.seed),
        "x-init-device": plan.device,
        "content-disposition": content_disposition(plan.filename),
    }
    if cache_control:
        headers["cache-control"] = cache_control
    if etag_matches(request, etag):
        return not_modified(request, headers)
    slot = pool.admissions[plan.device].acquire(plan.nbytes)
    try:
        made = await pool.workers[plan.device].submit(plan.run, plan.job)
    except BaseException:
        slot.release()
        raise
    provenance = provenance_with_outcome(plan.provenance, made)
    if wants_json(request):
        slot.release()
        del headers["content-disposition"]
        return json_response(made, plan.request, provenance, headers)
    return safetensors_response(request, made, plan.request, provenance, headers, slot)
