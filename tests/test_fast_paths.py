"""Big CPU tensors made by jumped generators in parallel pieces, slices generated alone, and
/v1/tensors stream positions: all bit-identical to serial torch through the service."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load

from service.codec.header import decode_header
from tests.torch_reference import as_bytes, reference, torch_script

BIG = [2**11 + 3, 2**10 + 1]  # 2,100,227 elements: above the parallel threshold, n % 16 != 0
FAST = [
    ("uniform", {"a": -3.0, "b": 7.5}, [BIG[0] * BIG[1]]),
    ("normal", {"mean": 0.5, "std": 2.0}, BIG),
    ("xavier_uniform", {}, BIG),
    ("kaiming_normal", {"a": 0.2}, [1031, 2049, 1]),
    ("lecun_uniform", {}, BIG),
    ("variance_scaling", {"distribution": "normal", "mode": "fan_avg"}, BIG),
]


def _post(http, body, **headers):
    r = http.post("/v1/tensor", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("scheme,params,shape", FAST, ids=[f[0] for f in FAST])
def test_big_tensor_from_parallel_pieces_is_bit_identical(http, scheme, params, shape, dtype):
    r = _post(http, {"shape": shape, "init": {"scheme": scheme, **params}, "seed": 2**64 - 1, "device": "cpu", "dtype": dtype})
    expected = reference(shape, scheme, params, dtype, 2**64 - 1)
    assert as_bytes(load(r.content)["weight"]) == as_bytes(expected)
    meta, _, _ = decode_header(r.content)
    assert json.loads(meta["provenance"])["threads"] >= 1


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize(
    "shape,bounds",
    [
        pytest.param([64, 1000], [[10, 17], None], id="rows"),
        pytest.param([64, 1000], [None, [333, 667]], id="columns"),
        pytest.param([8, 4, 33, 7], [[1, 3], None, [30, 33], [6, 7]], id="4d-hyperslab"),
        pytest.param([64, 1000], [[5, 5], None], id="empty"),
        pytest.param([100, 999], [[99, 100], [900, 999]], id="tail"),
    ],
)
def test_slice_is_generated_alone_and_equals_the_full_tensors_slice(http, shape, bounds, dtype):
    for scheme in ("kaiming_uniform", "normal"):
        r = _post(http, {"shape": shape, "init": {"scheme": scheme}, "seed": 2**32 + 1, "device": "cpu", "dtype": dtype, "slice": bounds})
        full = reference(shape, scheme, {}, dtype, 2**32 + 1)
        index = tuple(slice(*b) if b else slice(None) for b in bounds)
        assert as_bytes(load(r.content)["weight"]) == as_bytes(full[index])
        provenance = json.loads(decode_header(r.content)[0]["provenance"])
        assert provenance["slice"] == "direct"


def test_slice_of_a_serial_only_scheme_is_cut_from_the_whole(http):
    r = _post(http, {"shape": [40, 30], "init": {"scheme": "trunc_normal"}, "seed": 1, "device": "cpu", "slice": [[3, 9], None]})
    assert as_bytes(load(r.content)["weight"]) == as_bytes(reference([40, 30], "trunc_normal", {}, "float32", 1)[3:9])
    assert json.loads(decode_header(r.content)[0]["provenance"])["slice"] == "cut"


def test_tensors_after_big_and_unknown_draws_continue_the_shared_stream(http):
    entries = [
        {"name": "big", "shape": BIG, "init": {"scheme": "normal"}},
        {"name": "small", "shape": [7], "init": {"scheme": "normal"}},  # n < 16: cached normal, position unknown
        {"name": "big2", "shape": BIG, "init": {"scheme": "uniform"}},
        {"name": "t", "shape": [300], "init": {"scheme": "trunc_normal"}},
        {"name": "u", "shape": [5, 5], "init": {"scheme": "xavier_uniform"}},
        {"name": "sliced", "shape": [4096, 600], "init": {"scheme": "uniform"}, "slice": [[100, 300], [0, 10]]},
    ]
    r = http.post("/v1/tensors", json={"seed": 99, "device": "cpu", "tensors": entries})
    got = load(r.content)
    expected = torch_script([{k: v for k, v in e.items() if k != "slice"} for e in entries], 99)
    expected["sliced"] = expected["sliced"][100:300, 0:10]
    for name, t in expected.items():
        assert as_bytes(got[name]) == as_bytes(t), name


def test_known_positions_let_a_later_slice_jump(http):
    entries = [
        {"name": "a", "shape": [1000, 100], "init": {"scheme": "normal"}},
        {"name": "b", "shape": [3000, 1000], "init": {"scheme": "kaiming_uniform"}, "slice": [[2990, 3000], None]},
        {"name": "c", "shape": [33], "init": {"scheme": "uniform"}},
    ]
    r = http.post("/v1/tensors", json={"seed": 5, "device": "cpu", "tensors": entries}, headers={"accept": "application/json"})
    assert r.json()["provenance"]["generation"]["b"]["slice"] == "direct"
    got = load(http.post("/v1/tensors", json={"seed": 5, "device": "cpu", "tensors": entries}).content)
    expected = torch_script([{k: v for k, v in e.items() if k != "slice"} for e in entries], 5)
    assert as_bytes(got["b"]) == as_bytes(expected["b"][2990:3000])
    assert as_bytes(got["c"]) == as_bytes(expected["c"]) and as_bytes(got["a"]) == as_bytes(expected["a"])


def test_stats_of_a_big_tensor_equal_its_own_values(http):
    r = _post(http, {"shape": BIG, "init": {"scheme": "normal"}, "seed": 3, "device": "cpu", "dtype": "float64"})
    t = load(r.content)["weight"].numpy().ravel()
    stats = json.loads(decode_header(r.content)[0]["stats"])["weight"]
    assert stats["mean"] == pytest.approx(t.mean(), abs=1e-12) and stats["std"] == pytest.approx(t.std(ddof=1), rel=1e-12)
    assert stats["min"] == t.min() and stats["max"] == t.max()


def test_threads_do_not_change_the_bytes_header_included():
    import httpx

    from tests.conftest import live_server

    body = {"shape": BIG, "init": {"scheme": "normal"}, "seed": 8, "device": "cpu", "histogram_bins": 10}
    answers = []
    for threads in (1, 2, 3):
        with live_server(cpu_threads=threads) as server:
            answers.append(httpx.post(f"{server.url}/v1/tensor", json=body, timeout=60).content)
    headers = [decode_header(a)[0] for a in answers]
    assert [json.loads(h["provenance"])["threads"] for h in headers] == [1, 2, 3]
    stripped = [a.replace(b'\\"threads\\":%d' % k, b"") for a, k in zip(answers, (1, 2, 3), strict=True)]
    assert all(as_bytes(load(a)["weight"]) == as_bytes(load(answers[0])["weight"]) for a in answers)
    assert [h["stats"] for h in headers] == [headers[0]["stats"]] * 3
    assert stripped[1] == stripped[0] and stripped[2] == stripped[0]  # the whole body, header included


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize(
    "scheme,shape,bounds",
    [
        pytest.param("normal", [9, 2**18 + 3], [[3, 7], None], id="normal-rows-big"),
        pytest.param("normal", [9, 2**18 + 3], [[8, 9], [5, 2**18 + 3]], id="normal-tail-run"),
        pytest.param("kaiming_uniform", [5, 4, 2**17 + 1], [[2, 3], [1, 4], None], id="uniform-inner-run"),
    ],
)
def test_a_big_contiguous_slice_is_made_in_parallel_pieces(http, scheme, shape, bounds, dtype):
    r = _post(http, {"shape": shape, "init": {"scheme": scheme}, "seed": 12, "device": "cpu", "dtype": dtype, "slice": bounds})
    full = reference(shape, scheme, {}, dtype, 12)
    index = tuple(slice(*b) if b else slice(None) for b in bounds)
    assert as_bytes(load(r.content)["weight"]) == as_bytes(full[index])
    assert json.loads(decode_header(r.content)[0]["provenance"])["slice"] == "direct"
