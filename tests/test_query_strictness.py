"""The GET forms read their query strings by the rules of a JSON body (docs/api.md §4.3, §6):
integers and numbers as JSON writes them, booleans exactly true/false, UTF-8 text, each parameter
once and only the ones the endpoint takes; a loose value is a 422 naming the parameter, and every
valid form gives the same bytes as the POST body it spells. Also the body's own messages for a
missing or non-string discriminator and a null gain."""

from __future__ import annotations

import pytest
import torch

BASE = "/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=0"
UNIFORM = "/v1/tensor?device=cpu&scheme=uniform&shape=3,3&seed=0"


def _detail(r) -> list[dict]:
    assert r.status_code == 422, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in detail), detail
    return detail


def _one(r) -> dict:
    detail = _detail(r)
    assert len(detail) == 1, detail
    return detail[0]


# ---- loose values on GET /v1/tensor: each a 422 at its parameter ----------------------------------


LOOSE_TENSOR = [
    pytest.param(BASE + "&std=1_0", "std", "number", id="std-underscore"),
    pytest.param(BASE + "&std=%2B1", "std", "number", id="std-plus"),
    pytest.param(BASE + "&std=%201", "std", "number", id="std-leading-space"),
    pytest.param(BASE + "&std=1%20", "std", "number", id="std-trailing-space"),
    pytest.param(BASE + "&std=nan", "std", "number", id="std-nan"),
    pytest.param(BASE + "&std=inf", "std", "number", id="std-inf"),
    pytest.param(BASE + "&std=1e999", "std", "finite", id="std-overflow"),
    pytest.param(BASE + "&std=0x10", "std", "number", id="std-hex"),
    pytest.param(BASE + "&std=", "std", "number", id="std-empty"),
    pytest.param(UNIFORM + "&a=5.", "a", "number", id="a-trailing-dot"),
    pytest.param(UNIFORM + "&a=.5", "a", "number", id="a-leading-dot"),
    pytest.param(UNIFORM + "&a=%201", "a", "number", id="a-leading-space"),
    pytest.param(UNIFORM + "&a=-.5", "a", "number", id="a-minus-dot"),
    pytest.param(UNIFORM + "&a=01", "a", "number", id="a-leading-zero"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=1_000", "seed", "integer", id="seed-underscore"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=01", "seed", "integer", id="seed-leading-zero"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=1.0", "seed", "integer", id="seed-float"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=%2B5", "seed", "integer", id="seed-plus"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=1e3", "seed", "integer", id="seed-exponent"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=%205", "seed", "integer", id="seed-space"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=3,3&seed=" + "9" * 5000, "seed", "digits",
                 id="seed-5000-digits"),
    pytest.param(BASE + "&histogram_bins=2.0", "histogram_bins", "integer", id="bins-float"),
    pytest.param(BASE + "&histogram_bins=true", "histogram_bins", "integer", id="bins-bool"),
    pytest.param(BASE + "&stats=yes", "stats", "true or false", id="stats-yes"),
    pytest.param(BASE + "&stats=1", "stats", "true or false", id="stats-1"),
    pytest.param(BASE + "&stats=0", "stats", "true or false", id="stats-0"),
    pytest.param(BASE + "&stats=True", "stats", "true or false", id="stats-True"),
    pytest.param(BASE + "&stats=", "stats", "true or false", id="stats-empty"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=%204,%204", "shape", "without spaces", id="shape-spaces"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=4,", "shape", "comma-separated", id="shape-trailing-comma"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=04,4", "shape", "comma-separated", id="shape-leading-zero"),
    pytest.param("/v1/tensor?device=cpu&scheme=normal&shape=4.0,4", "shape", "comma-separated", id="shape-float"),
    pytest.param(BASE + "&name=%C3%28", "name", "UTF-8", id="name-invalid-utf8"),
    pytest.param(BASE + "&name=%FF", "name", "UTF-8", id="name-byte-ff"),
    pytest.param("/v1/tensor?device=cpu&scheme=xavier_uniform&shape=3,3&gain=%2B1", "gain", "number", id="gain-plus"),
    pytest.param("/v1/tensor?device=cpu&scheme=xavier_uniform&shape=3,3&gain_nonlinearity=leaky_relu&gain_param=.2",
                 "gain_param", "number", id="gain-param-dot"),
    pytest.param("/v1/tensor?device=cpu&scheme=dirac&shape=2,2,3&groups=2.0", "groups", "integer", id="groups-float"),
]


@pytest.mark.parametrize("url,param,says", LOOSE_TENSOR)
def test_a_loose_value_is_a_422_naming_its_parameter(http, url, param, says):
    e = _one(http.get(url))
    assert e["loc"] == ["query", param], e
    assert param in e["msg"] and says in e["msg"], e


@pytest.mark.parametrize(
    "query,dim",
    [
        pytest.param("slice=,", 0, id="comma-alone"),
        pytest.param("slice=0:1,", 1, id="trailing-empty"),
        pytest.param("slice=,0:1", 0, id="leading-empty"),
        pytest.param("slice=%200:1,:", 0, id="space"),
        pytest.param("slice=0:1:1,:", 0, id="step"),
        pytest.param("slice=-1:2,:", 0, id="negative"),
        pytest.param("slice=01:2,:", 0, id="leading-zero"),
        pytest.param("slice=:,%3A%20", 1, id="colon-space"),
    ],
)
def test_a_bad_slice_entry_is_a_422_at_its_dimension(http, query, dim):
    e = _one(http.get(f"{BASE}&{query}"))
    assert e["loc"] == ["query", "slice", dim], e
    assert "':' (the whole dimension)" in e["msg"], e


def test_a_value_that_is_not_utf8_is_refused_on_every_get_form(http):
    for url, param in [
        ("/v1/gain?nonlinearity=%C3%28", "nonlinearity"),
        ("/v1/fans?shape=%FF", "shape"),
        ("/v1/layers?type=Linear&in_features=3&out_features=4&dtype=%C3%28", "dtype"),
        ("/v1/model/nanogpt/GPT?seed=0&n_layer=1&dtype=%C3%28", "dtype"),
    ]:
        e = _one(http.get(url))
        assert e["loc"] == ["query", param] and "UTF-8" in e["msg"], (url, e)


# ---- the valid forms give the same bytes as the POST body -----------------------------------------


SAME = [
    pytest.param("scheme=normal&shape=3,3&std=10", {"shape": [3, 3], "init": {"scheme": "normal", "std": 10}}, id="std-int"),
    pytest.param("scheme=normal&shape=3,3&std=1e1", {"shape": [3, 3], "init": {"scheme": "normal", "std": 1e1}}, id="std-exp"),
    pytest.param("scheme=normal&shape=3,3&mean=-0.5&std=2E-1",
                 {"shape": [3, 3], "init": {"scheme": "normal", "mean": -0.5, "std": 0.2}}, id="mean-negative"),
    pytest.param("scheme=normal&shape=3,3&mean=-0", {"shape": [3, 3], "init": {"scheme": "normal", "mean": -0.0}},
                 id="minus-zero"),
    pytest.param("scheme=uniform&shape=3,3&a=0.5&b=1.5e%2B0",
                 {"shape": [3, 3], "init": {"scheme": "uniform", "a": 0.5, "b": 1.5}}, id="exponent-plus"),
    pytest.param("scheme=normal&shape=3,3&seed=1000", {"shape": [3, 3], "init": {"scheme": "normal"}, "seed": 1000},
                 id="seed-1000"),
    pytest.param("scheme=normal&shape=3,3&seed=18446744073709551615",
                 {"shape": [3, 3], "init": {"scheme": "normal"}, "seed": 2**64 - 1}, id="seed-max"),
    pytest.param("scheme=normal&shape=3,3&stats=false", {"shape": [3, 3], "init": {"scheme": "normal"}, "stats": False},
                 id="stats-false"),
    pytest.param("scheme=normal&shape=3,3&stats=true&histogram_bins=4",
                 {"shape": [3, 3], "init": {"scheme": "normal"}, "stats": True, "histogram_bins": 4}, id="bins"),
    pytest.param("scheme=normal&shape=4,6&slice=1:3,:", {"shape": [4, 6], "init": {"scheme": "normal"}, "slice": [[1, 3], None]},
                 id="slice-bounded"),
    pytest.param("scheme=normal&shape=4,6&slice=2,:4", {"shape": [4, 6], "init": {"scheme": "normal"}, "slice": [[2, 3], [0, 4]]},
                 id="slice-index-and-open-start"),
    pytest.param("scheme=normal&shape=4,6&slice=1:,3:", {"shape": [4, 6], "init": {"scheme": "normal"}, "slice": [[1, 4], [3, 6]]},
                 id="slice-open-stop"),
    pytest.param("scheme=ones&shape=&slice=", {"shape": [], "init": {"scheme": "ones"}, "slice": []}, id="zero-d"),
    pytest.param("scheme=normal&shape=3,3&name=%C3%A9t%C3%A9", {"shape": [3, 3], "init": {"scheme": "normal"}, "name": "été"},
                 id="name-utf8"),
    pytest.param("scheme=xavier_uniform&shape=3,3&gain_nonlinearity=leaky_relu&gain_param=0.2",
                 {"shape": [3, 3], "init": {"scheme": "xavier_uniform", "gain": {"nonlinearity": "leaky_relu", "param": 0.2}}},
                 id="gain-spec"),
    pytest.param("scheme=xavier_uniform&shape=3,3&gain=2", {"shape": [3, 3], "init": {"scheme": "xavier_uniform", "gain": 2}},
                 id="gain-number"),
    pytest.param("scheme=dirac&shape=4,2,3&groups=2", {"shape": [4, 2, 3], "init": {"scheme": "dirac", "groups": 2}},
                 id="groups"),
]


@pytest.mark.parametrize("query,body", SAME)
def test_a_valid_query_gives_the_bytes_of_its_body(http, query, body):
    body = {"device": "cpu", "seed": 0, **body}
    seed = "" if "seed=" in query else "&seed=0"
    got = http.get(f"/v1/tensor?device=cpu{seed}&{query}")
    post = http.post("/v1/tensor", json=body)
    assert post.status_code == 200, post.text[:300]
    assert got.status_code == 200, got.text[:300]
    assert got.content == post.content
    assert got.headers["etag"] == post.headers["etag"]


def test_the_body_refuses_what_the_query_refuses(http):
    """The pairs above are the same rule: a body's 1.0 seed and "10" std are 422s too."""
    for body, field in [
        ({"shape": [3, 3], "init": {"scheme": "normal"}, "seed": 1.0}, "seed"),
        ({"shape": [3, 3], "init": {"scheme": "normal", "std": "10"}}, "std"),
        ({"shape": [3, 3], "init": {"scheme": "normal"}, "stats": 1}, "stats"),
    ]:
        e = _one(http.post("/v1/tensor", json={"device": "cpu", **body}))
        assert e["loc"][-1] == field, e


# ---- repeated and unknown parameters: every GET form alike ----------------------------------------


@pytest.mark.parametrize(
    "url,param",
    [
        pytest.param("/v1/gain?nonlinearity=relu&nonlinearity=tanh", "nonlinearity", id="gain"),
        pytest.param("/v1/gain?nonlinearity=leaky_relu&param=0.1&param=0.2", "param", id="gain-param"),
        pytest.param("/v1/fans?shape=4,4&shape=2,2", "shape", id="fans"),
        pytest.param(BASE + "&std=1&std=2", "std", id="tensor"),
        pytest.param("/v1/layers?type=Linear&in_features=3&out_features=4&in_features=5", "in_features", id="layers"),
        pytest.param("/v1/model/nanogpt/GPT?seed=0&seed=1", "seed", id="model"),
    ],
)
def test_a_repeated_parameter_is_a_422(http, url, param):
    e = _one(http.get(url))
    assert e["loc"] == ["query", param] and "more than once" in e["msg"], e


@pytest.mark.parametrize(
    "url,unknown,guess,allowed",
    [
        pytest.param("/v1/gain?nonlinearity=relu&x=1", "x", None, "nonlinearity, param", id="gain"),
        pytest.param("/v1/gain?nonlinearity=leaky_relu&parm=0.2", "parm", "param", "nonlinearity, param", id="gain-typo"),
        pytest.param("/v1/fans?shape=4,4&x=1", "x", None, "shape", id="fans"),
        pytest.param("/v1/fans?shape=4,4&shap=1", "shap", "shape", "shape", id="fans-typo"),
        pytest.param("/v1/layers?type=Linear&in_features=3&out_features=4&foo=1", "foo", None,
                     "in_features, out_features, bias, dtype", id="layers"),
        pytest.param("/v1/layers?type=Linear&in_features=3&out_features=4&biass=false", "biass", "bias",
                     "in_features, out_features, bias, dtype", id="layers-typo"),
    ],
)
def test_an_unknown_parameter_is_a_422_naming_it_and_the_allowed_ones(http, url, unknown, guess, allowed):
    e = _one(http.get(url))
    assert e["loc"] == ["query", unknown] and e["type"] == "extra_forbidden", e
    assert repr(unknown) in e["msg"] and allowed in e["msg"], e
    assert (f"did you mean {guess!r}" in e["msg"]) == (guess is not None), e


def test_gain_and_fans_still_answer_torch(http):
    r = http.get("/v1/gain?nonlinearity=leaky_relu&param=0.2")
    assert r.status_code == 200, r.text
    assert r.json()["gain"] == torch.nn.init.calculate_gain("leaky_relu", 0.2)
    r = http.get("/v1/fans?shape=64,3,7,7")
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(64, 3, 7, 7))
    assert r.status_code == 200 and (r.json()["fan_in"], r.json()["fan_out"]) == (fan_in, fan_out), r.text


