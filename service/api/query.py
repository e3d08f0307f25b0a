"""Query strings of the GET forms, read by one strict set of parsers, and the GET form of a tensor recipe.

``shape=256,784&scheme=kaiming_uniform&a=2.23&seed=0&slice=0:128,:`` becomes the POST body
``{"shape": [256, 784], "init": {"scheme": "kaiming_uniform", "a": 2.23}, "seed": 0,
"slice": [[0, 128], null]}``. ``gain`` is a number, or ``gain_nonlinearity`` (+ ``gain_param``).

Values are text read by the rules of a JSON body (docs/api.md §6): an integer is JSON's
``-?(0|[1-9][0-9]*)``, a number JSON's number grammar (no ``+``, no bare ``.5`` or ``5.``, no
``_``, no spaces; ``nan`` and ``1e999`` are not finite numbers), a boolean exactly ``true`` or
``false``. A value that is not UTF-8, a parameter given twice and one the endpoint does not take
are a 422 naming it (with the allowed names), as in a body. The body is then validated strictly,
by the same model as the POST body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.errors import did_you_mean, query_loc
from service.schemas.recipes import RECIPE_MODELS
from service.schemas.requests import TensorRequest

JSON_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_INDEX = re.compile(r"0|[1-9][0-9]*")
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False}
INT_RULE = "a valid integer as JSON writes it (digits, an optional leading '-', no leading zeros, no '+', spaces or '_')"
NUMBER_RULE = (
    "a finite number as JSON writes it (e.g. 1, -0.5, 2e-3: no leading '+', no bare '.5' or '5.', no '_' or spaces)"
)
TOP_LEVEL = ("dtype", "device", "seed", "name", "histogram_bins", "stats", "rng")
_INTEGERS = ("seed", "histogram_bins")


def query_error(loc: tuple, msg: str, type_: str = "value_error") -> RequestValidationError:
    """A 422 at ``["query", *loc]``."""
    return RequestValidationError([{"loc": ("query", *loc), "msg": msg, "type": type_}])


def _decode(raw: bytes, key: str | None) -> str:
    """``raw`` (percent-decoded) as UTF-8; otherwise a 422 naming the parameter it belongs to."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1].hex()
        name = raw.decode("utf-8", "replace") if key is None else key
        what = "parameter name" if key is None else "value"
        raise query_error(
            (name,), f"the {what} of {name!r} is not valid UTF-8 (byte 0x{bad} at offset {exc.start}); "
            "percent-encode text as UTF-8", "unicode_error",
        ) from None


