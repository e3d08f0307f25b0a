"""rng "portable-v1" through the service: the bytes equal the torch-free numpy client and the
Node example, for every supported scheme, dtype, shape, slice and seed; /v1/tensors assigns tids."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors.torch import load

from service.client.portable import generate
from tests.test_portable_rng import NODE, RECIPES, SEEDS, SHAPES, _node
from tests.torch_reference import as_bytes

DTYPES = ["float32", "float16", "bfloat16", "float64"]


def _cases() -> list[dict]:
    cases = []
    for rid, (recipe, rule) in RECIPES.items():
        for shape, sl in SHAPES[rule]:
            for dtype in DTYPES:
                for cut in (None, sl):
                    seed = SEEDS[len(cases) % len(SEEDS)]
                    cases.append({
                        "id": f"{rid}-{'x'.join(map(str, shape))}-{dtype}-{'slice' if cut else 'full'}-s{seed}",
                        "recipe": recipe, "shape": shape, "slice": cut, "dtype": dtype, "seed": seed, "tid": 0,
                    })
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def node_digests() -> dict[str, str]:
    if NODE is None:
        pytest.skip("node is not installed")
    lines = [json.dumps({**{k: c[k] for k in ("recipe", "shape", "dtype", "tid", "slice")}, "seed": str(c["seed"])}) for c in CASES]
    out = _node("batch", stdin="\n".join(lines) + "\n").splitlines()
    return {c["id"]: h for c, h in zip(CASES, out, strict=True)}


def _service(http, case, path="/v1/tensor"):
    body = {
        "shape": case["shape"], "init": case["recipe"], "dtype": case["dtype"], "seed": case["seed"],
        "device": "cpu", "rng": "portable-v1",
    }
    if case["slice"]:
        body["slice"] = [list(c) if c else None for c in case["slice"]]
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_service_equals_numpy_client_and_node(http, case, node_digests):
    r = _service(http, case)
    got = as_bytes(load(r.content)["weight"])
    expected = np.ascontiguousarray(
        generate(case["shape"], case["recipe"], case["seed"], 0, case["dtype"], case["slice"])
    ).tobytes()
    assert got == expected
    assert node_digests[case["id"]] == hashlib.sha256(got).hexdigest()


def test_provenance_and_normalized_request_say_portable(http):
    r = http.post(
        "/v1/tensor",
        json={"shape": [4, 4], "init": {"scheme": "normal"}, "seed": 1, "rng": "portable-v1", "device": "cpu"},
        headers={"accept": "application/json"},
    )
    doc = r.json()
    assert doc["provenance"]["rng"] == "portable-v1" and doc["request"]["rng"] == "portable-v1"


def test_tensors_use_their_position_as_tid_and_an_own_seed_uses_tid_0(http):
    entries = [
        {"name": "a", "shape": [5, 7], "init": {"scheme": "normal"}},
        {"name": "b", "shape": [5, 7], "init": {"scheme": "normal"}},
        {"name": "c", "shape": [9], "init": {"scheme": "uniform"}, "seed": 77},
        {"name": "d", "shape": [3, 300], "init": {"scheme": "trunc_normal", "std": 0.02}, "dtype": "bfloat16"},
    ]
    r = http.post("/v1/tensors", json={"seed": 2**64 - 1, "device": "cpu", "rng": "portable-v1", "tensors": entries})
    got = load(r.content)
    seed = 2**64 - 1
    expected = {
        "a": generate([5, 7], entries[0]["init"], seed, 0),
        "b": generate([5, 7], entries[1]["init"], seed, 1),
        "c": generate([9], entries[2]["init"], 77, 0),
        "d": generate([3, 300], entries[3]["init"], seed, 3, "bfloat16"),
    }
    for name, array in expected.items():
        assert as_bytes(got[name]) == np.ascontiguousarray(array).tobytes(), name


def test_portable_slices_via_get(http):
    q = {"shape": "64,32", "scheme": "kaiming_normal", "seed": "9", "rng": "portable-v1", "slice": "10:20,5:6", "device": "cpu"}
    got = as_bytes(load(http.get("/v1/tensor", params=q).content)["weight"])
    assert got == np.ascontiguousarray(generate([64, 32], "kaiming_normal", 9, 0, "float32", "10:20,5:6")).tobytes()


def test_orthogonal_is_422_in_portable_mode(http):
    r = http.post("/v1/tensor", json={"shape": [4, 4], "init": {"scheme": "orthogonal"}, "rng": "portable-v1"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "rng"] and "does not cover orthogonal" in r.json()["detail"][0]["msg"]


def test_a_truncation_window_under_1e_4_is_422(http):
    body = {"shape": [4], "init": {"scheme": "trunc_normal", "mean": 0.0, "std": 1.0, "a": 5.0, "b": 6.0}, "rng": "portable-v1"}
    r = http.post("/v1/tensor", json=body)
    assert r.status_code == 422 and "probability" in r.json()["detail"][0]["msg"]
    assert http.post("/v1/tensor", json={**body, "rng": "torch"}).status_code == 200  # torch's own sampler copes


def test_schemes_catalog_says_which_rng_serves_each_scheme(http):
    schemes = http.get("/v1/schemes").json()["schemes"]
    assert schemes["orthogonal"]["rng"] == ["torch"] and schemes["normal"]["rng"] == ["torch", "portable-v1"]


def test_generate_takes_the_shape_first_and_the_old_order_warns():
    import warnings

    new = generate([6, 5], "normal", 3, std=0.02, slice="1:4,:")
    assert new.tobytes() == generate([6, 5], {"scheme": "normal", "std": 0.02}, 3, slice=[[1, 4], None]).tobytes()
    with pytest.warns(DeprecationWarning, match="shape first"):
        old = generate({"scheme": "normal", "std": 0.02}, [6, 5], 3, slice=[(1, 4), None])
    assert old.tobytes() == new.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate((6, 5), "zeros", 0)
