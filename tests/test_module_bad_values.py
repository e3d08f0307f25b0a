"""Layer arguments a constructor writes into a tensor as they are (PReLU's init) must fit the dtype:
a 422 naming the argument, as /v1/tensor refuses a constant that does not fit (docs/api.md §2.3)."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch


@pytest.mark.parametrize("extra", [{}, {"tensors": ["0.weight"]}, {"stats": False}])
def test_prelu_init_past_float32_is_a_422_on_the_argument(http, extra):
    body = {"layers": [{"type": "PReLU", "init": 1e39}], "seed": 0, "device": "cpu", **extra}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "layers", 0, "init"]
    assert "float32" in problem["msg"] and "3.40282e+38" in problem["msg"]


def test_prelu_init_past_float16_is_a_422_like_a_constant_tensor(http):
    constant = http.post("/v1/tensor", json={"shape": [1], "init": {"scheme": "constant", "val": 1e5}, "dtype": "float16"})
    assert constant.status_code == 422
    body = {"layers": [{"type": "PReLU", "init": 1e5}], "seed": 0, "device": "cpu", "dtype": "float16"}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "layers", 0, "init"] and "float16" in problem["msg"]


@pytest.mark.parametrize(("init", "dtype"), [(1e5, "float32"), (65504.0, "float16"), (-3e38, "float32")])
def test_prelu_init_that_fits_is_made_as_torch_makes_it(http, init, dtype):
    body = {"layers": [{"type": "PReLU", "num_parameters": 3, "init": init}], "seed": 0, "device": "cpu", "dtype": dtype}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 200, r.text
    want = torch.nn.PReLU(3, init=init, dtype=getattr(torch, dtype)).state_dict()["weight"]
    assert torch.equal(safetensors.torch.load(r.content)["0.weight"], want)


def test_layer_description_refuses_the_same_init(http):
    r = http.get("/v1/layers?type=PReLU&init=1e39")
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["query", "init"] and "init=1e+39" in problem["msg"] and "float32" in problem["msg"]
    r = http.get("/v1/layers?type=PReLU&init=1e5&dtype=float16")
    assert r.status_code == 422 and "float16" in r.text
    assert http.get("/v1/layers?type=PReLU&init=0.5").status_code == 200


def test_named_layers_name_the_argument(http):
    body = {"layers": {"act": {"type": "PReLU", "init": -1e39}}, "seed": 0, "device": "cpu"}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["loc"][-1] == "init" and "act" in problem["loc"]
