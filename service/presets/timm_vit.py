"""timm/VisionTransformer: ``timm.models.vision_transformer.VisionTransformer(**config)``.

Versions: timm >= 1.0.23, < 1.0.32. Up to 1.0.22 the constructor drew ``pos_embed`` itself
(``trunc_normal_`` at construction), which shifts every later draw; from 1.0.23 on ``pos_embed`` and
``cls_token`` start as ``torch.empty`` and are drawn by ``init_weights``. The sources of 1.0.23,
1.0.26, 1.0.29 and 1.0.31 agree on everything replayed here (``VisionTransformer.__init__`` and ``init_weights``,
``Block``, ``Attention``, ``Mlp``, ``PatchEmbed``, ``LayerScale``, ``named_apply``,
``layers/weight_init.py``); the reference digests are timm 1.0.31's.

Replay, in the reference's order:

1. Construction draws (torch's own ``reset_parameters``): ``patch_embed.proj``
   ``Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)`` (bias unless ``pre_norm``), then
   per block ``attn.qkv`` ``Linear(D, 3D)``, ``attn.proj`` ``Linear(D, D)``, ``mlp.fc1``
   ``Linear(D, H)``, ``mlp.fc2`` ``Linear(H, D)`` with ``H = int(D·mlp_ratio) or D``, then ``head``
   ``Linear(D, num_classes)`` when ``num_classes > 0``: each weight ``kaiming_uniform_(a=√5)``,
   i.e. U(±1/√fan_in), then its bias U(±1/√fan_in). ``cls_token``, ``reg_token`` and
   ``pos_embed`` are ``torch.empty``; LayerNorms (ones, zeros) and ``LayerScale`` (``init_values``)
   draw nothing.
2. ``init_weights``: ``pos_embed`` by timm's own ``trunc_normal_(std=.02)`` (``U(2l−1, 2u−1)``
   with ``l, u = Φ(a/σ), Φ(b/σ)``, then ``erfinv``, ``× σ√2``, clamp to [−2, 2]; not torch's), then
   ``cls_token`` N(0, 1e-6), then ``reg_token`` N(0, 1e-6).
3. ``named_apply`` over every module below the root, children before parents, in registration
   order. ``weight_init=''``: each ``Linear`` weight timm ``trunc_normal_(std=.02)``, bias zero;
   the patch Conv2d and the norms keep their values. ``'jax'``: each ``Linear`` weight
   ``xavier_uniform_`` (U(±√(6/(fan_in+fan_out)))) and bias zero, except ``mlp.*`` biases
   N(0, 1e-6) and the ``head``: weight zero, bias ``head_bias``; the patch Conv2d weight
   ``lecun_normal_`` = timm ``trunc_normal_tf_`` with σ = √(1/fan_in)/0.8796… (a standard normal
   truncated to ±2, then scaled), bias zero. ``'jax_nlhb'`` is ``'jax'`` with
   ``head_bias = −log(num_classes)``.
4. ``fix_init``: block ``i``'s ``attn.proj.weight`` and ``mlp.fc2.weight`` divided by √(2(i+1)).

Longer than the ~300 lines most modules keep to: one preset: timm's own erfinv trunc_normal_ and lecun_normal_ copied exactly, and its structural options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from service.presets.base import ConfigError, Field, InitRule, Preset, inert, size

_POOLS = ("", "avg", "avgmax", "max", "token", "map", "prr")
_POOLS_SUPPORTED = ("", "avg", "avgmax", "max", "token")
_WEIGHT_INITS = ("", "jax", "jax_nlhb", "moco", "reset", "skip")
_WEIGHT_INITS_SUPPORTED = ("", "jax", "jax_nlhb")


# --- timm's own truncated normal (timm/layers/weight_init.py), its arithmetic exactly ------------


def _norm_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def _trunc_normal_(t: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """timm's ``trunc_normal_``: inverse-CDF sampling, cut-offs ``a, b`` in the output's units."""
    lo, hi = _norm_cdf((a - mean) / std), _norm_cdf((b - mean) / std)
    t.uniform_(2 * lo - 1, 2 * hi - 1)
    t.erfinv_()
    t.mul_(std * math.sqrt(2.0))
    t.add_(mean)
    t.clamp_(min=a, max=b)
    return t


def _lecun_normal_(t: torch.Tensor) -> torch.Tensor:
    """timm's ``lecun_normal_``: ``trunc_normal_tf_`` with std √(1/fan_in) / 0.8796…, where
    0.87962566103423978 is the std of a standard normal truncated to (−2, 2)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(t)
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    _trunc_normal_(t, 0, 1.0, -2.0, 2.0)
    t.mul_(std).add_(0.0)
    return t


