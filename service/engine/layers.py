"""The whitelist of ``torch.nn`` layers, how a stack of them is built, and what their default init draws.

A layer is built only from ``LAYER_CLASSES``, a fixed table from type name to class: nothing
from a request is imported, evaluated or looked up by name on ``torch.nn``. Layers with
parameters or buffers get torch's factory kwargs (``device=``, ``dtype=``), so they are
initialized directly in the requested dtype, as ``nn.Linear(..., dtype=torch.bfloat16)`` is.
(That is not the same as building in float32 and casting: ``uniform_`` draws differently in
bfloat16, so the bits differ. The contract is direct construction.)

On the ``meta`` device the same constructors allocate nothing and draw nothing from any
generator, which gives every state_dict key, shape and dtype before a byte is allocated.

``default_distributions`` restates, per parameter, what PyTorch's ``reset_parameters`` draws,
for ``stats.expected``:

    Linear, Conv*, ConvTranspose*   weight kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)); bias U(±1/sqrt(fan_in))
    Bilinear                        weight, bias U(±1/sqrt(in1_features))
    Embedding, EmbeddingBag         N(0, 1), the padding_idx row zeros
    RNN, LSTM, GRU and their cells  every parameter U(±1/sqrt(hidden_size))
    LayerNorm, RMSNorm, GroupNorm,  weight and running_var ones; bias, running_mean and
      BatchNorm*, InstanceNorm*       num_batches_tracked zeros
    MultiheadAttention              in/q/k/v_proj_weight xavier_uniform; in_proj_bias, out_proj.bias zeros;
                                    bias_k, bias_v xavier_normal; out_proj.weight as Linear's
    PReLU                           weight = init
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from service.engine.distributions import Distribution, Moments, describe
from service.engine.dtypes import NAMES
from service.engine.maker import captured_warnings

LAYER_CLASSES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear, "Bilinear": nn.Bilinear,
    "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "Conv3d": nn.Conv3d,
    "ConvTranspose1d": nn.ConvTranspose1d, "ConvTranspose2d": nn.ConvTranspose2d, "ConvTranspose3d": nn.ConvTranspose3d,
    "Embedding": nn.Embedding, "EmbeddingBag": nn.EmbeddingBag,
    "RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU, "RNNCell": nn.RNNCell, "LSTMCell": nn.LSTMCell, "GRUCell": nn.GRUCell,
    "LayerNorm": nn.LayerNorm, "RMSNorm": nn.RMSNorm, "GroupNorm": nn.GroupNorm,
    "BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d, "BatchNorm3d": nn.BatchNorm3d,
    "InstanceNorm1d": nn.InstanceNorm1d, "InstanceNorm2d": nn.InstanceNorm2d, "InstanceNorm3d": nn.InstanceNorm3d,
    "MultiheadAttention": nn.MultiheadAttention,
    "TransformerEncoderLayer": nn.TransformerEncoderLayer, "TransformerDecoderLayer": nn.TransformerDecoderLayer,
    "PReLU": nn.PReLU,
    # No parameters, no factory kwargs.
    "ReLU": nn.ReLU, "GELU": nn.GELU, "SiLU": nn.SiLU, "Mish": nn.Mish, "Hardswish": nn.Hardswish,
    "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU, "Softplus": nn.Softplus,
    "Softmax": nn.Softmax, "LogSoftmax": nn.LogSoftmax, "Dropout": nn.Dropout, "Flatten": nn.Flatten,
    "Identity": nn.Identity,
    "MaxPool1d": nn.MaxPool1d, "MaxPool2d": nn.MaxPool2d, "AvgPool1d": nn.AvgPool1d, "AvgPool2d": nn.AvgPool2d,
    "AdaptiveAvgPool1d": nn.AdaptiveAvgPool1d, "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d,
}

# Constructors without device/dtype keyword arguments (they hold no tensors).
PARAMETER_FREE = frozenset(
    {
        "ReLU", "GELU", "SiLU", "Mish", "Hardswish", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "Softplus", "Softmax",
        "LogSoftmax", "Dropout", "Flatten", "Identity", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
        "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    }
)

@dataclass(frozen=True)
class LayerCall:
    """One layer of the stack: its name in the Sequential, its type and constructor kwargs."""

    name: str
    type: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class StateEntry:
    """One state_dict entry: key, shape, dtype name, parameter or buffer, its layer's name."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    parameter: bool
    layer: str
    itemsize: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


