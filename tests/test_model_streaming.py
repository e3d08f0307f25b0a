"""Whole preset state_dicts made in parallel (each key, and each piece of a big key, from its own
jumped generator) and streamed without stats: the same bytes as the serial build, in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import struct
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from service.planning.models import plan_entries, plan_generation
from service.presets import PRESETS, accounting
from service.presets.replay import replay
from service.settings import Settings
from service.workers.model_jobs import ModelJob, run_model_job

SEED = 2**32 + 3


def _bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _header(body: bytes) -> tuple[dict, int]:
    (n,) = struct.unpack("<Q", body[:8])
    return json.loads(body[8 : 8 + n]), 8 + n


def _cast(t: torch.Tensor, dtype: str) -> torch.Tensor:
    return t.to(getattr(torch, dtype)) if t.is_floating_point() else t


# Small configs of every preset (odd widths, padding rows, tied and untied heads, trunc_normal_).
CASES = [(name, raw) for name, configs in accounting.SELF_TEST_CONFIGS.items() for raw in configs]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_parallel_whole_build_equals_the_serial_build(case, dtype):
    """Units on three threads, big keys cut into pieces of 624*16 elements (many pieces, each from
    its own jumped generator): every key equals the serial build's, cast."""
    name, raw = CASES[case]
    preset = PRESETS[name]
    config, _ = preset.resolve(raw)
    rec = accounting.recording(preset, config)
    keys = list(rec.keys)
    units = accounting.plan_units(rec, keys, piece_elements=624 * 16)
    assert not isinstance(units, str), units
    job = ModelJob(preset, config, SEED, dtype, tuple(keys), with_stats=False, units=tuple(units), threads=3)
    made = run_model_job(job)
    whole, _ = replay(preset, config, SEED)
    assert [m.spec.name for m in made] == list(whole)
    for m in made:
        want = _cast(whole[m.spec.name], dtype)
        assert m.tensor.dtype == want.dtype and m.tensor.shape == want.shape
        assert _bytes(m.tensor) == _bytes(want), m.spec.name


def test_a_big_key_is_made_in_pieces():
    preset = PRESETS["transformers/LlamaForCausalLM"]
    config, _ = preset.resolve({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 96,
                                "num_attention_heads": 2, "vocab_size": 1000})
    rec = accounting.recording(preset, config)
    units = accounting.plan_units(rec, list(rec.keys), piece_elements=624 * 16)
    embed = [u for u in units if u.key == "model.embed_tokens.weight"]
    assert len(embed) == 7 and all(u.op is not None for u in embed)
    assert [u.start for u in embed] == [624 * 16 * i for i in range(7)] and embed[-1].stop == 64000


