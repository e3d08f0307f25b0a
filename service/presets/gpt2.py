"""transformers/GPT2LMHeadModel: ``transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))``.

Versions ``>=5.15,<6``: the reference digests were computed by 5.25.0, and 5.15.0, 5.16.0 and
5.20.0 give the same keys and bytes. transformers 5.0 to 5.14 draw differently: their
``_init_weights`` looked for the residual projections by the parameter name ``"c_proj.weight"``
on the whole model, which never matches (``h.0.attn.c_proj.weight``), so ``c_proj`` kept its
N(0, r) (checked at 5.0.0, 5.5.0, 5.12.1, 5.14.0 and 5.14.1, which all differ). transformers
4.57.6 gives the same bytes, but its config takes other (untyped) arguments, so 4.x is not
claimed. The fields are ``GPT2Config``'s keyword arguments, the same throughout 5.x.

Replay, in the reference's order (d = n_embd, i = n_inner or 4·d, L = n_layer, r = initializer_range):

1. ``GPT2Model(config)`` construction draws, module by module:
   ``wte`` ``Embedding(vocab_size, d)``: N(0, 1); ``wpe`` ``Embedding(n_positions, d)``: N(0, 1);
   per block ``ln_1`` (ones, zeros), ``attn.c_attn`` ``Conv1D`` weight (d, 3·d) N(0, 0.02) and
   bias zeros, ``attn.c_proj`` (d, d) N(0, 0.02), ``ln_2``, with ``add_cross_attention``
   ``crossattention.c_attn`` (d, 2·d), ``crossattention.q_attn`` (d, d), ``crossattention.c_proj``
   (d, d) N(0, 0.02) and ``ln_cross_attn``, then ``mlp.c_fc`` (d, i) and ``mlp.c_proj`` (i, d)
   N(0, 0.02); ``ln_f``. ``Conv1D`` stores its weight (in, out), the transpose of a Linear's.
2. ``GPT2Model.post_init()``: children first, ``_init_weights`` on each module: ``wte``, ``wpe``
   N(0, r or 0.02); every ``Conv1D`` weight N(0, r) and bias zeros; after the two ``Conv1D`` of an
   attention or MLP module, the module itself redraws its ``c_proj.weight`` N(0, r/√(2·L)).
3. ``lm_head`` ``Linear(d, vocab_size, bias=False)``: U(±1/√d), then ``GPT2LMHeadModel.post_init()``
   visits only it: N(0, r or 0.02).
4. ``tie_weights()``: with ``tie_word_embeddings`` ``lm_head.weight`` becomes ``wte.weight``. The
   draws of 3 are then the build's last and land in the discarded tensor: the replay, whose
   generators are restored afterwards, skips them.

No ``attn.bias`` mask buffer: transformers 5 builds masks per call.
"""

from __future__ import annotations

import math
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
    check_std,
    check_token_ids,
    generic_init,
    init_pass,
    token_id_warnings,
)


