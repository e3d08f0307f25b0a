"""Slices: what is generated alone, and what a slice costs against the limits.

A slice of a scheme that draws nothing is made alone on CPU (docs/api.md §4.2); a slice that is
cut from the whole tensor counts the whole tensor against ``INITSVC_MAX_REQUEST_BYTES`` and
admission, since the job allocates it.
"""

from __future__ import annotations

import json

import httpx
import pytest
from safetensors.torch import load

from service.codec.header import decode_header
from tests.conftest import live_server
from tests.torch_reference import as_bytes, reference

DETERMINISTIC = [
    pytest.param([30, 40], "zeros", {}, [[0, 2], None], id="zeros-rows"),
    pytest.param([30, 40], "ones", {}, [[3, 9], [5, 6]], id="ones-block"),
    pytest.param([7, 5, 3], "constant", {"val": -2.75}, [None, [1, 4], [2, 3]], id="constant"),
    pytest.param([30, 40], "constant", {"val": 1e-3}, [[10, 30], [0, 40]], id="constant-inexact"),
    pytest.param([30, 40], "eye", {}, [[5, 20], [12, 37]], id="eye-off-diagonal-block"),
    pytest.param([30, 40], "eye", {}, [[25, 30], [0, 20]], id="eye-no-diagonal"),
    pytest.param([40, 30], "eye", {}, [None, [29, 30]], id="eye-last-column"),
    pytest.param([6, 4, 5], "dirac", {}, [[1, 5], None, [2, 3]], id="dirac-1d-centre"),
    pytest.param([12, 3, 5, 4], "dirac", {"groups": 3}, [[2, 11], [1, 3], None, [1, 3]], id="dirac-2d-groups"),
    pytest.param([8, 16, 3, 3, 3], "dirac", {"groups": 2}, [[1, 7], [2, 9], [1, 2], None, [0, 2]], id="dirac-3d"),
    pytest.param([6, 4, 5], "dirac", {}, [[0, 6], [0, 4], [0, 2]], id="dirac-off-centre"),
    pytest.param([30, 40], "zeros", {}, [[4, 4], None], id="empty"),
]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("shape,scheme,params,bounds", DETERMINISTIC)
def test_a_slice_of_a_scheme_that_draws_nothing_is_made_alone(http, shape, scheme, params, bounds, dtype):
    body = {"shape": shape, "init": {"scheme": scheme, **params}, "seed": 5, "device": "cpu", "dtype": dtype, "slice": bounds}
    r = http.post("/v1/tensor", json=body)
    assert r.status_code == 200, r.text
    full = reference(shape, scheme, params, dtype, 5)
    index = tuple(slice(*b) if b else slice(None) for b in bounds)
    got = load(r.content)["weight"]
    assert got.shape == full[index].shape and as_bytes(got) == as_bytes(full[index].contiguous())
    meta, _, _ = decode_header(r.content)
    assert json.loads(meta["provenance"])["slice"] == "direct"
    want = full[index].double()
    stats = json.loads(meta["stats"])["weight"]
    if want.numel():
        assert stats["max"] == want.max().item() and stats["min"] == want.min().item()
        assert stats["zero_fraction"] == (want == 0).double().mean().item()


@pytest.mark.parametrize("shape,scheme,params,bounds", DETERMINISTIC[4:8])
def test_in_portable_mode_too(http, shape, scheme, params, bounds):
    body = {"shape": shape, "init": {"scheme": scheme, **params}, "seed": 5, "device": "cpu", "slice": bounds, "rng": "portable-v1"}
    r = http.post("/v1/tensor", json=body)
    assert r.status_code == 200, r.text
    full = reference(shape, scheme, params, "float32", 5)
    index = tuple(slice(*b) if b else slice(None) for b in bounds)
    assert as_bytes(load(r.content)["weight"]) == as_bytes(full[index].contiguous())
    assert json.loads(decode_header(r.content)[0]["provenance"])["slice"] == "direct"


def test_a_deterministic_slice_keeps_the_shared_stream_where_torch_leaves_it(http):
    """A sliced ``eye`` between two random tensors draws nothing, as the whole one would not."""
    entries = [
        {"name": "a", "shape": [5, 7], "init": {"scheme": "uniform"}},
        {"name": "e", "shape": [9, 9], "init": {"scheme": "eye"}, "slice": [[2, 5], None]},
        {"name": "b", "shape": [33], "init": {"scheme": "normal"}},
    ]
    r = http.post("/v1/tensors", json={"seed": 11, "device": "cpu", "tensors": entries})
    assert r.status_code == 200, r.text
    got = load(r.content)
    import torch

    torch.manual_seed(11)
    a = torch.nn.init.uniform_(torch.empty(5, 7))
    torch.nn.init.eye_(torch.empty(9, 9))
    b = torch.nn.init.normal_(torch.empty(33))
    assert as_bytes(got["a"]) == as_bytes(a) and as_bytes(got["b"]) == as_bytes(b)


