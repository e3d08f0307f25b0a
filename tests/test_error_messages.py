"""422s that teach: the field that is wrong, the names that are allowed, the name that was meant;
and ``mode`` in any case, as torch's ``mode.lower()`` reads it (docs/api.md §2, §6)."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from tests.test_bootstrap_module import reference_module
from tests.torch_reference import as_bytes, reference

BASE = {"device": "cpu", "seed": 0}


def _detail(r) -> list[dict]:
    assert r.status_code == 422, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in detail), detail
    return detail


def _request(body: bytes) -> dict:
    (length,) = struct.unpack("<Q", body[:8])
    return json.loads(json.loads(body[8 : 8 + length])["__metadata__"]["request"])


# ---- the field a dtype overflow names ------------------------------------------------------------


@pytest.mark.parametrize(
    "init,field",
    [
        pytest.param({"scheme": "uniform", "b": 1e39}, "b", id="b-too-big"),
        pytest.param({"scheme": "uniform", "a": -1e39, "b": 0.0}, "a", id="a-too-small"),
        pytest.param({"scheme": "normal", "mean": 1e39}, "mean", id="normal-mean"),
        pytest.param({"scheme": "normal", "std": 1e38}, "std", id="normal-std"),
    ],
)
def test_a_value_float32_cannot_hold_is_422_at_that_field(http, init, field):
    detail = _detail(http.post("/v1/tensor", json={**BASE, "shape": [4], "init": init}))
    assert [e["loc"] for e in detail] == [["body", "init", field]], detail
    assert "float32" in detail[0]["msg"]


def test_uniform_b_too_big_in_the_get_form_names_b(http):
    detail = _detail(http.get("/v1/tensor", params={"shape": "4", "scheme": "uniform", "b": "1e39"}))
    assert [e["loc"] for e in detail] == [["query", "b"]], detail


# ---- mode in any case ----------------------------------------------------------------------------

MODES = [
    pytest.param("kaiming_uniform", "FAN_OUT", id="kaiming-uniform-FAN_OUT"),
    pytest.param("kaiming_normal", "Fan_In", id="kaiming-normal-Fan_In"),
    pytest.param("variance_scaling", "FAN_AVG", id="variance-scaling-FAN_AVG"),
]


def _lower_reference(scheme: str, mode: str, shape: list[int], seed: int) -> torch.Tensor:
    return reference(shape, scheme, {"mode": mode.lower()}, seed=seed)


@pytest.mark.parametrize("scheme,mode", MODES)
def test_mode_in_any_case_is_torchs_lower_case_mode_on_post_and_get(http, scheme, mode):
    expected = as_bytes(_lower_reference(scheme, mode, [6, 5], 3))
    post = http.post("/v1/tensor", json={**BASE, "seed": 3, "shape": [6, 5], "init": {"scheme": scheme, "mode": mode}})
    get = http.get("/v1/tensor", params={"shape": "6,5", "scheme": scheme, "mode": mode, "seed": "3", "device": "cpu"})
    for r in (post, get):
        assert r.status_code == 200, r.text[:500]
        assert as_bytes(load_safetensors(r.content)["weight"]) == expected
        assert _request(r.content)["init"]["mode"] == mode.lower()
    assert post.headers["etag"] == get.headers["etag"]


def test_kaiming_mode_upper_case_equals_torch_itself(http):
    """torch itself takes "FAN_OUT": the service's bytes are torch's for the very same call."""
    torch_t = torch.empty(4, 7)
    torch.manual_seed(11)
    nn.init.kaiming_uniform_(torch_t, mode="FAN_OUT")
    r = http.post(
        "/v1/tensor",
        json={**BASE, "seed": 11, "shape": [4, 7], "init": {"scheme": "kaiming_uniform", "mode": "FAN_OUT"}},
    )
    assert r.status_code == 200, r.text[:500]
    assert as_bytes(load_safetensors(r.content)["weight"]) == as_bytes(torch_t)


def test_mode_in_any_case_in_a_tensor_list(http):
    r = http.post(
        "/v1/tensors",
        json={
            **BASE,
            "seed": 4,
            "tensors": [
                {"name": "w", "shape": [3, 8], "init": {"scheme": "kaiming_normal", "mode": "FAN_OUT"}},
            ],
        },
    )
    assert r.status_code == 200, r.text[:500]
    assert as_bytes(load_safetensors(r.content)["w"]) == as_bytes(
        _lower_reference("kaiming_normal", "FAN_OUT", [3, 8], 4)
    )
    assert _request(r.content)["tensors"][0]["init"]["mode"] == "fan_out"


def test_mode_in_any_case_in_a_module_override(http):
    layers = [{"type": "Linear", "in_features": 5, "out_features": 3}]
    r = http.post(
        "/v1/module",
        json={
            **BASE,
            "seed": 2,
            "layers": layers,
            "overrides": [
                {"param": "0.weight", "init": {"scheme": "kaiming_uniform", "mode": "Fan_Out", "nonlinearity": "relu"}},
            ],
        },
    )
    assert r.status_code == 200, r.text[:500]
    expected = reference_module(
        layers, 2, inits=[("0.weight", lambda p: nn.init.kaiming_uniform_(p, mode="fan_out", nonlinearity="relu"))]
    )
    got = load_safetensors(r.content)
    for key, t in expected.state_dict().items():
        assert as_bytes(got[key]) == as_bytes(t), key
    assert _request(r.content)["overrides"][0]["init"]["mode"] == "fan_out"


@pytest.mark.parametrize("mode", ["fan_sum", "FAN", "", "fan_in "])
def test_a_mode_that_is_not_one_in_any_case_is_still_422_listing_the_modes(http, mode):
    detail = _detail(
        http.post("/v1/tensor", json={**BASE, "shape": [2, 2], "init": {"scheme": "kaiming_uniform", "mode": mode}})
    )
    assert detail[0]["loc"] == ["body", "init", "kaiming_uniform", "mode"]
    assert "'fan_in'" in detail[0]["msg"] and "'fan_out'" in detail[0]["msg"]


# ---- unknown keys list what is allowed -----------------------------------------------------------

TENSOR = {"name": "w", "shape": [2, 3], "init": {"scheme": "normal"}}
LINEAR = {"type": "Linear", "in_features": 2, "out_features": 3}

EXTRAS = [
    pytest.param(
        "/v1/tensor",
        {**BASE, "shape": [2], "init": {"scheme": "normal", "sdt": 1.0}},
        ["body", "init", "normal", "sdt"],
        "for scheme 'normal' (did you mean 'std'?); allowed: mean, std",
        id="tensor-init-sdt",
    ),
    pytest.param(
        "/v1/tensor",
        {**BASE, "shape": [2], "init": {"scheme": "normal"}, "sede": 1},
        ["body", "sede"],
        "(did you mean 'seed'?); allowed: shape, init, dtype, device, seed, name, histogram_bins, stats, slice, rng",
        id="tensor-top-level",
    ),
    pytest.param(
        "/v1/tensor",
        {**BASE, "shape": [2], "init": {"scheme": "ones", "val": 1}},
        ["body", "init", "ones", "val"],
        "for scheme 'ones'; allowed: none",
        id="tensor-scheme-without-parameters",
    ),
    pytest.param(
        "/v1/tensors",
        {**BASE, "tensors": [{**TENSOR, "init": {"scheme": "kaiming_uniform", "slope": 1}}]},
        ["body", "tensors", 0, "init", "kaiming_uniform", "slope"],
        "for scheme 'kaiming_uniform'; allowed: a, mode, nonlinearity",
        id="tensors-init",
    ),
    pytest.param(
        "/v1/tensors",
        {**BASE, "tensors": [{**TENSOR, "device": "cpu"}]},
        ["body", "tensors", 0, "device"],
        "allowed: name, shape, init, dtype, seed, slice, histogram_bins",
        id="tensors-entry",
    ),
    pytest.param(
        "/v1/tensors",
        {**BASE, "tensors": [TENSOR], "histogram": 4},
        ["body", "histogram"],
        "(did you mean 'histogram_bins'?); allowed: tensors, dtype, device, seed, histogram_bins, stats, rng",
        id="tensors-top-level",
    ),
    pytest.param(
        "/v1/module",
        {**BASE, "layers": [{**LINEAR, "biass": False}]},
        ["body", "layers", "list", 0, "Linear", "biass"],
        "for layer type 'Linear' (did you mean 'bias'?); allowed: in_features, out_features, bias",
        id="module-list-layer",
    ),
    pytest.param(
        "/v1/module",
        {**BASE, "layers": {"enc": {**LINEAR, "in_feature": 2}}},
        ["body", "layers", "object", "enc", "Linear", "in_feature"],
        "(did you mean 'in_features'?); allowed: in_features, out_features, bias",
        id="module-named-layer",
    ),
    pytest.param(
        "/v1/module",
        {**BASE, "layers": [{"type": "ReLU", "inplce": True}]},
        ["body", "layers", "list", 0, "ReLU", "inplce"],
        "(did you mean 'inplace'?); allowed: inplace",
        id="module-activation",
    ),
    pytest.param(
        "/v1/module",
        {**BASE, "layers": [LINEAR], "overrides": [{"param": "0.weight", "init": {"scheme": "normal", "sd": 1}}]},
        ["body", "overrides", 0, "init", "normal", "sd"],
        "allowed: mean, std",
        id="module-override-init",
    ),
    pytest.param(
        "/v1/module",
        {
            **BASE,
            "layers": [LINEAR],
            "overrides": [{"parameter": "0.weight", "param": "0.weight", "init": {"scheme": "zeros"}}],
        },
        ["body", "overrides", 0, "parameter"],
        "allowed: param, init",
        id="module-override",
    ),
    pytest.param(
        "/v1/module",
        {**BASE, "layers": [LINEAR], "sead": 3},
        ["body", "sead"],
        "(did you mean 'seed'?); allowed: layers",
        id="module-top-level",
    ),
]


@pytest.mark.parametrize("path,body,loc,says", EXTRAS)
def test_an_unknown_key_is_422_at_its_loc_listing_the_allowed_names(http, path, body, loc, says):
    detail = _detail(http.post(path, json=body))
    assert [e["loc"] for e in detail] == [loc], detail
    assert detail[0]["type"] == "extra_forbidden"
    assert f"unknown field {loc[-1]!r}" in detail[0]["msg"] and says in detail[0]["msg"], detail


def test_an_unknown_key_in_a_gain_spec_lists_its_fields(http):
    init = {"scheme": "xavier_uniform", "gain": {"nonlinearity": "relu", "parm": 0.1}}
    detail = _detail(http.post("/v1/tensor", json={**BASE, "shape": [2, 2], "init": init}))
    assert detail[0]["loc"] == ["body", "init", "xavier_uniform", "gain"]
    assert "parm" in detail[0]["msg"] and "allowed: nonlinearity, param" in detail[0]["msg"]


def test_an_unknown_query_parameter_suggests_the_meant_one(http):
    detail = _detail(http.get("/v1/tensor", params={"shape": "4", "scheme": "normal", "sdt": "1"}))
    assert detail[0]["loc"] == ["query", "sdt"]
    assert "(did you mean 'std'?)" in detail[0]["msg"] and "allowed: shape, scheme, mean, std" in detail[0]["msg"]


# ---- a near-miss scheme or layer type ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["kaiming_uniform_", "Kaiming_Uniform", "kaimng_uniform", "KAIMING_UNIFORM_"])
def test_a_near_miss_scheme_suggests_the_scheme_on_every_route(http, scheme):
    hint = "did you mean 'kaiming_uniform'?"
    routes = [
        (http.post("/v1/tensor", json={**BASE, "shape": [2, 2], "init": {"scheme": scheme}}), ["body", "init"]),
        (http.get("/v1/tensor", params={"shape": "2,2", "scheme": scheme}), ["query", "scheme"]),
        (
            http.post("/v1/tensors", json={**BASE, "tensors": [{**TENSOR, "init": {"scheme": scheme}}]}),
            ["body", "tensors", 0, "init"],
        ),
        (
            http.post(
                "/v1/module",
                json={**BASE, "layers": [LINEAR], "overrides": [{"param": "0.weight", "init": {"scheme": scheme}}]},
            ),
            ["body", "overrides", 0, "init"],
        ),
    ]
    for r, loc in routes:
        detail = _detail(r)
        assert [e["loc"] for e in detail] == [loc], detail
        assert hint in detail[0]["msg"] and "kaiming_normal" in detail[0]["msg"], detail


def test_an_unknown_scheme_far_from_any_lists_them_without_a_guess(http):
    detail = _detail(http.post("/v1/tensor", json={**BASE, "shape": [2], "init": {"scheme": "xyzzy"}}))
    assert "did you mean" not in detail[0]["msg"] and "trunc_normal_tf" in detail[0]["msg"]


@pytest.mark.parametrize("layer_type,meant", [("linear", "Linear"), ("Conv2D", "Conv2d"), ("LayerNrom", "LayerNorm")])
def test_a_near_miss_layer_type_suggests_the_type(http, layer_type, meant):
    detail = _detail(http.post("/v1/module", json={**BASE, "layers": [{**LINEAR, "type": layer_type}]}))
    assert [e["loc"] for e in detail] == [["body", "layers", "list", 0]], detail
    assert f"did you mean {meant!r}?" in detail[0]["msg"] and "TransformerEncoderLayer" in detail[0]["msg"]
