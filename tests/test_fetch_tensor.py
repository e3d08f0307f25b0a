"""Fetching one tensor: the bytes equal docs/api.md §3's torch script, over POST and GET, for every scheme."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load

from tests.recipes_catalog import parity_cases, query_params
from tests.torch_reference import as_bytes, reference


def _tensor(response, name="weight"):
    assert response.status_code == 200, response.text
    return load(response.content)[name]


@pytest.mark.parametrize("scheme,params,shape,dtype,seed", parity_cases())
def test_post_tensor_is_bit_identical_to_torch(http, scheme, params, shape, dtype, seed):
    body = {"shape": shape, "init": {"scheme": scheme, **params}, "dtype": dtype, "seed": seed, "device": "cpu"}
    got = _tensor(http.post("/v1/tensor", json=body))
    expected = reference(shape, scheme, params, dtype, seed)
    assert got.dtype == expected.dtype and list(got.shape) == shape
    assert as_bytes(got) == as_bytes(expected)


@pytest.mark.parametrize("scheme,params,shape,dtype,seed", parity_cases())
def test_get_tensor_is_bit_identical_to_torch(http, scheme, params, shape, dtype, seed):
    got = _tensor(http.get("/v1/tensor", params=query_params(scheme, params, shape, dtype, seed)))
    assert as_bytes(got) == as_bytes(reference(shape, scheme, params, dtype, seed))


def test_get_and_post_give_the_same_bytes_header_included(http):
    body = {"shape": [16, 8], "init": {"scheme": "kaiming_uniform", "a": 2.23606797749979}, "seed": 3, "device": "cpu"}
    post = http.post("/v1/tensor", json=body)
    get = http.get("/v1/tensor", params={"shape": "16,8", "scheme": "kaiming_uniform", "a": "2.23606797749979", "seed": "3", "device": "cpu"})
    assert post.content == get.content
    assert post.headers["etag"] == get.headers["etag"]


def test_same_request_gives_the_same_bytes_every_time(http):
    body = {"shape": [64, 32], "init": {"scheme": "orthogonal"}, "seed": 11, "device": "cpu", "histogram_bins": 16}
    first, second = http.post("/v1/tensor", json=body), http.post("/v1/tensor", json=body)
    assert first.content == second.content


def test_metadata_carries_format_stats_request_and_provenance(http):
    r = http.post("/v1/tensor", json={"shape": [4, 4], "init": {"scheme": "orthogonal"}, "seed": 5, "device": "cpu", "dtype": "bfloat16"})
    from service.codec.header import decode_header

    meta, tensors, _ = decode_header(r.content)
    assert meta["format"] == "pt"
    request = json.loads(meta["request"])
    assert request["seed"] == 5 and request["init"] == {"scheme": "orthogonal", "gain": 1.0}
    provenance = json.loads(meta["provenance"])
    assert provenance["rng"] == "torch" and provenance["device"] == "cpu"
    assert provenance["mkl_cbwr"] == "COMPATIBLE" and provenance["qr_threads"] == 1
    assert provenance["dtype_fallback"] == {"computed_in": "float32", "cast_to": "bfloat16"}
    assert provenance["cpu_capability"]
    assert set(json.loads(meta["stats"])) == {"weight"}
    assert tensors["weight"]["dtype"] == "BF16"


def test_omitted_seed_is_drawn_and_reported_so_the_answer_reproduces(http):
    r = http.post("/v1/tensor", json={"shape": [8, 8], "init": {"scheme": "normal"}, "device": "cpu"})
    seed = int(r.headers["x-init-seed"])
    assert as_bytes(_tensor(r)) == as_bytes(reference([8, 8], "normal", {}, "float32", seed))
    again = http.post("/v1/tensor", json={"shape": [8, 8], "init": {"scheme": "normal"}, "device": "cpu", "seed": seed})
    assert as_bytes(_tensor(again)) == as_bytes(_tensor(r))


def test_json_mode_gives_everything_but_the_data(http):
    r = http.post(
        "/v1/tensor",
        json={"shape": [6, 4], "init": {"scheme": "xavier_uniform"}, "seed": 1, "device": "cpu", "name": "enc.w"},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["tensors"]["enc.w"]["shape"] == [6, 4] and doc["tensors"]["enc.w"]["dtype"] == "float32"
    assert doc["tensors"]["enc.w"]["stats"]["fan_in"] == 4
    assert doc["request"]["seed"] == 1 and doc["provenance"]["device"] == "cpu"


def test_headers_name_the_seed_device_and_file(http):
    r = http.post("/v1/tensor", json={"shape": [2, 2], "init": {"scheme": "eye"}, "seed": 9, "device": "cpu", "name": "proj.weight"})
    assert r.headers["x-init-seed"] == "9" and r.headers["x-init-device"] == "cpu"
    assert r.headers["content-disposition"].startswith('attachment; filename="proj.weight.safetensors"')
    assert int(r.headers["content-length"]) == len(r.content)


def test_a_name_cannot_inject_a_header(http):
    name = 'x"; evil=1 \\ ü'
    r = http.post("/v1/tensor", json={"shape": [2], "init": {"scheme": "zeros"}, "seed": 0, "device": "cpu", "name": name})
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert disposition.count('"') == 2 and "evil=1" not in disposition.split(";")[1]
    assert set(load(r.content)) == {name}


def test_etag_and_if_none_match_give_304_on_get_and_412_on_post(http):
    params = {"shape": "4,4", "scheme": "normal", "seed": "0", "device": "cpu"}
    first = http.get("/v1/tensor", params=params)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = http.get("/v1/tensor", params=params, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    body = {"shape": [4, 4], "init": {"scheme": "normal"}, "seed": 0, "device": "cpu"}
    assert http.post("/v1/tensor", json=body).headers["etag"] == etag
    assert http.post("/v1/tensor", json=body, headers={"if-none-match": etag}).status_code == 412
    as_json = http.get("/v1/tensor", params=params, headers={"accept": "application/json"})
    assert as_json.headers["etag"] != etag
    # One URL, two representations: a shared cache must key on Accept.
    for answer in (first, again, as_json, http.head("/v1/tensor", params=params)):
        assert answer.headers["vary"].lower() == "accept"


def test_get_without_seed_is_not_cached(http):
    r = http.get("/v1/tensor", params={"shape": "3", "scheme": "normal"})
    assert r.headers["cache-control"] == "no-store"


def test_head_gives_headers_with_exact_length_and_no_body(http):
    params = {"shape": "10,3", "scheme": "uniform", "seed": "2", "device": "cpu"}
    head, get = http.head("/v1/tensor", params=params), http.get("/v1/tensor", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]


def test_slice_is_exactly_the_full_tensors_slice(http):
    body = {"shape": [12, 10], "init": {"scheme": "kaiming_normal"}, "seed": 4, "device": "cpu", "slice": [[3, 9], None]}
    got = _tensor(http.post("/v1/tensor", json=body))
    full = reference([12, 10], "kaiming_normal", {}, "float32", 4)
    assert as_bytes(got) == as_bytes(full[3:9, :])
    via_get = _tensor(http.get("/v1/tensor", params={"shape": "12,10", "scheme": "kaiming_normal", "seed": "4", "device": "cpu", "slice": "3:9,:"}))
    assert as_bytes(via_get) == as_bytes(got)


@pytest.mark.parametrize("accept,as_json", [
    ("application/json", True),
    ("application/json; charset=utf-8", True),
    ("text/html, application/json;q=0.5", True),
    ("application/json;q=0", False),  # RFC 9110: q=0 refuses it
    ("application/json; q=0.0, */*", False),
    ("application/jsonx", False),
    ("*/*", False),
])
def test_the_json_summary_is_what_accept_asks_for(http, accept, as_json):
    params = {"shape": "3", "scheme": "normal", "seed": "0", "device": "cpu"}
    r = http.get("/v1/tensor", params=params, headers={"accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json" if as_json else "application/octet-stream")