def name_problem(name: str) -> str | None:
    """Why ``nn.Sequential.add_module`` would refuse ``name``, or ``None`` (it refuses '.', '' and
    names of the module's own attributes, such as 'forward' or 'training')."""
    if not name or "." in name:
        return f"a layer name must be non-empty and contain no '.'; got {name!r}"
    if hasattr(nn.Sequential(), name):
        return f"{name!r} is an attribute of torch.nn.Sequential and cannot name a layer; choose another name"
    return None


def build_layer(call: LayerCall, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """``LAYER_CLASSES[type](**kwargs, device=device, dtype=dtype)`` (no factory kwargs where the
    constructor has none). An unknown type is a ``ValueError``, never a lookup on ``torch.nn``."""
    try:
        cls = LAYER_CLASSES[call.type]
    except KeyError:
        raise ValueError(f"layer type must be one of {sorted(LAYER_CLASSES)}; got {call.type!r}") from None
    if call.type in PARAMETER_FREE:
        return cls(**call.kwargs)
    return cls(**call.kwargs, device=device, dtype=dtype)


def build_sequential(
    calls: Sequence[LayerCall], device: torch.device | str, dtype: torch.dtype
) -> tuple[nn.Sequential, dict[str, list[str]]]:
    """The layers built in order, as ``nn.Sequential(OrderedDict(...))``, and each layer's warnings."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    warned: dict[str, list[str]] = {}
    for call in calls:
        with captured_warnings() as messages:
            layers[call.name] = build_layer(call, device, dtype)
        if messages:
            warned[call.name] = messages
    return nn.Sequential(layers), warned


def state_entries(module: nn.Module) -> list[StateEntry]:
    """Every state_dict entry of ``module`` (parameters and persistent buffers), in state_dict order."""
    parameters = {key for key, _ in module.named_parameters()}
    return [
        StateEntry(key, tuple(t.shape), NAMES[t.dtype], key in parameters, key.split(".", 1)[0], t.element_size())
        for key, t in module.state_dict().items()
    ]


def meta_layer(call: LayerCall, dtype: torch.dtype) -> nn.Module:
    """One layer built alone on ``meta``: its state_dict keys have no layer-name prefix."""
    with captured_warnings():
        return build_layer(call, "meta", dtype)


# torch's C++ errors append where they were raised, then a backtrace with the server's paths.
_CPP_TRAILER = re.compile(r"\s*(\(|\n)?\s*Exception raised from .*", re.DOTALL)
REASON_CHARS = 300


def torch_reason(exc: BaseException) -> str:
    """What torch said, fit for an answer: its first line, without a C++ trailer or backtrace,
    at most ``REASON_CHARS`` characters (never a file path of the server)."""
    text = _CPP_TRAILER.sub("", str(exc)).strip().splitlines()
    first = text[0].strip() if text else ""
    first = re.sub(r"(/[\w.+-]+){2,}", "<path>", first) or type(exc).__name__
    return first if len(first) <= REASON_CHARS else first[: REASON_CHARS - 3] + "..."


def value_problem(what: str, value: float, dtype: torch.dtype) -> str | None:
    """Why ``value``, written into a tensor of ``dtype`` as it is, does not fit it (None: it fits)."""
    if not dtype.is_floating_point:
        return None
    biggest = torch.finfo(dtype).max
    if -biggest <= value <= biggest:
        return None
    return (
        f"{what}={value:g} does not fit {NAMES[dtype]} (largest finite value {biggest:g}); the layer writes it "
        "into its weight as it is: use a smaller value or a wider dtype"
    )


def meta_entries(calls: Sequence[LayerCall], dtype: torch.dtype) -> list[StateEntry]:
    """The state_dict entries the stack would have, from a build on ``meta`` (no memory, no draws).
    Warnings are dropped here: the real build captures them again."""
    with captured_warnings():
        module, _ = build_sequential(calls, "meta", dtype)
    return state_entries(module)


def _fan_in(shape: Sequence[int]) -> int:
    return math.prod(shape[1:])  # torch's fan_in for the weight layout [out, in, *kernel]


def _uniform(bound: float, shape: tuple[int, ...]) -> tuple[str, Distribution]:
    return "uniform", describe("uniform", {"a": -bound, "b": bound}, shape)


def _kaiming_sqrt5(shape: tuple[int, ...]) -> tuple[str, Distribution]:
    # Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)), i.e. U(±1/sqrt(fan_in)); see
    # https://github.com/pytorch/pytorch/issues/57109 for why a = sqrt(5).
    params = {"a": math.sqrt(5), "mode": "fan_in", "nonlinearity": "leaky_relu"}
    return "kaiming_uniform", describe("kaiming_uniform", params, shape)


def _weight_and_bias(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    """Linear and _ConvNd: kaiming weight, bias U(±1/sqrt(fan_in)) with fan_in from the weight."""
    out = {"weight": _kaiming_sqrt5(shapes["weight"])}
    if "bias" in shapes:
        fan_in = _fan_in(shapes["weight"])
        out["bias"] = _uniform(1 / math.sqrt(fan_in) if fan_in > 0 else 0.0, shapes["bias"])
    return out


def _attention(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    out: dict[str, tuple[str, Distribution]] = {}
    for key, shape in shapes.items():
        if key in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            out[key] = ("xavier_uniform", describe("xavier_uniform", {"gain": 1.0}, shape))
        elif key in ("bias_k", "bias_v"):
            out[key] = ("xavier_normal", describe("xavier_normal", {"gain": 1.0}, shape))
        elif key in ("in_proj_bias", "out_proj.bias"):
            out[key] = ("zeros", describe("zeros", {}, shape))
    return out


def _embedding(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    shape = shapes["weight"]
    if owner.padding_idx is None or shape[0] == 0:
        return {"weight": ("normal", describe("normal", {"mean": 0.0, "std": 1.0}, shape))}
    rows = shape[0]  # one row of zeros among N(0, 1) rows: mean 0, variance (rows - 1) / rows
    return {"weight": ("normal", Distribution(Moments(mean=0.0, std=math.sqrt((rows - 1) / rows)), std_used=1.0))}


def _norm(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    ones = {"weight", "running_var"}
    return {key: ("ones" if key in ones else "zeros", describe("ones" if key in ones else "zeros", {}, shape)) for key, shape in shapes.items()}


def _recurrent(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    if not isinstance(owner, (nn.RNNBase, nn.RNNCellBase)):
        raise TypeError(f"_recurrent describes RNN modules; got {type(owner).__name__}")
    bound = 1.0 / math.sqrt(owner.hidden_size) if owner.hidden_size > 0 else 0.0
    return {key: _uniform(bound, shape) for key, shape in shapes.items()}


def _bilinear(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    bound = 1 / math.sqrt(shapes["weight"][1])
    return {key: _uniform(bound, shape) for key, shape in shapes.items()}


def _prelu(owner: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, Distribution]]:
    if not isinstance(owner, nn.PReLU):
        raise TypeError(f"_prelu describes nn.PReLU; got {type(owner).__name__}")
    return {"weight": ("constant", describe("constant", {"val": float(owner.init)}, shapes["weight"]))}


# Owner class -> its reset_parameters' distributions, keyed relative to the owner. Checked in
# order with isinstance (MultiheadAttention before Linear: it re-initializes out_proj.bias).
_DEFAULT_INITS = (
    (nn.MultiheadAttention, _attention),
    (nn.Linear, _weight_and_bias),
    (nn.modules.conv._ConvNd, _weight_and_bias),
    (nn.Bilinear, _bilinear),
    (nn.Embedding, _embedding),
    (nn.EmbeddingBag, _embedding),
    (nn.RNNBase, _recurrent),
    (nn.RNNCellBase, _recurrent),
    (nn.modules.batchnorm._NormBase, _norm),
    (nn.LayerNorm, _norm),
    (nn.RMSNorm, _norm),
    (nn.GroupNorm, _norm),
    (nn.PReLU, _prelu),
)


def default_distributions(module: nn.Module) -> dict[str, tuple[str, Distribution]]:
    """State key -> (the init scheme torch's default uses, the distribution it draws from), for
    every entry some owner's ``reset_parameters`` defines. Outer owners win over inner ones."""
    state = {key: tuple(t.shape) for key, t in module.state_dict().items()}
    found: dict[str, tuple[str, Distribution]] = {}
    for prefix, owner in module.named_modules():
        rule = next((fn for cls, fn in _DEFAULT_INITS if isinstance(owner, cls)), None)
        if rule is None:
            continue
        dot = f"{prefix}." if prefix else ""
        local = {key[len(dot):]: shape for key, shape in state.items() if key.startswith(dot)}
        for key, value in rule(owner, local).items():
            found.setdefault(dot + key, value)
    return found
