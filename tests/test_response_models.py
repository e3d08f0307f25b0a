"""Every JSON answer validates against the response model ``/openapi.json`` names for it, and the
model keeps every key the endpoint sends (dumped back, it equals the answer)."""

from __future__ import annotations

import math

import httpx
import pytest
import torch
from pydantic import BaseModel

from service.schemas.models import ModelsCatalog
from service.schemas.responses import (
    DevicesAnswer,
    Health,
    LayerCatalog,
    LayerStateDict,
    Readiness,
    SchemeCatalog,
    TensorAnswer,
)
from tests.conftest import live_server

JSON = {"accept": "application/json"}
GPT2 = "transformers/GPT2LMHeadModel"
TINY_GPT2 = {"n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10, "n_positions": 4}


def holds(model: type[BaseModel], body: object) -> BaseModel:
    """``body`` validates against ``model`` and nothing is dropped or renamed on the way."""
    parsed = model.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body
    return parsed


# --- catalogs and health ----------------------------------------------------------------------------

CATALOGS = [
    ("/healthz", Health),
    ("/readyz", Readiness),
    ("/v1/schemes", SchemeCatalog),
    ("/v1/devices", DevicesAnswer),
    ("/v1/layers", LayerCatalog),
    ("/v1/layers?type=Linear&in_features=3&out_features=4", LayerStateDict),
    ("/v1/layers?type=BatchNorm1d&num_features=3", LayerStateDict),  # buffers, an int64 one
    ("/v1/layers?type=Conv2d&in_channels=2&out_channels=4&kernel_size=3,5&dtype=bfloat16", LayerStateDict),
    ("/v1/layers?type=MultiheadAttention&embed_dim=8&num_heads=2", LayerStateDict),
    ("/v1/layers?type=ReLU", LayerStateDict),  # no state at all
    ("/v1/models", ModelsCatalog),
]


@pytest.mark.parametrize(("path", "model"), CATALOGS, ids=[p for p, _ in CATALOGS])
def test_catalog_answers_hold_to_their_models(http, path, model):
    r = http.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    holds(model, r.json())


def test_catalog_models_carry_the_values(http):
    schemes = holds(SchemeCatalog, http.get("/v1/schemes").json())
    assert isinstance(schemes, SchemeCatalog)
    kaiming = {a.name: a for a in schemes.schemes["kaiming_uniform"].parameters}
    assert kaiming["mode"].model_extra == {"default": "fan_in", "description": kaiming["mode"].model_extra["description"],
                                           "enum": ["fan_in", "fan_out"], "type": "string"}
    assert schemes.schemes["orthogonal"].rng == ["torch"]

    devices = holds(DevicesAnswer, http.get("/v1/devices").json())
    assert isinstance(devices, DevicesAnswer)
    cpu = next(d for d in devices.devices if d.device == "cpu")
    assert devices.torch == torch.__version__ and cpu.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert cpu.parallel_generation is not None and cpu.preset_tensors_alone is not None and cpu.sm_count is None

    layer = holds(LayerStateDict, http.get("/v1/layers?type=Linear&in_features=3&out_features=4").json())
    assert isinstance(layer, LayerStateDict)
    weight = layer.state_dict[0]
    assert (weight.key, weight.shape, weight.kind) == ("weight", [4, 3], "parameter")
    assert weight.default_init is not None and weight.default_init.scheme == "kaiming_uniform"
    assert weight.default_init.bound == pytest.approx(1 / math.sqrt(3)) and weight.default_init.fan_in == 3


def test_readiness_of_a_draining_server_holds_to_its_model():
    with live_server() as server:
        server.app.state.pool.stop_accepting()
        r = httpx.get(f"{server.url}/readyz", timeout=10)
    assert r.status_code == 503
    readiness = holds(Readiness, r.json())
    assert isinstance(readiness, Readiness) and readiness.ready is False and readiness.workers == {"cpu": True}


# --- the JSON representation of tensor answers -------------------------------------------------------

TENSOR_ANSWERS = [
    ("GET", "/v1/tensor?shape=64,3,3,3&scheme=kaiming_uniform&seed=0&histogram_bins=8", None),
    ("GET", "/v1/tensor?shape=3,5&scheme=eye", None),  # no seed: drawn; eye: expected is null
    ("POST", "/v1/tensor", {"shape": [0, 4], "init": {"scheme": "xavier_uniform"}, "seed": 1}),  # empty: nulls
    ("POST", "/v1/tensor", {"shape": [9], "init": {"scheme": "normal"}, "seed": 2, "stats": False}),
    ("POST", "/v1/tensor", {"shape": [256, 784], "slice": [[0, 8], None], "seed": 3,
                            "init": {"scheme": "trunc_normal", "std": 0.02, "a": -0.04, "b": 0.04}}),
    ("POST", "/v1/tensor", {"shape": [40, 30], "init": {"scheme": "uniform"}, "seed": 4, "rng": "portable-v1"}),
    ("POST", "/v1/tensors", {"seed": 5, "histogram_bins": 3, "tensors": [
        {"name": "w", "shape": [4, 3], "init": {"scheme": "kaiming_normal", "nonlinearity": "relu"}},
        {"name": "b", "shape": [1], "init": {"scheme": "zeros"}, "seed": 6},
    ]}),
    ("POST", "/v1/module", {"seed": 7, "histogram_bins": 4, "layers": {
        "fc": {"type": "Linear", "in_features": 3, "out_features": 2},
        "bn": {"type": "BatchNorm1d", "num_features": 2},
    }, "overrides": [{"param": "fc.bias", "init": {"scheme": "zeros"}}]}),
    ("POST", "/v1/model", {"model": GPT2, "config": TINY_GPT2, "seed": 8, "histogram_bins": 2}),
    ("GET", f"/v1/model/{GPT2}?seed=9&n_layer=1&n_embd=8&n_head=2&vocab_size=10&n_positions=4"
            "&tensors=transformer.wte.weight,lm_head.weight&slice.transformer.wte.weight=0:4,:", None),
]


@pytest.mark.parametrize(("method", "path", "body"), TENSOR_ANSWERS, ids=lambda v: None if isinstance(v, dict) else v)
def test_json_tensor_answers_hold_to_tensor_answer(http, method, path, body):
    r = http.request(method, path, json=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    answer = holds(TensorAnswer, r.json())
    assert isinstance(answer, TensorAnswer) and answer.tensors
    assert answer.request.seed == int(r.headers["x-init-seed"])


def test_tensor_answer_stats_are_the_tensors(http):
    """The typed stats are the tensor's: the same recipe's safetensors bytes, read with torch."""
    from safetensors.torch import load

    body = {"shape": [64, 16], "init": {"scheme": "kaiming_uniform"}, "seed": 11, "histogram_bins": 4}
    answer = holds(TensorAnswer, http.post("/v1/tensor", json=body, headers=JSON).json())
    assert isinstance(answer, TensorAnswer)
    t = load(http.post("/v1/tensor", json=body).content)["weight"].double()
    stats = answer.tensors["weight"].stats
    assert stats is not None and stats.histogram is not None and stats.expected is not None
    assert stats.numel == t.numel() and stats.min == t.min().item() and stats.max == t.max().item()
    # float32 sums over the data, merged in float64 (engine/stats.py): about 1e-7 relative
    assert stats.mean == pytest.approx(t.mean().item(), rel=1e-5, abs=1e-8)
    assert stats.std == pytest.approx(t.std().item(), rel=1e-6)
    assert stats.histogram.counts == [int(c) for c in torch.histc(t, 4, t.min().item(), t.max().item())]
    assert stats.bound == stats.expected.high == pytest.approx(math.sqrt(6 / 16))


def test_model_preset_stats_carry_their_init_rule(http):
    answer = holds(TensorAnswer, http.post("/v1/model", json={"model": GPT2, "config": TINY_GPT2, "seed": 0},
                                           headers=JSON).json())
    assert isinstance(answer, TensorAnswer)
    stats = answer.tensors["transformer.wte.weight"].stats
    assert stats is not None and "init" in stats.model_fields_set and stats.init
    assert answer.provenance.model_extra is not None and answer.provenance.model_extra["reference"]["library"] == "transformers"


# --- the document -----------------------------------------------------------------------------------

DOCUMENTED = [
    ("get", "/healthz", ["Health"]),
    ("get", "/readyz", ["Readiness"]),
    ("get", "/v1/schemes", ["SchemeCatalog"]),
    ("get", "/v1/devices", ["DevicesAnswer"]),
    ("get", "/v1/layers", ["LayerCatalog", "LayerStateDict"]),
    ("get", "/v1/models", ["ModelsCatalog"]),
    ("get", "/v1/gain", ["GainAnswer"]),
    ("get", "/v1/fans", ["FansAnswer"]),
    ("get", "/v1/tensor", ["TensorAnswer"]),
    ("head", "/v1/tensor", ["TensorAnswer"]),
    ("post", "/v1/tensor", ["TensorAnswer"]),
    ("post", "/v1/tensors", ["TensorAnswer"]),
    ("post", "/v1/module", ["TensorAnswer"]),
    ("post", "/v1/model", ["TensorAnswer"]),
    ("get", "/v1/model/{name}", ["TensorAnswer"]),
    ("head", "/v1/model/{name}", ["TensorAnswer"]),
]


def _refs(schema: dict) -> list[str]:
    if "$ref" in schema:
        return [schema["$ref"]]
    return [r for s in schema.get("anyOf", []) for r in _refs(s)]


@pytest.fixture(scope="module")
def document(http):
    return http.get("/openapi.json").json()


@pytest.mark.parametrize(("method", "path", "names"), DOCUMENTED, ids=[f"{m} {p}" for m, p, _ in DOCUMENTED])
def test_document_names_each_json_answer(document, method, path, names):
    ok = document["paths"][path][method]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert _refs(schema) == [f"#/components/schemas/{n}" for n in names]
    components = document["components"]["schemas"]
    for name in names:
        assert components[name]["type"] == "object" and components[name]["properties"]
    if names == ["TensorAnswer"]:  # the default representation stays documented next to the JSON one
        assert ok["content"]["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}


def test_document_lists_the_stats_fields(document):
    stats = document["components"]["schemas"]["Stats"]
    assert set(stats["properties"]) == {
        "numel", "mean", "std", "min", "max", "zero_fraction", "expected", "fan_in", "fan_out", "gain", "bound",
        "std_used", "histogram", "init",
    }
    assert set(stats["required"]) == set(stats["properties"]) - {"histogram", "init"}
    assert document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }
