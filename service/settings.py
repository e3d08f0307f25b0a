"""Settings: every ``INITSVC_`` environment variable, with its unit in its name.

One class is the one list: the app, the CLI's ``serve`` options and the README's table all come
from it. Tests build their own: ``create_app(Settings(max_elements=1024))``.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GiB = 1 << 30
MiB = 1 << 20


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def available_cores() -> int:
    """CPU cores this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Service configuration; each field is the ``INITSVC_<FIELD>`` variable."""

    model_config = SettingsConfigDict(env_prefix="INITSVC_", extra="ignore")

    max_elements: int = Field(2**31, ge=1, description="Elements per tensor.")
    max_request_bytes: int = Field(8 * GiB, ge=1, description="Bytes of all tensors of one request.")
    max_tensors: int = Field(4096, ge=1, description="Tensors (or module parameters and buffers) per request.")
    max_body_bytes: int = Field(1 * MiB, ge=1, description="Request body size, refused before it is read whole.")
    max_dims: int = Field(16, ge=1, le=64, description="Dimensions of a tensor's shape.")
    max_histogram_bins: int = Field(
        1024, ge=1, le=1024, description="Largest histogram_bins a request may ask for (lowers the API's cap of 1024)."
    )
    max_inflight_bytes: int | None = Field(
        None, ge=1, description="Tensor bytes in flight per device; unset: 12 GiB on CPU, 80% of a GPU's memory."
    )
    queue_depth: int = Field(64, ge=1, description="Waiting jobs per device (its lanes together); then 429.")
    small_job_bytes: int = Field(
        4 * MiB, ge=0,
        description="Jobs of at most this many tensor bytes run on each device's own small-job thread, "
        "never queued behind bigger ones; 0: one thread per device.",
    )
    gil_switch_interval_s: float | None = Field(
        0.001, gt=0,
        description="Python's thread switch interval (sys.setswitchinterval) while the server runs: how long "
        "a thread may hold the GIL while another waits; short keeps small answers quick while big tensors "
        "are made and sent; unset: Python's default (0.005).",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="The event loop uvicorn runs. asyncio's releases the GIL in every socket write, so the "
        "worker threads keep making small answers while a big body is sent; uvloop keeps the GIL through "
        "its writes, and a thread beside it waits 30-150 ms at a time for it (bench/loop_writes.py).",
    )
    api_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_commas)] = Field(
        default_factory=list, description="Comma-separated API keys; empty means no auth."
    )
    default_device: str | None = Field(None, description="What device 'auto' means; unset: first GPU, else cpu.")
    qr_threads: int = Field(1, ge=1, description="Intra-op threads for orthogonal's QR.")
    cpu_threads: int = Field(default_factory=available_cores, ge=1, description="Threads for parallel CPU generation.")
    torch_threads: int = Field(
        1, ge=1,
        description="torch's own intra-op threads (torch.set_num_threads) while the server runs. The engine "
        "splits big tensors over cpu_threads itself; with more than 1, every small job pays OpenMP's hand-off "
        "between threads (about 0.1 ms per reduction here) and the last bits of stats depend on the count.",
    )
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_split_commas)] = Field(
        default_factory=list, description="Origins allowed by CORS; empty means CORS is off."
    )
    log_json: bool = Field(False, description="Write logs as one JSON object per line.")
    job_timeout_s: float = Field(600.0, gt=0, description="A device job running longer is abandoned with 503.")
    send_timeout_s: float = Field(
        60.0, gt=0, description="A response whose client accepts no bytes for this long is abandoned."
    )
    receive_timeout_s: float = Field(
        30.0, gt=0, description="A request whose client sends no body bytes for this long is answered 408 and closed."
    )
    shutdown_timeout_s: float = Field(30.0, ge=0, description="Grace period for in-flight responses on SIGTERM.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429 and 503.")

    def inflight_limit_for(self, device_type: str, device_memory_bytes: int | None) -> int:
        """Admission limit in bytes for one device."""
        if self.max_inflight_bytes is not None:
            return self.max_inflight_bytes
        if device_type == "cuda" and device_memory_bytes:
            return int(device_memory_bytes * 0.8)
        return 12 * GiB
