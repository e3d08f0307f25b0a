"""Response models of the JSON endpoints, so ``/openapi.json`` documents what each one sends.

``/v1/schemes``, ``/v1/devices``, ``/v1/layers`` (the catalog, and one layer's ``state_dict``),
``/healthz`` and ``/readyz``, and the JSON representation (``Accept: application/json``) of the
tensor answers of ``/v1/tensor``, ``/v1/tensors``, ``/v1/module`` and ``/v1/model``. Their fields
are the ones docs/api.md describes; a model is open (``extra="allow"``) only where the answer is
open-ended by design: a JSON Schema fragment, the normalized request, the provenance, and the
``/v1/devices`` facts that depend on the host.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.requests import Rng


class Open(BaseModel):
    """A model whose answer may carry more keys than the ones named here; they are kept as sent."""

    model_config = ConfigDict(extra="allow")


# --- tensor answers (JSON representation) ---------------------------------------------------------


class Expected(BaseModel):
    """The distribution the scheme draws each element from; a bound that does not exist is null."""

    mean: float | None
    std: float | None
    low: float | None
    high: float | None


class Histogram(BaseModel):
    """``bins`` equal-width bins over [min, max] (the last bin includes max)."""

    edges: list[float] = Field(description="bins + 1 edges; empty when the tensor has no finite range.")
    counts: list[int] = Field(description="Elements in each bin.")


class ExpectedFields(BaseModel):
    """What the scheme (or a layer's default init) draws from: ``expected``, and where they apply,
    ``fan_in``, ``fan_out``, ``gain``, ``bound`` (the uniform half-width) and ``std_used`` (the std
    handed to the sampler, before any truncation); null where they do not."""

    expected: Expected | None = Field(
        description="null for schemes that draw nothing (eye, dirac) and for keys with no known init rule."
    )
    fan_in: int | None
    fan_out: int | None
    gain: float | None
    bound: float | None
    std_used: float | None


class Stats(ExpectedFields):
    """One tensor's observed stats next to the expected ones (docs/api.md, Stats). Values that do not
    exist (the std of one element, anything of an empty tensor) are null, never NaN."""

    numel: int
    mean: float | None
    std: float | None = Field(description="Unbiased, as torch.std.")
    min: float | None
    max: float | None
    zero_fraction: float | None
    histogram: Histogram | None = Field(None, description="Only with histogram_bins > 0.")
    init: str | None = Field(
        None, description="Model presets only: the reference's init rule for this key, in words (null: none known)."
    )


class TensorSummary(BaseModel):
    """One tensor of the answer: everything but its data."""

    dtype: str
    shape: list[int]
    stats: Stats | None = Field(description="null with stats: false.")


class NormalizedRequest(Open):
    """The request as the server read it, every default filled in (the drawn seed included); its keys
    are those of the endpoint's request body."""

    seed: int


class Provenance(Open):
    """What made these bytes: torch and service versions, the device and what changes its bits (CPU
    capability, or a GPU's SM count), torch's warnings, and per endpoint how the tensors were
    generated (threads, slices, the preset's reference)."""

    torch: str
    service_version: str
    device: str
    device_name: str
    warnings: list[str] = Field(description="torch's warnings while making the tensors (prefixed with the tensor's name when there are several).")


class TensorAnswer(BaseModel):
    """``Accept: application/json`` on ``/v1/tensor``, ``/v1/tensors``, ``/v1/module`` and
    ``/v1/model``: the safetensors answer without its data."""

    tensors: dict[str, TensorSummary] = Field(description="By name (state_dict key), in the file's order.")
    request: NormalizedRequest
    provenance: Provenance


# --- catalogs -------------------------------------------------------------------------------------


class Argument(Open):
    """One parameter or constructor argument: its name, whether it is required, and the JSON Schema
    keywords that validate it (``type``, ``default``, ``enum``, ``minimum``, ``anyOf``,
    ``description``, ...), as the request models declare them."""

    name: str
    required: bool


class SchemeInfo(BaseModel):
    description: str
    parameters: list[Argument]
    shape_rule: str = Field(description="The shapes the scheme accepts, in words.")
    formula: str
    reference: str = Field(description="The torch call it reproduces.")
    expected: str = Field(description="What stats.expected reports, in words.")
    rng: list[Rng] = Field(description="The rng modes that serve it.")


class SchemeCatalog(BaseModel):
    """``GET /v1/schemes``: every init scheme by name."""

    schemes: dict[str, SchemeInfo]


class LayerInfo(BaseModel):
    torch: str = Field(description="The torch.nn class.")
    description: str
    has_state: bool = Field(description="False for layers without parameters or buffers.")
    arguments: list[Argument]


class LayerCatalog(BaseModel):
    """``GET /v1/layers`` without parameters: every layer type ``POST /v1/module`` accepts."""

    layers: dict[str, LayerInfo]
    dtypes: list[str]


class DefaultInit(ExpectedFields):
    """The init torch gives a state_dict entry, and what ``stats.expected`` would report for it."""

    scheme: str


class StateEntry(BaseModel):
    key: str
    shape: list[int]
    dtype: str
    kind: Literal["parameter", "buffer"]
    default_init: DefaultInit | None = Field(description="null where no default distribution is known.")


class LayerStateDict(BaseModel):
    """``GET /v1/layers?type=...``: the state_dict that layer would produce, built on ``meta``."""

    type: str
    arguments: dict[str, Any] = Field(description="The layer's constructor arguments, every default filled in.")
    dtype: str
    state_dict: list[StateEntry]
    elements: int = Field(description="Elements of all its entries together.")


# --- devices --------------------------------------------------------------------------------------


class ParallelGeneration(Open):
    """The CPU's parallel-generation self-tests: which (op, dtype) pairs are generated in parallel."""

    parallel: list[str]
    serial_only: list[str]
    selected_draws: list[str]
    selected_draws_failed: list[str]
    selected_draws_unavailable: str | None
    threads_default: int
    min_parallel_elements: int
    torch: str
    cpu_capability: str


class JumpedOrWhole(BaseModel):
    jumped: list[str]
    whole_only: list[str]


class PresetTensorsAlone(JumpedOrWhole):
    """The presets (and ``/v1/module`` layer types) whose keys are made alone, and those made whole."""

    layer_types: JumpedOrWhole


class DeviceInfo(Open):
    """One device: what changes its bits, its worker's state and its admission budget. The CPU adds
    its thread count and self-test results; a GPU its SM count and memory."""

    device: str
    device_name: str
    cpu_capability: str | None = Field(None, description="CPU only.")
    sm_count: int | None = Field(None, description="GPUs only.")
    memory_bytes: int | None = Field(None, description="GPUs only.")
    alive: bool
    queued: int
    in_flight_bytes: int
    max_inflight_bytes: int
    threads: int | None = Field(None, description="CPU only.")
    parallel_generation: ParallelGeneration | None = Field(None, description="CPU only.")
    preset_tensors_alone: PresetTensorsAlone | None = Field(None, description="CPU only.")


class Limits(BaseModel):
    max_elements: int
    max_request_bytes: int
    max_tensors: int
    max_body_bytes: int


class DevicesAnswer(BaseModel):
    """``GET /v1/devices``."""

    devices: list[DeviceInfo]
    default: str = Field(description="The device 'auto' means.")
    torch: str
    service_version: str
    limits: Limits


# --- health ---------------------------------------------------------------------------------------


class Health(BaseModel):
    """``GET /healthz``: the event loop answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """``GET /readyz``: every device worker is up (by device) and the server accepts requests."""

    ready: bool
    workers: dict[str, bool]
