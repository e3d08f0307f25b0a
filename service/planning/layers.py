"""``GET /v1/layers``: the catalog of layer types, and one layer's state_dict described from ``meta``.

Without a type, every model of ``LAYER_MODELS`` (the same ones that validate ``/v1/module``
bodies) with its torch class, description and constructor arguments. With one, in order:

1. the layer's largest tensor in Python integers (``largest_elements``) against
   ``INITSVC_MAX_ELEMENTS``, so a size that would overflow torch's shape arithmetic is a 413
   before torch sees it;
2. the layer built alone on ``meta`` (no memory, no draws): each state_dict key, shape, dtype,
   parameter or buffer, and the default init torch gives it with what ``stats.expected`` would
   report. A constructor that still refuses arguments the schema let through is a 422.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from service.engine.layers import (
    PARAMETER_FREE,
    LayerCall,
    default_distributions,
    meta_layer,
    state_entries,
    torch_reason,
    value_problem,
)
from service.engine.rng import DTYPES
from service.engine.stats import expected_fields
from service.errors import LimitExceeded, RecipeError
from service.schemas.layers import LAYER_MODELS
from service.schemas.layers_conv import LayerModel
from service.schemas.responses import LayerCatalog, LayerStateDict
from service.settings import Settings


@dataclass(frozen=True)
class LayerQuery:
    """One layer to describe: its validated model (constructor arguments) and the dtype to build it in."""

    layer: LayerModel
    dtype: str = "float32"


def _arguments(model: type[LayerModel]) -> list[dict[str, Any]]:
    """Each constructor argument from the model's JSON schema: type, default, constraints, required."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    listed = []
    for name, prop in schema.get("properties", {}).items():
        if name == "type":
            continue
        entry = {k: v for k, v in prop.items() if k != "title"}
        entry.update(name=name, required=name in required)
        listed.append(entry)
    return listed


@functools.cache
def layer_catalog() -> LayerCatalog:
    """Every layer type ``POST /v1/module`` accepts, in ``LAYER_MODELS`` order, and the dtypes."""
    return LayerCatalog.model_validate(
        {
            "layers": {
                name: {
                    "torch": f"torch.nn.{name}",
                    "description": (model.__doc__ or "").strip(),
                    "has_state": name not in PARAMETER_FREE,
                    "arguments": _arguments(model),
                }
                for name, model in LAYER_MODELS.items()
            },
            "dtypes": list(DTYPES),
        }
    )


def describe_layer(query: LayerQuery, settings: Settings) -> LayerStateDict:
    """The state_dict ``query.layer`` would have in ``query.dtype``, from a build on ``meta``."""
    layer = query.layer
    kind: str = layer.type  # type: ignore[attr-defined]
    largest = layer.largest_elements()
    if largest > settings.max_elements:
        raise LimitExceeded(
            f"this {kind} would have a tensor of {largest} elements", largest, settings.max_elements, "INITSVC_MAX_ELEMENTS"
        )
    for arg, value in layer.written_values().items():
        problem = value_problem(f"{kind} {arg}", value, DTYPES[query.dtype])
        if problem:
            raise RecipeError.at((arg,), problem)
    try:
        module = meta_layer(LayerCall("layer", kind, layer.arguments()), DTYPES[query.dtype])
    except (ValueError, TypeError, AssertionError, RuntimeError) as exc:
        raise RecipeError.at(("type",), f"torch.nn refused this layer: {torch_reason(exc)}") from None
    defaults = default_distributions(module)
    entries: list[dict[str, Any]] = []
    for e in state_entries(module):
        scheme, dist = defaults.get(e.key, ("default", None))
        init = {"scheme": scheme, **expected_fields(dist)} if dist is not None else None
        entries.append(
            {"key": e.key, "shape": list(e.shape), "dtype": e.dtype, "kind": "parameter" if e.parameter else "buffer", "default_init": init}
        )
    return LayerStateDict.model_validate(
        {
            "type": kind,
            "arguments": layer.model_dump(mode="json", exclude={"type"}),
            "dtype": query.dtype,
            "state_dict": entries,
            "elements": sum(math.prod(e["shape"]) for e in entries),
        }
    )
