"""``ModelRequest`` (``POST /v1/model``): a model preset's from-scratch ``state_dict``.

The preset names and their config fields live in ``service.presets`` (torch); this module only
shapes the body, so ``config`` is a JSON object checked field by field when the request is planned
(``planning`` names the field the reference would refuse).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from service.schemas.recipes import StrictModel
from service.schemas.requests import DType, Rng, Seed, Slice

# A config value: what JSON can say. Nested values pass through to fields that take them.
ConfigValue = Any
Key = Annotated[str, Field(min_length=1, max_length=512)]


class ModelRequest(StrictModel):
    """``torch.manual_seed(seed); Reference(**config).state_dict()``, cast to ``dtype``."""

    model: str = Field(
        min_length=1, max_length=128,
        description="The preset, e.g. 'transformers/GPT2LMHeadModel' (see GET /v1/models).",
        examples=["transformers/GPT2LMHeadModel"],
    )
    config: dict[str, ConfigValue] = Field(
        default_factory=dict,
        description="The reference's own config fields by name; omitted fields take the reference's defaults "
        "(an empty config is the reference's default model).",
        examples=[{"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 128}],
    )
    seed: Seed | None = None
    dtype: DType = Field(
        "float32", description="Floating tensors are cast to it at the end; integer buffers keep their dtype."
    )
    tensors: list[Key] | None = Field(
        None, min_length=1, max_length=100_000,
        description="Only these state_dict keys (each with the same bytes as in the whole answer); null: all.",
    )
    slice: dict[Key, Slice] | None = Field(
        None, min_length=1,
        description="Per key, only full[start0:stop0, ...] of that tensor (each key must be in 'tensors' when it is "
        "given). A key whose last op is a plain uniform_/normal_ draw has only that part generated; others are cut.",
        examples=[{"transformer.wte.weight": [[0, 128], None]}],
    )
    histogram_bins: int = Field(0, ge=0, le=1024, description="Histogram bins in each tensor's stats (0: none).")
    stats: bool = Field(True, description="Put per-tensor stats in the header; false leaves them out.")
    rng: Rng = Field("torch", description="'torch' only: portable mode does not cover model presets in v1.")


class ConfigFieldInfo(BaseModel):
    """One config field of a preset: the reference's name, JSON type and default."""

    name: str
    type: str = Field(description="int, float, bool, str, or json (any JSON value, passed through).")
    default: Any
    nullable: bool
    minimum: float | None = None
    choices: list[Any] | None = None
    affects_weights: bool = Field(description="False for fields the reference accepts that do not change the weights.")
    doc: str | None = None


class ModelSize(BaseModel):
    """A config's state_dict: parameters (tied tensors once), elements and bytes (every key), keys."""

    parameters: int
    elements: int
    bytes: int
    tensors: int


class PresetInfo(BaseModel):
    library: str
    reference: str = Field(description="The reference constructor this preset replays.")
    versions: str = Field(description="The library versions whose keys and bytes the replay matches.")
    doc: str
    fields: list[ConfigFieldInfo]
    default_config: ModelSize


class ModelsCatalog(BaseModel):
    """``GET /v1/models``: every preset, and the torch whose bytes they are."""

    models: dict[str, PresetInfo]
    torch: str
    cpu_capability: str | None = None
