"""Fetching several named tensors at once: list order from one stream, per-tensor seeds apart."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load

from service.codec.header import decode_header
from tests.torch_reference import as_bytes, torch_script

VIT = [
    {"name": "cls_token", "shape": [1, 1, 24], "init": {"scheme": "trunc_normal", "std": 0.02}},
    {"name": "pos_embed", "shape": [1, 17, 24], "init": {"scheme": "trunc_normal", "std": 0.02}},
    {"name": "mask", "shape": [12, 24], "init": {"scheme": "sparse", "sparsity": 0.5}},
    {"name": "proj.weight", "shape": [24, 3, 4, 4], "init": {"scheme": "kaiming_normal", "mode": "fan_out"}},
    {"name": "head.extra", "shape": [5], "init": {"scheme": "normal"}, "seed": 7},
    {"name": "head.weight", "shape": [10, 24], "init": {"scheme": "zeros"}, "dtype": "bfloat16"},
    {"name": "head.bias", "shape": [10], "init": {"scheme": "uniform", "a": -0.1, "b": 0.1}, "dtype": "float16"},
    {"name": "ortho", "shape": [6, 8], "init": {"scheme": "orthogonal"}},
]


@pytest.mark.parametrize("seed", [0, 2**32 + 1, 2**64 - 1])
def test_tensors_equal_the_torch_script_that_inits_them_in_order(http, seed):
    r = http.post("/v1/tensors", json={"seed": seed, "device": "cpu", "tensors": VIT})
    assert r.status_code == 200, r.text
    got = load(r.content)
    expected = torch_script(VIT, seed)
    assert set(got) == set(expected)
    for name, t in expected.items():
        assert got[name].dtype == t.dtype and as_bytes(got[name]) == as_bytes(t), name


def test_an_own_seed_does_not_advance_the_shared_stream(http):
    without = [e for e in VIT if e["name"] != "head.extra"]
    with_own = http.post("/v1/tensors", json={"seed": 3, "device": "cpu", "tensors": VIT})
    plain = http.post("/v1/tensors", json={"seed": 3, "device": "cpu", "tensors": without})
    a, b = load(with_own.content), load(plain.content)
    for e in without:
        assert as_bytes(a[e["name"]]) == as_bytes(b[e["name"]])


def test_a_sparse_entry_in_the_middle_draws_its_mask_from_the_shared_stream(http):
    entries = [VIT[0], VIT[2], {"name": "after", "shape": [7], "init": {"scheme": "normal"}}]
    got = load(http.post("/v1/tensors", json={"seed": 11, "device": "cpu", "tensors": entries}).content)
    expected = torch_script(entries, 11)
    assert as_bytes(got["after"]) == as_bytes(expected["after"])  # randperm draws advanced the stream
    assert as_bytes(got["mask"]) == as_bytes(expected["mask"])


def test_request_dtype_applies_where_an_entry_sets_none(http):
    r = http.post("/v1/tensors", json={"seed": 0, "device": "cpu", "dtype": "float64", "tensors": VIT[:2]})
    got = load(r.content)
    expected = torch_script(VIT[:2], 0, "float64")
    assert all(got[n].dtype == torch.float64 and as_bytes(got[n]) == as_bytes(expected[n]) for n in expected)


def test_stats_are_per_tensor_and_json_mode_lists_every_tensor(http):
    body = {"seed": 0, "device": "cpu", "tensors": VIT, "histogram_bins": 4}
    meta, _, _ = decode_header(http.post("/v1/tensors", json=body).content)
    stats = json.loads(meta["stats"])
    assert set(stats) == {e["name"] for e in VIT}
    assert stats["head.weight"]["max"] == 0.0 and len(stats["cls_token"]["histogram"]["counts"]) == 4
    doc = http.post("/v1/tensors", json=body, headers={"accept": "application/json"}).json()
    assert doc["tensors"]["proj.weight"]["shape"] == [24, 3, 4, 4]
    assert doc["request"]["tensors"][5]["dtype"] == "bfloat16" and doc["request"]["tensors"][0]["dtype"] == "float32"
    assert doc["provenance"]["qr_threads"] == 1


def test_slice_of_an_entry_is_the_full_entrys_slice(http):
    entries = [VIT[0], {**VIT[1], "slice": [None, [4, 9], [0, 12]]}, VIT[3]]
    got = load(http.post("/v1/tensors", json={"seed": 5, "device": "cpu", "tensors": entries}).content)
    expected = torch_script([VIT[0], VIT[1], VIT[3]], 5)
    assert as_bytes(got["pos_embed"]) == as_bytes(expected["pos_embed"][:, 4:9, 0:12])
    assert as_bytes(got["proj.weight"]) == as_bytes(expected["proj.weight"])


def test_duplicate_names_are_422_naming_the_second(http):
    r = http.post("/v1/tensors", json={"tensors": [VIT[0], VIT[0]]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "tensors", 1, "name"] and "unique" in r.json()["detail"][0]["msg"]


def test_a_bad_entry_is_422_naming_its_index_and_field(http):
    entries = [VIT[0], {"name": "d", "shape": [10, 2, 3], "init": {"scheme": "dirac", "groups": 3}}]
    r = http.post("/v1/tensors", json={"tensors": entries})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tensors", 1, "init", "groups"]


def test_empty_list_is_422(http):
    assert http.post("/v1/tensors", json={"tensors": []}).status_code == 422


def test_too_many_tensors_is_413():
    import httpx

    from tests.conftest import live_server

    with live_server(max_tensors=2) as server:
        r = httpx.post(f"{server.url}/v1/tensors", json={"tensors": VIT[:3]})
        assert r.status_code == 413 and r.json()["env_var"] == "INITSVC_MAX_TENSORS"
        assert r.json()["detail"] == "the request has 3 tensors; INITSVC_MAX_TENSORS is 2"


def test_etag_304_and_412_work_for_tensors(http):
    body = {"seed": 1, "device": "cpu", "tensors": VIT[:2]}
    etag = http.post("/v1/tensors", json=body).headers["etag"]
    assert http.post("/v1/tensors", json=body, headers={"if-none-match": etag}).status_code == 412
