"""The GET form of a tensor recipe: query parameters to the same ``TensorRequest``.

``shape=256,784&scheme=kaiming_uniform&a=2.23&seed=0&slice=0:128,:`` becomes the POST body
``{"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 2.23}, "seed": 0,
"slice": [[0, 128], null]}``. ``gain`` is a number, or ``gain_nonlinearity`` (+ ``gain_param``).
Values are text, validated by the same models leniently ("1.5" is a number; "true", "nan" and
"1e999" are not), and an unknown parameter is a 422 naming it, as in a body.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.errors import did_you_mean, query_loc
from service.schemas.recipes import RECIPE_MODELS
from service.schemas.requests import TensorRequest

_INT = re.compile(r"^[0-9]+$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
TOP_LEVEL = ("dtype", "device", "seed", "name", "histogram_bins", "stats", "rng")


def _error(loc: tuple, msg: str, type_: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", *loc), "msg": msg, "type": type_}])


def parse_int_list(text: str, field: str) -> list[int]:
    """``"256,784"`` → ``[256, 784]``; ``""`` → ``[]`` (a 0-d tensor)."""
    if text.strip() == "":
        return []
    items = [item.strip() for item in text.split(",")]
    if not all(_INT.match(item) for item in items):
        raise _error((field,), f"{field} must be comma-separated non-negative integers, e.g. 256,784; got {text!r}")
    return [int(item) for item in items]


def parse_number(text: str, field: str) -> float:
    """A decimal number (``1.5``, ``-2e-3``); words such as ``true`` or ``inf`` are not numbers."""
    if not _NUMBER.match(text.strip()):
        raise _error((field,), f"{field} must be a finite number; got {text!r}", "float_parsing")
    return float(text)


def parse_slice(text: str) -> list[list[int] | None]:
    """numpy notation without steps: ``0:128,:`` → ``[[0, 128], None]``; ``5`` → ``[[5, 6]]``."""
    entries: list[list[int] | None] = []
    for dim, item in enumerate(part.strip() for part in text.split(",")):
        if item in (":", ""):
            entries.append(None)
            continue
        start, sep, stop = item.partition(":")
        if not sep and _INT.match(start):
            entries.append([int(start), int(start) + 1])
            continue
        if (start and not _INT.match(start)) or (stop and not _INT.match(stop)):
            raise _error(("slice", dim), f"slice entries are start:stop with non-negative integers (or ':'); got {item!r}")
        entries.append([int(start) if start else 0, int(stop) if stop else -1])
    return entries


def request_from_query(params: list[tuple[str, str]]) -> TensorRequest:
    """Build and validate a ``TensorRequest`` from a query string's (key, value) pairs."""
    raw: dict[str, str] = {}
    for key, value in params:
        if key in raw:
            raise _error((key,), f"{key} is given more than once")
        raw[key] = value
    if "scheme" not in raw:
        raise _error(("scheme",), f"scheme is required; one of: {', '.join(RECIPE_MODELS)}", "missing")
    if "shape" not in raw:
        raise _error(("shape",), "shape is required, e.g. shape=256,784", "missing")
    scheme = raw.pop("scheme")
    model = RECIPE_MODELS.get(scheme)
    if model is None:
        guess = did_you_mean(scheme, RECIPE_MODELS)
        hint = f"did you mean {guess!r}? " if guess else ""
        known = ", ".join(RECIPE_MODELS)
        raise _error(("scheme",), f"unknown scheme {scheme!r}; {hint}scheme must be one of: {known}", "literal_error")
    body: dict[str, Any] = {"shape": parse_int_list(raw.pop("shape"), "shape")}
    init: dict[str, Any] = {"scheme": scheme}
    if "gain_nonlinearity" in raw:
        if "gain" in raw:
            raise _error(("gain",), "give gain or gain_nonlinearity, not both")
        gain: dict[str, Any] = {"nonlinearity": raw.pop("gain_nonlinearity")}
        if "gain_param" in raw:
            gain["param"] = parse_number(raw.pop("gain_param"), "gain_param")
        init["gain"] = gain
    elif "gain" in raw and "gain" in model.model_fields:
        init["gain"] = parse_number(raw.pop("gain"), "gain")
    for name in model.model_fields:
        if name != "scheme" and name in raw:
            init[name] = raw.pop(name)
    body["init"] = init
    for name in TOP_LEVEL:
        if name in raw:
            body[name] = raw.pop(name)
    if "slice" in raw:
        entries = parse_slice(raw.pop("slice"))
        for dim, entry in enumerate(entries):  # an open stop means the whole dimension
            if entry is not None and entry[1] == -1:
                if dim >= len(body["shape"]):
                    raise _error(("slice", dim), "slice has more entries than shape has dimensions")
                entry[1] = body["shape"][dim]
        body["slice"] = entries
    if raw:
        allowed = ["shape", "scheme", *(n for n in model.model_fields if n != "scheme"), *TOP_LEVEL, "slice"]
        if "gain" in model.model_fields:
            allowed += ["gain_nonlinearity", "gain_param"]
        unknown = sorted(raw)
        guess = did_you_mean(unknown[0], allowed)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        raise _error(
            (unknown[0],),
            f"unknown query parameter(s) {unknown} for scheme {scheme!r}{hint}; allowed: {', '.join(allowed)}",
            "extra_forbidden",
        )
    try:
        return TensorRequest.model_validate(body, strict=False)
    except ValidationError as exc:
        errors = [{"loc": ("query", *query_loc(e["loc"])), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise RequestValidationError(errors) from None