@pytest.mark.parametrize(
    "url,param",
    [
        pytest.param("/v1/gain?nonlinearity=leaky_relu&param=%2B0.2", "param", id="gain-plus"),
        pytest.param("/v1/gain?nonlinearity=leaky_relu&param=.2", "param", id="gain-dot"),
        pytest.param("/v1/gain?nonlinearity=leaky_relu&param=0_2", "param", id="gain-underscore"),
        pytest.param("/v1/fans?shape=%204,4", "shape", id="fans-space"),
        pytest.param("/v1/fans?shape=4,,4", "shape", id="fans-empty-entry"),
    ],
)
def test_catalog_values_follow_the_same_rules(http, url, param):
    e = _one(http.get(url))
    assert e["loc"] == ["query", param], e


# ---- GET /v1/layers and GET /v1/model read values by the same grammar -----------------------------


@pytest.mark.parametrize(
    "value", ["%2B3", "%203", "3.", "03", "3_0"], ids=["plus", "space", "trailing-dot", "leading-zero", "underscore"]
)
def test_a_layer_argument_spelled_loosely_is_refused(http, value):
    e = _one(http.get(f"/v1/layers?type=Linear&in_features={value}&out_features=4"))
    assert e["loc"] == ["query", "in_features"], e


def test_a_layer_argument_spelled_as_json_is_accepted(http):
    r = http.get("/v1/layers?type=LayerNorm&normalized_shape=3,4&eps=1e-5&elementwise_affine=true")
    assert r.status_code == 200, r.text[:300]
    answer = r.json()
    assert answer["arguments"]["normalized_shape"] == [3, 4] and answer["arguments"]["eps"] == 1e-5, answer
    assert answer["arguments"]["elementwise_affine"] is True, answer


