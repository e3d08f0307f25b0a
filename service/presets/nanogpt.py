"""nanogpt/GPT: ``model.GPT(model.GPTConfig(**config))`` from karpathy/nanoGPT's ``model.py``.

Versions: ``model.py`` at commit f08abb45, its last change (git blob c698f8b6); nanoGPT is not a
package, so the commit is the version. Older commits differ in ``GPTConfig``'s fields (``bias``
arrived with the LayerNorm rewrite) and are not claimed.

Replay, in the reference's order:

1. Construction draws (torch's own ``reset_parameters``), module by module:
   ``transformer.wte`` ``Embedding(vocab_size, n_embd)``: N(0, 1);
   ``transformer.wpe`` ``Embedding(block_size, n_embd)``: N(0, 1);
   per block ``attn.c_attn`` ``Linear(n_embd, 3·n_embd)``, ``attn.c_proj`` ``Linear(n_embd, n_embd)``,
   ``mlp.c_fc`` ``Linear(n_embd, 4·n_embd)``, ``mlp.c_proj`` ``Linear(4·n_embd, n_embd)``: each
   weight ``kaiming_uniform_(a=√5)``, i.e. U(±1/√fan_in), then (``bias=True``) its bias U(±1/√fan_in);
   ``lm_head`` ``Linear(n_embd, vocab_size, bias=False)``: weight U(±1/√n_embd).
   nanoGPT's ``LayerNorm`` (ones, and zeros when ``bias``) draws nothing; it has no ``bias`` key
   when ``bias=False``. No ``attn.bias`` mask buffer: it is registered only when torch lacks
   ``scaled_dot_product_attention`` (torch < 2.0).
2. ``transformer.wte.weight = lm_head.weight``: one Parameter under both keys.
3. ``self.apply(self._init_weights)``, children before parents (``transformer`` then
   ``lm_head``): every ``Linear`` weight N(0, 0.02) and bias zero, every ``Embedding`` weight
   N(0, 0.02). The tied tensor is drawn twice (as ``wte``, then as ``lm_head``); the second draw
   stands.
4. For each ``named_parameters()`` name ending in ``c_proj.weight`` (block order, attention before
   MLP): N(0, 0.02/√(2·n_layer)) again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from service.presets.base import ConfigError, Field, InitRule, Preset, inert, size


class _LayerNorm(nn.Module):
    """nanoGPT's LayerNorm: ``weight`` ones, ``bias`` zeros only when asked for; no draws."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None


class _Attention(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)


class _MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)


class _Block(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.ln_1 = _LayerNorm(n_embd, bias)
        self.attn = _Attention(n_embd, bias)
        self.ln_2 = _LayerNorm(n_embd, bias)
        self.mlp = _MLP(n_embd, bias)


class _GPT(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        n_embd, bias = c["n_embd"], c["bias"]
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab_size"], n_embd),
            wpe=nn.Embedding(c["block_size"], n_embd),
            h=nn.ModuleList([_Block(n_embd, bias) for _ in range(c["n_layer"])]),
            ln_f=_LayerNorm(n_embd, bias),
        ))
        self.lm_head = nn.Linear(n_embd, c["vocab_size"], bias=False)
        self.transformer["wte"].weight = self.lm_head.weight


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def _build(config: Mapping[str, Any]) -> nn.Module:
    model = _GPT(config)
    model.apply(_init_weights)
    std = 0.02 / math.sqrt(2 * config["n_layer"])
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=std)
    return model


def _check(config: Mapping[str, Any]) -> list[str]:
    if config["n_embd"] % config["n_head"]:
        raise ConfigError(
            "n_embd",
            f"must be divisible by n_head ({config['n_embd']} % {config['n_head']} != 0), "
            "as nanoGPT's CausalSelfAttention asserts",
        )
    return []


PRESET = Preset(
    name="nanogpt/GPT",
    library="nanogpt",
    reference="model.GPT(model.GPTConfig(**config)) (nanoGPT's model.py)",
    versions="model.py at commit f08abb45 (its last change)",
    fields=(
        size("block_size", 1024, "the longest sequence: rows of transformer.wpe"),
        size("vocab_size", 50304, "rows of transformer.wte and lm_head (GPT-2's 50257 padded to a multiple of 64)"),
        size("n_layer", 12, "transformer blocks"),
        size("n_head", 12, "attention heads; must divide n_embd"),
        size("n_embd", 768, "the embedding width"),
        inert("dropout", "float", 0.0),
        Field("bias", "bool", True, "biases in the Linears and LayerNorms, as GPT-2"),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"transformer\.(wte|wpe)\.weight", "normal(0, 0.02); wte is tied to lm_head.weight"),
        InitRule(r"lm_head\.weight", "normal(0, 0.02) (the same tensor as transformer.wte.weight)"),
        InitRule(r".*\.c_proj\.weight", "normal(0, 0.02/sqrt(2*n_layer))"),
        InitRule(r".*\.(c_attn|c_fc)\.weight", "normal(0, 0.02)"),
        InitRule(r".*\.(c_attn|c_proj|c_fc)\.bias", "zeros"),
        InitRule(r".*ln_(1|2|f)\.weight", "ones"),
        InitRule(r".*ln_(1|2|f)\.bias", "zeros"),
    ),
    doc=(
        "Karpathy's nanoGPT GPT: token and position Embeddings, n_layer pre-LayerNorm blocks "
        "(c_attn, c_proj, c_fc, c_proj), a final LayerNorm and an lm_head tied to the token "
        "embedding. Construction draws torch's defaults, then every Linear and Embedding is redrawn "
        "N(0, 0.02) (the tied tensor twice) and the residual projections N(0, 0.02/sqrt(2*n_layer))."
    ),
)
