"""The devices this process can use, what ``auto`` means, and each device's provenance facts."""

from __future__ import annotations

import functools
import os
import platform

import torch

import service


def available_devices() -> list[str]:
    """``cpu`` and ``cuda:N`` for each visible GPU, in that order."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names


def canonical(device: str) -> str:
    """``cuda`` is ``cuda:0``; everything else is already canonical."""
    return "cuda:0" if device == "cuda" else device


def default_device(configured: str | None = None) -> str:
    """What ``auto`` means: the configured device, else the first GPU, else ``cpu``."""
    if configured:
        return canonical(configured)
    devices = available_devices()
    return devices[1] if len(devices) > 1 else "cpu"


@functools.cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def device_facts(device: str) -> dict[str, object]:
    """What changes the bits on this device: its name and CPU capability or SM count."""
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return {
            "device": device,
            "device_name": props.name,
            "sm_count": props.multi_processor_count,
            "memory_bytes": props.total_memory,
        }
    return {
        "device": "cpu",
        "device_name": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def base_provenance(device: str) -> dict[str, object]:
    """Provenance common to every tensor made on ``device`` (docs/api.md §4.7)."""
    facts = {k: v for k, v in device_facts(device).items() if k != "memory_bytes"}
    return {"torch": torch.__version__, "service_version": service.__version__, **facts}


def mkl_cbwr() -> str | None:
    return os.environ.get("MKL_CBWR")
