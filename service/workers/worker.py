"""One device's worker: threads that run engine jobs in order from bounded queues.

The event loop never runs torch work; routes ``await worker.submit(fn, ...)``. A device has two
lanes, each a thread with its own queue: jobs of at most ``small_job_bytes`` of tensors go to the
small-job lane, the rest to the main one, so a 256x784 tensor never waits behind a 1 GiB one
(each lane is FIFO; the main lane holds the few big jobs admission lets in, the small lane only
jobs of milliseconds). Admission still bounds the bytes in flight across both. A job that raises
out-of-memory frees the device's cache and fails with ``DeviceOutOfMemory``; a job that runs
past ``job_timeout_s`` (a hung kernel) or a thread that dies fails its caller with
``WorkerDown`` and the worker starts a fresh thread and queue, so the next request is served.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from service.errors import DeviceOutOfMemory, QueueFull, ShuttingDown, WorkerDown

log = logging.getLogger("initsvc.worker")
T = TypeVar("T")
_STOP = object()


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


class _Job:
    __slots__ = ("fn", "args", "future", "loop", "started", "started_at", "lane", "_ended", "_on_end", "_lock")

    def __init__(self, fn, args, future, loop, lane: DeviceWorker):
        self.fn, self.args, self.future, self.loop, self.lane = fn, args, future, loop, lane
        # Set by the thread when it takes the job, without waking the loop: a wake-up mid-job
        # would make the loop take the GIL from the job (about 0.3 ms of a 256x784 answer).
        self.started = threading.Event()
        self.started_at = 0.0
        self._ended = False
        self._on_end: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once the thread is done with the job (at once if it is, or
        if it never took it): what it made is freed only then, whoever stopped waiting for it."""
        with self._lock:
            if not self._ended and self.started.is_set():
                self._on_end.append(callback)
                return
        callback()

    def end(self) -> None:
        """On the thread, after the run: the callbacks waiting for it go to the loop."""
        with self._lock:
            self._ended, callbacks, self._on_end = True, self._on_end, []
        for callback in callbacks:
            self.loop.call_soon_threadsafe(callback)


