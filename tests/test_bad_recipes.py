"""Bad recipes: every rule is a 422 whose detail names the field and says what is allowed."""

from __future__ import annotations

import json

import pytest

from service.codec.header import decode_header
from tests.conftest import live_server

BASE = {"shape": [4, 4], "device": "cpu", "seed": 0}


def _detail(response):
    assert response.status_code == 422, (response.status_code, response.text)
    return response.json()["detail"]


def _post(http, init, **fields):
    return http.post("/v1/tensor", json={**BASE, **fields, "init": init})


def _names(detail, *parts):
    """Some error's loc ends with ``parts`` and its message mentions the last part."""
    return any(tuple(e["loc"][-len(parts):]) == parts for e in detail)


BAD_INITS = [
    pytest.param({"scheme": "uniform", "a": 2.0, "b": 1.0}, ("b",), "a", id="uniform-a-greater-than-b"),
    pytest.param({"scheme": "normal", "std": -1.0}, ("std",), "greater than or equal to 0", id="normal-negative-std"),
    pytest.param({"scheme": "trunc_normal", "std": 0.0}, ("std",), "greater than 0", id="trunc-normal-zero-std"),
    pytest.param({"scheme": "trunc_normal", "a": 1.0, "b": 1.0}, ("b",), "b must be > a", id="trunc-normal-empty-window"),
    pytest.param({"scheme": "trunc_normal_tf", "a": 3.0, "b": -3.0}, ("b",), "b must be > a", id="trunc-normal-tf-reversed"),
    pytest.param({"scheme": "trunc_normal_tf", "std": -0.1}, ("std",), "greater than 0", id="trunc-normal-tf-negative-std"),
    pytest.param({"scheme": "sparse", "sparsity": 1.5}, ("sparsity",), "less than or equal to 1", id="sparse-sparsity-over-1"),
    pytest.param({"scheme": "sparse", "sparsity": -0.1}, ("sparsity",), "greater than or equal to 0", id="sparse-sparsity-negative"),
    pytest.param({"scheme": "sparse"}, ("sparsity",), "required", id="sparse-sparsity-missing"),
    pytest.param({"scheme": "sparse", "sparsity": 0.1, "std": -1}, ("std",), "greater than or equal to 0", id="sparse-negative-std"),
    pytest.param({"scheme": "constant"}, ("val",), "required", id="constant-val-missing"),
    pytest.param({"scheme": "xavier_uniform", "gain": -1.0}, ("gain",), ">= 0", id="xavier-negative-gain"),
    pytest.param({"scheme": "xavier_normal", "gain": {"nonlinearity": "swish"}}, ("gain",), "gain.nonlinearity", id="gain-unknown-nonlinearity"),
    pytest.param({"scheme": "kaiming_uniform", "mode": "fan_avg"}, ("mode",), "'fan_in' or 'fan_out'", id="kaiming-mode-of-variance-scaling"),
    pytest.param({"scheme": "kaiming_normal", "nonlinearity": "gelu"}, ("nonlinearity",), "leaky_relu", id="kaiming-unknown-nonlinearity"),
    pytest.param({"scheme": "kaiming_normal", "a": True}, ("a",), "valid number", id="kaiming-slope-boolean"),
    pytest.param({"scheme": "variance_scaling", "scale": 0.0}, ("scale",), "greater than 0", id="variance-scaling-zero-scale"),
    pytest.param({"scheme": "variance_scaling", "mode": "fan_sum"}, ("mode",), "fan_avg", id="variance-scaling-bad-mode"),
    pytest.param({"scheme": "variance_scaling", "distribution": "cauchy"}, ("distribution",), "truncated_normal", id="variance-scaling-bad-distribution"),
    pytest.param({"scheme": "dirac", "groups": 0}, ("groups",), "greater than or equal to 1", id="dirac-zero-groups"),
    pytest.param({"scheme": "normal", "sdt": 1.0}, ("sdt",), "did you mean 'std'?); allowed: mean, std", id="misspelt-parameter"),
    pytest.param({"scheme": "normal", "std": "1.0"}, ("std",), "valid number", id="number-as-string"),
    pytest.param({"scheme": "normal", "std": None}, ("std",), "valid number", id="number-as-null"),
    pytest.param({"scheme": "he_normal"}, ("init",), "kaiming_normal", id="unknown-scheme-lists-known"),
    pytest.param({"std": 1.0}, ("init", "scheme"), "scheme is required: one of", id="scheme-missing"),
    pytest.param({"scheme": "ones", "val": 1}, ("val",), "unknown field 'val' for scheme 'ones'", id="parameter-of-another-scheme"),
]