MODEL = "/v1/model/nanogpt/GPT?n_layer=1&n_head=2&n_embd=16&block_size=8&vocab_size=32"


@pytest.mark.parametrize(
    "extra,param",
    [
        pytest.param("&seed=1.0", "seed", id="seed-float"),
        pytest.param("&seed=%2B1", "seed", id="seed-plus"),
        pytest.param("&seed=01", "seed", id="seed-leading-zero"),
        pytest.param("&stats=yes", "stats", id="stats-yes"),
        pytest.param("&stats=1", "stats", id="stats-1"),
        pytest.param("&histogram_bins=2.0", "histogram_bins", id="bins-float"),
        pytest.param("&dropout=.1", "dropout", id="config-float-dot"),
        pytest.param("&dropout=%2B0.1", "dropout", id="config-float-plus"),
        pytest.param("&bias=True", "bias", id="config-bool"),
        pytest.param("&slice.lm_head.weight=%200:4,:", "slice.lm_head.weight", id="slice-space"),
        pytest.param("&slice.lm_head.weight=0:4,", "slice.lm_head.weight", id="slice-empty-entry"),
        pytest.param("&tensors=lm_head.weight,,transformer.wte.weight", "tensors", id="tensors-empty-entry"),
        pytest.param("&tensors=lm_head.weight,", "tensors", id="tensors-trailing-comma"),
    ],
)
def test_model_query_values_follow_the_same_rules(http, extra, param):
    e = _one(http.get(MODEL + "&seed=0" * ("seed" not in extra) + extra))
    assert e["loc"][:2] == ["query", param], e


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999", "%5B16,NaN%5D"], ids=["nan", "infinity", "overflow", "in-list"])
def test_a_json_config_field_takes_finite_numbers_only(http, value):
    e = _one(http.get(f"/v1/model/transformers/ViTModel?seed=0&image_size={value}"))
    assert e["loc"] == ["query", "image_size"] and "finite" in e["msg"], e


