"""Bytes in flight per device: a request is admitted only while its tensors fit.

A slot is taken before the job is queued and given back when the response has been sent (or
the client went away), so a device never holds more than ``limit`` bytes of finished tensors.
"""

from __future__ import annotations

import threading

from service.errors import LimitExceeded, QueueFull


class Admission:
    def __init__(self, device: str, limit_bytes: int, retry_after: int = 1):
        self.device = device
        self.limit_bytes = limit_bytes
        self.retry_after = retry_after
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight

    def acquire(self, nbytes: int) -> Slot:
        """Take ``nbytes``; ``LimitExceeded`` if it can never fit, ``QueueFull`` if not now."""
        if nbytes > self.limit_bytes:
            raise LimitExceeded(
                f"the request needs {nbytes} bytes on {self.device}", nbytes, self.limit_bytes, "INITSVC_MAX_INFLIGHT_BYTES"
            )
        with self._lock:
            if self._in_flight + nbytes > self.limit_bytes:
                raise QueueFull(
                    f"{self.device} has {self._in_flight} of {self.limit_bytes} bytes in flight "
                    f"(INITSVC_MAX_INFLIGHT_BYTES); this request needs {nbytes} more",
                    self.retry_after,
                )
            self._in_flight += nbytes
        return Slot(self, nbytes)

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._in_flight -= nbytes


class Slot:
    """Admitted bytes; ``release()`` is idempotent, so every exit path may call it."""

    def __init__(self, admission: Admission, nbytes: int):
        self._admission, self.nbytes, self._held = admission, nbytes, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release(self.nbytes)
