"""``/v1/module`` with ``slice``: each sliced key is exactly ``full[...]`` of the same key of
``torch.manual_seed(seed); nn.Sequential(...)``, computed here; a plain draw's part is generated
alone (``"direct"``), other keys are cut (``"cut"``); bad slices are 422s naming ``slice.<key>``.
"""

from __future__ import annotations

import json
import struct

import pytest
import safetensors.torch
import torch
from torch import nn

SEED = 2**40 + 17

LAYERS = [
    {"type": "Linear", "in_features": 37, "out_features": 53},
    {"type": "Conv2d", "in_channels": 3, "out_channels": 20, "kernel_size": 3},
    {"type": "Embedding", "num_embeddings": 41, "embedding_dim": 24},
    {"type": "LSTM", "input_size": 10, "hidden_size": 12},
    {"type": "Embedding", "num_embeddings": 13, "embedding_dim": 7, "padding_idx": 3},
]

# key, bounds, how the key's part is made
CASES = [
    ("0.weight", [[5, 40], None], "direct"),  # rows of kaiming_uniform_'s uniform_
    ("0.weight", [None, [3, 17]], "direct"),  # columns
    ("0.weight", [[50, 53], [30, 37]], "direct"),  # the last elements
    ("0.bias", [[3, 9]], "direct"),
    ("1.weight", [[2, 7], None, None, None], "direct"),
    ("1.weight", [None, [1, 2], None, [0, 2]], "direct"),
    ("2.weight", [[0, 8], None], "direct"),  # rows of a normal_
    ("2.weight", [None, [20, 24]], "direct"),
    ("2.weight", [[40, 41], [23, 24]], "direct"),  # normal_'s tail (41*24 % 16 != 0)
    ("3.weight_ih_l0", [[12, 30], None], "direct"),  # LSTM: uniform_ per parameter
    ("3.weight_hh_l0", [None, [0, 5]], "direct"),
    ("3.bias_hh_l0", [[40, 48]], "direct"),
    ("4.weight", [[1, 6], [2, 7]], "cut"),  # normal_ then the padding row zeroed: cut from the key
    ("2.weight", [[0, 0], None], "direct"),  # empty
]


def _reference(dtype: str) -> dict[str, torch.Tensor]:
    kw = {"dtype": getattr(torch, dtype)}
    torch.manual_seed(SEED)
    m = nn.Sequential(
        nn.Linear(37, 53, **kw), nn.Conv2d(3, 20, 3, **kw), nn.Embedding(41, 24, **kw), nn.LSTM(10, 12, **kw),
        nn.Embedding(13, 7, padding_idx=3, **kw),
    )
    return m.state_dict()


@pytest.fixture(scope="module")
def references() -> dict[str, dict[str, torch.Tensor]]:
    return {dtype: _reference(dtype) for dtype in ("float32", "bfloat16")}


def _cut(t: torch.Tensor, bounds: list) -> torch.Tensor:
    return t[tuple(slice(*b) if b else slice(None) for b in bounds)].contiguous()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _meta(body: bytes) -> dict:
    (n,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8 : 8 + n])
    return {k: json.loads(v) for k, v in header["__metadata__"].items() if k != "format"}


def _post(http, **fields):
    return http.post("/v1/module", json={"layers": LAYERS, "seed": SEED, "device": "cpu", **fields})


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("key,bounds,how", CASES)
def test_a_slice_of_a_module_tensor_equals_the_cut_of_torchs(http, references, key, bounds, dtype, how):
    whole = references[dtype]
    want = _cut(whole[key], bounds)
    for tensors in ([key], ["0.bias", key] if key != "0.bias" else ["2.weight", key], None):
        r = _post(http, dtype=dtype, slice={key: bounds}, **({} if tensors is None else {"tensors": tensors}))
        assert r.status_code == 200, r.text
        got = safetensors.torch.load(r.content)
        assert set(got) == set(tensors or whole)
        assert _same(got[key], want), (key, bounds, tensors)
        for other in got:  # the keys not sliced are whole
            if other != key:
                assert _same(got[other], whole[other]), other
        generation = _meta(r.content)["provenance"]["generation"]
        assert generation["path"] == "jumped"
        assert generation["slices"] == {key: how}


def test_several_slices_without_tensors(http, references):
    whole = references["float32"]
    cuts = {"0.weight": [[1, 2], None], "1.bias": [[4, 19]], "3.weight_ih_l0": [None, [9, 10]], "4.weight": [[3, 4], None]}
    r = _post(http, slice=cuts, histogram_bins=4)
    assert r.status_code == 200, r.text
    got = safetensors.torch.load(r.content)
    assert set(got) == set(whole)
    for key, t in whole.items():
        assert _same(got[key], _cut(t, cuts[key]) if key in cuts else t), key
    meta = _meta(r.content)
    assert meta["provenance"]["generation"]["slices"] == {
        "0.weight": "direct", "1.bias": "direct", "3.weight_ih_l0": "direct", "4.weight": "cut"
    }
    assert meta["request"]["slice"] == cuts
    stats = json.loads(r.content[8 : 8 + struct.unpack("<Q", r.content[:8])[0]])
    assert stats["0.weight"]["shape"] == [1, 37]
    assert stats["4.weight"]["shape"] == [1, 7]


