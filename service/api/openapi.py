"""What ``/openapi.json`` must say that no single route can declare, added once, when it is built.

Routes declare their own outcomes in ``responses={...}``. The layers in front of them answer for
every operation too, and a client (or schemathesis) must find those statuses in the document:

    408  no body bytes for ``INITSVC_RECEIVE_TIMEOUT_S`` (``BodyLimitMiddleware``) operations with a body
    401  no or wrong API key (``INITSVC_API_KEYS`` set; not on public paths)   protected operations
    413  body over ``INITSVC_MAX_BODY_BYTES`` (``BodyLimitMiddleware``)         operations with a body
    415  the body is not sent as JSON (docs/api.md §6)                         operations with a JSON body
    422  the schema FastAPI's validation errors and ``RecipeError`` share       operations with input

Each of these gets its body's schema and description from ``api/errors.py``'s table, and a
protected operation lists the two ways to send a key as ``security``, which ``/docs`` turns into
an "Authorize" button.

Every operation with a body gets named request examples (``BODY_EXAMPLES``, or for a route not
listed there one composed from its schema's field examples), and the required query parameters
get an ``example``: they are what "Try it out" in ``/docs`` sends, so each is a request the
server accepts (``tests/test_openapi_examples.py`` sends them all). ``GET``/``HEAD
/v1/tensor`` read their query string themselves (``api/query.py``), so their parameters are
described here from the same models the parser validates against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.api.errors import STATUSES, openapi_response
from service.api.middleware.auth import PublicPaths
from service.api.query import TOP_LEVEL
from service.schemas.recipes import RECIPE_MODELS, GainSpec
from service.schemas.requests import TensorRequest

ERROR_MESSAGE = {
    "title": "ErrorMessage",
    "type": "object",
    "properties": {"detail": {"type": "string", "title": "Detail"}},
    "required": ["detail"],
}
LIMIT_ERROR = {
    "title": "LimitError",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What was over which limit, naming its INITSVC_ variable."},
        "limit": {"type": "integer", "description": "The limit's value."},
        "value": {"type": "integer", "description": "The request's value (absent when the body was cut short)."},
        "env_var": {"type": "string", "description": "The INITSVC_ variable that sets the limit."},
    },
    "required": ["detail"],
}
SECURITY_SCHEMES = {
    "BearerKey": {"type": "http", "scheme": "bearer", "description": "An API key as 'Authorization: Bearer <key>'."},
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key as 'X-API-Key: <key>'."},
}
VALIDATION_ERROR = {
    "title": "ValidationError",
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
    "required": ["loc", "msg", "type"],
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Named request examples by path: small recipes (a seed of 0, slices inside their shape).
BODY_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "/v1/tensor": {
        "kaiming_uniform": {
            "summary": "nn.Linear(784, 256)'s weight init",
            "value": {"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 2.23606797749979}, "seed": 0},
        },
        "bfloat16_histogram": {
            "summary": "A conv weight in bfloat16, with a histogram in the stats",
            "value": {"shape": [64, 3, 7, 7], "init": {"scheme": "kaiming_normal", "mode": "fan_out",
                                                        "nonlinearity": "relu"},
                      "dtype": "bfloat16", "seed": 0, "histogram_bins": 32},
        },
        "slice": {
            "summary": "Rows 0-127 of a [1024, 768] embedding (a tensor-parallel shard)",
            "value": {"shape": [1024, 768], "init": {"scheme": "normal", "std": 0.02}, "seed": 0,
                      "slice": [[0, 128], None]},
        },
        "portable": {
            "summary": "portable-v1: the same bits on every device and in a client's own code",
            "value": {"shape": [256, 784], "init": {"scheme": "xavier_uniform"}, "seed": 0, "rng": "portable-v1"},
        },
    },
    "/v1/tensors": {
        "vit": {
            "summary": "Two tensors drawn in order from one stream",
            "value": {"seed": 0, "tensors": [
                {"name": "cls_token", "shape": [1, 1, 768], "init": {"scheme": "trunc_normal", "std": 0.02}},
                {"name": "head.weight", "shape": [10, 768], "init": {"scheme": "zeros"}},
            ]},
        },
    },
    "/v1/module": {
        "cnn": {
            "summary": "A small CNN's state_dict with PyTorch's default init",
            "value": {"seed": 0, "layers": [
                {"type": "Conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": 3}, {"type": "ReLU"},
                {"type": "Flatten"}, {"type": "Linear", "in_features": 14400, "out_features": 10},
            ]},
        },
    },
}
# Examples of query parameters (declared by their routes), by path and name.
PARAMETER_EXAMPLES: dict[str, dict[str, Any]] = {
    "/v1/tensor": {"shape": "256,784", "scheme": "kaiming_uniform", "seed": 0},
    "/v1/gain": {"nonlinearity": "leaky_relu", "param": 0.2},
    "/v1/fans": {"shape": "64,3,7,7"},
}


def _ensure_components(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorMessage", ERROR_MESSAGE)
    schemas.setdefault("LimitError", LIMIT_ERROR)
    if "HTTPValidationError" not in schemas:
        schemas.setdefault("ValidationError", VALIDATION_ERROR)
        schemas["HTTPValidationError"] = {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}},
        }
    return schemas


def _statuses(path: str, op: dict[str, Any], public: PublicPaths | None) -> list[int]:
    has_body = "requestBody" in op
    statuses = []
    if has_body:
        statuses += [408, 413, 415]
    if has_body or op.get("parameters") or "422" in op.get("responses", {}):
        statuses.append(422)
    if public is not None and path not in public:
        statuses.append(401)
    return statuses


def add_common_responses(doc: dict[str, Any], public: PublicPaths | None = None) -> dict[str, Any]:
    """Add 401/408/413/415/422 (with their body schemas) where they apply; ``public`` is given when
    API keys are on and names the operations that stay open. Declared responses keep their text."""
    _ensure_components(doc)
    if public is not None:
        doc["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = op.setdefault("responses", {})
            for status in _statuses(path, op, public):
                declared = responses.get(str(status))
                if declared is None:
                    responses[str(status)] = openapi_response(status)
                elif "content" not in declared:
                    declared["content"] = openapi_response(status)["content"]
            if public is not None and path not in public:
                op["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return doc


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema from a model field's: no title, the non-null branch of an Optional."""
    if "anyOf" in prop:
        branch = next(b for b in prop["anyOf"] if b.get("type") != "null" and "$ref" not in b)
        prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **branch}
    return {k: v for k, v in prop.items() if k not in ("title", "default") and not k.startswith("$")}


