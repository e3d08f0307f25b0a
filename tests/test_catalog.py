"""Looking things up: schemes, gains, fans, devices, health and the OpenAPI document."""

from __future__ import annotations

import typing

import pytest
import torch
from torch.nn import init

from service.engine.catalog import CATALOG
from service.engine.fans import compute_fans
from service.engine.gains import NONLINEARITIES
from service.engine.schemes import SCHEMES
from service.engine.variance import DISTRIBUTIONS, VARIANCE_MODES
from service.schemas import recipes


def test_schemes_catalog_lists_every_scheme_with_parameters_and_rules(http):
    schemes = http.get("/v1/schemes").json()["schemes"]
    assert set(schemes) == set(SCHEMES) and len(schemes) == 18
    kaiming = schemes["kaiming_uniform"]
    params = {p["name"]: p for p in kaiming["parameters"]}
    assert params["a"]["default"] == 0.0 and params["mode"]["default"] == "fan_in"
    assert params["mode"]["enum"] == ["fan_in", "fan_out"] and not params["a"]["required"]
    assert kaiming["shape_rule"] == "at least 2-D" and kaiming["reference"].startswith("torch.nn.init.kaiming_uniform_")
    assert {p["name"]: p["required"] for p in schemes["sparse"]["parameters"]} == {"sparsity": True, "std": False}
    assert schemes["dirac"]["shape_rule"] == "3-, 4- or 5-D"
    assert schemes["orthogonal"]["rng"] == ["torch"]


def test_schema_literals_equal_the_engine_tables():
    assert set(recipes.RECIPE_MODELS) == set(SCHEMES) == set(CATALOG)
    assert set(typing.get_args(recipes.Nonlinearity)) == set(NONLINEARITIES)
    assert typing.get_args(recipes.VarianceMode) == VARIANCE_MODES
    assert typing.get_args(recipes.VarianceDistribution) == DISTRIBUTIONS


@pytest.mark.parametrize("shape", [[3, 5], [64, 3, 7, 7], [8, 4, 2, 3, 5], [0, 4], [4, 0, 3]], ids=str)
def test_fans_match_torch(http, shape):
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(torch.empty(shape))
    answer = http.get("/v1/fans", params={"shape": ",".join(map(str, shape))}).json()
    assert (answer["fan_in"], answer["fan_out"]) == (fan_in, fan_out)
    f = compute_fans(shape)
    assert (f.fan_in, f.fan_out) == (fan_in, fan_out)


def test_fans_of_a_1d_shape_is_422(http):
    r = http.get("/v1/fans", params={"shape": "5"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "shape"]


def test_gain_of_an_unknown_nonlinearity_is_422_listing_the_known(http):
    r = http.get("/v1/gain", params={"nonlinearity": "gelu"})
    assert r.status_code == 422 and "leaky_relu" in r.json()["detail"][0]["msg"]


def test_devices_lists_cpu_and_the_default(http):
    doc = http.get("/v1/devices").json()
    assert doc["devices"][0]["device"] == "cpu" and doc["devices"][0]["cpu_capability"]
    assert doc["default"] in [d["device"] for d in doc["devices"]]
    assert doc["torch"] == torch.__version__


def test_health_and_readiness(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_openapi_documents_every_scheme_model_and_error_status(http):
    doc = http.get("/openapi.json").json()
    names = set(doc["components"]["schemas"])
    for model in recipes.RECIPE_MODELS.values():
        assert model.__name__ in names
    post = doc["paths"]["/v1/tensor"]["post"]
    assert {"200", "413", "422", "429", "503"} <= set(post["responses"])
    assert http.get("/docs").status_code == 200
