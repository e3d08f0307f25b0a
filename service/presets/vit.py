"""transformers/ViTModel: ``transformers.ViTModel(transformers.ViTConfig(**config))``.

Versions ``>=5.9,<6``: transformers 5.9 renamed ViT's keys (``layers.N.attention.q_proj.weight``,
``layers.N.mlp.fc1.weight``, ``layers.N.layernorm_before.weight``, ...); 4.x and 5.0 to 5.8 name
the same tensors ``encoder.layer.N.attention.attention.query.weight`` and so on, so their
state_dicts have other keys and are not claimed. The reference digests were computed by 5.25.0;
5.9.0, 5.10.2, 5.12.1, 5.15.0 and 5.20.0 give the same keys and bytes. The fields are
``ViTConfig``'s keyword arguments, the same throughout 5.x.

Replay, in the reference's order (d = hidden_size, H = num_attention_heads, h = d // H,
(ph, pw) = patch_size, (ih, iw) = image_size, P = (ih // ph)·(iw // pw), r = initializer_range):

1. Construction draws: ``embeddings.cls_token`` ``torch.randn(1, 1, d)``; then
   ``embeddings.patch_embeddings.projection`` ``Conv2d(num_channels, d, (ph, pw), stride (ph, pw))``:
   weight U(±1/√fan_in) and bias U(±1/√fan_in); then ``embeddings.position_embeddings``
   ``torch.randn(1, P + 1, d)``. Per layer ``attention.q_proj``, ``k_proj``, ``v_proj``
   ``Linear(d, H·h)`` (bias with ``qkv_bias``) and ``o_proj`` ``Linear(H·h, d)``,
   ``layernorm_before`` and ``layernorm_after`` (ones, zeros), ``mlp.fc1`` ``Linear(d,
   intermediate_size)`` and ``mlp.fc2``: U(±1/√fan_in) weights and biases; ``layernorm``; ``pooler.dense``
   ``Linear(d, pooler_output_size or d)``.
2. ``post_init()``, children first: ``projection`` N(0, r or 0.02) and bias zeros; then the
   embeddings module itself: ``position_embeddings`` ``trunc_normal_(0, r, -2, 2)``, then
   ``cls_token`` ``trunc_normal_(0, r, -2, 2)``; every Linear N(0, r or 0.02) and bias zeros;
   LayerNorms ones and zeros.

The constructor's ``torch.randn`` draws are discarded by the init pass but consume the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from service.presets.base import ConfigError, Field, InitRule, Preset, inert, size
from service.presets.hf import (
    ACTIVATIONS,
    activation,
    base_std,
    check_activation,
    check_std,
    generic_init,
    init_pass,
)


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value[0], value[1]) if isinstance(value, list) else (value, value)


class _PatchEmbeddings(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        patch = _pair(c["patch_size"])
        self.projection = nn.Conv2d(c["num_channels"], c["hidden_size"], kernel_size=patch, stride=patch)


class _Embeddings(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d = c["hidden_size"]
        (ih, iw), (ph, pw) = _pair(c["image_size"]), _pair(c["patch_size"])
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.patch_embeddings = _PatchEmbeddings(c)
        self.position_embeddings = nn.Parameter(torch.randn(1, (iw // pw) * (ih // ph) + 1, d))


class _Attention(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        d, heads = c["hidden_size"], c["num_attention_heads"]
        inner = heads * (d // heads)
        self.q_proj = nn.Linear(d, inner, bias=c["qkv_bias"])
        self.k_proj = nn.Linear(d, inner, bias=c["qkv_bias"])
        self.v_proj = nn.Linear(d, inner, bias=c["qkv_bias"])
        self.o_proj = nn.Linear(inner, d, bias=True)


class _MLP(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        if (module := activation(c["hidden_act"])) is not None:
            self.activation_fn = module
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"])


class _Layer(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.attention = _Attention(c)
        self.layernorm_before = nn.LayerNorm(c["hidden_size"])
        self.layernorm_after = nn.LayerNorm(c["hidden_size"])
        self.mlp = _MLP(c)


class _Pooler(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["pooler_output_size"] or c["hidden_size"])
        if (module := activation(c["pooler_act"])) is not None:
            self.activation = module


class _ViTModel(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.layers = nn.ModuleList([_Layer(c) for _ in range(c["num_hidden_layers"])])
        self.layernorm = nn.LayerNorm(c["hidden_size"])
        self.pooler = _Pooler(c)


def _build(config: Mapping[str, Any]) -> nn.Module:
    r, std = config["initializer_range"], base_std(config)

    def init_weights(module: nn.Module) -> None:  # ViTPreTrainedModel._init_weights
        generic_init(module, std)
        if isinstance(module, _Embeddings):
            nn.init.trunc_normal_(module.position_embeddings, mean=0.0, std=r)
            nn.init.trunc_normal_(module.cls_token, mean=0.0, std=r)

    model = _ViTModel(config)
    init_pass(model, init_weights, set())
    return model


def _check_size(field: str, value: Any) -> tuple[int, int]:
    ok_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
    if ok_int(value):
        return value, value
    if isinstance(value, list) and len(value) == 2 and all(ok_int(v) for v in value):
        return value[0], value[1]
    raise ConfigError(field, f"must be an integer of at least 1 or a list [height, width] of two; got {value!r}")


def _check(config: Mapping[str, Any]) -> list[str]:
    (ih, iw), (ph, pw) = _check_size("image_size", config["image_size"]), _check_size("patch_size", config["patch_size"])
    check_activation("hidden_act", config["hidden_act"])
    check_activation("pooler_act", config["pooler_act"])
    check_std(config)
    warnings = []
    d, heads = config["hidden_size"], config["num_attention_heads"]
    if d % heads:
        warnings.append(
            f"hidden_size ({d}) is not a multiple of num_attention_heads ({heads}): ViTAttention projects to "
            f"num_attention_heads * (hidden_size // num_attention_heads) = {heads * (d // heads)} features"
        )
    if ph > ih or pw > iw:
        warnings.append(f"patch_size {[ph, pw]} exceeds image_size {[ih, iw]}: no patches, only the CLS position")
    elif ih % ph or iw % pw:
        warnings.append(f"image_size {[ih, iw]} is not a multiple of patch_size {[ph, pw]}: the remainder is dropped")
    return warnings


PRESET = Preset(
    name="transformers/ViTModel",
    library="transformers",
    reference="transformers.ViTModel(transformers.ViTConfig(**config))",
    versions=">=5.9,<6",
    fields=(
        size("hidden_size", 768, "the model width d"),
        size("num_hidden_layers", 12, "encoder layers"),
        size("num_attention_heads", 12, "attention heads; q/k/v project to heads * (hidden_size // heads)"),
        size("intermediate_size", 3072, "the MLP width"),
        Field("hidden_act", "str", "gelu", "the MLP activation; only prelu and xielu add keys (mlp.activation_fn.*)",
              choices=ACTIVATIONS),
        inert("hidden_dropout_prob", "float", 0.0),
        inert("attention_probs_dropout_prob", "float", 0.0),
        Field("initializer_range", "float", 0.02, "the std r of the init pass", minimum=0),
        inert("layer_norm_eps", "float", 1e-12),
        Field("image_size", "json", 224, "an integer, or [height, width]"),
        Field("patch_size", "json", 16, "an integer, or [height, width]: the projection's kernel and stride"),
        size("num_channels", 3, "input channels of the patch projection"),
        Field("qkv_bias", "bool", True, "biases in q_proj, k_proj, v_proj"),
        inert("encoder_stride", "int", 16, "ViTForMaskedImageModeling only; does not change the weights"),
        Field("pooler_output_size", "int", None, "pooler.dense's output width (null: hidden_size)",
              nullable=True, minimum=1),
        Field("pooler_act", "str", "tanh", "the pooler activation; only prelu and xielu add keys",
              choices=ACTIVATIONS),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"embeddings\.(cls_token|position_embeddings)", "trunc_normal(0, initializer_range, -2, 2)"),
        InitRule(r"embeddings\.patch_embeddings\.projection\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r".*layernorm(_before|_after)?\.weight", "ones"),
        InitRule(r".*layernorm(_before|_after)?\.bias", "zeros"),
        InitRule(r".*\.(activation_fn|activation)\..*", "the activation's constants (prelu 0.25; xielu's)"),
        InitRule(r".*\.weight", "normal(0, initializer_range or 0.02)"),
        InitRule(r".*\.bias", "zeros"),
    ),
    doc=(
        "Hugging Face ViT encoder with its pooler (transformers 5 key names): a CLS token, a Conv2d "
        "patch projection and learned position embeddings, num_hidden_layers pre-LayerNorm layers "
        "(q/k/v/o projections, two LayerNorms, fc1/fc2), a final LayerNorm and a pooler dense. "
        "Construction draws torch's defaults and torch.randn for the CLS token and positions; the "
        "init pass redraws the projection and every Linear N(0, initializer_range) with biases zeroed, "
        "then the positions and CLS token trunc_normal(0, initializer_range)."
    ),
)
