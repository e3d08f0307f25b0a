"""What the four transformers presets share: transformers' ``PreTrainedModel`` init pass, its
activation table, and the config checks every model of it makes.

transformers 5.x builds a model in two phases, and a replay follows both:

1. Construction. Each ``nn.Linear``/``nn.Embedding``/``nn.LayerNorm``/``nn.Conv2d`` runs torch's
   own ``reset_parameters`` as it is created, in construction order (Linear: weight
   U(±1/√fan_in) by ``kaiming_uniform_(a=√5)``, bias U(±1/√fan_in); Embedding: N(0, 1), then its
   ``padding_idx`` row zeroed; LayerNorm: ones and zeros, no draw). A base model (``GPT2Model``,
   ``LlamaModel``, ...) ends its ``__init__`` with ``post_init()``, so its init pass (2) runs
   before the head that wraps it (``lm_head``) is even constructed.
2. ``post_init()`` -> ``init_weights()`` -> ``initialize_weights()``: ``smart_apply`` visits the
   modules children first (post-order, ``Module.children()`` order) and calls the model's
   ``_init_weights(module)`` on each module not yet marked ``_is_hf_initialized`` (the modules a
   nested base model's own ``post_init`` already visited are skipped), then marks it. The generic
   ``_init_weights``: Linear/Conv weight N(0, std) and bias zeros; Embedding N(0, std) and the
   ``padding_idx`` row zeroed; LayerNorm/RMSNorm ones and zeros; with
   ``std = config.initializer_range or 0.02``. Then ``tie_weights()`` makes the head's weight
   the embedding's Parameter when ``tie_word_embeddings``.

:func:`init_pass` is (2) for a replay's plain modules: the same visiting order and skip set, with
the model's ``_init_weights`` passed in. Work that cannot change a byte is left out (re-filling
ones and zeros that construction already wrote), never a draw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from service.presets.base import ConfigError

# transformers.activations.ACT2FN's names (5.25.0). All but two are parameterless; "prelu" is
# nn.PReLU (one Parameter, 0.25) and "xielu" XIELUActivation (two Parameters, two buffers), which
# appear in the state_dict under the activation's attribute name.
ACTIVATIONS = (
    "gelu", "gelu_10", "gelu_accurate", "gelu_fast", "gelu_new", "gelu_python", "gelu_python_tanh",
    "gelu_pytorch_tanh", "hardswish", "laplace", "leaky_relu", "linear", "mish", "prelu", "quick_gelu",
    "relu", "relu2", "relu6", "sigmoid", "silu", "sqrtsoftplus", "swish", "tanh", "xielu",
)


class XIELU(nn.Module):
    """transformers' ``XIELUActivation()`` state: ``alpha_p = log(expm1(0.8))``,
    ``alpha_n = log(expm1(0.8 - 0.5))`` (shape (1,)), buffers ``beta = 0.5``, ``eps = -1e-6``,
    all bfloat16 and computed in bfloat16, as its constructor does; no draws."""

    def __init__(self) -> None:
        super().__init__()
        dt = torch.bfloat16
        self.alpha_p = nn.Parameter(torch.log(torch.expm1(torch.tensor(0.8, dtype=dt))).unsqueeze(0))
        self.alpha_n = nn.Parameter(torch.log(torch.expm1(torch.tensor(0.8 - 0.5, dtype=dt))).unsqueeze(0))
        self.beta = nn.Buffer(torch.tensor(0.5, dtype=dt))
        self.eps = nn.Buffer(torch.tensor(-1e-6, dtype=dt))


def activation(name: str) -> nn.Module | None:
    """The module ``ACT2FN[name]`` contributes to a state_dict: ``None`` for the parameterless
    ones (no keys, no draws), ``nn.PReLU()`` or :class:`XIELU` otherwise."""
    if name == "prelu":
        return nn.PReLU()
    if name == "xielu":
        return XIELU()
    return None


def check_activation(field: str, name: str) -> None:
    """``ACT2FN[name]`` raises ``KeyError`` for an unknown name at construction."""
    if name not in ACTIVATIONS:
        raise ConfigError(field, f"must be one of transformers' activations {list(ACTIVATIONS)}; got {name!r}")


def check_std(config: Mapping[str, Any]) -> None:
    """``normal_`` refuses a negative std (``initializer_range``)."""
    if config["initializer_range"] < 0:
        raise ConfigError("initializer_range", f"must be at least 0 (it is normal_'s std); got {config['initializer_range']}")


def check_padding_idx(field: str, padding_idx: int | None, vocab_size: int) -> list[str]:
    """``nn.Embedding(vocab_size, d, padding_idx)`` asserts ``-vocab_size <= padding_idx <
    vocab_size``; a negative one is taken from the end (and the config warns about it)."""
    if padding_idx is None:
        return []
    if not -vocab_size <= padding_idx < vocab_size:
        raise ConfigError(
            field,
            f"must be null or within the vocabulary (nn.Embedding's padding_idx: "
            f"-{vocab_size} <= {field} < {vocab_size}); got {padding_idx}",
        )
    return []


def check_token_ids(config: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """The config's typed token ids: each ``int | None``, or for ``eos_token_id`` also a list of ints
    (the config dataclass refuses other types)."""
    for name in names:
        value = config[name]
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if name == "eos_token_id" and isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            continue
        allowed = "an integer, a list of integers or null" if name == "eos_token_id" else "an integer or null"
        raise ConfigError(name, f"must be {allowed}; got {value!r}")


def token_id_warnings(config: Mapping[str, Any], vocab_size: int | None) -> list[str]:
    """``PreTrainedConfig.validate_token_ids``: every ``*_token_id`` that is an int outside
    ``[0, vocab_size)`` is logged (not refused); here those lines become warnings."""
    if vocab_size is None:
        return []
    out = []
    for name, value in config.items():
        if name.endswith("_token_id") and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < vocab_size:
                out.append(
                    f"Model config: {name} must be `None` or an integer within the vocabulary (between 0 and "
                    f"{vocab_size - 1}), got {value}. This may result in unexpected behavior."
                )
    return out


def base_std(config: Mapping[str, Any]) -> float:
    """``PreTrainedModel._init_weights``'s std: ``config.initializer_range or 0.02``."""
    return config["initializer_range"] or 0.02


