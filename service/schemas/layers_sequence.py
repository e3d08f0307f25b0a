"""Recurrent, attention and transformer layers: models of their ``torch.nn`` constructors.

Their rules, checked at the argument that breaks them: ``proj_size`` < ``hidden_size`` (LSTM
only; RNN and GRU have no ``proj_size``), ``dropout`` in [0, 1], ``nonlinearity`` ``tanh`` or
``relu``, ``embed_dim`` / ``d_model`` divisible by ``num_heads`` / ``nhead``. A transformer
layer's ``activation`` is the name of one of torch's two built-in ones, never a callable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from service.schemas.layers_conv import Eps, LayerModel, Probability, Size

_GATES = {"RNN": 1, "RNNCell": 1, "GRU": 3, "GRUCell": 3, "LSTM": 4, "LSTMCell": 4}


class _Recurrent(LayerModel):
    type: str  # each concrete model narrows it to its Literal, in this position
    input_size: Size = Field(description="The number of expected features in the input x.")
    hidden_size: Size = Field(description="The number of features in the hidden state h.")
    num_layers: Size = Field(1, description="Number of stacked recurrent layers.")

    def largest_elements(self) -> int:
        proj = getattr(self, "proj_size", 0)
        real_hidden = proj or self.hidden_size
        directions = 2 if self.bidirectional else 1  # type: ignore[attr-defined]
        inputs = [self.input_size, real_hidden] + ([real_hidden * directions] if self.num_layers > 1 else [])
        return _GATES[self.type] * self.hidden_size * max(inputs)


_BIAS = "If false, the layer does not use bias weights b_ih and b_hh."
_BATCH_FIRST = "If true, input and output tensors are (batch, seq, feature)."
_DROPOUT = "Dropout on the outputs of each layer except the last, in [0, 1] (torch warns when num_layers is 1)."
_BIDIRECTIONAL = "If true, becomes a bidirectional RNN (parameters with suffix _reverse)."
_NONLINEARITY = "The non-linearity to use: 'tanh' or 'relu'."


class RNN(_Recurrent):
    """``torch.nn.RNN`` (Elman). All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["RNN"]
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", description=_NONLINEARITY)
    bias: bool = Field(True, description=_BIAS)
    batch_first: bool = Field(False, description=_BATCH_FIRST)
    dropout: Probability = Field(0.0, description=_DROPOUT)
    bidirectional: bool = Field(False, description=_BIDIRECTIONAL)


class LSTM(_Recurrent):
    """``torch.nn.LSTM``. All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["LSTM"]
    bias: bool = Field(True, description=_BIAS)
    batch_first: bool = Field(False, description=_BATCH_FIRST)
    dropout: Probability = Field(0.0, description=_DROPOUT)
    bidirectional: bool = Field(False, description=_BIDIRECTIONAL)
    proj_size: int = Field(0, ge=0, description="If > 0, an LSTM with projections of that size (< hidden_size).")

    @field_validator("proj_size")
    @classmethod
    def _proj_smaller_than_hidden(cls, value: int, info: ValidationInfo) -> int:
        hidden = info.data.get("hidden_size")
        if value and hidden is not None and value >= hidden:
            raise PydanticCustomError(
                "proj_size",
                "proj_size has to be smaller than hidden_size; got proj_size={proj}, hidden_size={hidden}",
                {"proj": value, "hidden": hidden},
            )
        return value


class GRU(_Recurrent):
    """``torch.nn.GRU``. All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["GRU"]
    bias: bool = Field(True, description=_BIAS)
    batch_first: bool = Field(False, description=_BATCH_FIRST)
    dropout: Probability = Field(0.0, description=_DROPOUT)
    bidirectional: bool = Field(False, description=_BIDIRECTIONAL)


class _Cell(LayerModel):
    type: str
    input_size: Size = Field(description="The number of expected features in the input x.")
    hidden_size: Size = Field(description="The number of features in the hidden state h.")
    bias: bool = Field(True, description=_BIAS)

    def largest_elements(self) -> int:
        return _GATES[self.type] * self.hidden_size * max(self.input_size, self.hidden_size)


