"""Bytes of one response body, produced on worker threads and consumed by the event loop in order.

Producers (a device worker generating pieces, a device-to-host copier) ``put`` memoryviews, each
with an optional ``release`` callback, and ``close`` once done or failed. The event loop iterates
the views in order; each ``release`` runs after its view has been handed to the transport. A
consumer that stops early (the client went away) calls ``cancel``: producers see ``cancelled()``
between pieces and stop, and every view still queued is released at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import torch

from service.codec.body import chunk_views, tensor_bytes_view
from service.workers.buffers import PinnedBuffers, start_copier

Release = Callable[[], None] | None
_END = object()


class Segments:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._cancelled = threading.Event()
        self.started: asyncio.Future = loop.create_future()

    # -- producer side: any thread -------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancelled.set()

    def put(self, view: memoryview, release: Release = None) -> None:
        if len(view) or release is not None:
            self._call(self._enqueue, (view, release))

    def close(self, error: BaseException | None = None) -> None:
        self._call(self._enqueue, (_END, error))

    def _enqueue(self, item: tuple) -> None:
        """On the loop: queue ``item``, or release it at once if the consumer has gone (a view that
        arrives after ``cancel`` must not keep its pinned buffer)."""
        if self._cancelled.is_set():
            view, extra = item
            if view is not _END and extra is not None:
                extra()
            return
        self._queue.put_nowait(item)

    def start(self) -> None:
        """Tell the waiting route that the job is running (its tensors are allocated)."""
        self._call(_resolve, self.started)

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- consumer side: the event loop ---------------------------------------------------------
    async def views(self) -> AsyncIterator[memoryview]:
        while True:
            item, extra = await self._queue.get()
            if item is _END:
                if extra is not None:
                    raise extra
                return
            try:
                for view in chunk_views(item):
                    yield view
            finally:
                if extra is not None:
                    extra()

    def cancel(self) -> None:
        self._cancelled.set()
        while not self._queue.empty():
            item, extra = self._queue.get_nowait()
            if item is not _END and extra is not None:
                extra()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def deliver(tensors: Sequence[torch.Tensor], segments: Segments, buffers: PinnedBuffers | None) -> None:
    """Queue finished tensors' bytes: CPU memory as it is; device memory through pinned buffers."""
    if tensors and tensors[0].device.type != "cpu":
        if buffers is None:
            raise ValueError("device tensors need pinned buffers to be sent")
        start_copier(list(tensors), buffers, segments.put, segments.close, segments.cancelled)
        return
    for t in tensors:
        segments.put(tensor_bytes_view(t.contiguous()))
    segments.close()
