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