@pytest.mark.parametrize("init,field,says", BAD_INITS)
def test_bad_init_parameter_is_422_naming_the_field(http, init, field, says):
    detail = _detail(_post(http, init))
    assert _names(detail, *field), detail
    assert any(says.lower() in e["msg"].lower() for e in detail), detail


@pytest.mark.parametrize(
    "scheme,shape",
    [
        pytest.param("eye", [4], id="eye-1d"),
        pytest.param("eye", [2, 2, 2], id="eye-3d"),
        pytest.param("sparse", [4, 4, 4], id="sparse-3d"),
        pytest.param("dirac", [4, 4], id="dirac-2d"),
        pytest.param("dirac", [1, 1, 1, 1, 1, 1], id="dirac-6d"),
        pytest.param("xavier_uniform", [5], id="xavier-1d"),
        pytest.param("kaiming_normal", [], id="kaiming-scalar"),
        pytest.param("orthogonal", [3], id="orthogonal-1d"),
        pytest.param("variance_scaling", [3], id="variance-scaling-1d"),
        pytest.param("lecun_normal", [3], id="lecun-1d"),
    ],
)
def test_shape_rule_violation_is_422_naming_shape(http, scheme, shape):
    init = {"scheme": scheme, **({"sparsity": 0.1} if scheme == "sparse" else {})}
    detail = _detail(_post(http, init, shape=shape))
    assert detail[0]["loc"] == ["body", "shape"]
    assert scheme in detail[0]["msg"] and str(len(shape)) in detail[0]["msg"]


def test_dirac_groups_not_dividing_out_channels_is_422_naming_groups(http):
    detail = _detail(_post(http, {"scheme": "dirac", "groups": 3}, shape=[10, 2, 3]))
    assert detail[0]["loc"] == ["body", "init", "groups"]
    assert detail[0]["msg"] == "dirac needs shape[0] divisible by groups; got shape[0]=10, groups=3"


@pytest.mark.parametrize("shape", [[0, 0], [3, 4, 0]], ids=["0x0", "3x4x0"])
def test_xavier_with_zero_fan_sum_is_422_not_a_division_by_zero(http, shape):
    detail = _detail(_post(http, {"scheme": "xavier_normal"}, shape=shape))
    assert detail[0]["loc"] == ["body", "shape"] and "fan_in + fan_out" in detail[0]["msg"]