def init_linear(module: nn.Linear | nn.Conv2d, std: float) -> None:
    """Linear/Conv: weight N(0, std), bias zeros (construction drew it U(±1/√fan_in))."""
    nn.init.normal_(module.weight, mean=0.0, std=std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def init_embedding(module: nn.Embedding, std: float) -> None:
    """Embedding: weight N(0, std), then the ``padding_idx`` row zeroed."""
    nn.init.normal_(module.weight, mean=0.0, std=std)
    if module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])


def generic_init(module: nn.Module, std: float) -> None:
    """``PreTrainedModel._init_weights`` for the modules a replay builds. Norms and activations
    are left as construction made them (ones and zeros, constants): the pass would write the same
    bytes again."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        init_linear(module, std)
    elif isinstance(module, nn.Embedding):
        init_embedding(module, std)


def init_pass(root: nn.Module, init_weights: Callable[[nn.Module], None], done: set[int]) -> None:
    """``smart_apply(root, _initialize_weights)``: children first, each module once; ``done``
    holds the ids of modules already visited (by a nested model's ``post_init``). Recursion
    through a module-level function: a recursive closure is a reference cycle that would keep
    ``init_weights`` (and the model it may hold) alive until the next GC pass."""
    for child in root.children():
        init_pass(child, init_weights, done)
    if id(root) not in done:
        init_weights(root)
        done.add(id(root))


class TiedHead(nn.Module):
    """An output layer whose ``weight`` is another module's Parameter (``tie_weights``): the
    same tensor under both keys. The reference's own ``nn.Linear`` draws (``kaiming_uniform_``,
    then ``normal_`` in the init pass) are the last draws of the build and land in a tensor that
    tying discards, so a replay whose generators are restored afterwards makes no such draw."""

    def __init__(self, weight: torch.Tensor):  # a Parameter, which torch annotates as a Tensor
        super().__init__()
        self.weight = weight

