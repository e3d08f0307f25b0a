"""What the client sends: a ``Call`` (method, path, body or query, and the representation wanted),
and the JSON bodies of ``/v1/tensor``, ``/v1/tensors``, ``/v1/module`` and ``/v1/model`` built from
Python values.

Shapes, seeds and slices are accepted in the forms Python code holds them (tuples, ``torch.Size``,
numpy integers, ``slice`` objects, numpy notation); anything else is sent as it is, for the server
to name in its 422.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# The body's enumerations, as docs/api.md lists them (the server's schemas are not imported: the
# client-only distribution has no pydantic; tests/test_client.py checks the two agree).
DType = Literal["float16", "bfloat16", "float32", "float64"]
Rng = Literal["torch", "portable-v1"]

BINARY = "application/octet-stream"
JSON = "application/json"
# Body fields of a single-tensor request; other keyword arguments are the scheme's parameters.
TOP_LEVEL = frozenset({"dtype", "device", "seed", "name", "slice", "rng", "histogram_bins", "stats"})
INTEGER_FIELDS = frozenset({"seed", "histogram_bins"})


@dataclass(frozen=True)
class Call:
    """One request: method, path, JSON body or query, and the representation wanted."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    accept: str = JSON


def recipe_call(
    shape: Any = None,
    scheme: str | None = None,
    *,
    init: Any = None,
    tensors: Any = None,
    layers: Any = None,
    overrides: Any = None,
    model: str | None = None,
    accept: str = BINARY,
    **options: Any,
) -> Call:
    """``/v1/tensor`` for ``shape``, ``/v1/tensors`` for ``tensors``, ``/v1/module`` for ``layers``,
    ``/v1/model`` for ``model`` (a preset name such as ``"transformers/GPT2LMHeadModel"``; then
    ``tensors`` is the list of state_dict keys wanted).

    For one tensor, ``options`` named in ``TOP_LEVEL`` are body fields and the rest are the
    scheme's parameters; for the others every option is a body field. ``None`` means "the
    server's default" and is left out.
    """
    if model is not None or layers is not None:  # with a model or layers, tensors= names the keys wanted
        options["tensors"], tensors = tensors, None
    choices = (("shape", shape), ("tensors", tensors), ("layers", layers), ("model", model))
    given = [what for what, value in choices if value is not None]
    if len(given) != 1:
        raise TypeError(f"pass exactly one of shape, tensors, layers or model; got {given or 'none'}")
    options = {k: integer(v) if k in INTEGER_FIELDS else v for k, v in options.items() if v is not None}
    if shape is not None:
        top = {k: v for k, v in options.items() if k in TOP_LEVEL}
        params = {k: v for k, v in options.items() if k not in TOP_LEVEL}
        return Call("POST", "/v1/tensor", tensor_body(shape, scheme, init, params, top), accept=accept)
    if scheme is not None or init is not None:
        raise TypeError("scheme and init go inside each entry of tensors= (or overrides=), not beside it")
    if tensors is not None:
        return Call("POST", "/v1/tensors", {**options, "tensors": tensor_list(tensors)}, accept=accept)
    if model is not None:
        if overrides is not None:
            raise TypeError("overrides= goes with layers=, not model=")
        return Call("POST", "/v1/model", model_body(model, options), accept=accept)
    body = keys_and_slices({**options, "layers": layers})
    if overrides is not None:
        body["overrides"] = override_list(overrides)
    return Call("POST", "/v1/module", body, accept=accept)


def normalize_shape(shape: Any) -> list[Any]:
    """``[256, 784]``, ``(256, 784)``, ``torch.Size``, ``256`` or ``"256,784"`` -> ``[256, 784]``.
    Values that are not integers are passed on for the server to name in its 422."""
    if isinstance(shape, str):
        return [int(part) if part.strip().isdigit() else part for part in shape.split(",")] if shape.strip() else []
    if _is_scalar(shape):
        return [integer(shape)]
    return [integer(d) for d in shape]


def shape_text(shape: Any) -> str:
    """``[64, 3, 7, 7]`` -> ``"64,3,7,7"``, the query-string form."""
    return ",".join(str(d) for d in normalize_shape(shape))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int) or (hasattr(value, "__index__") and getattr(value, "ndim", 0) == 0)


def integer(value: Any) -> Any:
    """numpy and torch integers become ints (JSON has no others); anything else goes as it is, for
    the server to judge (a bool stays a bool: the server refuses it, as torch does)."""
    return operator.index(value) if _is_scalar(value) and not isinstance(value, bool) else value