class RNNCell(_Cell):
    """``torch.nn.RNNCell``. All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["RNNCell"]
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", description=_NONLINEARITY)


class LSTMCell(_Cell):
    """``torch.nn.LSTMCell``. All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["LSTMCell"]


class GRUCell(_Cell):
    """``torch.nn.GRUCell``. All weights and biases ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    type: Literal["GRUCell"]


def _heads_divide(dim_field: str) -> Any:
    def check(cls: Any, value: int, info: ValidationInfo) -> int:
        dim = info.data.get(dim_field)
        if dim is not None and dim % value != 0:
            raise PydanticCustomError(
                "heads_not_dividing",
                "{dim_field} must be divisible by {field}; got {dim_field}={dim}, {field}={value}",
                {"dim_field": dim_field, "field": info.field_name, "dim": dim, "value": value},
            )
        return value

    return classmethod(check)


class MultiheadAttention(LayerModel):
    """``torch.nn.MultiheadAttention``: in_proj_weight (or q/k/v_proj_weight when kdim/vdim differ) ~ xavier_uniform;
    in_proj_bias and out_proj.bias zeros; out_proj.weight as Linear's; bias_k, bias_v ~ xavier_normal."""

    type: Literal["MultiheadAttention"]
    embed_dim: Size = Field(description="Total dimension of the model.")
    num_heads: Size = Field(description="Number of parallel attention heads; must divide embed_dim.")
    dropout: Probability = Field(0.0, description="Dropout probability on attn_output_weights.")
    bias: bool = Field(True, description="Add bias to input / output projection layers.")
    add_bias_kv: bool = Field(False, description="Add bias to the key and value sequences at dim=0.")
    add_zero_attn: bool = Field(False, description="Add a new batch of zeros to the key and value sequences at dim=1.")
    kdim: Size | None = Field(None, description="Total number of features for keys (null: embed_dim).")
    vdim: Size | None = Field(None, description="Total number of features for values (null: embed_dim).")
    batch_first: bool = Field(False, description="If true, input and output tensors are (batch, seq, feature).")

    _heads = field_validator("num_heads")(_heads_divide("embed_dim"))

    def largest_elements(self) -> int:
        e, k, v = self.embed_dim, self.kdim or self.embed_dim, self.vdim or self.embed_dim
        return 3 * e * e if k == e and v == e else e * max(e, k, v)


class _TransformerLayer(LayerModel):
    type: str
    d_model: Size = Field(description="The number of expected features in the input.")
    nhead: Size = Field(description="The number of heads in the attention models; must divide d_model.")
    dim_feedforward: Size = Field(2048, description="The dimension of the feedforward network model.")
    dropout: Probability = Field(0.1, description="The dropout value.")
    activation: Literal["relu", "gelu"] = Field("relu", description="The activation of the intermediate layer: 'relu' or 'gelu'.")
    layer_norm_eps: Eps = Field(1e-5, description="The eps value in layer normalization components.")
    batch_first: bool = Field(False, description="If true, input and output tensors are (batch, seq, feature).")
    norm_first: bool = Field(False, description="If true, layer norm is done prior to attention and feedforward operations.")
    bias: bool = Field(True, description="If false, Linear and LayerNorm layers will not learn an additive bias.")

    _heads = field_validator("nhead")(_heads_divide("d_model"))

    def largest_elements(self) -> int:
        return max(3 * self.d_model * self.d_model, self.dim_feedforward * self.d_model)


class TransformerEncoderLayer(_TransformerLayer):
    """``torch.nn.TransformerEncoderLayer``: self_attn as MultiheadAttention, linear1/linear2 as Linear, norm1/norm2 as LayerNorm."""

    type: Literal["TransformerEncoderLayer"]


class TransformerDecoderLayer(_TransformerLayer):
    """``torch.nn.TransformerDecoderLayer``: self_attn and multihead_attn as MultiheadAttention, linear1/linear2 as Linear,
    norm1..norm3 as LayerNorm."""

    type: Literal["TransformerDecoderLayer"]


SEQUENCE_LAYERS: tuple[type[LayerModel], ...] = (
    RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, MultiheadAttention, TransformerEncoderLayer, TransformerDecoderLayer,
)
