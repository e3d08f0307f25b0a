"""One worker per device: start, stop, and resolve ``auto``/``cuda``/``cuda:N`` to a worker."""

from __future__ import annotations

import sys

import torch

from service.engine.devices import available_devices, canonical, default_device, device_facts
from service.errors import DeviceUnavailable
from service.settings import Settings
from service.workers.admission import Admission
from service.workers.buffers import PinnedBuffers
from service.workers.worker import DeviceWorker


class WorkerPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        if settings.gil_switch_interval_s is not None:
            sys.setswitchinterval(settings.gil_switch_interval_s)
        # Process-wide: generation is parallel by its own threads (cpu_threads), so torch's intra-op
        # pool only adds OpenMP wake-ups to each small job's reductions (bench/profile_small.py).
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(settings.torch_threads)
        self.devices = available_devices()
        self.default = default_device(settings.default_device)
        if self.default not in self.devices:
            raise ValueError(
                f"INITSVC_DEFAULT_DEVICE={settings.default_device!r} is not available; available: {self.devices}"
            )
        self.workers: dict[str, DeviceWorker] = {}
        self.admissions: dict[str, Admission] = {}
        self.buffers: dict[str, PinnedBuffers] = {d: PinnedBuffers() for d in self.devices if d != "cpu"}
        for device in self.devices:
            facts_memory = device_facts(device).get("memory_bytes")
            memory = facts_memory if isinstance(facts_memory, int) else None
            self.workers[device] = DeviceWorker(
                device, settings.queue_depth, settings.job_timeout_s, settings.retry_after_s, settings.small_job_bytes
            )
            self.admissions[device] = Admission(
                device, settings.inflight_limit_for(device.split(":")[0], memory), settings.retry_after_s
            )

    def resolve(self, requested: str) -> str:
        """The canonical device a request's ``device`` names, or ``DeviceUnavailable``."""
        device = self.default if requested == "auto" else canonical(requested)
        if device not in self.workers:
            raise DeviceUnavailable(requested, ["auto", *self.devices])
        return device

    draining = False

    @property
    def ready(self) -> bool:
        return not self.draining and all(w.alive for w in self.workers.values())

    def stop_accepting(self) -> None:
        self.draining = True
        for worker in self.workers.values():
            worker.stop_accepting()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        torch.set_num_threads(self._torch_threads)
