"""The one place a plan becomes a response: the conditional check (ETag, 304/412), admission, the
device worker, then the body (HEAD, streaming, headers).

Every endpoint that makes tensors (``/v1/tensor``, ``/v1/tensors``, ``/v1/module``, ``/v1/model``)
ends here: routes parse, plan (``service.planning``), then call ``answer``.
"""

from __future__ import annotations

import asyncio

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
from service.errors import WorkerDown
from service.planning.plan import Plan
from service.workers.pool import WorkerPool
from service.workers.streaming import Segments, deliver

# A job not done by then may be waiting behind others: from then on the client's going away is
# watched, so its job is skipped and its admission given back at once (docs/api.md §8).
WATCH_AFTER_S = 0.05


class ClientGone(Exception):
    """The client went away while its job waited or ran; nobody is left to answer."""


async def _gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _while_connected(request: Request, waiting: asyncio.Future, watch_after_s: float = WATCH_AFTER_S) -> None:
    """Wait for ``waiting``; ``ClientGone`` (``waiting`` cancelled) if the client goes first,
    watched after ``watch_after_s``."""
    if watch_after_s > 0:
        done, _ = await asyncio.wait({waiting}, timeout=watch_after_s)
        if done:
            return
    listener = asyncio.ensure_future(_gone(request))
    try:
        done, _ = await asyncio.wait({waiting, listener}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done and listener.exception() is not None:
            # Not a disconnect (the body could not be read to its end): keep waiting for the job.
            await asyncio.wait({waiting})
            return
    except asyncio.CancelledError:
        waiting.cancel()  # the request itself was cancelled: so is the wait for its job
        raise
    finally:
        listener.cancel()
    if waiting not in done:
        waiting.cancel()
        raise ClientGone


async def _started(request: Request, segments: Segments, job_future: asyncio.Future) -> None:
    """Wait until the job runs (its tensors are allocated) or fails before that."""
    started = asyncio.ensure_future(asyncio.shield(segments.started))
    first = asyncio.ensure_future(asyncio.wait({started, job_future}, return_when=asyncio.FIRST_COMPLETED))
    try:
        await _while_connected(request, first)
    except BaseException:  # the client went away, or the request was cancelled
        started.cancel()
        job_future.cancel()
        raise
    if job_future.done() and not job_future.cancelled() and job_future.exception() is not None:
        started.cancel()
        raise job_future.exception()


async def answer(request: Request, plan: Plan, pool: WorkerPool, cache_control: str | None = None) -> Response:
    """Conditional check, admission, generation on the device's worker, then the response.

    With ``stats: false`` (``plan.streamable``) the header is known up front, so the response
    starts as soon as the job is running and each piece is sent as soon as it is made.
    """
    etag = plan.etag(representation(request))
    headers = {
        "etag": etag,
        "x-init-seed": str(plan.seed),
        "x-init-device": plan.device,
        "content-disposition": content_disposition(plan.filename),
        "vary": "accept",  # safetensors or, for Accept: application/json, the JSON summary
    }
    if cache_control:
        headers["cache-control"] = cache_control
    if etag_matches(request, etag):
        return not_modified(request, headers)
    as_json = wants_json(request)
    worker = pool.workers[plan.device]
    buffers = pool.buffers.get(plan.device)
    slot = pool.admissions[plan.device].acquire(plan.nbytes)
    segments = Segments(asyncio.get_running_loop())
    job = None
    try:
        if plan.streamable and not as_json and request.method == "HEAD":
            # The header of a streamed body is known without making the tensor.
            provenance = provenance_with_outcome(plan.provenance, [])
            return safetensors_response(request, plan.outputs, plan.request, provenance, headers, slot, segments)
        if plan.streamable and not as_json:
            job = worker.enqueue(plan.run, plan.job, segments, True, buffers, cost=plan.nbytes)
            job_future = asyncio.ensure_future(worker.wait(job))
            job_future.add_done_callback(_report_late_failure(segments))
            await _started(request, segments, job_future)
            _count(request, plan.job.specs)
            provenance = provenance_with_outcome(plan.provenance, [])
            return safetensors_response(request, plan.outputs, plan.request, provenance, headers, slot, segments)
        job = worker.enqueue(plan.run, plan.job, cost=plan.nbytes)
        try:
            await asyncio.wait({job.future}, timeout=WATCH_AFTER_S)
        except asyncio.CancelledError:
            job.future.cancel()  # the request was cancelled: skip the job if it has not started
            raise
        if job.future.done():  # the common case: no task, no listener
            made = job.future.result()
        else:
            waiting = asyncio.ensure_future(worker.wait(job))
            await _while_connected(request, waiting, watch_after_s=0)
            made = waiting.result()
    except ClientGone:
        segments.cancel()
        # A job the thread has taken cannot be stopped (a streamed one stops at its next piece):
        # its bytes stay counted until it ends; one not taken is skipped, and they come back now.
        assert job is not None
        job.when_ended(slot.release)
        return Response(status_code=499)  # nobody receives it; the access line says what happened
    except BaseException as exc:
        segments.cancel()
        if job is not None and not isinstance(exc, WorkerDown):
            job.when_ended(slot.release)
        else:  # no job, or a hung one the worker gave up on: it may never end
            slot.release()
        raise
    _count(request, made)
    provenance = provenance_with_outcome(plan.provenance, made)
    if as_json:
        slot.release()
        del headers["content-disposition"]
        return json_response(made, plan.request, provenance, headers)
    if request.method != "HEAD":
        deliver([m.tensor for m in made], segments, buffers)
    return safetensors_response(request, made, plan.request, provenance, headers, slot, segments)


def _count(request: Request, tensors) -> None:
    """Tensors made, by scheme, for /metrics (when the app has metrics)."""
    if (metrics := getattr(request.app.state, "metrics", None)) is not None:
        metrics.tensors_made(tensors)


def _report_late_failure(segments: Segments):
    """A streamed job that fails after the headers went out aborts the body (a worker timeout,
    for instance, never reaches the job's own ``close``)."""

    def done(future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            segments.close(future.exception())

    return done