# 4000 x 3000 float32: 48 MB whole; one row is 12 KB.
SHAPE = [4000, 3000]
ROW = [[0, 1], None]
WHOLE = 4000 * 3000 * 4


@pytest.fixture(scope="module")
def limited():
    """A server that allows requests of at most 1 MB."""
    with live_server(max_request_bytes=1_000_000) as server:
        yield server


@pytest.mark.parametrize("scheme", ["trunc_normal", "orthogonal", "sparse"])
def test_a_slice_cut_from_the_whole_tensor_counts_the_whole_tensor(limited, scheme):
    params = {"sparsity": 0.5} if scheme == "sparse" else {}
    body = {"shape": SHAPE, "init": {"scheme": scheme, **params}, "seed": 0, "device": "cpu", "slice": ROW}
    r = httpx.post(f"{limited.url}/v1/tensor", json=body, timeout=60)
    assert r.status_code == 413, r.text
    error = r.json()
    assert error["env_var"] == "INITSVC_MAX_REQUEST_BYTES" and error["limit"] == 1_000_000
    assert error["value"] == WHOLE + 3000 * 4
    assert "cut from the whole tensor" in error["detail"]


@pytest.mark.parametrize("scheme", ["normal", "kaiming_uniform", "zeros", "eye"])
def test_a_slice_made_alone_counts_only_the_slice(limited, scheme):
    body = {"shape": SHAPE, "init": {"scheme": scheme}, "seed": 0, "device": "cpu", "slice": ROW}
    r = httpx.post(f"{limited.url}/v1/tensor", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert json.loads(decode_header(r.content)[0]["provenance"])["slice"] == "direct"


def test_after_unknown_draws_a_slice_is_cut_and_counted_whole(limited):
    """A normal_ of under 16 elements leaves the shared stream's position unknown: a slice after
    it is made whole and cut, so it counts whole; with its own seed it is made alone again."""
    first = {"name": "small", "shape": [7], "init": {"scheme": "normal"}}
    sliced = {"name": "w", "shape": SHAPE, "init": {"scheme": "normal"}, "slice": ROW}
    r = httpx.post(f"{limited.url}/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": [first, sliced]}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["value"] == 7 * 4 + WHOLE + 3000 * 4
    own = {**sliced, "seed": 3}
    r = httpx.post(f"{limited.url}/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": [first, own]}, timeout=60)
    assert r.status_code == 200, r.text
    generation = json.loads(decode_header(r.content)[0]["provenance"])["generation"]
    assert generation["w"]["slice"] == "direct"


def test_the_counted_slice_is_the_one_the_engine_cuts(http):
    """Without a limit in the way, the same request after unknown draws really is cut."""
    first = {"name": "small", "shape": [7], "init": {"scheme": "normal"}}
    sliced = {"name": "w", "shape": [400, 300], "init": {"scheme": "normal"}, "slice": ROW}
    r = http.post("/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": [first, sliced]})
    assert r.status_code == 200, r.text
    generation = json.loads(decode_header(r.content)[0]["provenance"])["generation"]
    assert generation["w"]["slice"] == "cut"
    import torch

    torch.manual_seed(1)
    torch.nn.init.normal_(torch.empty(7))
    want = torch.nn.init.normal_(torch.empty(400, 300))[0:1]
    assert as_bytes(load(r.content)["w"]) == as_bytes(want)


def test_cut_slices_count_the_largest_whole_tensor_once(limited):
    """Each whole tensor is freed once its cut is copied, so two cut slices hold the answers and
    the larger whole tensor at most, not both."""
    small = {"name": "s", "shape": [400, 300], "init": {"scheme": "trunc_normal"}, "slice": ROW}
    big = {"name": "b", "shape": SHAPE, "init": {"scheme": "orthogonal"}, "slice": ROW}
    r = httpx.post(f"{limited.url}/v1/tensors", json={"seed": 1, "device": "cpu", "tensors": [small, big]}, timeout=60)
    assert r.status_code == 413, r.text
    assert r.json()["value"] == 300 * 4 + 3000 * 4 + WHOLE