def _scheme_parameters() -> dict[str, dict[str, Any]]:
    """Every scheme parameter by name; where schemes disagree on a constraint, only the type (and
    the union of the allowed values) is kept, and the server checks the rest for the scheme."""
    merged: dict[str, dict[str, Any]] = {}
    owners: dict[str, list[str]] = {}
    for scheme, model in RECIPE_MODELS.items():
        for name, prop in model.model_json_schema().get("properties", {}).items():
            if name in ("scheme", "gain"):
                continue
            prop = _plain(prop)
            owners.setdefault(name, []).append(scheme)
            seen = merged.setdefault(name, prop)
            if seen is not prop and seen != prop:
                kept = {"type": seen.get("type", "number")}
                if "enum" in seen or "enum" in prop:
                    kept["enum"] = list(dict.fromkeys([*seen.get("enum", []), *prop.get("enum", [])]))
                kept["description"] = seen.get("description", "")
                merged[name] = kept
    for name, schema in merged.items():
        schema["description"] = f"{schema.get('description', '')} Schemes: {', '.join(owners[name])}.".strip()
    return merged


def tensor_query_parameters() -> list[dict[str, Any]]:
    """The query parameters of ``GET /v1/tensor``, from the models its parser validates against."""

    def param(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
        description = schema.pop("description", "")
        return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}

    top = TensorRequest.model_json_schema()["properties"]
    gained = [s for s, m in RECIPE_MODELS.items() if "gain" in m.model_fields]
    nonlinearity = GainSpec.model_json_schema()["properties"]["nonlinearity"]
    params = [
        param("shape", {"type": "string", "pattern": r"^([0-9]+(,[0-9]+)*)?$",
                        "description": "Comma-separated shape, e.g. 256,784 (empty: a 0-d tensor)."}, required=True),
        param("scheme", {"type": "string", "enum": list(RECIPE_MODELS), "description": "The init scheme."}, required=True),
    ]
    params += [param(name, schema) for name, schema in _scheme_parameters().items()]
    params += [
        param("gain", {"type": "number", "description": f"The gain as a number. Schemes: {', '.join(gained)}."}),
        param("gain_nonlinearity", {**_plain(nonlinearity), "description": "The gain as calculate_gain(nonlinearity, gain_param)."}),
        param("gain_param", {"type": "number", "description": "calculate_gain's param (leaky_relu's negative slope)."}),
    ]
    params += [param(name, _plain(top[name])) for name in TOP_LEVEL if name in top]
    params.append(param("slice", {"type": "string", "description": "numpy notation without steps, e.g. 0:128,: (one entry per dimension)."}))
    return params