def test_whole_answers_are_planned_parallel():
    preset = PRESETS["transformers/GPT2LMHeadModel"]
    config, _ = preset.resolve({"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 8})
    entries = plan_entries(preset, config, Settings(), ("config",))
    gen = plan_generation(preset, config, entries, subset=False)
    assert gen.units is not None and gen.provenance == {"path": "jumped"}
    assert {u.key for u in gen.units} == {e.key for e in entries}


STREAMED = [
    ("transformers/GPT2LMHeadModel", {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 300, "n_positions": 16}),
    ("transformers/LlamaForCausalLM", {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 40,
                                       "num_attention_heads": 2, "vocab_size": 200, "pad_token_id": 1}),
    ("transformers/ViTModel", {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
                               "intermediate_size": 24, "image_size": 16, "patch_size": 4}),
    ("torchvision/resnet18", {"num_classes": 10}),
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name,config", STREAMED)
def test_streamed_whole_state_dict_equals_the_non_streamed_one(http, name, config, dtype):
    body = {"model": name, "config": config, "seed": SEED, "dtype": dtype}
    full = http.post("/v1/model", json=body)
    streamed = http.post("/v1/model", json={**body, "stats": False})
    assert full.status_code == 200 and streamed.status_code == 200, (full.text, streamed.text)
    (h_full, o_full), (h_st, o_st) = _header(full.content), _header(streamed.content)
    meta_full, meta_st = h_full.pop("__metadata__"), h_st.pop("__metadata__")
    assert h_full == h_st  # keys, dtypes, shapes, offsets
    assert full.content[o_full:] == streamed.content[o_st:]
    assert "stats" in meta_full and "stats" not in meta_st
    assert json.loads(meta_full["provenance"]) == json.loads(meta_st["provenance"])
    assert int(streamed.headers["content-length"]) == len(streamed.content)
    # and the serial build's bytes
    whole, _ = replay(PRESETS[name], PRESETS[name].resolve(config)[0], SEED)
    got = safetensors.torch.load(streamed.content)
    assert set(got) == set(whole)
    for key, t in whole.items():
        assert _bytes(got[key]) == _bytes(_cast(t, dtype)), key
    head = http.head("/v1/model/" + name, params={**{k: str(v) for k, v in config.items()}, "seed": SEED,
                                                   "dtype": dtype, "stats": "false"})
    assert int(head.headers["content-length"]) == len(streamed.content)


# Run in a fresh interpreter so that what earlier tests left in the allocator does not count:
# the server runs in a thread of that process, and the body is hashed as it arrives.
_BOUNDED_SCRIPT = r"""
import hashlib, json, struct, sys
import httpx
from tests.conftest import live_server

def hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

name, raw, seed = json.loads(sys.argv[1])
with live_server() as server, httpx.Client(base_url=server.url, timeout=300) as client:
    small = {**raw, "num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 96, "vocab_size": 100}
    assert client.post("/v1/model", json={"model": name, "config": small, "stats": False}).status_code == 200
    growth = []
    for _ in range(2):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            print(json.dumps({"skip": True}))
            sys.exit(0)
        before = hwm()
        got, header = hashlib.sha256(), b""
        with client.stream("POST", "/v1/model", json={"model": name, "config": raw, "seed": seed, "stats": False}) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                if header is None:
                    got.update(chunk)
                    continue
                header += chunk
                if len(header) >= 8 and len(header) >= 8 + struct.unpack("<Q", header[:8])[0]:
                    got.update(header[8 + struct.unpack("<Q", header[:8])[0]:])
                    header = None
        growth.append(hwm() - before)
    print(json.dumps({"growth": growth, "sha256": got.hexdigest()}))
"""


def test_a_streamed_big_model_keeps_memory_bounded():
    """~570 MB of float32 streamed twice: each time the process's peak RSS grows by under 0.4 of
    the model's bytes, so neither answer holds the model whole (that would grow it by its bytes)
    and the second does not pile up on what the first left. Admission counts 0.19 of the model
    for this answer (64 MiB ahead of the socket and the largest unit); the peak grew by 0.24-0.31
    the first time (the allocator's arenas grow on first use) and 0.09-0.21 the second. When each
    unit's build left its storages in a reference cycle until the next GC pass, it grew by
    0.52-0.64. A small request first takes the one-time costs (the accounting self-test's models)."""
    name = "transformers/LlamaForCausalLM"
    raw = {"num_hidden_layers": 6, "hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 8,
           "vocab_size": 32000}
    preset = PRESETS[name]
    config, _ = preset.resolve(raw)
    whole, _ = replay(preset, config, SEED)
    want = hashlib.sha256()
    model_bytes = 0
    for key in whole:  # the body holds the tensors in state_dict order
        want.update(_bytes(whole[key]))
        model_bytes += whole[key].numel() * 4
    del whole
    assert model_bytes > 500e6
    root = pathlib.Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", _BOUNDED_SCRIPT, json.dumps([name, raw, SEED])],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.get("skip"):
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
    assert result["sha256"] == want.hexdigest()
    first, second = result["growth"]
    assert first < model_bytes * 0.4 and second < model_bytes * 0.4, (first, second, model_bytes)


SLICED = ("transformers/GPT2LMHeadModel", {"n_layer": 2, "n_embd": 40, "n_head": 2, "vocab_size": 301, "n_positions": 16,
                                          "tie_word_embeddings": False})


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("key,bounds", [
    ("transformer.wte.weight", [[5, 133], None]),  # rows: only they are generated (normal_)
    ("transformer.wte.weight", [None, [3, 17]]),  # columns
    ("lm_head.weight", [[290, 301], [1, 39]]),  # the tail of a normal_ (301*40 % 16 != 0)
    ("transformer.h.1.mlp.c_fc.weight", [[0, 1], None]),
    ("transformer.h.0.ln_1.weight", [[2, 9]]),  # fill_: cut from the key made alone
    ("transformer.wpe.weight", [[0, 0], None]),  # empty
])
def test_a_slice_of_a_preset_tensor_equals_the_cut_of_the_whole(http, key, bounds, dtype):
    name, config = SLICED
    body = {"model": name, "config": config, "seed": SEED, "dtype": dtype}
    whole = safetensors.torch.load(http.post("/v1/model", json=body).content)
    want = whole[key][tuple(slice(*b) if b else slice(None) for b in bounds)]
    for extra in ({"tensors": [key]}, {"tensors": ["transformer.h.0.attn.c_attn.bias", key]}, {"stats": False, "tensors": [key]}):
        r = http.post("/v1/model", json={**body, **extra, "slice": {key: bounds}})
        assert r.status_code == 200, r.text
        got = safetensors.torch.load(r.content)[key]
        assert got.shape == want.shape and _bytes(got) == _bytes(want.contiguous())
    query = {**{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()},
             "seed": str(SEED), "dtype": dtype, "tensors": key,
             f"slice.{key}": ",".join(":" if b is None else f"{b[0]}:{b[1]}" for b in bounds)}
    r = http.get(f"/v1/model/{name}", params=query)
    assert r.status_code == 200, r.text
    assert _bytes(safetensors.torch.load(r.content)[key]) == _bytes(want.contiguous())


def test_row_slices_of_a_plain_draw_are_generated_directly(http):
    name, config = SLICED
    r = http.post("/v1/model", json={"model": name, "config": config, "tensors": ["transformer.wte.weight", "transformer.h.0.ln_1.bias"],
                                      "slice": {"transformer.wte.weight": [[0, 8], None], "transformer.h.0.ln_1.bias": [[0, 4]]}})
    assert r.status_code == 200, r.text
    (n,) = struct.unpack("<Q", r.content[:8])
    generation = json.loads(json.loads(r.content[8 : 8 + n])["__metadata__"]["provenance"])["generation"]
    assert generation["slices"] == {"transformer.wte.weight": "direct", "transformer.h.0.ln_1.bias": "cut"}


@pytest.mark.parametrize("slice_,where", [
    ({"nope.weight": [None]}, "nope.weight"),
    ({"transformer.wte.weight": [[0, 400], None]}, "transformer.wte.weight"),
    ({"transformer.wte.weight": [None]}, "transformer.wte.weight"),
    ({"transformer.wpe.weight": [None, None]}, "transformer.wpe.weight"),  # not in tensors
])
def test_bad_slices_are_422_naming_the_key(http, slice_, where):
    name, config = SLICED
    r = http.post("/v1/model", json={"model": name, "config": config, "tensors": ["transformer.wte.weight"], "slice": slice_})
    assert r.status_code == 422, r.text
    assert where in r.json()["detail"][0]["loc"]


def test_a_bad_slice_query_is_422(http):
    name, config = SLICED
    r = http.get(f"/v1/model/{name}", params={"n_layer": "1", "slice.lm_head.weight": "0-3,:"})
    assert r.status_code == 422 and "start:stop" in r.text


def test_client_and_cli_slice_and_stream_a_model(server, tmp_path):
    from click.testing import CliRunner

    from service.cli import main
    from service.client import InitClient

    name, config = SLICED
    key = "transformer.wte.weight"
    with InitClient(server.url) as client:
        whole = client.model(name, config, seed=SEED)
        part = client.model(name, config, seed=SEED, tensors=[key], slice={key: [[0, 128], None]})
        assert torch.equal(part[key], whole[key][:128])
        part = client.model(name, config, seed=SEED, tensors=key, slice={key: "3:7,1:5"})
        assert torch.equal(part[key], whole[key][3:7, 1:5])
    out = tmp_path / "part.safetensors"
    args = ["model", name, *[a for k, v in config.items() for a in ("--config", f"{k}={str(v).lower()}")],
            "--seed", str(SEED), "--tensors", f"{key},lm_head.weight", "--slice", f"{key}=0:128,:",
            "--slice", "lm_head.weight=:,2:9", "-o", str(out), "--quiet", "--url", server.url]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = safetensors.torch.load_file(str(out))
    assert torch.equal(got[key], whole[key][:128]) and torch.equal(got["lm_head.weight"], whole["lm_head.weight"][:, 2:9])
    out = tmp_path / "whole.safetensors"  # the whole model, streamed without stats
    args = ["model", name, *[a for k, v in config.items() for a in ("--config", f"{k}={str(v).lower()}")],
            "--seed", str(SEED), "--no-stats", "-o", str(out), "--quiet", "--url", server.url]
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    got = safetensors.torch.load_file(str(out))
    assert all(torch.equal(got[k], whole[k]) for k in whole)
