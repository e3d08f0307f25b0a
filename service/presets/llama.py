"""transformers/LlamaForCausalLM: ``transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))``.

Versions ``>=5.0,<6``: the reference digests were computed by 5.25.0, and 5.0.0, 5.5.0, 5.9.0,
5.12.1, 5.15.0 and 5.20.0 give the same keys and bytes; the fields are ``LlamaConfig``'s keyword
arguments, the same throughout 5.x (``rope_parameters`` replaced 4.x's ``rope_theta`` and
``rope_scaling``). transformers 4.57.6 gives the same keys and bytes, but takes other arguments,
so 4.x is not claimed.

Replay, in the reference's order (d = hidden_size, h = head_dim or d // num_attention_heads,
n = num_attention_heads, k = num_key_value_heads or n, m = intermediate_size, r = initializer_range):

1. ``LlamaModel(config)`` construction draws: ``embed_tokens`` ``Embedding(vocab_size, d,
   pad_token_id)``: N(0, 1), then the padding row zeroed; per layer ``self_attn.q_proj``
   ``Linear(d, n·h)``, ``k_proj`` and ``v_proj`` ``Linear(d, k·h)``, ``o_proj`` ``Linear(n·h, d)``
   (bias with ``attention_bias``), ``mlp.gate_proj`` and ``up_proj`` ``Linear(d, m)``, ``down_proj``
   ``Linear(m, d)`` (bias with ``mlp_bias``): weight U(±1/√fan_in) and bias U(±1/√fan_in);
   ``input_layernorm``, ``post_attention_layernorm`` and ``norm`` (RMSNorm): ones. The rotary
   embedding's ``inv_freq`` buffers are non-persistent: no keys, no draws.
2. ``LlamaModel.post_init()``, children first: every Linear weight N(0, r or 0.02) and bias zeros;
   ``embed_tokens`` N(0, r or 0.02) and the padding row zeroed; RMSNorm ones.
3. ``lm_head`` ``Linear(d, vocab_size, bias=False)``: U(±1/√d), then the outer ``post_init()``
   visits only it: N(0, r or 0.02).
4. ``tie_weights()``: with ``tie_word_embeddings`` ``lm_head.weight`` becomes
   ``model.embed_tokens.weight``; the draws of 3 are then the build's last and are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from service.presets.base import ConfigError, Field, InitRule, Preset, inert, size
from service.presets.hf import (
    ACTIVATIONS,
    TiedHead,
    activation,
    base_std,
    check_activation,
    check_padding_idx,
    check_std,
    check_token_ids,
    generic_init,
    init_pass,
    token_id_warnings,
)

# transformers 5.25.0's RoPE types for LlamaRotaryEmbedding and the keys each requires
# (``RotaryEmbeddingConfigMixin._validate_*_rope_parameters``: a missing one is a KeyError).
ROPE_REQUIRED = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "yarn": ("factor",),
    "longrope": ("short_factor", "long_factor"),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
}


class LlamaRMSNorm(nn.Module):
    """``LlamaRMSNorm(d)``: ``weight`` ones; no draws."""

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class _Attention(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d, h, bias = c["hidden_size"], _head_dim(c), c["attention_bias"]
        n, k = c["num_attention_heads"], _kv_heads(c)
        self.q_proj = nn.Linear(d, n * h, bias=bias)
        self.k_proj = nn.Linear(d, k * h, bias=bias)
        self.v_proj = nn.Linear(d, k * h, bias=bias)
        self.o_proj = nn.Linear(n * h, d, bias=bias)


class _MLP(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d, m, bias = c["hidden_size"], c["intermediate_size"], c["mlp_bias"]
        self.gate_proj = nn.Linear(d, m, bias=bias)
        self.up_proj = nn.Linear(d, m, bias=bias)
        self.down_proj = nn.Linear(m, d, bias=bias)
        if (module := activation(c["hidden_act"])) is not None:
            self.act_fn = module


class _DecoderLayer(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.self_attn = _Attention(c)
        self.mlp = _MLP(c)
        self.input_layernorm = LlamaRMSNorm(c["hidden_size"])
        self.post_attention_layernorm = LlamaRMSNorm(c["hidden_size"])


class _LlamaModel(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"], c["pad_token_id"])
        self.layers = nn.ModuleList([_DecoderLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(c["hidden_size"])


class _LlamaForCausalLM(nn.Module):
    def __init__(self, model: _LlamaModel, lm_head: nn.Module):
        super().__init__()
        self.model = model
        self.lm_head = lm_head


def _head_dim(c: Mapping[str, Any]) -> int:
    return c["head_dim"] if c["head_dim"] is not None else c["hidden_size"] // c["num_attention_heads"]


def _kv_heads(c: Mapping[str, Any]) -> int:
    return c["num_key_value_heads"] if c["num_key_value_heads"] is not None else c["num_attention_heads"]


def _build(config: Mapping[str, Any]) -> nn.Module:
    std = base_std(config)

    def init_weights(module: nn.Module) -> None:  # LlamaPreTrainedModel keeps the generic one
        generic_init(module, std)

    done: set[int] = set()
    model = _LlamaModel(config)
    init_pass(model, init_weights, done)
    if config["tie_word_embeddings"]:
        return _LlamaForCausalLM(model, TiedHead(model.embed_tokens.weight))
    top = _LlamaForCausalLM(model, nn.Linear(config["hidden_size"], config["vocab_size"], bias=False))
    init_pass(top, init_weights, done)
    return top


def _check_rope(rope: Any) -> None:
    if rope is None:
        return
    if not isinstance(rope, dict):
        raise ConfigError("rope_parameters", f"must be an object or null; got {rope!r}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_REQUIRED:
        raise ConfigError("rope_parameters", f"rope_type must be one of {list(ROPE_REQUIRED)}; got {rope_type!r}")
    missing = [k for k in ROPE_REQUIRED[rope_type] if k not in rope]
    if missing:
        raise ConfigError("rope_parameters", f"rope_type {rope_type!r} requires the keys {missing}")


def _check(config: Mapping[str, Any]) -> list[str]:
    d, n = config["hidden_size"], config["num_attention_heads"]
    if d % n:
        raise ConfigError(
            "hidden_size",
            f"must be a multiple of num_attention_heads ({d} % {n} != 0), as LlamaConfig.validate_architecture "
            "raises (even when head_dim is given)",
        )
    check_activation("hidden_act", config["hidden_act"])
    check_std(config)
    check_token_ids(config, ("pad_token_id", "bos_token_id", "eos_token_id"))
    _check_rope(config["rope_parameters"])
    warnings = token_id_warnings(config, config["vocab_size"])
    check_padding_idx("pad_token_id", config["pad_token_id"], config["vocab_size"])
    k = _kv_heads(config)
    if n % k:
        warnings.append(
            f"num_attention_heads ({n}) is not a multiple of num_key_value_heads ({k}): the model builds, "
            "but its attention cannot run"
        )
    return warnings


PRESET = Preset(
    name="transformers/LlamaForCausalLM",
    library="transformers",
    reference="transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))",
    versions=">=5.0,<6",
    fields=(
        size("vocab_size", 32000, "rows of model.embed_tokens (and lm_head)"),
        size("hidden_size", 4096, "the model width d"),
        size("intermediate_size", 11008, "the MLP width"),
        size("num_hidden_layers", 32, "decoder layers"),
        size("num_attention_heads", 32, "query heads; must divide hidden_size"),
        Field("num_key_value_heads", "int", None, "key/value heads (null: num_attention_heads); fewer is GQA",
              nullable=True, minimum=1),
        Field("hidden_act", "str", "silu", "the MLP activation; only prelu and xielu add keys (mlp.act_fn.*)",
              choices=ACTIVATIONS),
        inert("max_position_embeddings", "int", 2048, "the RoPE cache length; does not change the weights"),
        Field("initializer_range", "float", 0.02, "the std of the init pass (0 means 0.02)", minimum=0),
        inert("rms_norm_eps", "float", 1e-6),
        inert("use_cache", "bool", True),
        Field("pad_token_id", "int", None, "the embedding's padding row, zeroed (null: none)", nullable=True),
        inert("bos_token_id", "int", 1, nullable=True),
        inert("eos_token_id", "json", 2, "an integer, a list of integers or null; does not change the weights"),
        inert("pretraining_tp", "int", 1, nullable=True),
        Field("tie_word_embeddings", "bool", False, "lm_head.weight is model.embed_tokens.weight"),
        inert("rope_parameters", "json", None,
              "RoPE settings (rope_type, rope_theta, factor, ...); non-persistent buffers only, "
              "does not change the weights"),
        Field("attention_bias", "bool", False, "biases in q_proj, k_proj, v_proj, o_proj"),
        inert("attention_dropout", "float", 0.0, nullable=True),
        Field("mlp_bias", "bool", False, "biases in gate_proj, up_proj, down_proj"),
        Field("head_dim", "int", None, "the per-head width (null: hidden_size // num_attention_heads)",
              nullable=True, minimum=1),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"model\.embed_tokens\.weight", "normal(0, initializer_range or 0.02); the pad_token_id row zeros"),
        InitRule(r"lm_head\.weight",
                 "model.embed_tokens.weight when tie_word_embeddings, else normal(0, initializer_range or 0.02)"),
        InitRule(r".*_proj\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r".*_proj\.bias", "zeros"),
        InitRule(r".*(layernorm|norm)\.weight", "ones"),
        InitRule(r".*\.act_fn\..*", "the activation's constants (prelu 0.25; xielu's)"),
    ),
    doc=(
        "Hugging Face Llama with its language-model head: a token Embedding (padding row zeroed), "
        "num_hidden_layers decoder layers (q/k/v/o projections with grouped key/value heads, a gated "
        "MLP, two RMSNorms), a final RMSNorm and lm_head (untied by default). Construction draws "
        "torch's defaults; the init pass redraws every Linear and the Embedding "
        "N(0, initializer_range) with biases zeroed."
    ),
)