def document_tensor_query(doc: dict[str, Any], path: str = "/v1/tensor") -> dict[str, Any]:
    """List the GET form's query parameters on ``GET`` and ``HEAD`` of ``path`` (unless the route
    declares parameters itself)."""
    for method in ("get", "head"):
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is not None and not op.get("parameters"):
            op["parameters"] = tensor_query_parameters()
            op.setdefault("responses", {}).setdefault("422", {"description": STATUSES[422].description})
    return doc


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/components/schemas/") else schema


def _composed_example(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """A body from the schema's own field examples (their first), a seed of 0 where there is one;
    ``None`` unless every required field has an example."""
    schema = _resolve(doc, schema)
    properties = schema.get("properties", {})
    value = {name: prop["examples"][0] for name, prop in properties.items() if prop.get("examples")}
    if "seed" in properties:
        value["seed"] = 0
    return value if value and all(name in value for name in schema.get("required", [])) else None


def add_examples(doc: dict[str, Any]) -> dict[str, Any]:
    """Request-body examples (``BODY_EXAMPLES``, else composed) and query parameter examples,
    where the route declared none of its own."""
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            media = op.get("requestBody", {}).get("content", {}).get("application/json")
            if media is not None and "example" not in media and "examples" not in media:
                if path in BODY_EXAMPLES:
                    media["examples"] = BODY_EXAMPLES[path]
                elif (value := _composed_example(doc, media.get("schema", {}))) is not None:
                    media["examples"] = {"example": {"summary": "From the fields' examples", "value": value}}
            for param in op.get("parameters", []):
                example = PARAMETER_EXAMPLES.get(path, {}).get(param["name"])
                if example is not None and param.get("in") == "query" and "example" not in param:
                    param["example"] = example
    return doc


def exact_uint64(node: Any) -> Any:
    """FastAPI's OpenAPI model holds ``maximum`` as a float, which turns 2^64 - 1 into 2^64; put
    the exact integer back wherever a schema says ``format: uint64``."""
    if isinstance(node, dict):
        if node.get("format") == "uint64" and isinstance(node.get("maximum"), float):
            node["maximum"] = 2**64 - 1
        for value in node.values():
            exact_uint64(value)
    elif isinstance(node, list):
        for value in node:
            exact_uint64(value)
    return node


def install(app: FastAPI, public: PublicPaths | None = None) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) include the above; built once."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_common_responses(exact_uint64(add_examples(document_tensor_query(build()))), public)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