class DeviceWorker:
    """Runs ``fn(*args)`` for one device, one job at a time per lane, in submission order per lane.

    ``small_job_bytes > 0`` gives the device a second lane (``self.small``, a ``DeviceWorker`` of
    its own) for jobs whose ``cost`` is at most that many bytes; ``restarts``, ``queued``,
    ``alive``, ``stop`` and friends cover both lanes, and ``queue_depth`` bounds the jobs waiting
    on both together (a lane's own queue holds at most as many).
    """

    _ids = itertools.count()

    def __init__(
        self, device: str, queue_depth: int, job_timeout_s: float, retry_after: int = 1,
        small_job_bytes: int = 0, lane: str = "main",
    ):
        self.device = device
        self.queue_depth = queue_depth
        self.job_timeout_s = job_timeout_s
        self.retry_after = retry_after
        self.lane = lane
        self.small_job_bytes = small_job_bytes
        self._restarts = 0
        self._accepting = True
        self.small: DeviceWorker | None = (
            DeviceWorker(device, queue_depth, job_timeout_s, retry_after, lane="small") if small_job_bytes > 0 else None
        )
        self._start_thread()

    def _start_thread(self) -> None:
        # Unbounded here: ``enqueue`` bounds the live jobs (``queued``) by ``queue_depth``.
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(
            target=self._run, args=(self._queue,), name=f"initsvc-{self.device}-{self.lane}-{next(self._ids)}",
            daemon=True,
        )
        self._thread.start()

    def _lanes(self) -> list[DeviceWorker]:
        return [self] if self.small is None else [self, self.small]

    @property
    def restarts(self) -> int:
        return sum(lane._restarts for lane in self._lanes())

    @property
    def alive(self) -> bool:
        return all(lane._thread.is_alive() for lane in self._lanes())

    @property
    def queued(self) -> int:
        """Jobs waiting on the device's lanes, not counting those whose caller gave up (they are
        skipped when their turn comes)."""
        return sum(lane._waiting() for lane in self._lanes())

    def _waiting(self) -> int:
        with self._queue.mutex:
            return sum(1 for job in self._queue.queue if job is not _STOP and not job.future.cancelled())

    def lane_for(self, cost: int | None) -> DeviceWorker:
        """The lane a job of ``cost`` tensor bytes runs on (unknown cost: the main lane)."""
        if self.small is not None and cost is not None and cost <= self.small_job_bytes:
            return self.small
        return self

    def _run(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            if not job.future.cancelled():
                self._run_one(job)
            # Nothing of a finished job stays referenced from this loop while it waits for the
            # next one: the result (a response's tensors) is freed when its response ends.
            del job

    def _run_one(self, job: _Job) -> None:
        job.started_at = time.monotonic()
        job.started.set()
        try:
            result = job.fn(*job.args)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to its caller
            if _is_out_of_memory(exc):
                self._free_device_memory()
                exc = DeviceOutOfMemory(f"{self.device} ran out of memory ({exc}); retry shortly", self.retry_after)
            job.loop.call_soon_threadsafe(_settle, job.future, None, exc)
        except BaseException:
            # The thread is dying (SystemExit and the like): its caller gets a 503, never the
            # exception itself, and the next submit starts a fresh thread.
            job.loop.call_soon_threadsafe(
                _settle, job.future, None, WorkerDown(f"{self.device}'s worker died", self.retry_after)
            )
            raise
        else:
            job.loop.call_soon_threadsafe(_settle, job.future, result, None)
        finally:
            job.fn = job.args = None  # the job object may outlive the run (a waiter's reference)
            job.end()

    def _free_device_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def enqueue(self, fn: Callable[..., T], *args: Any, cost: int | None = None) -> _Job:
        """Queue ``fn(*args)`` on the lane for ``cost`` (tensor bytes) now; ``QueueFull`` if the
        device already has ``queue_depth`` jobs waiting, across its lanes."""
        lane = self.lane_for(cost)
        if lane is not self:
            if self.queued >= self.queue_depth:
                raise self._full()
            return lane.enqueue(fn, *args)
        if not self._accepting:
            raise ShuttingDown("the server is shutting down; retry on another replica", self.retry_after)
        if not self._thread.is_alive():
            self._replace("its thread had died")
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop.create_future(), loop, self)
        if self.queued >= self.queue_depth:
            raise self._full()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise self._full() from None
        return job

    def _full(self) -> QueueFull:
        return QueueFull(
            f"{self.device}'s queue is full ({self.queue_depth} jobs waiting; INITSVC_QUEUE_DEPTH)", self.retry_after
        )

    async def wait(self, job: _Job, timeout_s: float | None = None) -> Any:
        """The job's result; ``WorkerDown`` if it runs past ``timeout_s`` (default
        ``job_timeout_s``; the worker is then replaced), and a cancelled wait skips the job if it
        has not started yet."""
        if job.lane is not self:
            return await job.lane.wait(job, timeout_s)
        timeout = self.job_timeout_s if timeout_s is None else timeout_s
        try:
            # Waiting in the queue and running are timed apart, so a job that waited long is not
            # taken for a hung one: past the timeout, a job not started yet is given up (429),
            # and a started one gets the timeout from its start.
            await asyncio.wait({job.future}, timeout=timeout)
            if not job.future.done():
                if not job.started.is_set():
                    job.future.cancel()
                    raise QueueFull(f"{self.device} was too busy to start the job in time", self.retry_after)
                left = job.started_at + timeout - time.monotonic()
                await asyncio.wait({job.future}, timeout=max(left, 0.0))
                if not job.future.done():
                    raise TimeoutError
            return job.future.result()
        except TimeoutError:
            self._replace(f"a job ran past {timeout} s")
            raise WorkerDown(f"{self.device}'s worker hung and was replaced", self.retry_after) from None
        except asyncio.CancelledError:
            job.future.cancel()  # the client went away: skip the job if it has not started
            raise

    async def submit(self, fn: Callable[..., T], *args: Any, cost: int | None = None, timeout_s: float | None = None) -> T:
        """Queue ``fn(*args)`` on the lane for ``cost`` and wait for its result (``wait``)."""
        job = self.enqueue(fn, *args, cost=cost)
        return await job.lane.wait(job, timeout_s)

    def _replace(self, why: str) -> None:
        """Abandon the current thread (it cannot be killed) and serve from a fresh one."""
        log.error("replacing the %s worker: %s", self.device, why)
        old = self._queue
        self._restarts += 1
        self._start_thread()
        while True:  # jobs that waited behind the dead thread fail fast instead of hanging
            try:
                job = old.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                job.loop.call_soon_threadsafe(
                    _settle, job.future, None, WorkerDown(f"{self.device}'s worker was replaced", self.retry_after)
                )
        old.put(_STOP) if not old.full() else None

    def stop_accepting(self) -> None:
        self._accepting = False
        if self.small is not None:
            self.small.stop_accepting()

    def stop(self, timeout: float = 5.0) -> None:
        self._accepting = False
        if self.small is not None:
            self.small.stop(timeout)
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