class Conv1D(nn.Module):
    """transformers' ``Conv1D(nf, nx)``: weight (nx, nf) N(0, 0.02), bias zeros."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)


class _Attention(nn.Module):
    def __init__(self, d: int, cross: bool):
        super().__init__()
        if cross:
            self.c_attn = Conv1D(2 * d, d)
            self.q_attn = Conv1D(d, d)
        else:
            self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, d)


class _MLP(nn.Module):
    def __init__(self, inner: int, d: int, act: str):
        super().__init__()
        self.c_fc = Conv1D(inner, d)
        self.c_proj = Conv1D(d, inner)
        if (module := activation(act)) is not None:
            self.act = module


class _Block(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d = c["n_embd"]
        self.ln_1 = nn.LayerNorm(d)
        self.attn = _Attention(d, cross=False)
        self.ln_2 = nn.LayerNorm(d)
        if c["add_cross_attention"]:
            self.crossattention = _Attention(d, cross=True)
            self.ln_cross_attn = nn.LayerNorm(d)
        self.mlp = _MLP(c["n_inner"] if c["n_inner"] is not None else 4 * d, d, c["activation_function"])


class _GPT2Model(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = nn.ModuleList([_Block(c) for _ in range(c["n_layer"])])
        self.ln_f = nn.LayerNorm(c["n_embd"])


class _GPT2LMHeadModel(nn.Module):
    def __init__(self, transformer: _GPT2Model, lm_head: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.lm_head = lm_head


def _build(config: Mapping[str, Any]) -> nn.Module:
    r = config["initializer_range"]
    std, residual_std = base_std(config), r / math.sqrt(2 * config["n_layer"])

    def init_weights(module: nn.Module) -> None:  # GPT2PreTrainedModel._init_weights
        generic_init(module, std)
        if isinstance(module, Conv1D):
            nn.init.normal_(module.weight, mean=0.0, std=r)  # its bias is still construction's zeros
        if isinstance(module, (_Attention, _MLP)):
            nn.init.normal_(module.c_proj.weight, mean=0.0, std=residual_std)

    done: set[int] = set()
    transformer = _GPT2Model(config)
    init_pass(transformer, init_weights, done)
    if config["tie_word_embeddings"]:
        return _GPT2LMHeadModel(transformer, TiedHead(transformer.wte.weight))
    model = _GPT2LMHeadModel(transformer, nn.Linear(config["n_embd"], config["vocab_size"], bias=False))
    init_pass(model, init_weights, done)
    return model


def _check(config: Mapping[str, Any]) -> list[str]:
    if config["n_embd"] % config["n_head"]:
        raise ConfigError(
            "n_embd",
            f"must be divisible by n_head ({config['n_embd']} % {config['n_head']} != 0), "
            "as GPT2Attention raises",
        )
    check_activation("activation_function", config["activation_function"])
    check_std(config)
    check_token_ids(config, ("bos_token_id", "eos_token_id", "pad_token_id"))
    return token_id_warnings(config, config["vocab_size"])


PRESET = Preset(
    name="transformers/GPT2LMHeadModel",
    library="transformers",
    reference="transformers.GPT2LMHeadModel(transformers.GPT2Config(**config))",
    versions=">=5.15,<6",
    fields=(
        size("vocab_size", 50257, "rows of transformer.wte (and lm_head)"),
        size("n_positions", 1024, "rows of transformer.wpe"),
        size("n_embd", 768, "the embedding width d"),
        size("n_layer", 12, "transformer blocks L"),
        size("n_head", 12, "attention heads; must divide n_embd"),
        Field("n_inner", "int", None, "the MLP width (null: 4*n_embd)", nullable=True, minimum=1),
        Field("activation_function", "str", "gelu_new",
              "the MLP activation; only prelu and xielu add keys (mlp.act.*)", choices=ACTIVATIONS),
        inert("resid_pdrop", "float", 0.1),
        inert("embd_pdrop", "float", 0.1),
        inert("attn_pdrop", "float", 0.1),
        inert("layer_norm_epsilon", "float", 1e-5),
        Field("initializer_range", "float", 0.02, "the std r of the init pass", minimum=0),
        inert("summary_type", "str", "cls_index", "GPT2DoubleHeadsModel only; does not change the weights"),
        inert("summary_use_proj", "bool", True, "GPT2DoubleHeadsModel only; does not change the weights"),
        inert("summary_activation", "str", None, "GPT2DoubleHeadsModel only; does not change the weights",
              nullable=True),
        inert("summary_proj_to_labels", "bool", True, "GPT2DoubleHeadsModel only; does not change the weights"),
        inert("summary_first_dropout", "float", 0.1, "GPT2DoubleHeadsModel only; does not change the weights"),
        inert("scale_attn_weights", "bool", True),
        inert("use_cache", "bool", True),
        inert("bos_token_id", "int", 50256, nullable=True),
        inert("eos_token_id", "json", 50256, "an integer, a list of integers or null; does not change the weights"),
        inert("pad_token_id", "int", None, "GPT-2's embeddings have no padding row; does not change the weights",
              nullable=True),
        inert("scale_attn_by_inverse_layer_idx", "bool", False),
        inert("reorder_and_upcast_attn", "bool", False),
        Field("add_cross_attention", "bool", False,
              "adds crossattention.{c_attn,q_attn,c_proj} and ln_cross_attn to every block"),
        Field("tie_word_embeddings", "bool", True, "lm_head.weight is transformer.wte.weight"),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"transformer\.(wte|wpe)\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r"lm_head\.weight",
                 "transformer.wte.weight when tie_word_embeddings, else normal(0, initializer_range or 0.02)"),
        InitRule(r".*\.c_proj\.weight", "normal(0, initializer_range/sqrt(2*n_layer))"),
        InitRule(r".*\.(c_attn|q_attn|c_fc)\.weight", "normal(0, initializer_range)"),
        InitRule(r".*\.(c_attn|q_attn|c_proj|c_fc)\.bias", "zeros"),
        InitRule(r".*(ln_1|ln_2|ln_cross_attn|ln_f)\.weight", "ones"),
        InitRule(r".*(ln_1|ln_2|ln_cross_attn|ln_f)\.bias", "zeros"),
        InitRule(r".*\.mlp\.act\..*", "the activation's constants (prelu 0.25; xielu's)"),
    ),
    doc=(
        "Hugging Face GPT-2 with its language-model head: token and position Embeddings, n_layer "
        "pre-LayerNorm blocks of Conv1D layers (weights stored (in, out)), a final LayerNorm, and "
        "lm_head tied to the token embedding by default. Construction draws torch's defaults and "
        "Conv1D's N(0, 0.02); the init pass redraws every Embedding and Conv1D N(0, initializer_range) "
        "and the residual projections c_proj N(0, initializer_range/sqrt(2*n_layer))."
    ),
)
