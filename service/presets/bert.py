"""transformers/BertModel: ``transformers.BertModel(transformers.BertConfig(**config))``.

Versions ``>=5.0,<6``: the reference digests were computed by 5.25.0, and 5.0.0, 5.5.0, 5.9.0,
5.12.1, 5.15.0 and 5.20.0 give the same keys and bytes; the fields are ``BertConfig``'s keyword
arguments, the same throughout 5.x. transformers 4.57.6 gives the same keys and bytes, but its
config takes other (untyped) arguments, so 4.x is not claimed.

Replay, in the reference's order (d = hidden_size, m = intermediate_size, r = initializer_range):

1. Construction draws: ``embeddings.word_embeddings`` ``Embedding(vocab_size, d, pad_token_id)``:
   N(0, 1), then the padding row zeroed; ``position_embeddings`` ``Embedding(max_position_embeddings,
   d)`` and ``token_type_embeddings`` ``Embedding(type_vocab_size, d)``: N(0, 1); ``LayerNorm``
   ones and zeros. Per layer ``attention.self.query``, ``key``, ``value`` and ``attention.output.dense``
   ``Linear(d, d)``, with ``is_decoder`` and ``add_cross_attention`` the same four under
   ``crossattention``, then ``intermediate.dense`` ``Linear(d, m)`` and ``output.dense``
   ``Linear(m, d)``: weight U(±1/√fan_in) and bias U(±1/√fan_in); their LayerNorms ones and zeros.
   ``pooler.dense`` ``Linear(d, d)`` likewise. The ``position_ids`` and ``token_type_ids``
   buffers are non-persistent: no keys.
2. ``post_init()``, children first: every Linear weight N(0, r or 0.02) and bias zeros; every
   Embedding N(0, r or 0.02), the word embeddings' padding row zeroed; LayerNorms ones and zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from service.presets.base import ConfigError, Field, InitRule, Preset, inert, size
from service.presets.hf import (
    ACTIVATIONS,
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


class _Embeddings(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], d, padding_idx=c["pad_token_id"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], d)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], d)
        self.LayerNorm = nn.LayerNorm(d)


class _SelfAttention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)


class _DenseNorm(nn.Module):
    """``BertSelfOutput`` and ``BertOutput``: ``dense`` then ``LayerNorm``."""

    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d)
        self.LayerNorm = nn.LayerNorm(d)


class _Attention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.self = _SelfAttention(d)
        self.output = _DenseNorm(d, d)


class _Intermediate(nn.Module):
    def __init__(self, d: int, m: int, act: str):
        super().__init__()
        self.dense = nn.Linear(d, m)
        if (module := activation(act)) is not None:
            self.intermediate_act_fn = module


class _Layer(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d, m = c["hidden_size"], c["intermediate_size"]
        self.attention = _Attention(d)
        if c["add_cross_attention"]:
            self.crossattention = _Attention(d)
        self.intermediate = _Intermediate(d, m, c["hidden_act"])
        self.output = _DenseNorm(m, d)


class _Encoder(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(c["num_hidden_layers"])])


class _Pooler(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.dense = nn.Linear(d, d)


class _BertModel(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler = _Pooler(c["hidden_size"])


def _build(config: Mapping[str, Any]) -> nn.Module:
    std = base_std(config)
    model = _BertModel(config)
    init_pass(model, lambda module: generic_init(module, std), set())
    return model


def _check(config: Mapping[str, Any]) -> list[str]:
    d, n = config["hidden_size"], config["num_attention_heads"]
    if d % n:
        raise ConfigError(
            "hidden_size",
            f"must be a multiple of num_attention_heads ({d} % {n} != 0), as BertSelfAttention raises",
        )
    if config["add_cross_attention"] and not config["is_decoder"]:
        raise ConfigError(
            "add_cross_attention", "needs is_decoder true: BertLayer raises for cross attention in an encoder"
        )
    check_activation("hidden_act", config["hidden_act"])
    check_std(config)
    check_token_ids(config, ("pad_token_id", "bos_token_id", "eos_token_id"))
    warnings = token_id_warnings(config, config["vocab_size"])
    check_padding_idx("pad_token_id", config["pad_token_id"], config["vocab_size"])
    return warnings


PRESET = Preset(
    name="transformers/BertModel",
    library="transformers",
    reference="transformers.BertModel(transformers.BertConfig(**config))",
    versions=">=5.0,<6",
    fields=(
        size("vocab_size", 30522, "rows of embeddings.word_embeddings"),
        size("hidden_size", 768, "the model width d"),
        size("num_hidden_layers", 12, "encoder layers"),
        size("num_attention_heads", 12, "attention heads; must divide hidden_size"),
        size("intermediate_size", 3072, "the feed-forward width"),
        Field("hidden_act", "str", "gelu",
              "the feed-forward activation; only prelu and xielu add keys (intermediate.intermediate_act_fn.*)",
              choices=ACTIVATIONS),
        inert("hidden_dropout_prob", "float", 0.1),
        inert("attention_probs_dropout_prob", "float", 0.1),
        size("max_position_embeddings", 512, "rows of embeddings.position_embeddings"),
        size("type_vocab_size", 2, "rows of embeddings.token_type_embeddings"),
        Field("initializer_range", "float", 0.02, "the std of the init pass (0 means 0.02)", minimum=0),
        inert("layer_norm_eps", "float", 1e-12),
        Field("pad_token_id", "int", 0, "the word embeddings' padding row, zeroed (null: none)", nullable=True),
        inert("use_cache", "bool", True),
        inert("classifier_dropout", "float", None, nullable=True),
        Field("is_decoder", "bool", False, "with add_cross_attention, adds crossattention to every layer"),
        Field("add_cross_attention", "bool", False, "adds crossattention to every layer; needs is_decoder"),
        inert("bos_token_id", "int", None, nullable=True),
        inert("eos_token_id", "json", None, "an integer, a list of integers or null; does not change the weights"),
        inert("tie_word_embeddings", "bool", True, "BertModel has no output layer; does not change the weights"),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"embeddings\.word_embeddings\.weight",
                 "normal(0, initializer_range or 0.02); the pad_token_id row zeros"),
        InitRule(r"embeddings\.(position|token_type)_embeddings\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r".*LayerNorm\.weight", "ones"),
        InitRule(r".*LayerNorm\.bias", "zeros"),
        InitRule(r".*\.(query|key|value|dense)\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r".*\.(query|key|value|dense)\.bias", "zeros"),
        InitRule(r".*\.intermediate_act_fn\..*", "the activation's constants (prelu 0.25; xielu's)"),
    ),
    doc=(
        "Hugging Face BERT encoder with its pooler: word (padding row zeroed), position and token-type "
        "Embeddings with a LayerNorm, num_hidden_layers post-LayerNorm encoder layers (query, key, "
        "value, output dense, intermediate and output dense) and a pooler dense. Construction draws "
        "torch's defaults; the init pass redraws every Linear and Embedding N(0, initializer_range) "
        "with biases zeroed."
    ),
)
