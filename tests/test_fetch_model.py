"""Fetching a model preset's state_dict over HTTP: POST, GET, HEAD, subsets, dtypes, caching, errors.

The bytes are checked against the reference digests computed by the real libraries
(``tests/data/preset-reference-digests.json``); the replays themselves are tested key by key in
``test_preset_replay.py``, and against live transformers in ``test_preset_transformers_live.py``.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import safetensors.torch
import torch

from service.presets import PRESETS
from tests.conftest import live_server
from tests.preset_digests import CASES, digest

SEED_BIG = 2**32 + 1


def case(case_id: str) -> dict:
    return next(c for c in CASES if c["id"] == case_id)


def metadata(body: bytes) -> dict:
    (n,) = struct.unpack("<Q", body[:8])
    return {k: json.loads(v) if k != "format" else v for k, v in json.loads(body[8 : 8 + n])["__metadata__"].items()}


def post(http, body: dict, **kw):
    return http.post("/v1/model", json=body, **kw)


# One small digest case per preset, over POST, and the default seed-case ids for GET.
ONE_CASE_PER_PRESET = {}
for c in CASES:
    ONE_CASE_PER_PRESET.setdefault(c["model"], c["id"])


@pytest.mark.parametrize("case_id", list(ONE_CASE_PER_PRESET.values()))
def test_post_answers_the_reference_state_dict(http, case_id):
    c = case(case_id)
    r = post(http, {"model": c["model"], "config": c["config"], "seed": c["seed"]})
    assert r.status_code == 200, r.text
    got = safetensors.torch.load(r.content)
    assert sorted(got) == sorted(t["key"] for t in c["tensors"])
    for t in c["tensors"]:
        assert list(got[t["key"]].shape) == t["shape"]
        assert digest(got[t["key"]]) == t["sha256"], t["key"]
    meta = metadata(r.content)
    assert meta["request"]["tensor_order"] == [t["key"] for t in c["tensors"]]
    assert meta["provenance"]["reference"]["library"] == PRESETS[c["model"]].library
    assert meta["provenance"]["torch"] == torch.__version__
    assert r.headers["x-init-seed"] == str(c["seed"])


def test_get_equals_post_and_is_immutable_with_a_seed(http):
    c = case("gpt2-spec-example-s4294967297")
    query = "&".join(f"{k}={v}" for k, v in c["config"].items())
    r = http.get(f"/v1/model/transformers/GPT2LMHeadModel?seed={SEED_BIG}&{query}")
    assert r.status_code == 200, r.text
    assert r.content == post(http, {"model": c["model"], "config": c["config"], "seed": SEED_BIG}).content
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    head = http.head(f"/v1/model/transformers/GPT2LMHeadModel?seed={SEED_BIG}&{query}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(r.content)
    assert head.headers["etag"] == r.headers["etag"]
    again = http.get(f"/v1/model/transformers/GPT2LMHeadModel?seed={SEED_BIG}&{query}", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    # POST with a matching If-None-Match: 412 (RFC 9110), nothing generated.
    p = post(http, {"model": c["model"], "config": c["config"], "seed": SEED_BIG}, headers={"accept": "application/octet-stream"})
    assert post(http, {"model": c["model"], "config": c["config"], "seed": SEED_BIG}, headers={"if-none-match": p.headers["etag"]}).status_code == 412


def test_without_a_seed_the_seed_is_drawn_reported_and_not_cached(http):
    r = http.get("/v1/model/nanogpt/GPT?n_layer=1&n_head=2&n_embd=16&vocab_size=50&block_size=8")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    seed = int(r.headers["x-init-seed"])
    again = post(http, {"model": "nanogpt/GPT", "config": {"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 50, "block_size": 8}, "seed": seed})
    drawn, replayed = safetensors.torch.load(r.content), safetensors.torch.load(again.content)
    assert sorted(drawn) == sorted(replayed)
    assert all(torch.equal(drawn[k], replayed[k]) for k in drawn)


def test_a_subset_has_the_same_bytes_as_the_whole_answer(http):
    c = case("resnet18-zir-s0")
    whole = safetensors.torch.load(post(http, {"model": c["model"], "config": c["config"], "seed": 0}).content)
    keys = ["fc.weight", "layer1.0.bn2.weight", "bn1.num_batches_tracked", "conv1.weight"]
    r = post(http, {"model": c["model"], "config": c["config"], "seed": 0, "tensors": keys})
    part = safetensors.torch.load(r.content)
    assert sorted(part) == sorted(keys)
    assert all(torch.equal(part[k], whole[k]) and part[k].dtype == whole[k].dtype for k in keys)
    assert metadata(r.content)["request"]["tensor_order"] == keys
    by_get = http.get(f"/v1/model/{c['model']}?seed=0&num_classes=20&zero_init_residual=true&tensors={','.join(keys)}")
    assert by_get.content == r.content


def test_tied_weights_appear_under_each_key(http):
    c = case("nanogpt-bias-s0")
    got = safetensors.torch.load(post(http, {"model": c["model"], "config": c["config"], "seed": 0}).content)
    assert torch.equal(got["transformer.wte.weight"], got["lm_head.weight"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_dtype_casts_floats_at_the_end_and_keeps_integer_buffers(http, dtype):
    c = case("resnet18-s0")
    body = {"model": c["model"], "config": c["config"], "seed": 0}
    full = safetensors.torch.load(post(http, body).content)
    cast = safetensors.torch.load(post(http, {**body, "dtype": dtype}).content)
    for key, t in full.items():
        want = t.to(getattr(torch, dtype)) if t.is_floating_point() else t
        assert cast[key].dtype == want.dtype and torch.equal(cast[key], want), key


def test_json_answer_describes_every_tensor_with_its_init_rule(http):
    c = case("gpt2-untied-s0")
    r = post(http, {"model": c["model"], "config": c["config"], "seed": 0, "histogram_bins": 8}, headers={"accept": "application/json"})
    assert r.status_code == 200
    answer = r.json()
    assert answer["request"]["tensor_order"] == [t["key"] for t in c["tensors"]]
    assert set(answer["tensors"]) == {t["key"] for t in c["tensors"]}
    full = safetensors.torch.load(post(http, {"model": c["model"], "config": c["config"], "seed": 0}).content)
    for key, summary in answer["tensors"].items():
        stats, t = summary["stats"], full[key].double()
        assert stats["numel"] == t.numel()
        assert stats["mean"] == pytest.approx(t.mean().item(), rel=1e-6, abs=1e-9)
        assert stats["init"] == PRESETS[c["model"]].rule_for(key, answer["request"]["config"])
        assert sum(stats["histogram"]["counts"]) == t.numel()
    # every key of the preset has an init rule in words
    assert all(s["stats"]["init"] for s in answer["tensors"].values())


def test_config_defaults_fill_the_normalized_request(http):
    r = post(http, {"model": "torchvision/resnet18", "config": {"num_classes": 3}, "seed": 1, "tensors": ["fc.bias"]})
    request = metadata(r.content)["request"]
    assert request["config"] == {**PRESETS["torchvision/resnet18"].defaults(), "num_classes": 3}
    # the same request spelt with its defaults gives the same bytes and ETag
    spelt = post(http, {"model": "torchvision/resnet18", "config": request["config"], "seed": 1, "tensors": ["fc.bias"]})
    assert spelt.content == r.content and spelt.headers["etag"] == r.headers["etag"]


def test_models_lists_every_preset_with_its_fields_and_default_size(http):
    r = http.get("/v1/models")
    assert r.status_code == 200
    models = r.json()["models"]
    assert set(models) == set(PRESETS)
    gpt2 = models["transformers/GPT2LMHeadModel"]
    fields = {f["name"]: f for f in gpt2["fields"]}
    assert fields["n_layer"]["default"] == 12 and fields["n_embd"]["default"] == 768
    # GPT-2 small: V·E + P·E + L·(2·2E [ln_1, ln_2] + 3E² + 3E [c_attn] + E² + E [c_proj] + 4E² + 4E [c_fc]
    #   + 4E² + E [c_proj]) + 2E [ln_f]; lm_head is tied to wte (counted once as a parameter).
    V, P, E, L = 50257, 1024, 768, 12
    block = 4 * E + (3 * E * E + 3 * E) + (E * E + E) + (4 * E * E + 4 * E) + (4 * E * E + E)
    parameters = V * E + P * E + L * block + 2 * E
    size = gpt2["default_config"]
    assert size["parameters"] == parameters
    assert size["elements"] == parameters + V * E  # lm_head.weight listed under its own key too
    assert size["bytes"] == 4 * size["elements"]
    assert gpt2["versions"] and gpt2["reference"].startswith("transformers.GPT2LMHeadModel")


def _detail(r) -> list[dict]:
    assert r.status_code == 422, r.text
    return r.json()["detail"]


@pytest.mark.parametrize(
    "body, loc, words",
    [
        ({"model": "transformers/gpt2lmheadmodel"}, ["body", "model"], "did you mean 'transformers/GPT2LMHeadModel'"),
        ({"model": "GPT2LMHeadModel"}, ["body", "model"], "did you mean"),
        ({"model": "nanogpt/GPT", "config": {"n_layers": 2}}, ["body", "config", "n_layers"], "did you mean 'n_layer'"),
        ({"model": "nanogpt/GPT", "config": {"n_embd": 30, "n_head": 4}}, ["body", "config", "n_embd"], ""),
        ({"model": "nanogpt/GPT", "config": {"n_layer": 0}}, ["body", "config", "n_layer"], "at least 1"),
        ({"model": "nanogpt/GPT", "config": {"n_layer": True}}, ["body", "config", "n_layer"], "integer"),
        ({"model": "nanogpt/GPT", "config": {"n_layer": "2"}}, ["body", "config", "n_layer"], "integer"),
        ({"model": "torchvision/resnet18", "config": {"num_classes": -1}}, ["body", "config", "num_classes"], "at least 1"),
        ({"model": "torchvision/resnet18", "tensors": ["fc.weights"]}, ["body", "tensors", 0], "did you mean 'fc.weight'"),
        ({"model": "torchvision/resnet18", "tensors": ["fc.bias", "fc.bias"]}, ["body", "tensors", 1], "more than once"),
        ({"model": "torchvision/resnet18", "rng": "portable-v1"}, ["body", "rng"], "portable"),
        ({"model": "torchvision/resnet18", "seed": True}, ["body", "seed"], ""),
        ({"model": "torchvision/resnet18", "histogram_bins": 2000}, ["body", "histogram_bins"], ""),
        ({"model": "torchvision/resnet18", "extra": 1}, ["body", "extra"], ""),
    ],
)
def test_bad_requests_are_422s_naming_the_field(http, body, loc, words):
    detail = _detail(post(http, body))
    assert detail[0]["loc"] == loc
    assert words in detail[0]["msg"]


@pytest.mark.parametrize(
    "query, loc",
    [
        ("nanogpt/GPT?n_layers=2", ["query", "n_layers"]),
        ("nanogpt/GPT?n_layer=two", ["query", "n_layer"]),
        ("nanogpt/GPT?bias=yes", ["query", "bias"]),
        ("nanogpt/GPT?seed=-1", ["query", "seed"]),
        ("nanogpt/GPT?seed=1&seed=2", ["query", "seed"]),
        ("nanogpt/GPT?tensors=nope", ["query", "tensors", 0]),
        ("nanogpt/GTP", ["query", "model"]),
    ],
)
def test_bad_queries_are_422s_naming_the_parameter(http, query, loc):
    assert _detail(http.get(f"/v1/model/{query}"))[0]["loc"] == loc


def test_an_answer_over_the_request_limit_is_a_413_that_suggests_tensors():
    c = case("resnet18-s0")
    whole = sum(4 * math.prod(t["shape"]) if t["dtype"] == "float32" else 8 for t in c["tensors"])
    with live_server(max_request_bytes=whole - 1) as server:
        import httpx

        with httpx.Client(base_url=server.url, timeout=120) as http:
            r = post(http, {"model": c["model"], "config": c["config"], "seed": 0})
            assert r.status_code == 413
            assert r.json()["env_var"] == "INITSVC_MAX_REQUEST_BYTES" and "'tensors'" in r.json()["detail"]
            assert r.json()["value"] == whole
            small = post(http, {"model": c["model"], "config": c["config"], "seed": 0, "tensors": ["fc.weight"]})
            assert small.status_code == 200


def test_a_config_past_the_tensor_limit_stops_while_planning():
    with live_server(max_tensors=50) as server:
        import httpx

        with httpx.Client(base_url=server.url, timeout=120) as http:
            r = post(http, {"model": "nanogpt/GPT", "config": {"n_layer": 100000}})
            assert r.status_code == 413 and r.json()["env_var"] == "INITSVC_MAX_TENSORS"


def test_a_presets_config_warnings_are_the_models_not_a_keys(http):
    """A vocabulary smaller than GPT-2's token ids draws the reference's config warning; it is
    about the model, so no key's name is put in front of it, whichever keys are answered."""
    config = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 50, "n_positions": 8}
    body = {"model": "transformers/GPT2LMHeadModel", "config": config, "seed": 0}
    seen = []
    for extra in ({}, {"stats": False}, {"tensors": ["lm_head.weight", "transformer.wpe.weight"]}, {"tensors": ["lm_head.weight"]}):
        r = post(http, {**body, **extra})
        assert r.status_code == 200, r.text
        seen.append(metadata(r.content)["provenance"]["warnings"])
    assert seen[0] and all(w == seen[0] for w in seen), seen
    assert all(w.startswith("Model config: ") for w in seen[0]) and any("bos_token_id" in w for w in seen[0])
