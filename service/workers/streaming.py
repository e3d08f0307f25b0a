"""Bytes of one response body, produced on worker threads and consumed by the event loop in order.

Producers (a device worker generating pieces, a device-to-host copier) ``put`` memoryviews, each
with an optional ``release`` callback, and ``close`` once done or failed. The event loop iterates
the views in order; each ``release`` runs after its view has been handed to the transport. A
consumer that stops early (the client went away) calls ``cancel``: producers see ``cancelled()``
between pieces and stop, and every view still queued is released at once.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

import torch

from service.codec.body import chunk_views, tensor_bytes_view
from service.workers.buffers import PinnedBuffers, start_copier

Release = Callable[[], None] | None
_END = object()
# Bytes per write to the transport: large enough that per-write Python work is negligible next to
# the copy into the socket (a GiB is 512 writes), small enough that one write holds the GIL (and
# the loop) for well under a millisecond.
WRITE_BYTES = 2 << 20
# Bodies of at least this many bytes are freed on the reaper thread, not on the event loop: giving a
# GiB back to the OS (munmap) takes 40-120 ms, which would stall every other request.
REAP_BYTES = 16 << 20


class Segments:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made on the loop (the route), so this is its thread
        self._queue: asyncio.Queue = asyncio.Queue()
        self._cancelled = threading.Event()
        self.started: asyncio.Future = loop.create_future()
        self.complete = False  # every view and the end are queued: the body is ready to send as is
        self._owners: list = []  # what the queued views are views of (a tensor's bytes as an array)
        self._owned_bytes = 0

    # -- producer side: any thread -------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)  # on the loop already: no wake-up through the loop's self-pipe
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancelled.set()

    def put(self, view: memoryview, release: Release = None) -> None:
        if len(view) or release is not None:
            if release is None and view.obj is not None:
                self._owners.append(view.obj)  # the array whose memory the view is (list.append: thread-safe)
                self._owned_bytes += len(view)
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
        if item[0] is _END and item[1] is None:
            self.complete = True
        self._queue.put_nowait(item)

    def start(self) -> None:
        """Tell the waiting route that the job is running (its tensors are allocated)."""
        self._call(_resolve, self.started)

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # -- consumer side: the event loop ---------------------------------------------------------
    async def views(self, chunk_bytes: int = WRITE_BYTES) -> AsyncIterator[memoryview]:
        while True:
            item, extra = await self._queue.get()
            if item is _END:
                if extra is not None:
                    raise extra
                return
            try:
                for view in chunk_views(item, chunk_bytes):
                    yield view
                    del view
            finally:
                # Nothing here may keep the piece once it is given back: a producer that waits
                # for it (a model job's window) starts the next piece at ``extra()``.
                item = None
                if extra is not None:
                    extra()

    def take(self) -> tuple[memoryview, Release] | None:
        """The next queued piece and its release, whole; ``None`` at the end (only when
        ``complete``: every piece is queued already, so nothing is awaited)."""
        item, extra = self._queue.get_nowait()
        if item is _END:
            return None
        return item, extra

    def cancel(self) -> None:
        self._cancelled.set()
        while not self._queue.empty():
            item, extra = self._queue.get_nowait()
            if item is not _END and extra is not None:
                extra()

    def dispose(self) -> None:
        """The response is over: big bodies' memory is given back on the reaper thread."""
        owners, self._owners = self._owners, []
        if self._owned_bytes >= REAP_BYTES:
            _reaper().put(owners)


class _Reaper:
    """Drops the last references to finished bodies' arrays off the event loop. An array may still
    be exported to a view the transport has not written yet; it is dropped once it is not (or
    after ``patience_s``), so the free itself happens here."""

    def __init__(self, patience_s: float = 30.0):
        self.patience_s = patience_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="initsvc-reaper", daemon=True).start()

    def put(self, owners: list) -> None:
        self._queue.put(owners)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put before this call has been dropped (for tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            owners = self._queue.get()
            if isinstance(owners, threading.Event):
                owners.set()
                continue
            deadline = time.monotonic() + self.patience_s
            # References: the list, ``o`` and getrefcount's argument; more means a view still uses it.
            while any(sys.getrefcount(o) > 3 for o in owners) and time.monotonic() < deadline:
                time.sleep(0.002)
            del owners


_REAPER: _Reaper | None = None
_REAPER_LOCK = threading.Lock()


def _reaper() -> _Reaper:
    global _REAPER
    with _REAPER_LOCK:
        if _REAPER is None:
            _REAPER = _Reaper()
        return _REAPER


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