@pytest.mark.parametrize(
    "seed,says",
    [(-1, "greater than or equal to 0"), (2**64, "less than or equal to"), (1.5, "valid integer"), (True, "valid integer"), ("7", "valid integer")],
    ids=["negative", "2^64", "fractional", "boolean", "string"],
)
def test_seed_out_of_range_or_wrong_type_is_422(http, seed, says):
    detail = _detail(_post(http, {"scheme": "normal"}, seed=seed))
    assert detail[0]["loc"] == ["body", "seed"] and says in detail[0]["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["mean", "std"])
def test_non_finite_numbers_are_422(http, literal, field):
    body = f'{{"shape": [3], "device": "cpu", "init": {{"scheme": "normal", "{field}": {literal}}}}}'
    detail = _detail(http.post("/v1/tensor", content=body, headers={"content-type": "application/json"}))
    assert detail[0]["loc"][-1] == field and "finite" in detail[0]["msg"]


@pytest.mark.parametrize(
    "fields,loc,says",
    [
        pytest.param({"dtype": "int8"}, ["body", "dtype"], "float32", id="dtype"),
        pytest.param({"device": "tpu"}, ["body", "device"], "'cuda:N'", id="device-name"),
        pytest.param({"device": "cuda:7"}, ["body", "device"], "available: auto, cpu", id="device-absent"),
        pytest.param({"shape": [-1, 3]}, ["body", "shape", 0], "greater than or equal to 0", id="negative-dim"),
        pytest.param({"shape": [2.5]}, ["body", "shape", 0], "valid integer", id="fractional-dim"),
        pytest.param({"shape": "4,4"}, ["body", "shape"], "valid list", id="shape-as-string"),
        pytest.param({"histogram_bins": 2000}, ["body", "histogram_bins"], "1024", id="too-many-bins"),
        pytest.param({"name": ""}, ["body", "name"], "at least 1", id="empty-name"),
        pytest.param({"name": "a\r\nSet-Cookie: x"}, ["body", "name"], "printable", id="name-with-crlf"),
        pytest.param({"name": "__metadata__"}, ["body", "name"], "__metadata__", id="reserved-name"),
        pytest.param({"slice": [[0, 5], None]}, ["body", "slice", 0], "<= 4", id="slice-past-end"),
        pytest.param({"slice": [[3, 2], None]}, ["body", "slice", 0], "start <= stop", id="slice-reversed"),
        pytest.param({"slice": [None]}, ["body", "slice"], "one entry per dimension", id="slice-wrong-rank"),
        pytest.param({"rng": "numpy"}, ["body", "rng"], "portable-v1", id="rng-unknown"),
        pytest.param({"colour": "red"}, ["body", "colour"], "allowed: shape, init, dtype", id="unknown-top-level-key"),
    ],
)
def test_bad_request_field_is_422_naming_it(http, fields, loc, says):
    detail = _detail(_post(http, {"scheme": "normal"}, **fields))
    assert detail[0]["loc"] == loc, detail
    assert says in detail[0]["msg"], detail


@pytest.mark.parametrize(
    "dtype,init,field",
    [
        pytest.param("float16", {"scheme": "uniform", "a": -70000.0, "b": 0.0}, "a", id="fp16-uniform-bound"),
        pytest.param("float16", {"scheme": "normal", "std": 10000.0}, "std", id="fp16-normal-overflow"),
        pytest.param("float32", {"scheme": "uniform", "a": -3e38, "b": 3e38}, "a", id="fp32-uniform-width"),
        pytest.param("float16", {"scheme": "constant", "val": 1e6}, "val", id="fp16-constant"),
        pytest.param("bfloat16", {"scheme": "xavier_uniform", "gain": 3e38}, "gain", id="bf16-xavier-gain"),
        pytest.param("float16", {"scheme": "trunc_normal", "mean": 0.0, "std": 1.0, "a": 5.0, "b": 1e6}, "b", id="fp16-trunc-window"),
    ],
)
def test_values_that_cannot_fit_the_dtype_are_422_not_inf_or_500(http, dtype, init, field):
    detail = _detail(_post(http, init, dtype=dtype))
    assert detail[0]["loc"][-1] == field and dtype in detail[0]["msg"]


def test_get_query_errors_name_the_query_parameter(http):
    r = http.get("/v1/tensor", params={"shape": "4,4", "scheme": "normal", "std": "nan"})
    detail = _detail(r)
    assert detail[0]["loc"] == ["query", "std"] and "finite" in detail[0]["msg"]
    detail = _detail(http.get("/v1/tensor", params={"shape": "4,4", "scheme": "normal", "sdt": "1"}))
    assert detail[0]["loc"] == ["query", "sdt"] and "allowed" in detail[0]["msg"]
    detail = _detail(http.get("/v1/tensor", params={"shape": "4,x", "scheme": "normal"}))
    assert detail[0]["loc"] == ["query", "shape"]
    detail = _detail(http.get("/v1/tensor", params={"shape": "4", "scheme": "normal", "std": "true"}))
    assert detail[0]["loc"] == ["query", "std"]
    detail = _detail(http.get("/v1/tensor", params={"shape": "4", "scheme": "dirac"}))
    assert detail[0]["loc"] == ["query", "shape"]


def test_too_many_elements_is_413_naming_the_limit_and_variable():
    import httpx

    with live_server(max_elements=1000) as server:
        r = httpx.post(f"{server.url}/v1/tensor", json={"shape": [100000, 100000], "init": {"scheme": "zeros"}})
        assert r.status_code == 413
        assert r.json()["detail"] == "shape [100000, 100000] has 10000000000 elements; INITSVC_MAX_ELEMENTS is 1000"
        assert r.json()["env_var"] == "INITSVC_MAX_ELEMENTS"
        huge = httpx.post(f"{server.url}/v1/tensor", json={"shape": [2**40, 2**40, 2**40], "init": {"scheme": "zeros"}})
        assert huge.status_code == 413  # the element count overflows int64; Python counts it exactly
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_request_bytes_over_the_limit_is_413():
    import httpx

    with live_server(max_request_bytes=1024) as server:
        r = httpx.post(f"{server.url}/v1/tensor", json={"shape": [16, 16], "init": {"scheme": "zeros"}, "dtype": "float64"})
        assert r.status_code == 413 and r.json()["env_var"] == "INITSVC_MAX_REQUEST_BYTES"
        assert "2048" in r.json()["detail"]


def test_oversize_body_is_413_before_it_is_read():
    import httpx

    with live_server(max_body_bytes=256) as server:
        body = '{"shape": [4], "init": {"scheme": "zeros"}, "name": "%s"}' % ("x" * 1000)
        r = httpx.post(f"{server.url}/v1/tensor", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["env_var"] == "INITSVC_MAX_BODY_BYTES"


def test_too_many_dimensions_is_422():
    import httpx

    with live_server(max_dims=4) as server:
        r = httpx.post(f"{server.url}/v1/tensor", json={"shape": [1] * 5, "init": {"scheme": "zeros"}})
        assert r.status_code == 422 and "INITSVC_MAX_DIMS" in r.json()["detail"][0]["msg"]


def test_histogram_bins_above_the_setting_is_422_naming_it():
    import httpx

    with live_server(max_histogram_bins=8) as server:
        body = {"shape": [64], "init": {"scheme": "normal"}, "histogram_bins": 9}
        r = httpx.post(f"{server.url}/v1/tensor", json=body)
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "histogram_bins"] and "INITSVC_MAX_HISTOGRAM_BINS" in error["msg"]
        assert "at most 8" in error["msg"]
        ok = httpx.post(f"{server.url}/v1/tensor", json={**body, "histogram_bins": 8})
        assert ok.status_code == 200, ok.text
        meta, _, _ = decode_header(ok.content)
        assert len(json.loads(meta["stats"])["weight"]["histogram"]["counts"]) == 8


def test_the_histogram_bins_setting_cannot_raise_the_api_cap():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="max_histogram_bins"):
        Settings(max_histogram_bins=2048)
    assert Settings(max_histogram_bins=1024).max_histogram_bins == 1024


