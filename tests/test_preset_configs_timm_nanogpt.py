"""Config validation of the ``nanogpt/GPT`` and ``timm/VisionTransformer`` presets: unknown fields,
values the reference refuses, defaults filled in, and the default models planned on ``meta`` with
the parameter counts their architectures give."""

from __future__ import annotations

import pytest
import torch

from service.presets import PRESETS, ConfigError
from service.presets.base import entries_of, summary
from service.presets.replay import meta_entries, replay

NANOGPT = PRESETS["nanogpt/GPT"]


# --- nanoGPT -------------------------------------------------------------------------------------


def test_nanogpt_defaults_are_gptconfigs():
    config, warnings = NANOGPT.resolve({})
    assert config == {
        "block_size": 1024, "vocab_size": 50304, "n_layer": 12, "n_head": 12, "n_embd": 768,
        "dropout": 0.0, "bias": True,
    }
    assert warnings == []


def test_nanogpt_fills_what_is_not_given():
    config, _ = NANOGPT.resolve({"n_layer": 2})
    assert config["n_layer"] == 2 and config["n_embd"] == 768 and config["bias"] is True


def test_nanogpt_unknown_field_is_named():
    with pytest.raises(ConfigError) as e:
        NANOGPT.resolve({"n_layers": 2})
    assert e.value.field == "n_layers"
    assert "n_layer" in e.value.msg  # the suggestion


@pytest.mark.parametrize("n_embd, n_head", [(30, 4), (768, 7)])
def test_nanogpt_heads_must_divide_the_width(n_embd, n_head):
    with pytest.raises(ConfigError) as e:
        NANOGPT.resolve({"n_embd": n_embd, "n_head": n_head})
    assert e.value.field == "n_embd"
    assert "n_head" in e.value.msg


@pytest.mark.parametrize("field, value", [("n_layer", 0), ("vocab_size", -1), ("bias", 1), ("n_embd", 7.5)])
def test_nanogpt_refuses_bad_values(field, value):
    with pytest.raises(ConfigError) as e:
        NANOGPT.resolve({field: value})
    assert e.value.field == field


def _nanogpt_parameters(V, B, L, C, bias):
    """nanoGPT's parameter count, the tied lm_head once: wte, wpe, per block two LayerNorms and the
    four Linears (C->3C, C->C, C->4C, 4C->C), the final LayerNorm."""
    ln = 2 * C if bias else C
    linears = 3 * C * C + C * C + 4 * C * C + 4 * C * C + ((3 * C + C + 4 * C + C) if bias else 0)
    return V * C + B * C + L * (2 * ln + linears) + ln


def test_nanogpt_default_plans_on_meta_with_the_architectures_count():
    config, _ = NANOGPT.resolve({})
    entries = meta_entries(NANOGPT, config)
    counts = summary(entries)
    C, V, B, L = 768, 50304, 1024, 12
    assert counts["parameters"] == _nanogpt_parameters(V, B, L, C, True)
    assert counts["elements"] == counts["parameters"] + V * C  # lm_head.weight under its own key too
    assert [e.key for e in entries if e.tied_to] == ["lm_head.weight"]
    assert next(e for e in entries if e.key == "lm_head.weight").tied_to == "transformer.wte.weight"
    assert not any(e.key.endswith(".attn.bias") for e in entries)  # no mask buffer on torch >= 2