def test_a_model_query_gives_the_bytes_of_its_body(http):
    config = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8, "vocab_size": 32, "dropout": 0.0, "bias": False}
    body = {"model": "nanogpt/GPT", "config": config, "seed": 7, "stats": False, "slice": {"lm_head.weight": [[0, 4], None]}}
    post = http.post("/v1/model", json=body)
    got = http.get(MODEL + "&dropout=0.0&bias=false&seed=7&stats=false&slice.lm_head.weight=0:4,:")
    assert post.status_code == 200 and got.status_code == 200, (post.text[:300], got.text[:300])
    assert got.content == post.content


# ---- messages -------------------------------------------------------------------------------------


def test_gain_param_without_gain_nonlinearity_says_it_needs_it(http):
    e = _one(http.get("/v1/tensor?device=cpu&shape=3,3&scheme=xavier_uniform&gain_param=0.2"))
    assert e["loc"] == ["query", "gain_param"], e
    assert "needs gain_nonlinearity" in e["msg"] and "unknown" not in e["msg"], e


def test_gain_parameters_on_a_scheme_without_gain_are_unknown(http):
    e = _one(http.get("/v1/tensor?device=cpu&shape=3,3&scheme=normal&gain_nonlinearity=relu"))
    assert e["loc"] == ["query", "gain_nonlinearity"] and e["type"] == "extra_forbidden", e
    assert "mean, std" in e["msg"], e


