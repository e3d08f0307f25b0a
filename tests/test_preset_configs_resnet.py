"""torchvision/resnet18 and torchvision/resnet50: config validation, init rules for every key, the
architecture's sizes on ``meta``, and what ``zero_init_residual`` changes. The bytes themselves are
pinned against torchvision by ``test_preset_replay.py``."""

from __future__ import annotations

import math

import pytest
import torch

from service.presets import PRESETS, ConfigError
from service.presets.base import summary
from service.presets.replay import meta_entries, replay

R18, R50 = PRESETS["torchvision/resnet18"], PRESETS["torchvision/resnet50"]
BOTH = pytest.mark.parametrize("preset", [R18, R50], ids=["resnet18", "resnet50"])

# The architecture: (block, blocks per stage) from the ResNet paper's table 1.
ARCH = {"torchvision/resnet18": ("basic", (2, 2, 2, 2)), "torchvision/resnet50": ("bottleneck", (3, 4, 6, 3))}


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def expected_sizes(name: str, num_classes: int) -> tuple[int, int, int]:
    """(parameters, BatchNorm layers, key count) of a torchvision ResNet, from the layer formula."""
    kind, layers = ARCH[name]
    expansion = 1 if kind == "basic" else 4
    params, bns, keys = conv(3, 64, 7) + 2 * 64, 1, 1 + 5  # stem conv, stem bn (2 params, 5 keys)
    inplanes = 64
    for stage, blocks in enumerate(layers):
        planes, out = 64 * 2**stage, 64 * 2**stage * expansion
        for b in range(blocks):
            cin = inplanes if b == 0 else out
            if kind == "basic":
                convs = [(cin, planes, 3), (planes, planes, 3)]
            else:
                convs = [(cin, planes, 1), (planes, planes, 3), (planes, out, 1)]
            if b == 0 and (stage > 0 or inplanes != out):
                convs.append((inplanes, out, 1))  # downsample
            params += sum(conv(*c) + 2 * c[1] for c in convs)
            bns += len(convs)
            keys += 6 * len(convs)  # conv weight + bn weight, bias, running_mean, running_var, num_batches_tracked
        inplanes = out
    params += inplanes * num_classes + num_classes
    return params, bns, keys + 2


# --- config validation -------------------------------------------------------------------------


@BOTH
def test_fields_are_exactly_the_constructor_arguments(preset):
    assert [f.name for f in preset.fields] == ["num_classes", "zero_init_residual"]
    assert preset.defaults() == {"num_classes": 1000, "zero_init_residual": False}
    assert preset.resolve({}) == ({"num_classes": 1000, "zero_init_residual": False}, [])


@BOTH
def test_unknown_field_is_named_with_the_allowed_ones(preset):
    with pytest.raises(ConfigError) as e:
        preset.resolve({"num_class": 10})
    assert e.value.field == "num_class"
    assert "'num_classes'" in e.value.msg and "zero_init_residual" in e.value.msg
    with pytest.raises(ConfigError) as e:
        preset.resolve({"width_per_group": 128})  # ResNet's, but not a field of resnet18/50 presets
    assert e.value.field == "width_per_group"


@BOTH
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10", None])
def test_num_classes_must_be_a_positive_integer(preset, bad):
    with pytest.raises(ConfigError) as e:
        preset.resolve({"num_classes": bad})
    assert e.value.field == "num_classes"


@BOTH
@pytest.mark.parametrize("bad", [1, 0, "true", None])
def test_zero_init_residual_must_be_a_boolean(preset, bad):
    with pytest.raises(ConfigError) as e:
        preset.resolve({"zero_init_residual": bad})
    assert e.value.field == "zero_init_residual"


@BOTH
def test_accepted_values(preset):
    assert preset.resolve({"num_classes": 1, "zero_init_residual": True})[0] == {
        "num_classes": 1, "zero_init_residual": True}
    assert preset.resolve({"num_classes": 7.0})[0]["num_classes"] == 7  # JSON 7.0 is the integer 7


# --- keys, rules and sizes on meta -------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("zir", [False, True])
def test_every_key_has_an_init_rule(preset, zir):
    config, _ = preset.resolve({"zero_init_residual": zir})
    for entry in meta_entries(preset, config):
        assert preset.rule_for(entry.key) is not None, entry.key


@BOTH
@pytest.mark.parametrize("num_classes", [1000, 3])
def test_meta_build_has_the_architectures_sizes(preset, num_classes):
    config, _ = preset.resolve({"num_classes": num_classes})
    with torch.device("meta"), torch.no_grad():
        module = preset.build(config)
    state = module.state_dict()
    assert all(t.is_meta for t in state.values())
    params, bns, keys = expected_sizes(preset.name, num_classes)
    entries = meta_entries(preset, config)
    assert len(entries) == len(state) == keys
    got = summary(entries)
    assert got["parameters"] == params
    assert got["elements"] == params + sum(
        2 * e.numel + 1 for e in entries if e.key.endswith(".running_mean"))  # mean, var, counter
    assert sum(e.key.endswith(".num_batches_tracked") for e in entries) == bns
    assert all(e.dtype == "int64" for e in entries if e.key.endswith("num_batches_tracked"))
    assert entries[-2].key == "fc.weight" and entries[-2].shape == (num_classes, 512 * (1 if preset is R18 else 4))


# --- what the rules say, on real builds --------------------------------------------------------


def test_rules_hold_on_a_real_resnet18():
    config, _ = R18.resolve({"num_classes": 10})
    state, warned = replay(R18, config, seed=3)
    assert warned == []
    for key, t in state.items():
        rule = R18.rule_for(key)
        if rule.startswith("ones"):
            assert torch.equal(t, torch.ones_like(t)), key
        elif rule.startswith("zero"):
            assert torch.equal(t, torch.zeros_like(t)), key
        elif rule.startswith("kaiming_normal"):
            fan_out = t.shape[0] * t[0, 0].numel()
            assert abs(t.std().item() - math.sqrt(2 / fan_out)) < 0.2 * math.sqrt(2 / fan_out), key
        else:  # fc: nn.Linear's default uniform bound
            assert t.abs().max().item() <= 1 / math.sqrt(512), key


def test_zero_init_residual_only_zeroes_each_blocks_last_bn_weight():
    preset = R18
    plain, _ = replay(preset, preset.resolve({})[0], seed=11)
    zeroed, _ = replay(preset, preset.resolve({"zero_init_residual": True})[0], seed=11)
    assert list(plain) == list(zeroed)
    changed = [k for k in plain if not torch.equal(plain[k], zeroed[k])]
    blocks = sum(ARCH[preset.name][1])
    assert len(changed) == blocks
    for key in changed:
        assert key.endswith(".bn2.weight") and torch.count_nonzero(zeroed[key]) == 0


def test_build_does_not_seed_the_global_generator():
    config, _ = R18.resolve({"num_classes": 2})
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(5)
        first = R18.build(config).state_dict()
        second = R18.build(config).state_dict()
    assert not torch.equal(first["conv1.weight"], second["conv1.weight"])
    assert not torch.equal(first["fc.bias"], second["fc.bias"])
