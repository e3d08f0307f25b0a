"""Each preset's replay against the reference digests computed by the real libraries
(transformers, timm, nanoGPT's ``model.py``, torchvision): keys in order, shapes, dtypes, bytes."""

from __future__ import annotations

import pytest

from service.presets import PRESETS
from service.presets.replay import meta_entries, replay
from tests.preset_digests import cases_for, digest


@pytest.mark.parametrize("case", cases_for())
def test_replay_matches_reference_digests(case):
    preset = PRESETS[case["model"]]
    config, _ = preset.resolve(case["config"])
    state, _ = replay(preset, config, case["seed"])
    expected = case["tensors"]
    assert list(state) == [t["key"] for t in expected]
    for t in expected:
        got = state[t["key"]]
        assert list(got.shape) == t["shape"], t["key"]
        assert str(got.dtype).removeprefix("torch.") == t["dtype"], t["key"]
        assert digest(got) == t["sha256"], t["key"]


@pytest.mark.parametrize("case", cases_for())
def test_meta_build_plans_the_same_keys(case):
    preset = PRESETS[case["model"]]
    config, _ = preset.resolve(case["config"])
    entries = meta_entries(preset, config)
    assert [(e.key, list(e.shape), e.dtype) for e in entries] == [
        (t["key"], t["shape"], t["dtype"]) for t in case["tensors"]
    ]
