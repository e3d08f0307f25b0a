"""Every example in ``/openapi.json`` is a request the server accepts: what "Try it out" in
``/docs`` sends (a named request-body example, the query parameters' examples, or a body made
of a schema's field examples) gets a 2xx from the live server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.app import create_app

DOCUMENT = json.loads(json.dumps(create_app().openapi()))  # as a client reads it
METHODS = ("get", "put", "post", "delete", "patch", "head")


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def _field_example(prop: dict[str, Any]) -> tuple[bool, Any]:
    for branch in [prop, *prop.get("anyOf", [])]:
        if branch.get("examples"):
            return True, branch["examples"][0]
        if "example" in branch:
            return True, branch["example"]
    return False, None


def _cases() -> list[Any]:
    cases = []
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = op.get("parameters", [])
            given = {p["name"]: p["example"] for p in params if "example" in p}
            missing = [p["name"] for p in params if p.get("required") and p["name"] not in given]
            if any(p["in"] == "path" for p in params):
                continue  # no path templates are given examples
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is None:
                if given:
                    assert not missing, f"{method} {path}: required {missing} have no example beside {list(given)}"
                    cases.append(pytest.param(method, path, given, None, id=f"{method} {path} params"))
                continue
            bodies = {name: ex["value"] for name, ex in media.get("examples", {}).items()}
            if "example" in media:
                bodies["example"] = media["example"]
            schema = _schema(media["schema"])
            fields = {name: _field_example(prop) for name, prop in schema.get("properties", {}).items()}
            composed = {name: value for name, (has, value) in fields.items() if has}
            if composed and all(name in composed for name in schema.get("required", [])):
                bodies["fields' examples"] = composed
            assert bodies, f"{method} {path} has a body but no example for /docs to send"
            cases += [pytest.param(method, path, given, body, id=f"{method} {path} {name}")
                      for name, body in bodies.items()]
    return cases


CASES = _cases()


def test_every_operation_with_a_body_or_required_query_has_examples():
    ids = {case.id for case in CASES}
    for path in ("/v1/tensor", "/v1/tensors", "/v1/module"):
        assert any(i.startswith(f"post {path} ") for i in ids), path
    assert {"get /v1/tensor params", "head /v1/tensor params", "get /v1/gain params", "get /v1/fans params"} <= ids


def test_the_seed_bound_is_exact_and_marked_uint64():
    text = json.dumps(DOCUMENT)
    assert "1.8446744073709552e+19" not in text and "18446744073709551615" in text
    seed = next(b for b in _schema(DOCUMENT["paths"]["/v1/tensor"]["post"]["requestBody"]["content"]
                                   ["application/json"]["schema"])["properties"]["seed"]["anyOf"] if "type" in b
                and b["type"] == "integer")
    assert seed["format"] == "uint64" and seed["maximum"] == 2**64 - 1 and seed["examples"] == [0]


@pytest.mark.parametrize(("method", "path", "params", "body"), CASES)
def test_example_is_accepted(http, method, path, params, body):
    r = http.request(method.upper(), path, params=params or None, json=body)
    assert r.is_success, f"{method.upper()} {path} {params} {body}: {r.status_code} {r.text[:500]}"