def test_with_overrides_the_whole_stack_is_built_and_cut(http):
    overrides = [{"param": "2.weight", "init": {"scheme": "normal", "std": 0.5}}]
    whole = safetensors.torch.load(_post(http, overrides=overrides).content)
    r = _post(http, overrides=overrides, tensors=["2.weight"], slice={"2.weight": [[3, 9], [1, 4]]})
    assert r.status_code == 200, r.text
    assert _same(safetensors.torch.load(r.content)["2.weight"], _cut(whole["2.weight"], [[3, 9], [1, 4]]))
    generation = _meta(r.content)["provenance"]["generation"]
    assert generation["path"] == "whole" and "overrides" in generation["reason"]
    assert generation["slices"] == {"2.weight": "cut"}


def test_named_layers_take_slices_by_their_keys(http, references):
    layers = {"enc": LAYERS[0], "emb": LAYERS[2]}
    torch.manual_seed(SEED)
    m = nn.Sequential()
    m.add_module("enc", nn.Linear(37, 53))
    m.add_module("emb", nn.Embedding(41, 24))
    whole = m.state_dict()
    r = http.post("/v1/module", json={"layers": layers, "seed": SEED, "device": "cpu", "slice": {"emb.weight": [[7, 19], None]}})
    assert r.status_code == 200, r.text
    got = safetensors.torch.load(r.content)
    assert _same(got["emb.weight"], whole["emb.weight"][7:19]) and _same(got["enc.weight"], whole["enc.weight"])


@pytest.mark.parametrize("fields,where,says", [
    ({"slice": {"nope.weight": [None]}}, "nope.weight", "no state_dict key 'nope.weight'"),
    ({"slice": {"0.wieght": [None, None]}}, "0.wieght", "did you mean '0.weight'"),
    ({"slice": {"0.weight": [[0, 54], None]}}, "0.weight", "0 <= start <= stop <= 53"),
    ({"slice": {"0.weight": [[5, 3], None]}}, "0.weight", "0 <= start <= stop"),
    ({"slice": {"0.weight": [None]}}, "0.weight", "one entry per dimension (2)"),
    ({"slice": {"0.bias": [[0, 1]]}, "tensors": ["0.weight"]}, "0.bias", "is not in 'tensors'"),
    ({"slice": {"0.weight": None}}, "0.weight", ""),
    ({"slice": {"0.weight": [[0, 1, 2], None]}}, "0.weight", ""),
])
def test_bad_slices_are_422_naming_the_key(http, fields, where, says):
    r = _post(http, **fields)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert "slice" in detail["loc"] and where in detail["loc"], detail
    assert says in detail["msg"], detail


def test_an_empty_slice_object_is_422(http):
    r = _post(http, slice={})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "slice"


def test_client_and_cli_take_tensors_and_slice(server, references, tmp_path):
    from click.testing import CliRunner

    from service.cli import main
    from service.client import InitClient

    whole = references["float32"]
    with InitClient(server.url) as client:
        part = client.module(LAYERS, seed=SEED, device="cpu", tensors=["0.weight"], slice={"0.weight": [[0, 9], None]})
        assert list(part) == ["0.weight"] and _same(part["0.weight"], whole["0.weight"][:9])
        part = client.module(LAYERS, seed=SEED, device="cpu", tensors="2.weight,0.bias", slice={"2.weight": "3:7,1:5"})
        assert list(part) == ["2.weight", "0.bias"]
        assert _same(part["2.weight"], whole["2.weight"][3:7, 1:5]) and _same(part["0.bias"], whole["0.bias"])
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps(LAYERS))
    out = tmp_path / "part.safetensors"
    args = ["module", str(layers), "--seed", str(SEED), "--device", "cpu", "--tensors", "0.weight,3.weight_ih_l0",
            "--slice", "0.weight=0:12,:", "--slice", "3.weight_ih_l0=:,2:9", "-o", str(out), "--quiet", "--url", server.url]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = safetensors.torch.load_file(str(out))
    assert set(got) == {"0.weight", "3.weight_ih_l0"}
    assert _same(got["0.weight"], whole["0.weight"][:12])
    assert _same(got["3.weight_ih_l0"], whole["3.weight_ih_l0"][:, 2:9].contiguous())
