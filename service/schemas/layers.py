"""One model per ``torch.nn`` constructor that ``/v1/module`` accepts, discriminated on ``type``.

Each model's fields are exactly the constructor's keyword arguments (minus ``device`` and
``dtype``), with torch's names, order and defaults, so a layer is written as it is in Python:
``{"type": "Linear", "in_features": 784, "out_features": 256}``. Unknown arguments are a 422 at
their own ``loc``; an unknown ``type`` lists the known ones. Rules torch's constructors enforce
(``embed_dim`` divisible by ``num_heads``, ``padding_idx`` within ``num_embeddings``, ...) are
checked here, at the argument that breaks them, so a bad layer is a 422 before anything is built.

The catalog behind ``GET /v1/layers`` is these models' JSON schemas. Convolutions and pooling
live in ``layers_conv``; recurrent, attention and transformer layers in ``layers_sequence``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.schemas.layers_conv import SIZE_MAX, SPATIAL_LAYERS, Eps, Inplace, LayerModel, Probability, Size
from service.schemas.layers_sequence import SEQUENCE_LAYERS
from service.schemas.recipes import Number, require_tag

MAX_NORMALIZED_DIMS = 16


class Linear(LayerModel):
    """``torch.nn.Linear``: weight [out, in] ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); bias the same."""

    type: Literal["Linear"]
    in_features: Size = Field(description="Size of each input sample.")
    out_features: Size = Field(description="Size of each output sample.")
    bias: bool = Field(True, description="If false, the layer will not learn an additive bias.")

    def largest_elements(self) -> int:
        return self.in_features * self.out_features


class Bilinear(LayerModel):
    """``torch.nn.Bilinear``: weight [out, in1, in2] and bias ~ U(-1/sqrt(in1), 1/sqrt(in1))."""

    type: Literal["Bilinear"]
    in1_features: Size = Field(description="Size of each first input sample.")
    in2_features: Size = Field(description="Size of each second input sample.")
    out_features: Size = Field(description="Size of each output sample.")
    bias: bool = Field(True, description="If false, the layer will not learn an additive bias.")

    def largest_elements(self) -> int:
        return self.out_features * self.in1_features * self.in2_features


def _padding_idx_within(cls: Any, value: int | None, info: ValidationInfo) -> int | None:
    count = info.data.get("num_embeddings")
    if value is not None and count is not None and not -count <= value < count:
        raise PydanticCustomError(
            "padding_idx_range",
            "padding_idx must be within num_embeddings: {low} <= padding_idx < {count}; got padding_idx={value}",
            {"low": -count, "count": count, "value": value},
        )
    return value


_PADDING_IDX = "Entries at padding_idx do not contribute to the gradient; its row is initialized to zeros."
_MAX_NORM = "Each embedding vector with norm larger than max_norm is renormalized to max_norm (> 0)."


class Embedding(LayerModel):
    """``torch.nn.Embedding``: weight [num_embeddings, embedding_dim] ~ N(0, 1), the padding_idx row zeros."""

    type: Literal["Embedding"]
    num_embeddings: Size = Field(description="Size of the dictionary of embeddings.")
    embedding_dim: Size = Field(description="The size of each embedding vector.")
    padding_idx: int | None = Field(None, description=_PADDING_IDX)
    max_norm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(None, description=_MAX_NORM)
    norm_type: Number = Field(2.0, description="The p of the p-norm to compute for the max_norm option.")
    scale_grad_by_freq: bool = Field(False, description="Scale gradients by the inverse of word frequency in the mini-batch.")
    sparse: bool = Field(False, description="Gradient w.r.t. weight will be a sparse tensor.")

    _padding_idx = field_validator("padding_idx")(classmethod(_padding_idx_within))

    def largest_elements(self) -> int:
        return self.num_embeddings * self.embedding_dim


class EmbeddingBag(LayerModel):
    """``torch.nn.EmbeddingBag``: weight [num_embeddings, embedding_dim] ~ N(0, 1), the padding_idx row zeros."""

    type: Literal["EmbeddingBag"]
    num_embeddings: Size = Field(description="Size of the dictionary of embeddings.")
    embedding_dim: Size = Field(description="The size of each embedding vector.")
    max_norm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(None, description=_MAX_NORM)
    norm_type: Number = Field(2.0, description="The p of the p-norm to compute for the max_norm option.")
    scale_grad_by_freq: bool = Field(False, description="Scale gradients by the inverse of word frequency in the mini-batch.")
    mode: Literal["sum", "mean", "max"] = Field("mean", description="How to reduce the bag: 'sum', 'mean' or 'max'.")
    sparse: bool = Field(False, description="Gradient w.r.t. weight will be a sparse tensor.")
    include_last_offset: bool = Field(False, description="offsets has one additional element, the size of the bag.")
    padding_idx: int | None = Field(None, description=_PADDING_IDX)

    _padding_idx = field_validator("padding_idx")(classmethod(_padding_idx_within))

    def largest_elements(self) -> int:
        return self.num_embeddings * self.embedding_dim


def _normalized_shape(value: Any, info: ValidationInfo) -> int | tuple[int, ...]:
    def fits(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= SIZE_MAX

    if fits(value):
        return value
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= MAX_NORMALIZED_DIMS and all(fits(x) for x in value):
        return tuple(value)
    raise PydanticCustomError(
        "normalized_shape",
        "normalized_shape must be an integer >= 1 or a list of 1 to {most} such integers; got {value}",
        {"most": MAX_NORMALIZED_DIMS, "value": repr(value)},
    )


_SHAPE_DESCRIPTION = "Input shape from an expected input of size [*, normalized_shape[0], ..., normalized_shape[-1]]."
NormalizedShape = Annotated[
    Any,  # int or tuple of ints; see ``layers_conv.spatial`` for why not a union
    PlainValidator(_normalized_shape),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": MAX_NORMALIZED_DIMS},
            ],
            "description": _SHAPE_DESCRIPTION,
        }
    ),
]
_EPS = "A value added to the denominator for numerical stability."
_AFFINE = "Learnable per-element affine parameters: weight initialized to ones, bias to zeros."


class LayerNorm(LayerModel):
    """``torch.nn.LayerNorm``: weight ones, bias zeros, both of shape normalized_shape."""

    type: Literal["LayerNorm"]
    normalized_shape: NormalizedShape = Field(description=_SHAPE_DESCRIPTION)
    eps: Eps = Field(1e-5, description=_EPS)
    elementwise_affine: bool = Field(True, description=_AFFINE)
    bias: bool = Field(True, description="If false, no additive bias (only with elementwise_affine).")

    def largest_elements(self) -> int:
        shape = self.normalized_shape
        return (shape if isinstance(shape, int) else math.prod(shape)) if self.elementwise_affine else 0


class RMSNorm(LayerModel):
    """``torch.nn.RMSNorm``: weight ones, of shape normalized_shape."""

    type: Literal["RMSNorm"]
    normalized_shape: NormalizedShape = Field(description=_SHAPE_DESCRIPTION)
    eps: Eps | None = Field(None, description=_EPS + " Default: torch.finfo(x.dtype).eps.")
    elementwise_affine: bool = Field(True, description=_AFFINE)

    def largest_elements(self) -> int:
        shape = self.normalized_shape
        return (shape if isinstance(shape, int) else math.prod(shape)) if self.elementwise_affine else 0


class GroupNorm(LayerModel):
    """``torch.nn.GroupNorm``: weight ones, bias zeros, of shape [num_channels]."""

    type: Literal["GroupNorm"]
    num_groups: Size = Field(description="Number of groups to separate the channels into.")
    num_channels: Size = Field(description="Number of channels expected in input; divisible by num_groups.")
    eps: Eps = Field(1e-5, description=_EPS)
    affine: bool = Field(True, description=_AFFINE)
    bias: bool = Field(True, description="If false, no additive bias (only with affine).")

    @field_validator("num_channels")
    @classmethod
    def _groups_divide_channels(cls, value: int, info: ValidationInfo) -> int:
        groups = info.data.get("num_groups")
        if groups is not None and value % groups != 0:
            raise PydanticCustomError(
                "groups_not_dividing",
                "num_channels must be divisible by num_groups; got num_channels={channels}, num_groups={groups}",
                {"channels": value, "groups": groups},
            )
        return value

    def largest_elements(self) -> int:
        return self.num_channels if self.affine else 0


class _BatchNormBase(LayerModel):
    type: str  # each concrete model narrows it to its Literal, in this position
    num_features: Size = Field(description="Number of features or channels C of the input.")
    eps: Eps = Field(1e-5, description=_EPS)
    momentum: Probability | None = Field(0.1, description="Weight of the running estimates' update; null: cumulative average.")
    affine: bool = Field(True, description=_AFFINE)
    track_running_stats: bool = Field(True, description="Track running_mean (zeros), running_var (ones) and num_batches_tracked (int64 0).")
    bias: bool = Field(True, description="If false, no additive bias (only with affine).")

    def largest_elements(self) -> int:
        return self.num_features if self.affine or self.track_running_stats else 0


class _InstanceNormBase(_BatchNormBase):
    affine: bool = Field(False, description=_AFFINE)
    track_running_stats: bool = Field(False, description="Track running_mean (zeros), running_var (ones) and num_batches_tracked (int64 0).")


def _norm_model(base: type[LayerModel], name: str) -> type[LayerModel]:
    doc = f"``torch.nn.{name}``: weight ones, bias zeros; running_mean zeros, running_var ones, num_batches_tracked 0."
    # Literal[name] of a runtime name is a value, not a type mypy can read: the definitions go in as Any.
    fields: dict[str, Any] = {"type": (Literal[name], ...)}
    return create_model(name, __base__=base, __doc__=doc, __module__=__name__, **fields)


BatchNorm1d, BatchNorm2d, BatchNorm3d = (_norm_model(_BatchNormBase, f"BatchNorm{d}d") for d in (1, 2, 3))
InstanceNorm1d, InstanceNorm2d, InstanceNorm3d = (_norm_model(_InstanceNormBase, f"InstanceNorm{d}d") for d in (1, 2, 3))


class PReLU(LayerModel):
    """``torch.nn.PReLU``: weight [num_parameters] filled with init."""

    type: Literal["PReLU"]
    num_parameters: Size = Field(1, description="Number of a to learn: 1, or the number of channels.")
    init: Number = Field(0.25, description="The initial value of a.")

    def largest_elements(self) -> int:
        return self.num_parameters

    def written_values(self) -> dict[str, float]:
        return {"init": float(self.init)}


def _activation(name: str, doc: str, **fields: tuple[Any, Any]) -> type[LayerModel]:
    # Literal[name] of a runtime name is a value, not a type mypy can read: the definitions go in as Any.
    definitions: dict[str, Any] = {"type": (Literal[name], ...), **fields}
    return create_model(
        name, __base__=LayerModel, __doc__=f"``torch.nn.{name}``: {doc} No parameters.", __module__=__name__,
        **definitions,
    )


_INPLACE = (Inplace, False)
_DIM = (int | None, Field(None, description="The dimension the softmax is computed along."))
ReLU = _activation("ReLU", "max(0, x).", inplace=_INPLACE)
GELU = _activation("GELU", "x * Phi(x).", approximate=(Literal["none", "tanh"], Field("none", description="'none' or 'tanh'.")))
SiLU = _activation("SiLU", "x * sigmoid(x).", inplace=_INPLACE)
Mish = _activation("Mish", "x * tanh(softplus(x)).", inplace=_INPLACE)
Hardswish = _activation("Hardswish", "x * relu6(x + 3) / 6.", inplace=_INPLACE)
Tanh = _activation("Tanh", "tanh(x).")
Sigmoid = _activation("Sigmoid", "1 / (1 + exp(-x)).")
LeakyReLU = _activation(
    "LeakyReLU", "max(0, x) + negative_slope * min(0, x).",
    negative_slope=(Number, Field(0.01, description="Controls the angle of the negative slope.")), inplace=_INPLACE,
)
ELU = _activation("ELU", "x, or alpha * (exp(x) - 1) below 0.", alpha=(Number, Field(1.0, description="The alpha value.")), inplace=_INPLACE)
Softplus = _activation(
    "Softplus", "log(1 + exp(beta * x)) / beta.",
    beta=(Number, Field(1.0, description="The beta value.")),
    threshold=(Number, Field(20.0, description="Above this, revert to a linear function.")),
)
Softmax = _activation("Softmax", "exp(x_i) / sum_j exp(x_j).", dim=_DIM)
LogSoftmax = _activation("LogSoftmax", "log(softmax(x)).", dim=_DIM)
Dropout = _activation(
    "Dropout", "zeroes elements with probability p while training.",
    p=(Probability, Field(0.5, description="Probability of an element to be zeroed, in [0, 1].")), inplace=_INPLACE,
)
Flatten = _activation(
    "Flatten", "flattens a contiguous range of dims.",
    start_dim=(int, Field(1, description="First dim to flatten.")), end_dim=(int, Field(-1, description="Last dim to flatten.")),
)
Identity = _activation("Identity", "returns its input.")

LAYER_MODEL_LIST: tuple[type[LayerModel], ...] = (
    Linear, Bilinear, *SPATIAL_LAYERS, Embedding, EmbeddingBag, *SEQUENCE_LAYERS,
    LayerNorm, RMSNorm, GroupNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d,
    PReLU, ReLU, GELU, SiLU, Mish, Hardswish, Tanh, Sigmoid, LeakyReLU, ELU, Softplus, Softmax, LogSoftmax,
    Dropout, Flatten, Identity,
)

# Type name -> model, in catalog order.
LAYER_MODELS: dict[str, type[LayerModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model for model in LAYER_MODEL_LIST
}

# A union over the runtime tuple above: ``X | Y`` cannot spell it and mypy cannot read it as a type.
LayerSpec = Annotated[
    Union[LAYER_MODEL_LIST],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="type", description="A torch.nn layer: 'type' and its constructor's keyword arguments."),
    BeforeValidator(require_tag("type", LAYER_MODELS)),
]
