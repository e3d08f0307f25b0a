"""What ``/openapi.json`` must say that no single route can declare, added once, when it is built.

Routes declare their own outcomes in ``responses={...}``. The layers in front of them answer for
every operation too, and a client (or schemathesis) must find those statuses in the document:

    400  the JSON body could not be parsed at all: invalid UTF-8, nesting too deep for the
         parser, an integer literal over 4300 digits (FastAPI's own answer)    operations with a body
    401  no or wrong API key (``INITSVC_API_KEYS`` set; not on public paths)   protected operations
    413  body over ``INITSVC_MAX_BODY_BYTES`` (``BodyLimitMiddleware``)         operations with a body
    415  the body is not sent as JSON (docs/api.md §6)                         operations with a JSON body
    422  the schema FastAPI's validation errors and ``RecipeError`` share       operations with input

Each of these gets its body's schema, and a protected operation lists the two ways to send a
key as ``security``, which ``/docs`` turns into an "Authorize" button. ``GET``/``HEAD
/v1/tensor`` read their query string themselves (``api/query.py``), so their parameters are
described here from the same models the parser validates against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service.api.auth import PublicPaths
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
COMMON = {
    400: ("ErrorMessage", "The body could not be parsed as JSON at all (invalid UTF-8, nested too deep, a number too long)."),
    401: ("ErrorMessage", "API keys are configured and the request carries none or a wrong one (WWW-Authenticate: Bearer)."),
    413: ("LimitError", "Over a size limit (the body over INITSVC_MAX_BODY_BYTES, or a tensor limit); the detail names it."),
    415: ("ErrorMessage", "The body must be sent as JSON (Content-Type: application/json)."),
    422: ("HTTPValidationError", "Invalid input: each entry's loc names the field and msg says what is allowed."),
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


def _response(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


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
        statuses += [400, 413, 415]
    if has_body or op.get("parameters") or "422" in op.get("responses", {}):
        statuses.append(422)
    if public is not None and path not in public:
        statuses.append(401)
    return statuses


def add_common_responses(doc: dict[str, Any], public: PublicPaths | None = None) -> dict[str, Any]:
    """Add 400/401/413/415/422 (with their body schemas) where they apply; ``public`` is given when
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
                schema, description = COMMON[status]
                declared = responses.get(str(status))
                if declared is None:
                    responses[str(status)] = _response(schema, description)
                elif "content" not in declared:
                    declared["content"] = _response(schema, description)["content"]
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
            op.setdefault("responses", {}).setdefault("422", {"description": COMMON[422][1]})
    return doc


def install(app: FastAPI, public: PublicPaths | None = None) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) include the above; built once."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_common_responses(document_tensor_query(build()), public)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
