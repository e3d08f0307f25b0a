"""Any tensor of a preset made alone (``service/presets/accounting.py``) equals the same key of the
whole serial build, byte for byte: every key of every preset's digest configs, for seeds 0 and
2**32 + 1; draw accounting against serial torch; the self-test's fallback; and over HTTP, a key
of a big Llama made without building the rest.
"""

from __future__ import annotations

import json
import struct
import threading
import time

import httpx
import pytest
import safetensors.torch
import torch

from service.engine import draws, mt19937
from service.presets import PRESETS, accounting
from service.presets.replay import replay
from tests.preset_digests import CASES

SEEDS = (0, 2**32 + 1)

# One digest config per (preset, config): the configs the reference digests were computed with.
CONFIGS: dict[str, tuple[str, dict]] = {}
for _c in CASES:
    CONFIGS.setdefault(f"{_c['model']}|{json.dumps(_c['config'], sort_keys=True)}", (_c["model"], _c["config"]))


def _same(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and torch.equal(
        got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", list(CONFIGS))
def test_every_key_made_alone_equals_the_whole_build(case, seed):
    name, raw = CONFIGS[case]
    preset = PRESETS[name]
    config, _ = preset.resolve(raw)
    whole, _ = replay(preset, config, seed)
    rec = accounting.recording(preset, config)
    assert list(rec.keys) == list(whole)
    for key in whole:
        sl = accounting.plan_slice(rec, [key])
        assert not sl.whole, (key, sl.reason)
        got = accounting.make(rec, sl, seed)[key]
        assert _same(got, whole[key]), key


@pytest.mark.parametrize("name", list(accounting.SELF_TEST_CONFIGS))
def test_self_test_configs_key_by_key_and_all_at_once(name):
    """Odd widths (normal_ under 16 elements leaves cached normals), padding rows, trunc_normal_."""
    preset = PRESETS[name]
    for raw in accounting.SELF_TEST_CONFIGS[name]:
        config, _ = preset.resolve(raw)
        whole, _ = replay(preset, config, 7)
        rec = accounting.recording(preset, config)
        every = accounting.make(rec, accounting.plan_slice(rec, list(rec.keys)), 7)
        for key in whole:
            assert _same(every[key], whole[key]), key
            assert _same(accounting.make(rec, accounting.plan_slice(rec, [key]), 7)[key], whole[key]), key


def test_a_down_proj_slice_runs_only_its_last_normal():
    """The construction draw (kaiming_uniform_) is counted but overwritten: one op, one storage."""
    preset = PRESETS["transformers/LlamaForCausalLM"]
    config, _ = preset.resolve({"num_hidden_layers": 3, "hidden_size": 16, "intermediate_size": 24,
                                "num_attention_heads": 2, "vocab_size": 50})
    rec = accounting.recording(preset, config)
    sl = accounting.plan_slice(rec, ["model.layers.2.mlp.down_proj.weight"])
    assert [rec.ops[i].law for i in sl.needed] == ["normal"]
    assert len(sl.storages) == 1 and sl.nbytes == 16 * 24 * 4


def test_vit_trunc_normal_is_unaccountable_and_regenerated_from_its_known_offset():
    preset = PRESETS["transformers/ViTModel"]
    config, _ = preset.resolve(accounting.SELF_TEST_CONFIGS["transformers/ViTModel"][1])
    rec = accounting.recording(preset, config)
    kinds = [op.kind for op in rec.ops if op.kind != "aten"]
    assert kinds == ["trunc_normal", "trunc_normal"]
    sl = accounting.plan_slice(rec, ["layers.0.mlp.fc2.weight"])
    assert len(sl.regenerated) == 2
    whole, _ = replay(preset, config, 3)
    assert _same(accounting.make(rec, sl, 3)["layers.0.mlp.fc2.weight"], whole["layers.0.mlp.fc2.weight"])


# --- accounting against serial torch ----------------------------------------------------------


@pytest.mark.parametrize("dtype", draws.DTYPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_fill_draws_is_where_torch_leaves_the_generator(dtype, contiguous):
    for n in (1, 2, 3, 9, 15, 16, 17, 33, 1001):
        for op in draws.OPS:
            for pre in (0, 1, 3):  # a cached double normal on entry after an odd small normal_
                g = torch.Generator().manual_seed(11)
                torch.empty(pre, dtype=torch.float64).normal_(generator=g)
                before = mt19937.decode_state(g.get_state())
                t = torch.empty(n, dtype=dtype) if contiguous else torch.empty(n, 2, dtype=dtype)[:, 0]
                t.uniform_(generator=g) if op == "uniform" else t.normal_(generator=g)
                after = mt19937.decode_state(g.get_state())
                k, cached = draws.fill_draws(op, dtype, n, contiguous, bool(before.normal_is_valid))
                want = mt19937.advance_state(before, k)
                assert (want.words == after.words).all() and want.left == after.left, (op, n, pre)
                assert bool(after.normal_is_valid) == cached, (op, n, pre)


@pytest.mark.parametrize("seed", SEEDS)
def test_advance_state_from_any_state_equals_stepping(seed):
    for first in (0, 1, 623, 624, 625, 1300):
        for k in (0, 1, 622, 624, 625, 5000, 300_000):
            g = torch.Generator().manual_seed(seed)
            torch.empty(first, dtype=torch.int32).random_(generator=g)
            torch.empty(3).normal_(generator=g)  # leaves a cached normal, which the jump keeps
            state = mt19937.decode_state(g.get_state())
            torch.empty(k, dtype=torch.int32).random_(generator=g)
            assert torch.equal(mt19937.encode_state(mt19937.advance_state(state, k)), g.get_state()), (first, k)


@pytest.mark.parametrize(
    "name,raw",
    [
        ("transformers/GPT2LMHeadModel", {"n_layer": 3, "n_embd": 24, "n_head": 2, "vocab_size": 300,
                                          "n_positions": 40, "tie_word_embeddings": False}),
        ("transformers/BertModel", {"num_hidden_layers": 2, "hidden_size": 20, "num_attention_heads": 2,
                                    "intermediate_size": 30, "vocab_size": 100, "pad_token_id": 99}),
        ("nanogpt/GPT", {"n_layer": 2, "n_embd": 16, "n_head": 2, "vocab_size": 65, "block_size": 33, "bias": False}),
    ],
)
def test_generator_offsets_equal_the_serial_build_state(name, raw):
    """The stream position the accounting gives the last draw equals the serial build's there:
    replay every op up to it and compare the generator's state byte for byte."""
    preset = PRESETS[name]
    config, _ = preset.resolve(raw)
    rec = accounting.recording(preset, config)
    rng_ops = [op for op in rec.ops if op.draws_rng]
    assert all(op.law for op in rng_ops)
    sl = accounting.plan_slice(rec, list(rec.keys))
    gens = accounting.generators(rec, accounting.Slice(sl.keys, tuple(op.index for op in rng_ops), (), (), 0), 5)
    g = torch.Generator().manual_seed(5)
    for op in rng_ops:
        assert torch.equal(gens[op.index].get_state(), g.get_state()), op.index
        t = op.target
        fill = torch.empty_strided(t.size, t.stride, dtype=t.dtype)
        fill.uniform_(generator=g) if op.law == "uniform" else fill.normal_(generator=g)


# --- the self-test and its fallback -------------------------------------------------------------


def test_self_test_passes_every_preset():
    assert accounting.self_test() == {name: True for name in PRESETS}


def test_a_failed_self_test_serves_the_whole_build_with_the_same_bytes(monkeypatch):
    from tests.conftest import live_server

    name = "transformers/LlamaForCausalLM"
    config = {"num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 2,
              "vocab_size": 40}
    body = {"model": name, "config": config, "seed": 9, "tensors": ["model.layers.1.mlp.up_proj.weight"]}
    with live_server() as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        fast = client.post("/v1/model", json=body)
    real_make = accounting.make

    def broken_make(rec, sl, seed):  # a wrong byte: the self-test must catch it
        out = real_make(rec, sl, seed)
        for t in out.values():
            t.view(-1).view(torch.uint8)[:1] ^= 1
        return out

    monkeypatch.setattr(accounting, "make", broken_make)
    accounting.clear_self_test()
    try:
        assert accounting.self_test()[name] is False
        with live_server() as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
            slow = client.post("/v1/model", json=body)
            devices = client.get("/v1/devices").json()
    finally:
        monkeypatch.undo()
        accounting.clear_self_test()
    assert fast.status_code == slow.status_code == 200
    assert _meta(fast.content)["provenance"]["generation"] == {"path": "jumped"}
    generation = _meta(slow.content)["provenance"]["generation"]
    assert generation["path"] == "whole" and "self-test" in generation["reason"]
    key = body["tensors"][0]
    assert _same(safetensors.torch.load(fast.content)[key], safetensors.torch.load(slow.content)[key])
    cpu = next(d for d in devices["devices"] if "preset_tensors_alone" in d)
    assert name in cpu["preset_tensors_alone"]["whole_only"]


def _meta(body: bytes) -> dict:
    (n,) = struct.unpack("<Q", body[:8])
    return {k: json.loads(v) if k != "format" else v for k, v in json.loads(body[8 : 8 + n])["__metadata__"].items()}


# --- over HTTP ----------------------------------------------------------------------------------


def test_mid_size_llama_key_over_http_equals_the_whole_build(http):
    """A few hundred MB model: the jumped key equals the whole build's."""
    name = "transformers/LlamaForCausalLM"
    config = {"num_hidden_layers": 8, "hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 8,
              "vocab_size": 8000}
    key = "model.layers.7.mlp.down_proj.weight"
    r = http.post("/v1/model", json={"model": name, "config": config, "seed": 2**32 + 1, "tensors": [key]})
    assert r.status_code == 200, r.text
    assert _meta(r.content)["provenance"]["generation"] == {"path": "jumped"}
    resolved, _ = PRESETS[name].resolve(config)
    whole, _ = replay(PRESETS[name], resolved, 2**32 + 1)
    assert _same(safetensors.torch.load(r.content)[key], whole[key])


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_default_llama_one_key_answers_without_building_the_model(http):
    """Llama-2-7B's default config (27 GB in float32): one 45 M-element key, the server's RSS
    (this process: the test server runs in a thread) grows by about that key, not the model."""
    key = "model.layers.31.mlp.down_proj.weight"
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def watch() -> None:  # the process's RSS while the request runs, every 2 ms
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = http.post("/v1/model", json={"model": "transformers/LlamaForCausalLM", "seed": 0, "tensors": [key],
                                         "stats": False})
    finally:
        done.set()
        watcher.join()
    assert r.status_code == 200, r.text
    t = safetensors.torch.load(r.content)[key]
    assert t.shape == (4096, 11008) and t.dtype == torch.float32
    assert _meta(r.content)["provenance"]["generation"] == {"path": "jumped"}
    key_bytes = 4096 * 11008 * 4
    assert peak[0] - before < 6 * key_bytes  # the whole model is 150 times the key
