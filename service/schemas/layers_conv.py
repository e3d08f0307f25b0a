"""Convolution and pooling layers, and the argument types every layer model shares.

Torch's ``_ntuple`` takes any iterable for ``kernel_size``, ``stride`` and friends, so
``Conv2d(kernel_size=(3, 3, 3))`` builds a 5-D weight without a word. Here such an argument is an
integer or a list of exactly one integer per spatial dimension, and anything else is a 422 at
that argument. The N-d families (Conv1d/2d/3d, ConvTranspose1d/2d/3d, MaxPool1d/2d, AvgPool1d/2d)
are one definition each, specialized by the number of spatial dimensions.

Only rules torch's constructors enforce (plus value ranges that make sense, such as sizes >= 1)
are checked; rules torch checks at forward time (pooling's padding against its kernel,
ConvTranspose's output_padding against stride) belong to the layer's input, not to its weights.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema, create_model, field_validator
from pydantic_core import PydanticCustomError

from service.schemas.recipes import StrictModel

SIZE_MAX = 2**31 - 1  # torch keeps sizes in int64, cuDNN and friends in int32
Size = Annotated[int, Field(ge=1, le=SIZE_MAX)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Eps = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Inplace = Annotated[bool, Field(description="Do the operation in-place (no effect on the state_dict).")]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def spatial(dims: int, minimum: int, words: tuple[str, ...] = ()) -> Any:
    """An integer, or a list of exactly ``dims`` integers, each in [minimum, SIZE_MAX] (or one of
    ``words``, such as conv's ``"same"``): one error naming the argument, not one per union member."""

    def validate(value: Any, info: ValidationInfo) -> int | str | tuple[int, ...]:
        def fits(x: Any) -> bool:
            return _is_int(x) and minimum <= x <= SIZE_MAX

        if fits(value) or (isinstance(value, str) and value in words):
            return value
        if isinstance(value, (list, tuple)) and len(value) == dims and all(fits(x) for x in value):
            return tuple(value)
        allowed = "".join(f"{w!r}, " for w in words)
        raise PydanticCustomError(
            "spatial_argument",
            "{field} must be {allowed}an integer >= {minimum} or a list of {dims} such integers; got {value}",
            {"field": info.field_name, "allowed": allowed, "minimum": minimum, "dims": dims, "value": repr(value)},
        )

    item = {"type": "integer", "minimum": minimum, "maximum": SIZE_MAX}
    options: list[dict[str, Any]] = [item, {"type": "array", "items": item, "minItems": dims, "maxItems": dims}]
    if words:
        options.insert(0, {"type": "string", "enum": list(words)})
    # Any: a union here would make the serializer second-guess the tuples the validator returns.
    return Annotated[Any, PlainValidator(validate), WithJsonSchema({"anyOf": options})]


def _as_tuple(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(value)


class LayerModel(StrictModel):
    """A ``torch.nn`` constructor's keyword arguments (minus ``device``/``dtype``), torch's defaults."""

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments to hand to the torch constructor."""
        return self.model_dump(exclude={"type"})

    def largest_elements(self) -> int:
        """Elements of the layer's largest parameter or buffer, in Python integers (no overflow),
        so absurd sizes are refused before torch sees them. Pinned against torch by the tests."""
        return 0

    def written_values(self) -> dict[str, float]:
        """Arguments the constructor writes into a tensor as they are (PReLU's ``init``), by name:
        planning checks each fits the request's dtype."""
        return {}


class _Conv(LayerModel):
    dims: ClassVar[int]
    transposed: ClassVar[bool]
    if TYPE_CHECKING:  # fields ``_conv_model`` adds per class (declared here, they would come first)
        in_channels: int
        out_channels: int
        kernel_size: int | tuple[int, ...]
        groups: int

    @field_validator("padding", check_fields=False)
    @classmethod
    def _same_needs_unit_stride(cls, value: Any, info: ValidationInfo) -> Any:
        stride = info.data.get("stride")
        if value == "same" and stride is not None and any(s != 1 for s in _as_tuple(stride, cls.dims)):
            raise PydanticCustomError(
                "padding_same_strided",
                "padding='same' is not supported for strided convolutions; got stride={stride} "
                "(use stride=1 or an integer padding)",
                {"stride": stride},
            )
        return value

    @field_validator("groups", check_fields=False)
    @classmethod
    def _groups_divide_channels(cls, value: int, info: ValidationInfo) -> int:
        for name in ("in_channels", "out_channels"):
            channels = info.data.get(name)
            if channels is not None and channels % value != 0:
                raise PydanticCustomError(
                    "groups_not_dividing",
                    "{name} must be divisible by groups; got {name}={channels}, groups={groups}",
                    {"name": name, "channels": channels, "groups": value},
                )
        return value

    def largest_elements(self) -> int:
        kernel = math.prod(_as_tuple(self.kernel_size, self.dims))
        a, b = self.in_channels, self.out_channels
        if self.transposed:  # weight [in, out / groups, *kernel]
            return a * (b // self.groups) * kernel
        return b * (a // self.groups) * kernel


def _conv_model(dims: int, transposed: bool) -> type[LayerModel]:
    name = f"Conv{'Transpose' if transposed else ''}{dims}d"
    doc = (
        f"``torch.nn.{name}``: weight [{'in, out' if transposed else 'out, in'} / groups, *kernel] "
        "~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."
    )
    pos, size = spatial(dims, 1), spatial(dims, 0)
    fields: dict[str, Any] = {
        "type": (Literal[name], ...),
        "in_channels": (Size, Field(description="Number of channels in the input image.")),
        "out_channels": (Size, Field(description="Number of channels produced by the convolution.")),
        "kernel_size": (pos, Field(description="Size of the convolving kernel.")),
        "stride": (pos, Field(1, description="Stride of the convolution.")),
    }
    if transposed:
        fields["padding"] = (size, Field(0, description="dilation * (kernel_size - 1) - padding zero-padding on both sides."))
        fields["output_padding"] = (size, Field(0, description="Additional size added to one side of each output dimension."))
        fields["groups"] = (Size, Field(1, description="Number of blocked connections; divides in_channels and out_channels."))
        fields["bias"] = (bool, Field(True, description="Adds a learnable bias to the output."))
        fields["dilation"] = (pos, Field(1, description="Spacing between kernel elements."))
        fields["padding_mode"] = (Literal["zeros"], Field("zeros", description="Only 'zeros' is supported for transposed convolutions."))
    else:
        fields["padding"] = (
            spatial(dims, 0, ("valid", "same")),
            Field(0, description="'valid', 'same' (stride 1 only), or zero-padding added to all sides (int or one per dimension)."),
        )
        fields["dilation"] = (pos, Field(1, description="Spacing between kernel elements."))
        fields["groups"] = (Size, Field(1, description="Number of blocked connections; divides in_channels and out_channels."))
        fields["bias"] = (bool, Field(True, description="Adds a learnable bias to the output."))
        fields["padding_mode"] = (
            Literal["zeros", "reflect", "replicate", "circular"],
            Field("zeros", description="'zeros', 'reflect', 'replicate' or 'circular'."),
        )
    model = create_model(name, __base__=_Conv, __doc__=doc, **fields)
    model.dims, model.transposed = dims, transposed
    return model


Conv1d, Conv2d, Conv3d = (_conv_model(d, False) for d in (1, 2, 3))
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (_conv_model(d, True) for d in (1, 2, 3))


def _pool_model(kind: str, dims: int) -> type[LayerModel]:
    name = f"{kind}{dims}d"
    pos, size = spatial(dims, 1), spatial(dims, 0)
    fields: dict[str, Any] = {
        "type": (Literal[name], ...),
        "kernel_size": (pos, Field(description="The size of the window.")),
        "stride": (pos | None, Field(None, description="The stride of the window; null means kernel_size.")),
        "padding": (size, Field(0, description="Implicit padding added on both sides.")),
    }
    if kind == "MaxPool":
        fields["dilation"] = (pos, Field(1, description="Stride between elements within a sliding window."))
        fields["return_indices"] = (bool, Field(False, description="Return the max indices along with the outputs."))
        fields["ceil_mode"] = (bool, Field(False, description="Use ceil instead of floor to compute the output shape."))
    else:
        fields["ceil_mode"] = (bool, Field(False, description="Use ceil instead of floor to compute the output shape."))
        fields["count_include_pad"] = (bool, Field(True, description="Include the zero-padding in the averaging."))
        if dims == 2:
            fields["divisor_override"] = (Size | None, Field(None, description="If given, the divisor; otherwise the pooling region's size."))
    return create_model(name, __base__=LayerModel, __doc__=f"``torch.nn.{name}``: no parameters.", **fields)


MaxPool1d, MaxPool2d = _pool_model("MaxPool", 1), _pool_model("MaxPool", 2)
AvgPool1d, AvgPool2d = _pool_model("AvgPool", 1), _pool_model("AvgPool", 2)


def _adaptive_size(value: Any, info: ValidationInfo) -> int | tuple[int | None, ...]:
    if _is_int(value) and 1 <= value <= SIZE_MAX:
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(v is None or (_is_int(v) and 1 <= v <= SIZE_MAX) for v in value):
        return tuple(value)
    raise PydanticCustomError(
        "output_size", "output_size must be an integer >= 1 or a list of 2 entries, each an integer >= 1 or null (keep that size); got {value}", {"value": repr(value)}
    )


_ADAPTIVE_2D_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "array", "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}, "minItems": 2, "maxItems": 2},
    ],
    "description": "The target output size H x W: an int, or [H, W] with null meaning 'same as the input'.",
}


class AdaptiveAvgPool1d(LayerModel):
    """``torch.nn.AdaptiveAvgPool1d``: no parameters."""

    type: Literal["AdaptiveAvgPool1d"]
    output_size: Size = Field(description="The target output size L.")


class AdaptiveAvgPool2d(LayerModel):
    """``torch.nn.AdaptiveAvgPool2d``: no parameters."""

    type: Literal["AdaptiveAvgPool2d"]
    output_size: Annotated[Any, PlainValidator(_adaptive_size), WithJsonSchema(_ADAPTIVE_2D_SCHEMA)] = Field(description="The target output size H x W: an int, or [H, W] with null meaning 'same as the input'.")


SPATIAL_LAYERS: tuple[type[LayerModel], ...] = (
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
    MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool1d, AdaptiveAvgPool2d,
)