SCHEMES = "uniform, normal, trunc_normal, constant, ones, zeros, eye, dirac, xavier_uniform"


@pytest.mark.parametrize(
    "init,says",
    [
        pytest.param({}, "scheme is required: one of " + SCHEMES, id="missing"),
        pytest.param({"std": 1}, "scheme is required: one of " + SCHEMES, id="missing-with-params"),
        pytest.param({"scheme": None}, "scheme must be a string, one of " + SCHEMES, id="null"),
        pytest.param({"scheme": 3}, "scheme must be a string, one of " + SCHEMES, id="number"),
    ],
)
def test_a_missing_or_non_string_scheme_names_it_and_lists_the_schemes(http, init, says):
    e = _one(http.post("/v1/tensor", json={"shape": [3, 3], "device": "cpu", "init": init}))
    assert e["loc"] == ["body", "init", "scheme"], e
    assert says in e["msg"] and "None" not in e["msg"] and "Unable to extract" not in e["msg"], e


def test_an_unknown_scheme_string_still_suggests_the_closest(http):
    e = _one(http.post("/v1/tensor", json={"shape": [3, 3], "device": "cpu", "init": {"scheme": "nromal"}}))
    assert "did you mean 'normal'" in e["msg"], e


@pytest.mark.parametrize(
    "layers,loc,says",
    [
        pytest.param([{}], ["body", "layers", "list", 0, "type"], "type is required: one of Linear, Bilinear", id="list"),
        pytest.param({"a": {}}, ["body", "layers", "object", "a", "type"], "type is required: one of Linear", id="object"),
        pytest.param([{"type": None}], ["body", "layers", "list", 0, "type"], "type must be a string, one of Linear",
                     id="null"),
    ],
)
def test_a_layer_without_type_names_it_and_lists_the_types(http, layers, loc, says):
    e = _one(http.post("/v1/module", json={"device": "cpu", "layers": layers}))
    assert [p for p in e["loc"] if p not in ("list", "object")] == [p for p in loc if p not in ("list", "object")], e
    assert says in e["msg"] and "Unable to extract" not in e["msg"], e


def test_a_null_gain_says_what_gain_may_be(http):
    e = _one(http.post("/v1/tensor", json={"shape": [3, 3], "device": "cpu", "init": {"scheme": "xavier_uniform", "gain": None}}))
    assert e["loc"] == ["body", "init", "xavier_uniform", "gain"], e
    assert e["msg"] == "gain must be a number or an object {nonlinearity, param}; got null", e
