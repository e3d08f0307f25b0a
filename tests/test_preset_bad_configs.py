"""Preset configs torch would refuse or overflow: a 4xx naming the config field, planned before anything starts."""

from __future__ import annotations

import math

import pytest
import safetensors.torch
import torch

from tests.conftest import live_server

TINY_VIT = {"img_size": 8, "patch_size": 4, "embed_dim": 8, "depth": 1, "num_heads": 2, "num_classes": 3}
TINY_GPT2 = {"n_layer": 2, "n_embd": 8, "n_head": 2, "vocab_size": 11, "n_positions": 5}


def _no_backtrace(r) -> None:
    text = r.text
    assert "Exception raised from" not in text and "frame #" not in text and "/site-packages/" not in text, text
    assert len(text) < 1000, text


@pytest.mark.parametrize("stats", [True, False])
def test_init_values_past_float32_is_a_422_on_the_field(http, stats):
    body = {"model": "timm/VisionTransformer", "config": {**TINY_VIT, "init_values": 1e39}, "seed": 0, "stats": stats}
    r = http.post("/v1/model", json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "config", "init_values"]
    assert "float32" in problem["msg"] and "1e+39" in problem["msg"]


def test_init_values_past_float32_in_the_query_form(http):
    query = "&".join(f"{k}={v}" for k, v in {**TINY_VIT, "init_values": "1e39"}.items())
    r = http.get(f"/v1/model/timm/VisionTransformer?seed=0&{query}")
    assert r.status_code == 422, r.text
    assert any("init_values" in p["loc"] for p in r.json()["detail"])


def test_init_values_that_fit_float32_still_build(http):
    body = {"model": "timm/VisionTransformer", "config": {**TINY_VIT, "init_values": 1e30}, "seed": 0}
    r = http.post("/v1/model", json=body)
    assert r.status_code == 200, r.text
    gamma = safetensors.torch.load(r.content)["blocks.0.ls1.gamma"]
    assert torch.equal(gamma, torch.full((8,), 1e30, dtype=torch.float32))


@pytest.mark.parametrize(("value", "dtype"), [(1e300, "float32"), (1e39, "float32"), (1e5, "float16"), (1e4, "float16")])
def test_initializer_range_whose_draws_overflow_the_dtype_is_a_422(http, value, dtype):
    # as /v1/tensor refuses normal(std) whose 10-std reach does not fit the dtype (docs/api.md §2.3)
    tensor = http.post("/v1/tensor", json={"shape": [4], "init": {"scheme": "normal", "std": value}, "dtype": dtype, "seed": 0})
    assert tensor.status_code == 422
    body = {"model": "transformers/GPT2LMHeadModel", "config": {**TINY_GPT2, "initializer_range": value}, "seed": 0, "dtype": dtype}
    r = http.post("/v1/model", json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "config", "initializer_range"]
    assert dtype in problem["msg"]


def test_initializer_range_that_fits_float16_builds(http):
    body = {"model": "transformers/GPT2LMHeadModel", "config": {**TINY_GPT2, "initializer_range": 1000.0}, "seed": 0, "dtype": "float16"}
    tensor = http.post("/v1/tensor", json={"shape": [4], "init": {"scheme": "normal", "std": 1000.0}, "dtype": "float16", "seed": 0})
    assert tensor.status_code == 200
    r = http.post("/v1/model", json=body)
    assert r.status_code == 200, r.text
    wte = safetensors.torch.load(r.content)["transformer.wte.weight"]
    assert wte.dtype == torch.float16 and bool(torch.isfinite(wte).all()) and wte.abs().max() > 100


@pytest.mark.parametrize(
    ("model", "config", "field"),
    [
        ("transformers/GPT2LMHeadModel", {"vocab_size": 2**63}, "vocab_size"),
        ("transformers/GPT2LMHeadModel", {"vocab_size": 2**64}, "vocab_size"),
        ("transformers/GPT2LMHeadModel", {"vocab_size": 10**400}, "vocab_size"),
        ("torchvision/resnet50", {"num_classes": 2**62}, "num_classes"),
    ],
)
def test_sizes_torch_cannot_make_are_a_413_on_max_elements(http, model, config, field):
    r = http.post("/v1/model", json={"model": model, "config": config, "seed": 0})
    _no_backtrace(r)
    assert r.status_code == 413, r.text
    answer = r.json()
    assert answer["env_var"] == "INITSVC_MAX_ELEMENTS" and answer["limit"] == 2**31
    assert answer["value"] > answer["limit"]
    assert field in answer["detail"]


def test_a_size_whose_product_overflows_is_a_422_on_the_field(http):
    # n_embd is within INITSVC_MAX_ELEMENTS, but c_fc's [n_embd, 4 n_embd] overflows int64
    r = http.post("/v1/model", json={"model": "transformers/GPT2LMHeadModel", "config": {"n_embd": 2**31, "n_head": 1}})
    _no_backtrace(r)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "config", "n_embd"] and "INITSVC_MAX_ELEMENTS" in problem["msg"]


def test_tensor_limit_counts_the_keys_answered():
    with live_server(max_tensors=3) as s:
        import httpx

        with httpx.Client(base_url=s.url, timeout=120) as http:
            whole = http.get("/v1/models").json()["models"]["torchvision/resnet18"]["default_config"]["tensors"]
            r = http.post("/v1/model", json={"model": "torchvision/resnet18", "seed": 0})
            assert r.status_code == 413, r.text
            assert r.json()["value"] == whole and r.json()["limit"] == 3 and whole > 4
            r = http.post("/v1/model", json={"model": "torchvision/resnet18", "seed": 0, "tensors": ["fc.weight"]})
            assert r.status_code == 200, r.text
            assert list(safetensors.torch.load(r.content)) == ["fc.weight"]
            four = ["fc.weight", "fc.bias", "conv1.weight", "bn1.weight"]
            r = http.post("/v1/model", json={"model": "torchvision/resnet18", "seed": 0, "tensors": four})
            assert r.status_code == 413 and r.json()["value"] == 4 and r.json()["limit"] == 3


def test_stats_name_the_rule_with_the_config_filled_in(http):
    body = {"model": "transformers/GPT2LMHeadModel", "config": TINY_GPT2, "seed": 0}
    r = http.post("/v1/model", json=body, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    tensors = r.json()["tensors"]
    assert tensors["transformer.wte.weight"]["stats"]["init"] == "normal(0, 0.02)"
    assert tensors["transformer.h.0.attn.c_proj.weight"]["stats"]["init"] == f"normal(0, {0.02 / math.sqrt(2 * 2):g})"
    assert tensors["transformer.h.0.ln_1.weight"]["stats"]["init"] == "ones"