def test_server_stays_healthy_after_bad_input(http):
    _post(http, {"scheme": "normal", "std": -1})
    http.post("/v1/tensor", content=b"{not json", headers={"content-type": "application/json"})
    assert http.get("/healthz").status_code == 200
    ok = _post(http, {"scheme": "normal"})
    assert ok.status_code == 200


def test_histograms_that_would_not_fit_a_loadable_header_are_refused_before_any_work(http):
    """2049 tensors of 1024 bins: over 2**21 bins in all, ~75 MB of header text or more."""
    tensors = [{"name": f"t{i}", "shape": [2], "init": {"scheme": "normal"}} for i in range(2049)]
    body = {"tensors": tensors, "histogram_bins": 1024, "seed": 0, "device": "cpu"}
    r = http.post("/v1/tensors", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "histogram_bins"]
    assert "2098176 bins in all" in error["msg"] and "at most 2097152" in error["msg"]
    # Without stats no histogram travels, and one tensor fewer fits.
    assert http.post("/v1/tensors", json={**body, "stats": False}).status_code == 200
    assert http.post("/v1/tensors", json={**body, "tensors": tensors[:2048], "histogram_bins": 1}).status_code == 200


def test_a_modules_histograms_count_over_all_its_tensors(http):
    layers = [{"type": "Linear", "in_features": 1, "out_features": 1, "bias": False}] * 2049
    body = {"layers": layers, "histogram_bins": 1024, "seed": 0, "device": "cpu"}
    r = http.post("/v1/module", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "histogram_bins"] and "2098176 bins in all" in error["msg"]
    assert http.post("/v1/module", json={**body, "tensors": ["0.weight"]}).status_code == 200


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:", "CPU", "cuda:1234"])
def test_a_device_that_is_no_device_name_is_422_in_words(http, device):
    detail = _detail(_post(http, {"scheme": "zeros"}, device=device))
    (error,) = detail
    assert error["loc"] == ["body", "device"]
    assert error["msg"] == f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got {device!r}"
    get = http.get("/v1/tensor", params={"shape": "2", "scheme": "zeros", "device": device})
    assert get.status_code == 422 and get.json()["detail"][0]["loc"] == ["query", "device"]