# --- the modules, in timm's registration order (parameter-free ones left out) -------------------


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(dim))
        nn.init.constant_(self.gamma, init_values)


class _PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: tuple[int, int], bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch, bias=bias)


class _Attention(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        dim, head_dim = c["embed_dim"], c["embed_dim"] // c["num_heads"]
        self.qkv = nn.Linear(dim, dim * 3, bias=c["qkv_bias"])
        if c["qk_norm"]:
            self.q_norm = _norm(head_dim)
            self.k_norm = _norm(head_dim)
        if c["scale_attn_norm"]:
            self.norm = _norm(dim)
        self.proj = nn.Linear(dim, dim, bias=c["proj_bias"])


class _Mlp(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        dim = c["embed_dim"]
        hidden = int(dim * c["mlp_ratio"]) or dim  # timm's Mlp: hidden_features or in_features
        self.fc1 = nn.Linear(dim, hidden, bias=c["proj_bias"])
        if c["scale_mlp_norm"]:
            self.norm = _norm(hidden)
        self.fc2 = nn.Linear(hidden, dim, bias=c["proj_bias"])


class _Block(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        dim, ls = c["embed_dim"], c["init_values"]
        self.norm1 = _norm(dim)
        self.attn = _Attention(c)
        if ls:
            self.ls1 = _LayerScale(dim, ls)
        self.norm2 = _norm(dim)
        self.mlp = _Mlp(c)
        if ls:
            self.ls2 = _LayerScale(dim, ls)


def _num_patches(c: Mapping[str, Any]) -> int:
    (ih, iw), (ph, pw) = _pair(c["img_size"]), _pair(c["patch_size"])
    return (ih // ph) * (iw // pw)


def _use_fc_norm(c: Mapping[str, Any]) -> bool:
    return c["global_pool"] in ("avg", "avgmax", "max") if c["fc_norm"] is None else c["fc_norm"]


class _VisionTransformer(nn.Module):
    def __init__(self, c: Mapping[str, Any]):
        super().__init__()
        dim = c["embed_dim"]
        self.patch_embed = _PatchEmbed(c["in_chans"], dim, _pair(c["patch_size"]), bias=not c["pre_norm"])
        prefix = (1 if c["class_token"] else 0) + c["reg_tokens"]
        if c["class_token"]:
            self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        if c["reg_tokens"]:
            self.reg_token = nn.Parameter(torch.empty(1, c["reg_tokens"], dim))
        if c["pos_embed"] == "learn":
            embed_len = _num_patches(c) + (0 if c["no_embed_class"] else prefix)
            self.pos_embed = nn.Parameter(torch.empty(1, embed_len, dim))
        if c["pre_norm"]:
            self.norm_pre = _norm(dim)
        self.blocks = nn.Sequential(*[_Block(c) for _ in range(c["depth"])])
        fc_norm = _use_fc_norm(c)
        if c["final_norm"] and not fc_norm:
            self.norm = _norm(dim)
        if c["final_norm"] and fc_norm:
            self.fc_norm = _norm(dim)
        if c["num_classes"] > 0:
            self.head = nn.Linear(dim, c["num_classes"])


# --- the init pass ------------------------------------------------------------------------------


def _named_apply(fn, module: nn.Module, name: str = "") -> None:
    """timm's ``named_apply(fn, model)``: depth first, children before parents, root left out."""
    for child_name, child in module.named_children():
        full = f"{name}.{child_name}" if name else child_name
        _named_apply(fn, child, full)
        fn(child, full)


def _init_timm(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.Linear):
        _trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _init_jax(head_bias: float):
    def init(module: nn.Module, name: str) -> None:
        if isinstance(module, nn.Linear):
            if name.startswith("head"):
                nn.init.zeros_(module.weight)
                nn.init.constant_(module.bias, head_bias)
            else:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    if "mlp" in name:
                        nn.init.normal_(module.bias, std=1e-6)
                    else:
                        nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            _lecun_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    return init


def _build(config: Mapping[str, Any]) -> nn.Module:
    model = _VisionTransformer(config)
    mode = config["weight_init"]
    if hasattr(model, "pos_embed"):
        _trunc_normal_(model.pos_embed, std=0.02)
    if hasattr(model, "cls_token"):
        nn.init.normal_(model.cls_token, std=1e-6)
    if hasattr(model, "reg_token"):
        nn.init.normal_(model.reg_token, std=1e-6)
    if mode.startswith("jax"):
        head_bias = -math.log(config["num_classes"]) if "nlhb" in mode else 0.0
        _named_apply(_init_jax(head_bias), model)
    else:
        _named_apply(_init_timm, model)
    if config["fix_init"]:
        for layer_id, block in enumerate(model.blocks):
            assert isinstance(block, _Block)
            scale = math.sqrt(2.0 * (layer_id + 1))
            block.attn.proj.weight.div_(scale)
            block.mlp.fc2.weight.div_(scale)
    return model


# --- validation ---------------------------------------------------------------------------------


def _check_pair(config: Mapping[str, Any], name: str) -> None:
    v = config[name]
    ok_int = lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1  # noqa: E731
    if not (ok_int(v) or (isinstance(v, list) and len(v) == 2 and all(ok_int(x) for x in v))):
        raise ConfigError(name, f"must be a positive integer or [height, width] of positive integers; got {v!r}")


def _check(config: Mapping[str, Any]) -> list[str]:
    _check_pair(config, "img_size")
    _check_pair(config, "patch_size")
    (ih, iw), (ph, pw) = _pair(config["img_size"]), _pair(config["patch_size"])
    if ih < ph or iw < pw:
        raise ConfigError("img_size", f"must be at least patch_size in each dimension (no patches otherwise); "
                                      f"got img_size {[ih, iw]} and patch_size {[ph, pw]}")
    if config["embed_dim"] % config["num_heads"]:
        raise ConfigError("embed_dim", f"must be divisible by num_heads ({config['embed_dim']} % {config['num_heads']} "
                                       "!= 0), as timm's Attention asserts")
    if config["global_pool"] not in _POOLS_SUPPORTED:
        raise ConfigError("global_pool", f"{config['global_pool']!r} (attention pooling) is not replayed here; "
                                         f"supported: {list(_POOLS_SUPPORTED)}")
    if config["global_pool"] == "token" and not config["class_token"]:
        raise ConfigError("global_pool", "'token' pooling needs the class token (class_token=true), as timm asserts")
    if config["weight_init"] not in _WEIGHT_INITS_SUPPORTED:
        raise ConfigError("weight_init", f"{config['weight_init']!r} is not replayed here; supported: "
                                         f"{list(_WEIGHT_INITS_SUPPORTED)}")
    if config["weight_init"] == "jax_nlhb" and config["num_classes"] < 1:
        raise ConfigError("num_classes", "'jax_nlhb' sets the head bias to -log(num_classes): needs num_classes >= 1")
    for name in ("drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate"):
        if not 0.0 <= config[name] <= 1.0:
            raise ConfigError(name, f"a dropout probability must be between 0 and 1; got {config[name]!r}")
    if not 0.0 <= config["patch_drop_rate"] < 1.0:
        raise ConfigError("patch_drop_rate", f"must be at least 0 and below 1; got {config['patch_drop_rate']!r}")
    return []


def _flag(name: str, default: Any, doc: str, nullable: bool = False) -> Field:
    return Field(name, "bool", default, doc, nullable=nullable)


PRESET = Preset(
    name="timm/VisionTransformer",
    library="timm",
    reference="timm.models.vision_transformer.VisionTransformer(**config)",
    versions=">=1.0.23,<1.0.32",
    fields=(
        Field("img_size", "json", 224, "input size: an integer, or [height, width]"),
        Field("patch_size", "json", 16, "patch size: an integer, or [height, width]"),
        size("in_chans", 3, "input channels"),
        Field("num_classes", "int", 1000, "classes of the head; 0 for no head", minimum=0),
        Field("global_pool", "str", "token", "pooling; attention pooling ('map', 'prr') is not offered",
              choices=_POOLS),
        size("embed_dim", 768, "the embedding width D"),
        size("depth", 12, "transformer blocks"),
        size("num_heads", 12, "attention heads; must divide embed_dim"),
        Field("mlp_ratio", "float", 4.0, "MLP hidden width int(D*mlp_ratio) (D when that is 0)", minimum=0),
        _flag("qkv_bias", True, "bias in attn.qkv"),
        _flag("qk_norm", False, "LayerNorms attn.q_norm, attn.k_norm over each head"),
        _flag("scale_attn_norm", False, "a LayerNorm attn.norm before attn.proj"),
        _flag("scale_mlp_norm", False, "a LayerNorm mlp.norm between fc1 and fc2"),
        _flag("proj_bias", True, "biases in attn.proj, mlp.fc1 and mlp.fc2"),
        Field("init_values", "float", None, "LayerScale ls1, ls2 with this value when non-zero", nullable=True),
        _flag("class_token", True, "the cls_token"),
        Field("pos_embed", "str", "learn", "'learn' for a learned pos_embed; '' or 'none' for none",
              choices=("", "none", "learn")),
        _flag("no_embed_class", False, "pos_embed covers the patches only, not the class and register tokens"),
        Field("reg_tokens", "int", 0, "register tokens (reg_token)", minimum=0),
        _flag("pre_norm", False, "a LayerNorm norm_pre after the embedding (and no patch bias)"),
        _flag("final_norm", True, "the final LayerNorm (norm or fc_norm)"),
        _flag("fc_norm", None, "final norm after pooling (fc_norm); null: when global_pool is avg/avgmax/max",
              nullable=True),
        inert("pool_include_prefix", "bool", False),
        inert("dynamic_img_size", "bool", False),
        inert("dynamic_img_pad", "bool", False),
        inert("drop_rate", "float", 0.0),
        inert("pos_drop_rate", "float", 0.0),
        inert("patch_drop_rate", "float", 0.0),
        inert("proj_drop_rate", "float", 0.0),
        inert("attn_drop_rate", "float", 0.0),
        inert("drop_path_rate", "float", 0.0),
        Field("weight_init", "str", "", "init scheme: '' (timm), 'jax', 'jax_nlhb'; 'moco', 'reset', 'skip' are "
              "refused", choices=_WEIGHT_INITS),
        _flag("fix_init", False, "divide block i's attn.proj and mlp.fc2 weights by sqrt(2(i+1))"),
    ),
    build=_build,
    check=_check,
    rules=(
        InitRule(r"pos_embed", "timm trunc_normal(0, 0.02, a=-2, b=2)"),
        InitRule(r"(cls_token|reg_token)", "normal(0, 1e-6)"),
        InitRule(r"patch_embed\.proj\.weight", "'': torch's Conv2d default, kaiming_uniform(a=sqrt(5)); "
                 "'jax': lecun_normal (timm trunc_normal_tf, std sqrt(1/fan_in)/0.8796)"),
        InitRule(r"patch_embed\.proj\.bias", "'': torch's Conv2d default, uniform(+-1/sqrt(fan_in)); 'jax': zeros"),
        InitRule(r"head\.weight", "'': timm trunc_normal(0, 0.02); 'jax': zeros"),
        InitRule(r"head\.bias", "'': zeros; 'jax': zeros; 'jax_nlhb': -log(num_classes)"),
        InitRule(r"blocks\.\d+\.mlp\.fc\d\.bias", "'': zeros; 'jax': normal(0, 1e-6)"),
        InitRule(r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc\d)\.weight",
                 "'': timm trunc_normal(0, 0.02); 'jax': xavier_uniform (fix_init: attn.proj, mlp.fc2 / sqrt(2(i+1)))"),
        InitRule(r"blocks\.\d+\.attn\.(qkv|proj)\.bias", "zeros"),
        InitRule(r"blocks\.\d+\.ls\d\.gamma", "init_values"),
        InitRule(r".*norm\w*\.weight", "ones"),
        InitRule(r".*norm\w*\.bias", "zeros"),
    ),
    doc=(
        "timm's VisionTransformer: a Conv2d patch embedding, class/register tokens and a learned "
        "position embedding, depth pre-norm blocks (qkv, proj, fc1, fc2, optional LayerScale), a "
        "final norm and a Linear head. Construction draws torch's defaults; init_weights then draws "
        "pos_embed with timm's own truncated normal and the tokens N(0, 1e-6), and visits the modules "
        "children first: weight_init '' gives every Linear timm's trunc_normal(0.02) and zero bias; "
        "'jax' gives xavier_uniform Linears, N(0, 1e-6) MLP biases, a zero head and a lecun_normal patch "
        "Conv2d."
    ),
)
