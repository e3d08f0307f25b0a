"""``ModuleRequest`` (``POST /v1/module``): a stack of ``torch.nn`` layers, overrides, dtype, device, seed.

``layers`` is a list (built as ``nn.Sequential(*layers)``: keys ``0.weight``, ...) or an object of
named layers (``nn.Sequential(OrderedDict(layers))`` in the object's order: keys
``encoder.weight``, ...). A callable discriminator picks the form, so a bad argument is one error
at ``layers.list.3.Linear.in_features`` (or ``layers.object.encoder.Linear.in_features``) rather
than one per form.

JSON objects are unordered (RFC 8259), and the safetensors header is written with sorted keys, so
the object's order would not survive in ``__metadata__["request"]``. The normalized request
therefore carries ``layer_order``, the names in build order, which a client may also send: a
replayed normalized request builds the same module, and two orders never share an ETag.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from service.schemas.layers import LayerSpec
from service.schemas.models import Key
from service.schemas.recipes import InitRecipe, StrictModel
from service.schemas.requests import Device, DType, Rng, Seed, Slice

# A module name: what ``nn.Module.add_module`` accepts (no '.', not empty), printable.
LayerName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^.\x00-\x1f\x7f]+$")]


def _layers_form(value: Any) -> str | None:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return None


Layers = Annotated[
    (
        Annotated[list[LayerSpec], Tag("list"), Field(min_length=1)]
        | Annotated[dict[LayerName, LayerSpec], Tag("object"), Field(min_length=1)]
    ),
    Discriminator(
        _layers_form,
        custom_error_type="layers_form",
        custom_error_message="layers must be a list of layers or an object of named layers",
    ),
    Field(
        description="A list of layers (keys 0.weight, ...) or an object of named layers (keys <name>.weight, ...), "
        "each {'type': <torch.nn class>, ...its constructor's keyword arguments}."
    ),
]


class Override(StrictModel):
    """``nn.init.<scheme>_(module.get_parameter(param), ...)``, run after construction on the same global stream."""

    param: str = Field(min_length=1, max_length=512, description="A parameter's state_dict key, e.g. '3.weight'.")
    init: InitRecipe


class ModuleRequest(StrictModel):
    """The state_dict of ``torch.manual_seed(seed); nn.Sequential(...)``, then each override in order."""

    layers: Layers
    layer_order: list[LayerName] | None = Field(
        None,
        description="With named layers: their names in build order (default: the object's order). "
        "The normalized request always carries it, since JSON objects are unordered.",
    )
    overrides: list[Override] = Field(
        default_factory=list, description="Init recipes applied in order to named parameters after construction."
    )
    tensors: list[Key] | None = Field(
        None, min_length=1, max_length=100_000,
        description="Only these state_dict keys, in this order (each with the same bytes as in the whole answer); "
        "null: all. On the CPU without overrides, only their part of the build is made.",
        examples=[["1.weight"]],
    )
    slice: dict[Key, Slice] | None = Field(
        None, min_length=1,
        description="Per key, only full[start0:stop0, ...] of that tensor (each key must be in 'tensors' when it is "
        "given). On the CPU without overrides, a key whose last op is a plain uniform_/normal_ draw has only that "
        "part generated; others are cut.",
        examples=[{"0.weight": [[0, 128], None]}],
    )
    dtype: DType = Field("float32", description="Floating dtype the layers are built in (factory kwarg dtype=).")
    device: Device = "auto"
    seed: Seed | None = None
    histogram_bins: int = Field(0, ge=0, le=1024, description="Histogram bins in each tensor's stats (0: no histogram).")
    stats: bool = Field(True, description="Put per-tensor stats in the header; false leaves them out.")
    rng: Rng = Field("torch", description="'torch' only: portable mode does not cover modules in v1.")

    @field_validator("layer_order")
    @classmethod
    def _order_names_every_layer_once(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        layers = info.data.get("layers")
        if value is None or layers is None:
            return value
        if not isinstance(layers, dict):
            raise PydanticCustomError("layer_order", "layer_order goes with named layers (an object); layers is a list")
        if sorted(value) != sorted(layers):
            raise PydanticCustomError(
                "layer_order",
                "layer_order must name every layer exactly once; layers: {names}; got {value}",
                {"names": sorted(layers), "value": value},
            )
        return value

    def named_layers(self) -> list[tuple[str, Any]]:
        """``(name, layer)`` in build order; list positions are named '0', '1', ... as nn.Sequential names them."""
        if isinstance(self.layers, dict):
            order = self.layer_order or list(self.layers)
            return [(name, self.layers[name]) for name in order]
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def layer_loc(self, name: str) -> tuple[str | int, ...]:
        """Where a layer sits in the request, as FastAPI writes ``loc``."""
        return ("layers", name) if isinstance(self.layers, dict) else ("layers", int(name))
