"""Every scheme's torch call at the edges of its shape rule, over POST and GET: never a 5xx.

For each scheme: a zero-size dimension in each position, all-ones, and big-but-allowed shapes
(a million elements in one row, an empty tensor whose other dimensions multiply to 2^30). The
expected side is torch's own call on the same shape (``tests/torch_reference.py``):

* torch succeeds: the answer is 200 with the same bytes (docs/api.md §3);
* torch divides by zero (``xavier_*`` with fan_in + fan_out = 0): a 422 naming ``shape``;
* torch raises on a zero-element tensor (``dirac_`` indexes the centre of a zero-size kernel
  dimension): the answer is the empty tensor, as docs/api.md §2 says ("a zero-size dimension that
  meets the shape rule gives an empty tensor"), with ``numel`` 0 and null stats.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from safetensors.torch import load as load_safetensors

from tests.recipes_catalog import query_params, shape_id
from tests.torch_reference import as_bytes, reference

SEED = 5

# One recipe per scheme, with parameters that keep every shape below allowed.
SCHEMES = {
    "uniform": {"a": -1.0, "b": 2.0},
    "normal": {"mean": 0.5, "std": 2.0},
    "trunc_normal": {"mean": 0.0, "std": 1.0, "a": -1.0, "b": 1.5},
    "constant": {"val": 0.25},
    "ones": {},
    "zeros": {},
    "eye": {},
    "dirac": {"groups": 1},
    "xavier_uniform": {"gain": 1.5},
    "xavier_normal": {"gain": 0.5},
    "kaiming_uniform": {"a": 0.1, "mode": "fan_out", "nonlinearity": "leaky_relu"},
    "kaiming_normal": {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"},
    "orthogonal": {"gain": 2.0},
    "sparse": {"sparsity": 0.5, "std": 0.1},
    "variance_scaling": {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"},
    "lecun_uniform": {},
    "lecun_normal": {},
    "trunc_normal_tf": {"mean": 0.1, "std": 0.5, "a": -1.0, "b": 2.0},
}
RULES = {"eye": (2, 2), "sparse": (2, 2), "dirac": (3, 5)}
AT_LEAST_2D = {
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "variance_scaling",
    "lecun_uniform",
    "lecun_normal",
}
BASE = [2, 3, 4, 5, 3]


def _dims(scheme: str) -> range:
    low, high = RULES.get(scheme, (2 if scheme in AT_LEAST_2D else 0, 5))
    return range(low, high + 1)


def _shapes(scheme: str) -> list[list[int]]:
    shapes = []
    for ndim in _dims(scheme):
        shapes.append([1] * ndim)
        for i in range(ndim):
            shape = BASE[:ndim]
            shapes.append(shape[:i] + [0] + shape[i + 1 :])
    dims = _dims(scheme)
    if 2 in dims:
        # Big but allowed: 2^20 elements in one row (one column for sparse, whose loop is per column).
        shapes.append([2**20, 1] if scheme == "sparse" else [1, 2**20])
        shapes.append([0, 2**30] if dims.stop == 3 else [0, 2**15, 2**15])
    elif 3 in dims:
        shapes.append([2, 2**15, 0])
        shapes.append([0, 2**15, 2**15])
    if 1 in dims:
        shapes.append([2**20])
    return shapes


def _cases():
    for scheme in SCHEMES:
        for shape in _shapes(scheme):
            yield pytest.param(scheme, shape, id=f"{scheme}-{shape_id(shape)}")


def _torch_outcome(scheme: str, shape: list[int]) -> torch.Tensor | type[BaseException]:
    """torch's own tensor, or the exception type torch raises on this shape. An empty shape is
    tried with its other dimensions cut to 3: which of them are zero is all that decides torch's
    outcome, and ``sparse_`` would loop over 2^30 empty columns."""
    if math.prod(shape) == 0:
        shape = [min(d, 3) for d in shape]
    try:
        return reference(shape, scheme, SCHEMES[scheme], seed=SEED)
    except (IndexError, ZeroDivisionError, ValueError, RuntimeError) as exc:
        return type(exc)


def _requests(http, scheme: str, shape: list[int]):
    body = {"shape": shape, "init": {"scheme": scheme, **SCHEMES[scheme]}, "device": "cpu", "seed": SEED}
    yield "POST", http.post("/v1/tensor", json=body)
    params = query_params(scheme, SCHEMES[scheme], shape, "float32", SEED)
    yield "GET", http.get("/v1/tensor", params=params)


def _stats(body: bytes) -> dict:
    """The tensor's stats from the safetensors header's ``__metadata__``."""
    (length,) = struct.unpack("<Q", body[:8])
    return json.loads(json.loads(body[8 : 8 + length])["__metadata__"]["stats"])["weight"]


@pytest.mark.parametrize("scheme,shape", list(_cases()))
def test_edge_shape_is_torchs_tensor_or_a_422_naming_the_field(http, scheme, shape):
    expected = _torch_outcome(scheme, shape)
    for method, r in _requests(http, scheme, shape):
        assert r.status_code < 500, (method, r.status_code, r.text[:500])
        if expected is ZeroDivisionError:
            # xavier_*: fan_in + fan_out = 0, the one refusal docs/api.md §2 names.
            assert scheme.startswith("xavier") and r.status_code == 422, (method, r.text[:500])
            detail = r.json()["detail"]
            assert [e["loc"] for e in detail] == [["body" if method == "POST" else "query", "shape"]], detail
            assert "fan_in + fan_out" in detail[0]["msg"], detail
            continue
        assert r.status_code == 200, (method, r.status_code, r.text[:500])
        got = load_safetensors(r.content)["weight"]
        assert list(got.shape) == shape
        stats = _stats(r.content)
        assert stats["numel"] == math.prod(shape)
        if got.numel() == 0:
            # torch's "zero-element tensors is a no-op" (dirac_ raises instead: docs/api.md §2 wins).
            assert expected is IndexError or isinstance(expected, torch.Tensor), expected
            assert all(stats[k] is None for k in ("mean", "std", "min", "max")), stats
        else:
            assert isinstance(expected, torch.Tensor), expected
            assert as_bytes(got) == as_bytes(expected), (method, scheme, shape)


@pytest.mark.parametrize(
    "shape,torch_raises",
    [
        pytest.param([2, 2, 0], True, id="3d-empty-kernel"),
        pytest.param([2, 3, 0, 3], True, id="4d-empty-kernel-height"),
        pytest.param([2, 2, 2, 0], True, id="4d-empty-kernel-width"),
        pytest.param([2, 2, 2, 2, 0], True, id="5d-empty-kernel-depth"),
        pytest.param([0, 2, 3], False, id="no-out-channels"),
        pytest.param([2, 0, 3, 3], False, id="no-in-channels"),
    ],
)
@pytest.mark.parametrize("groups", [1, 2])
def test_dirac_on_a_zero_element_shape_is_an_empty_tensor_on_every_route(http, shape, torch_raises, groups):
    t = torch.empty(shape)
    if torch_raises:
        with pytest.raises(IndexError):
            torch.nn.init.dirac_(t, groups)
    else:
        torch.nn.init.dirac_(t, groups)
    init = {"scheme": "dirac", "groups": groups}
    query = {"shape": ",".join(map(str, shape)), "scheme": "dirac", "groups": groups, "device": "cpu", "seed": 0}
    answers = [
        http.post("/v1/tensor", json={"shape": shape, "init": init, "device": "cpu", "seed": 0}),
        http.get("/v1/tensor", params=query),
        http.post(
            "/v1/tensors",
            json={"device": "cpu", "seed": 0, "tensors": [{"name": "weight", "shape": shape, "init": init}]},
        ),
        # Without stats the header goes out before generation: the same empty tensor.
        http.post(
            "/v1/tensors",
            json={
                "device": "cpu",
                "seed": 0,
                "stats": False,
                "tensors": [{"name": "weight", "shape": shape, "init": init}],
            },
        ),
    ]
    for r in answers:
        assert r.status_code == 200, r.text[:500]
        got = load_safetensors(r.content)["weight"]
        assert list(got.shape) == shape and got.numel() == 0
    head = http.head("/v1/tensor", params=query)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(answers[1].content)


def test_dirac_after_an_empty_one_keeps_the_shared_stream(http):
    """An empty tensor draws nothing: the tensor after it is torch's first draw."""
    r = http.post(
        "/v1/tensors",
        json={
            "device": "cpu",
            "seed": 3,
            "tensors": [
                {"name": "d", "shape": [2, 2, 0], "init": {"scheme": "dirac"}},
                {"name": "n", "shape": [5, 7], "init": {"scheme": "normal"}},
            ],
        },
    )
    assert r.status_code == 200, r.text[:500]
    assert as_bytes(load_safetensors(r.content)["n"]) == as_bytes(reference([5, 7], "normal", {}, seed=3))
