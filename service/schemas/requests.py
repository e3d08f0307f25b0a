"""Request bodies: ``TensorRequest`` (``/v1/tensor``); the multi-tensor and module requests join it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from service.schemas.recipes import InitRecipe, StrictModel

DType = Literal["float16", "bfloat16", "float32", "float64"]
Rng = Literal["torch", "portable-v1"]
SEED_MAX = 2**64 - 1
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]{1,3})$"
# A name becomes a safetensors key and a download file name: printable, no control characters.
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")



def _uint64(schema: dict) -> None:
    """The seed's bound as the exact integer 2^64 - 1 (not the float 2^64), marked ``uint64``: a
    JavaScript number cannot hold it, so tools that show or sample it (Swagger UI) must not."""
    schema["maximum"] = SEED_MAX
    schema["format"] = "uint64"


# Examples are what /docs puts in "Try it out": each must be a value the server accepts, and
# together they describe one request (a slice that fits the example shape).
Shape = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(description="The tensor's shape, e.g. [256, 784] (weight layout [out, in, *kernel]).", max_length=64,
          examples=[[256, 784]]),
]
Seed = Annotated[
    int,
    Field(ge=0, le=SEED_MAX, examples=[0], json_schema_extra=_uint64,
          description="RNG seed in [0, 2^64 - 1] (18446744073709551615); omitted: the service draws one and "
          "reports it."),
]
def check_device(value: str) -> str:
    """``DEVICE_PATTERN``, with a message in words (pydantic's own shows the pattern)."""
    if not re.match(DEVICE_PATTERN, value):
        raise PydanticCustomError(
            "device", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got {value}", {"value": repr(value)}
        )
    return value


Device = Annotated[
    str,
    AfterValidator(check_device),
    Field(examples=["auto"], json_schema_extra={"pattern": DEVICE_PATTERN},
          description="'auto' (first GPU, else cpu), 'cpu', 'cuda' or 'cuda:N'."),
]
SliceBound = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]
Slice = Annotated[
    list[SliceBound | None],
    Field(description="One entry per dimension: [start, stop] (0 <= start <= stop <= size) or null for all of it.",
          examples=[[[0, 128], None]]),
]


def check_name(value: str) -> str:
    if _NAME_FORBIDDEN.search(value) or value == "__metadata__":
        raise PydanticCustomError(
            "name",
            "name must be 1-256 printable characters other than '__metadata__'; got {value}",
            {"value": repr(value)},
        )
    return value


TensorName = Annotated[str, Field(min_length=1, max_length=256, description="The safetensors key.",
                                  examples=["weight"])]


class TensorRequest(StrictModel):
    """One tensor: its shape, the init recipe, dtype, device and seed."""

    shape: Shape
    init: InitRecipe = Field(examples=[{"scheme": "kaiming_uniform", "a": 2.23606797749979}])
    dtype: DType = Field("float32", description="Element type of the tensor.")
    device: Device = "auto"
    seed: Seed | None = None
    name: TensorName = "weight"
    histogram_bins: int = Field(0, ge=0, le=1024, description="Histogram bins in the stats (0: no histogram).")
    stats: bool = Field(
        True,
        description="Put stats in the header (the tensor is finished before the first byte); "
        "false: leave them out so each chunk is sent as soon as it is made. Same tensor bytes either way.",
    )
    slice: Slice | None = Field(None, description="Return only full[start0:stop0, ...] of the tensor the recipe defines.")
    rng: Rng = Field("torch", description="'torch' (bit-identical to torch.manual_seed + torch.nn.init) or 'portable-v1'.")

    _name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))


class TensorEntry(StrictModel):
    """One named tensor of a ``/v1/tensors`` request."""

    name: TensorName
    shape: Shape
    init: InitRecipe
    dtype: DType | None = Field(None, description="Overrides the request's dtype for this tensor.")
    seed: Seed | None = Field(
        None, description="A seed of this tensor's own: a fresh stream that does not advance the shared one."
    )
    slice: Slice | None = Field(None, description="Return only full[start0:stop0, ...] of this tensor.")
    histogram_bins: int | None = Field(None, ge=0, le=1024, description="Overrides the request's histogram_bins.")

    _name = field_validator("name")(classmethod(lambda cls, v: check_name(v)))


class TensorsRequest(StrictModel):
    """Several named tensors drawn in list order from one stream seeded with ``seed``."""

    tensors: list[TensorEntry] = Field(min_length=1, description="The tensors, in drawing order; names are unique.")
    dtype: DType = Field("float32", description="Element type of every tensor that does not set its own.")
    device: Device = "auto"
    seed: Seed | None = None
    histogram_bins: int = Field(0, ge=0, le=1024, description="Histogram bins in each tensor's stats (0: none).")
    stats: bool = Field(True, description="Put stats in the header; false streams each tensor as it is made.")
    rng: Rng = Field("torch", description="'torch' or 'portable-v1' (tensor i uses tid i).")