def normalize_slice(value: Any, shape: Sequence[Any]) -> list[list[int] | None]:
    """A slice as the body wants it, one entry per dimension: ``None`` or ``[start, stop]``.

    Accepts that list, numpy notation without steps (``"0:128,:"``), or per dimension a Python
    ``slice`` without a step, an ``int`` (one index) or ``None``. Where the shape is known, as in
    numpy, missing trailing dimensions are whole and a negative index counts from the end
    (``"-10:"`` of 100 is ``[90, 100]``); what is out of range is left for the server to refuse.
    """
    if isinstance(value, str):
        value = [_slice_text(part.strip()) for part in value.split(",")]
    elif isinstance(value, slice | int):
        value = [value]
    entries: list[list[int] | None] = []
    for dim, item in enumerate(value):
        size = shape[dim] if dim < len(shape) and isinstance(shape[dim], int) else None
        if item is None:
            entries.append(None)
        elif isinstance(item, slice):
            if item.step not in (None, 1):
                raise ValueError(f"slice steps are not supported; got {item} in dimension {dim}")
            stop = item.stop if item.stop is not None else size
            if stop is None:
                raise ValueError(f"slice {item} in dimension {dim} needs a stop: the shape has no size there")
            entries.append([_from_end(item.start or 0, size), _from_end(stop, size)])
        elif isinstance(item, int) and not isinstance(item, bool):
            index = _from_end(item, size)
            entries.append([index, index + 1])
        else:
            entries.append(list(item))
    if len(shape) > len(entries) and all(isinstance(d, int) for d in shape):
        entries += [None] * (len(shape) - len(entries))
    return entries


def _from_end(index: int, size: int | None) -> int:
    """A negative ``index`` counted from the end of a dimension of ``size``, as numpy does."""
    return index + size if index < 0 and size is not None else index


def _slice_text(item: str) -> slice | int | None:
    if item in ("", ":"):
        return None
    start, sep, stop = item.partition(":")
    try:
        if not sep:
            return int(start)
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"slice entries are start:stop with integers (or ':'); got {item!r}") from None


def recipe(scheme: str | None, init: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``init`` object from ``scheme`` + parameters, or from ``init`` (a dict or a schema model)."""
    if init is not None:
        if scheme is not None or params:
            raise TypeError("pass either init={...} or scheme= with its parameters, not both")
        if hasattr(init, "model_dump"):  # a service.schemas.recipes model
            return init.model_dump(mode="json", exclude_unset=True)
        return dict(init)
    if scheme is None:
        raise TypeError("a scheme is required: tensor(shape, 'kaiming_uniform', a=...) or init={'scheme': ...}")
    return {"scheme": scheme, **params}


def tensor_body(shape: Any, scheme: str | None, init: Any, params: Mapping[str, Any], top: dict[str, Any]) -> dict:
    dims = normalize_shape(shape)
    body = {"shape": dims, "init": recipe(scheme, init, params), **top}
    if "slice" in body:
        body["slice"] = normalize_slice(body["slice"], dims)
    return body


def tensor_list(tensors: Any) -> list[dict[str, Any]]:
    """A list of ``{name, shape, init, ...}``, or a mapping ``name -> {shape, init, ...}`` (in order)."""
    items = [{"name": name, **spec} for name, spec in tensors.items()] if isinstance(tensors, Mapping) else tensors
    out = []
    for item in items:
        entry = {k: integer(v) if k in INTEGER_FIELDS else v for k, v in item.items()}
        if "shape" in entry:
            entry["shape"] = normalize_shape(entry["shape"])
        if entry.get("slice") is not None:
            entry["slice"] = normalize_slice(entry["slice"], entry.get("shape", []))
        out.append(entry)
    return out


def override_list(overrides: Any) -> list[dict[str, Any]]:
    """``[{"param", "init"}, ...]``, or a mapping ``param -> init`` (in order)."""
    if isinstance(overrides, Mapping):
        return [{"param": name, "init": dict(spec)} for name, spec in overrides.items()]
    return [dict(item) for item in overrides]


def keys_and_slices(body: dict[str, Any]) -> dict[str, Any]:
    """A state_dict body's ``tensors`` (a list, or ``"key,key"``) and ``slice`` (key -> that key's
    slice in any form ``normalize_slice`` takes, every stop given: the client does not know the
    shapes) as the server wants them, for ``/v1/model`` and ``/v1/module``."""
    if isinstance(body.get("slice"), Mapping):
        body["slice"] = {key: normalize_slice(value, ()) for key, value in body["slice"].items()}
    if isinstance(body.get("tensors"), str):
        body["tensors"] = [key.strip() for key in body["tensors"].split(",") if key.strip()]
    elif body.get("tensors") is not None:
        body["tensors"] = list(body["tensors"])
    return body


def model_body(model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model", "config", "seed", "dtype", "tensors", "slice", ...}``: ``tensors`` (the keys wanted)
    may be a list or ``"key,key"``; ``config`` a mapping of the preset's fields; ``slice`` a mapping
    key -> that key's slice in any form ``normalize_slice`` takes (``"0:128,:"``, ``[[0, 128], None]``,
    ``(slice(0, 128), None)``; every stop given: the client does not know the shapes)."""
    body = keys_and_slices({"model": model, **options})
    if body.get("config") is not None:
        body["config"] = dict(body["config"])
    return body