def test_nanogpt_without_bias_has_no_bias_keys_and_the_count_drops():
    config, _ = NANOGPT.resolve({"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "block_size": 32, "bias": False})
    entries = meta_entries(NANOGPT, config)
    assert not any(e.key.endswith(".bias") for e in entries)
    assert summary(entries)["parameters"] == _nanogpt_parameters(100, 32, 2, 64, False)


def test_nanogpt_cpu_replay_ties_and_rescales():
    config, _ = NANOGPT.resolve({"n_layer": 3, "n_embd": 64, "n_head": 4, "vocab_size": 100, "block_size": 32})
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
        torch.manual_seed(1)
        module = NANOGPT.build(config)
    assert module.lm_head.weight is module.transformer.wte.weight
    state, _ = replay(NANOGPT, config, 1)
    assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())
    assert [e.key for e in entries_of(module)] == list(state)


# --- timm VisionTransformer ----------------------------------------------------------------------

VIT = PRESETS["timm/VisionTransformer"]
SMALL = {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2, "num_classes": 5}


def test_vit_defaults_are_the_constructors():
    config, warnings = VIT.resolve({})
    assert warnings == []
    assert {k: config[k] for k in (
        "img_size", "patch_size", "in_chans", "num_classes", "global_pool", "embed_dim", "depth", "num_heads",
        "mlp_ratio", "qkv_bias", "qk_norm", "init_values", "class_token", "pos_embed", "no_embed_class",
        "reg_tokens", "pre_norm", "final_norm", "fc_norm", "weight_init", "fix_init",
    )} == {
        "img_size": 224, "patch_size": 16, "in_chans": 3, "num_classes": 1000, "global_pool": "token",
        "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0, "qkv_bias": True, "qk_norm": False,
        "init_values": None, "class_token": True, "pos_embed": "learn", "no_embed_class": False, "reg_tokens": 0,
        "pre_norm": False, "final_norm": True, "fc_norm": None, "weight_init": "", "fix_init": False,
    }
    # fields that take classes or callables are not offered
    assert not {"norm_layer", "act_layer", "block_fn", "embed_layer", "mlp_layer", "attn_layer"} & set(config)


def test_vit_unknown_field_is_named():
    with pytest.raises(ConfigError) as e:
        VIT.resolve({"embed_dims": 64})
    assert e.value.field == "embed_dims"
    assert "embed_dim" in e.value.msg


def test_vit_heads_must_divide_the_width():
    with pytest.raises(ConfigError) as e:
        VIT.resolve({"embed_dim": 100, "num_heads": 12})
    assert e.value.field == "embed_dim" and "num_heads" in e.value.msg


@pytest.mark.parametrize("scheme", ["moco", "reset", "skip"])
def test_vit_unverified_weight_inits_are_refused_with_what_is_supported(scheme):
    with pytest.raises(ConfigError) as e:
        VIT.resolve({"weight_init": scheme})
    assert e.value.field == "weight_init"
    assert "'jax'" in e.value.msg and "supported" in e.value.msg


def test_vit_weight_init_outside_timms_choices_is_refused():
    with pytest.raises(ConfigError) as e:
        VIT.resolve({"weight_init": "xavier"})
    assert e.value.field == "weight_init"


@pytest.mark.parametrize("config, field", [
    ({"global_pool": "map"}, "global_pool"),
    ({"global_pool": "token", "class_token": False}, "global_pool"),
    ({"img_size": 8, "patch_size": 16}, "img_size"),
    ({"img_size": [224]}, "img_size"),
    ({"img_size": None}, "img_size"),
    ({"patch_size": 0}, "patch_size"),
    ({"patch_size": True}, "patch_size"),
    ({"weight_init": "jax_nlhb", "num_classes": 0}, "num_classes"),
    ({"num_classes": -1}, "num_classes"),
    ({"depth": 0}, "depth"),
    ({"drop_rate": 1.5}, "drop_rate"),
    ({"patch_drop_rate": 1.0}, "patch_drop_rate"),
    ({"pos_embed": "sincos"}, "pos_embed"),
])
def test_vit_refuses(config, field):
    with pytest.raises(ConfigError) as e:
        VIT.resolve(config)
    assert e.value.field == field


def _vit_parameters(img, patch, C, D, L, K, ratio=4.0):
    """ViT parameter count: patch Conv2d, cls_token, pos_embed over patches + class token, per block
    two LayerNorms, qkv, proj, fc1, fc2, the final LayerNorm and the head."""
    N, H = (img // patch) ** 2, int(D * ratio)
    block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D)
    return (D * C * patch * patch + D) + D + (N + 1) * D + L * block + 2 * D + (D * K + K)


def test_vit_default_plans_on_meta_with_the_architectures_count():
    config, _ = VIT.resolve({})
    counts = summary(meta_entries(VIT, config))
    assert counts["parameters"] == _vit_parameters(224, 16, 3, 768, 12, 1000)  # ViT-B/16
    assert counts["elements"] == counts["parameters"]  # nothing tied
    assert counts["bytes"] == 4 * counts["elements"]


def _keys(config):
    resolved, _ = VIT.resolve(config)
    return {e.key: e.shape for e in meta_entries(VIT, resolved)}


def test_vit_structural_options_plan_timms_keys():
    keys = _keys({**SMALL, "reg_tokens": 4, "init_values": 1e-5, "qk_norm": True, "pre_norm": True,
                  "global_pool": "avg", "scale_attn_norm": True, "scale_mlp_norm": True})
    assert list(keys)[:3] == ["cls_token", "reg_token", "pos_embed"]
    assert keys["reg_token"] == (1, 4, 16)
    assert keys["pos_embed"] == (1, 16 + 1 + 4, 16)
    assert "patch_embed.proj.bias" not in keys and keys["norm_pre.weight"] == (16,)
    assert keys["blocks.0.attn.q_norm.weight"] == (8,) and keys["blocks.1.attn.k_norm.bias"] == (8,)
    assert keys["blocks.0.attn.norm.weight"] == (16,) and keys["blocks.0.mlp.norm.weight"] == (64,)
    assert keys["blocks.1.ls1.gamma"] == (16,) and keys["blocks.1.ls2.gamma"] == (16,)
    assert "norm.weight" not in keys and keys["fc_norm.weight"] == (16,)  # avg pooling moves the norm
    block0 = [k for k in keys if k.startswith("blocks.0.")]
    assert block0 == [f"blocks.0.{k}" for k in (
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.q_norm.weight", "attn.q_norm.bias",
        "attn.k_norm.weight", "attn.k_norm.bias", "attn.norm.weight", "attn.norm.bias", "attn.proj.weight",
        "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.norm.weight", "mlp.norm.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma")]


def test_vit_other_shapes():
    keys = _keys({**SMALL, "img_size": [16, 32], "patch_size": [8, 4], "class_token": False, "global_pool": "",
                  "no_embed_class": True, "num_classes": 0, "qkv_bias": False, "proj_bias": False, "mlp_ratio": 0.0})
    assert "cls_token" not in keys and "head.weight" not in keys
    assert keys["pos_embed"] == (1, 2 * 8, 16)  # patches only
    assert keys["patch_embed.proj.weight"] == (16, 3, 8, 4)
    assert not any(k.startswith("blocks.") and k.endswith(".bias") and ("attn" in k or "mlp" in k) for k in keys)
    assert keys["blocks.0.mlp.fc1.weight"] == (16, 16)  # int(D * 0) is 0, so timm's Mlp falls back to D
    assert "pos_embed" not in _keys({**SMALL, "pos_embed": "none"})


def test_vit_jax_nlhb_is_jax_with_the_head_bias_at_minus_log_classes():
    jax, _ = replay(VIT, VIT.resolve({**SMALL, "weight_init": "jax"})[0], 3)
    nlhb, _ = replay(VIT, VIT.resolve({**SMALL, "weight_init": "jax_nlhb"})[0], 3)
    assert list(jax) == list(nlhb)
    for key in jax:
        if key != "head.bias":
            assert torch.equal(jax[key], nlhb[key]), key
    assert torch.equal(nlhb["head.bias"], torch.full((5,), -torch.log(torch.tensor(5.0, dtype=torch.float64)).item()))
    assert torch.equal(jax["head.bias"], torch.zeros(5))


@pytest.mark.parametrize("scheme", ["", "jax"])
def test_vit_fix_init_rescales_only_the_residual_projections(scheme):
    plain, _ = replay(VIT, VIT.resolve({**SMALL, "weight_init": scheme})[0], 5)
    fixed, _ = replay(VIT, VIT.resolve({**SMALL, "weight_init": scheme, "fix_init": True})[0], 5)
    for key in plain:
        if key.endswith(("attn.proj.weight", "mlp.fc2.weight")):
            i = int(key.split(".")[1])
            assert torch.equal(fixed[key], plain[key] / (2.0 * (i + 1)) ** 0.5), key
        else:
            assert torch.equal(fixed[key], plain[key]), key


def test_vit_layer_scale_holds_init_values():
    state, _ = replay(VIT, VIT.resolve({**SMALL, "init_values": 0.1})[0], 0)
    assert torch.equal(state["blocks.1.ls2.gamma"], torch.full((16,), 0.1))
