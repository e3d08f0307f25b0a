"""``/v1/module`` with ``tensors``: each key made alone (stream accounting over the recorded stack,
``service/presets/accounting.py``) equals the same key of the whole answer, for every layer type.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict

import pytest
import safetensors.torch
import torch

from service.engine.layers import LAYER_CLASSES, PARAMETER_FREE, LayerCall
from service.presets import accounting

SEED = 2**32 + 5


def _meta(body: bytes) -> dict:
    (n,) = struct.unpack("<Q", body[:8])
    return {k: json.loads(v) for k, v in json.loads(body[8 : 8 + n])["__metadata__"].items() if k != "format"}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def test_every_layer_type_with_tensors_passes_the_self_test():
    passed = accounting.layer_self_test()
    assert set(passed) == set(LAYER_CLASSES) - PARAMETER_FREE
    assert all(passed.values()), {k: v for k, v in passed.items() if not v}
    assert accounting.capability()["layer_types"]["whole_only"] == []


@pytest.mark.parametrize("type_", sorted(accounting.LAYER_SELF_TEST_CALLS))
def test_each_key_made_alone_equals_the_serial_stack(type_):
    """Directly against torch: nn.Sequential built under manual_seed, then each key alone."""
    calls = [LayerCall("a", "Linear", {"in_features": 6, "out_features": 17}),
             LayerCall("b", type_, accounting.LAYER_SELF_TEST_CALLS[type_]),
             LayerCall("c", "Embedding", {"num_embeddings": 9, "embedding_dim": 5})]
    torch.manual_seed(SEED)
    layers = [LAYER_CLASSES[c.type](**c.kwargs) for c in calls]
    whole = torch.nn.Sequential(OrderedDict(zip("abc", layers, strict=True))).state_dict()
    rec = accounting.stack_recording(calls, "float32")
    assert list(rec.keys) == list(whole)
    for key in whole:
        sl = accounting.plan_slice(rec, [key])
        assert not sl.whole, sl.reason
        assert _same(accounting.make(rec, sl, SEED)[key], whole[key]), key


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("type_", sorted(accounting.LAYER_SELF_TEST_CALLS))
def test_each_tensor_fetched_alone_equals_the_whole_answer(http, type_, dtype):
    layers = {"first": {"type": "Linear", "in_features": 4, "out_features": 9},
              "layer": {"type": type_, **accounting.LAYER_SELF_TEST_CALLS[type_]}}
    body = {"layers": layers, "seed": SEED, "dtype": dtype, "device": "cpu"}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 200, r.text
    whole = safetensors.torch.load(r.content)
    assert "generation" not in _meta(r.content)["provenance"]
    keys = list(whole)
    for key in keys:
        one = http.post("/v1/module", json={**body, "tensors": [key]})
        assert one.status_code == 200, one.text
        got = safetensors.torch.load(one.content)
        assert list(got) == [key]
        assert _same(got[key], whole[key]), key
        assert _meta(one.content)["provenance"]["generation"] == {"path": "jumped"}
    # several keys at once, in the order asked
    both = http.post("/v1/module", json={**body, "tensors": keys[::-1], "stats": True})
    assert _meta(both.content)["request"]["tensors"] == keys[::-1]
    got = safetensors.torch.load(both.content)
    assert all(_same(got[k], whole[k]) for k in keys)


def test_overrides_fall_back_to_the_whole_stack(http):
    layers = [{"type": "Linear", "in_features": 4, "out_features": 6}, {"type": "Linear", "in_features": 6, "out_features": 3}]
    body = {"layers": layers, "seed": 3, "device": "cpu",
            "overrides": [{"param": "0.weight", "init": {"scheme": "normal", "std": 0.1}}]}
    whole = safetensors.torch.load(http.post("/v1/module", json=body).content)
    r = http.post("/v1/module", json={**body, "tensors": ["1.weight"]})
    assert r.status_code == 200, r.text
    assert _same(safetensors.torch.load(r.content)["1.weight"], whole["1.weight"])
    generation = _meta(r.content)["provenance"]["generation"]
    assert generation["path"] == "whole" and "overrides" in generation["reason"]


def test_an_unknown_or_repeated_key_is_a_422_naming_tensors(http):
    body = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 6}], "device": "cpu"}
    r = http.post("/v1/module", json={**body, "tensors": ["0.weigth"]})
    assert r.status_code == 422
    problem = r.json()["detail"][0]
    assert problem["loc"][-2:] == ["tensors", 0] and "0.weight" in problem["msg"]
    r = http.post("/v1/module", json={**body, "tensors": ["0.bias", "0.bias"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["tensors", 1]


def test_lstm_warning_reaches_the_key_of_its_layer(http):
    body = {"layers": [{"type": "LSTM", "input_size": 3, "hidden_size": 4, "dropout": 0.5}], "device": "cpu", "seed": 1}
    r = http.post("/v1/module", json={**body, "tensors": ["0.bias_hh_l0"]})
    assert r.status_code == 200, r.text
    assert any("dropout" in w for w in _meta(r.content)["provenance"]["warnings"])