def query_pairs(request: Request) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs in order, as ``parse_qsl`` splits them (``&``; ``+``
    is a space; a name without ``=`` has the value ``""``), but decoded as strict UTF-8."""
    pairs = []
    for field in request.scope.get("query_string", b"").split(b"&"):
        if not field:
            continue
        name, _, value = field.partition(b"=")
        key = _decode(unquote_to_bytes(name.replace(b"+", b" ")), None)
        pairs.append((key, _decode(unquote_to_bytes(value.replace(b"+", b" ")), key)))
    return pairs


def single_values(pairs: Iterable[tuple[str, str]], allowed: Sequence[str] | None = None, where: str = "") -> dict[str, str]:
    """The pairs as a dict: a parameter given twice is a 422, and so is one not in ``allowed`` (with
    a did-you-mean and the allowed names; ``where`` says for what, e.g. " for scheme 'normal'")."""
    raw: dict[str, str] = {}
    for key, value in pairs:
        if key in raw:
            raise query_error((key,), f"{key} is given more than once; give each parameter once")
        raw[key] = value
    if allowed is not None:
        refuse_unknown(raw, allowed, where)
    return raw


def refuse_unknown(raw: Iterable[str], allowed: Sequence[str], where: str = "") -> None:
    """A 422 at the first name of ``raw`` not in ``allowed``, listing them all and the allowed ones."""
    unknown = sorted(name for name in raw if name not in allowed)
    if not unknown:
        return
    guess = did_you_mean(unknown[0], allowed)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    raise query_error(
        (unknown[0],), f"unknown query parameter(s) {unknown}{where}{hint}; allowed: {', '.join(allowed)}",
        "extra_forbidden",
    )


def parse_int(text: str, field: str | tuple) -> int:
    """A JSON integer: ``0``, ``42``, ``-3``; not ``01``, ``+1``, ``1.0``, ``1_000`` or `` 1``."""
    loc = field if isinstance(field, tuple) else (field,)
    name = ".".join(map(str, loc))
    if not JSON_INT.fullmatch(text):
        raise query_error(loc, f"{name} must be {INT_RULE}; got {text!r}", "int_parsing")
    try:
        return int(text)
    except ValueError:  # over sys.get_int_max_str_digits()
        raise query_error(loc, f"{name} has too many digits ({len(text)}); got {text[:20]}...", "int_parsing") from None


def parse_number(text: str, field: str) -> float:
    """A finite JSON number: ``1``, ``-0.5``, ``2e-3``; not ``+1``, ``.5``, ``5.``, ``1_0``, ``inf`` or ``1e999``."""
    if not JSON_NUMBER.fullmatch(text):
        raise query_error((field,), f"{field} must be {NUMBER_RULE}; got {text!r}", "float_parsing")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise query_error((field,), f"{field} must be a finite number; got {text!r}, which overflows", "finite_number")
    return value


def parse_bool(text: str, field: str) -> bool:
    """Exactly ``true`` or ``false``, as JSON writes them."""
    if text not in _BOOLEANS:
        raise query_error((field,), f"{field} must be a valid boolean: exactly true or false; got {text!r}", "bool_parsing")
    return _BOOLEANS[text]


def parse_int_list(text: str, field: str) -> list[int]:
    """``"256,784"`` → ``[256, 784]``; ``""`` → ``[]`` (a 0-d tensor). Each entry is a non-negative
    JSON integer; an empty entry (``3,,3``, ``3,``) or a space is a 422."""
    if text == "":
        return []
    items = text.split(",")
    if not all(_INDEX.fullmatch(item) for item in items):
        raise query_error(
            (field,), f"{field} must be comma-separated non-negative integers without spaces, e.g. 256,784; got {text!r}"
        )
    return [parse_int(item, field) for item in items]


def parse_slice(text: str, field: str = "slice") -> list[list[int] | None]:
    """numpy notation without steps, one entry per dimension: ``:`` (the whole dimension) → ``None``;
    ``a:b`` → ``[a, b]``; ``a:`` → ``[a, -1]`` (-1: to the end, resolved against the shape); ``:b`` →
    ``[0, b]``; ``a`` → ``[a, a + 1]``. ``""`` → ``[]`` (a 0-d tensor's slice). An empty entry is a 422."""
    if text == "":
        return []
    entries: list[list[int] | None] = []
    for dim, item in enumerate(text.split(",")):
        start, sep, stop = item.partition(":")
        bounds_ok = all(_INDEX.fullmatch(b) for b in (start, stop) if b) and ":" not in stop
        if item == "" or not bounds_ok or (not sep and not start):
            what = "an empty entry" if item == "" else repr(item)
            raise query_error(
                (field, dim),
                f"{field} takes one entry per dimension, comma-separated: ':' (the whole dimension), 'start:stop', "
                f"'start:', ':stop' or an index, with non-negative integers and no spaces; got {what} in {text!r}",
            )
        if not sep:
            entries.append([int(start), int(start) + 1])
        elif not start and not stop:
            entries.append(None)
        else:
            entries.append([int(start) if start else 0, int(stop) if stop else -1])
    return entries


def _scheme_value(model: Any, name: str, text: str) -> Any:
    """A scheme parameter's text as the JSON value its field takes: numbers and integers parsed,
    names (``mode``, ``nonlinearity``) kept as text for the model to check."""
    annotation = model.model_fields[name].annotation
    if annotation is float:
        return parse_number(text, name)
    if annotation is int:
        return parse_int(text, name)
    return text


def request_from_query(params: list[tuple[str, str]]) -> TensorRequest:
    """Build and validate a ``TensorRequest`` from a query string's (key, value) pairs."""
    raw = single_values(params)
    if "scheme" not in raw:
        raise query_error(("scheme",), f"scheme is required; one of: {', '.join(RECIPE_MODELS)}", "missing")
    if "shape" not in raw:
        raise query_error(("shape",), "shape is required, e.g. shape=256,784", "missing")
    scheme = raw.pop("scheme")
    model = RECIPE_MODELS.get(scheme)
    if model is None:
        guess = did_you_mean(scheme, RECIPE_MODELS)
        hint = f"did you mean {guess!r}? " if guess else ""
        known = ", ".join(RECIPE_MODELS)
        raise query_error(("scheme",), f"unknown scheme {scheme!r}; {hint}scheme must be one of: {known}", "literal_error")
    params_of = [n for n in model.model_fields if n != "scheme"]
    allowed = ["shape", "scheme", *params_of, *(["gain_nonlinearity", "gain_param"] if "gain" in params_of else []),
               *TOP_LEVEL, "slice"]
    refuse_unknown(raw, allowed, f" for scheme {scheme!r}")
    body: dict[str, Any] = {"shape": parse_int_list(raw.pop("shape"), "shape")}
    init: dict[str, Any] = {"scheme": scheme}
    if "gain_param" in raw and "gain_nonlinearity" not in raw:
        raise query_error(
            ("gain_param",), "gain_param is calculate_gain's param and needs gain_nonlinearity "
            "(e.g. gain_nonlinearity=leaky_relu&gain_param=0.2); for a plain number use gain", "missing",
        )
    if "gain_nonlinearity" in raw:
        if "gain" in raw:
            raise query_error(("gain",), "give gain or gain_nonlinearity, not both")
        gain: dict[str, Any] = {"nonlinearity": raw.pop("gain_nonlinearity")}
        if "gain_param" in raw:
            gain["param"] = parse_number(raw.pop("gain_param"), "gain_param")
        init["gain"] = gain
    elif "gain" in raw:
        init["gain"] = parse_number(raw.pop("gain"), "gain")
    for name in params_of:
        if name in raw:
            init[name] = _scheme_value(model, name, raw.pop(name))
    body["init"] = init
    for name in TOP_LEVEL:
        if name in raw:
            text = raw.pop(name)
            body[name] = parse_int(text, name) if name in _INTEGERS else parse_bool(text, name) if name == "stats" else text
    if "slice" in raw:
        entries = parse_slice(raw.pop("slice"))
        for dim, entry in enumerate(entries):  # an open stop means the whole dimension
            if entry is not None and entry[1] == -1:
                if dim >= len(body["shape"]):
                    raise query_error(("slice", dim), "slice has more entries than shape has dimensions")
                entry[1] = body["shape"][dim]
        body["slice"] = entries
    try:
        return TensorRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{"loc": ("query", *query_loc(e["loc"])), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise RequestValidationError(errors) from None
