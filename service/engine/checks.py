"""Rules a recipe must meet before anything is allocated.

Field-level rules (types, ranges, ``a <= b``) live in the request schemas; these are the rules
that need the shape or the dtype: the scheme's shape rule, ``dirac``'s groups, xavier's
``fan_in + fan_out > 0``, and that every value the scheme can produce fits the dtype (torch
either raises on those, e.g. "from is out of bounds for c10::Half", or silently makes ``inf``).
Each failure is a ``Problem`` whose ``loc`` names the field, relative to the tensor recipe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from service.engine.distributions import describe, resolve_gain
from service.engine.gains import calculate_gain
from service.engine.rng import DTYPES, compute_dtype
from service.errors import LimitExceeded, Problem, RecipeError
from service.scheme_table import SCHEME_TABLE

# A normal draw never lands further than this many stds from its mean: Box–Muller on torch's
# 53-bit uniforms reaches at most sqrt(-2·ln 2^-53) ≈ 8.57.
NORMAL_REACH_STDS = 10.0


def check_size(shape: tuple[int, ...], dtype: str, max_elements: int, where: str = "shape") -> int:
    """Element count of ``shape``; ``LimitExceeded`` over ``max_elements`` (no int64 overflow:
    Python integers are exact). A zero-size dimension makes the tensor empty, but the other
    dimensions still bound its strides, so their product must fit the limit too."""
    numel = math.prod(shape)
    if numel > max_elements:
        raise LimitExceeded(
            f"{where} {list(shape)} has {numel} elements", numel, max_elements, "INITSVC_MAX_ELEMENTS"
        )
    span = math.prod(d for d in shape if d)
    if span > max_elements:
        raise LimitExceeded(
            f"{where} {list(shape)} is empty but its other dimensions multiply to {span}",
            span, max_elements, "INITSVC_MAX_ELEMENTS",
        )
    return numel


def tensor_bytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * DTYPES[dtype].itemsize


def _fits(dtype: str, low: float, high: float) -> bool:
    biggest = torch.finfo(DTYPES[dtype]).max
    return -biggest <= low and high <= biggest and (high - low) <= biggest


def _range_problem(scheme: str, dtype: str, low: float, high: float, loc: tuple) -> Problem:
    biggest = torch.finfo(DTYPES[dtype]).max
    return Problem(
        loc,
        f"{scheme} would make values in [{low:g}, {high:g}], which do not fit {dtype} "
        f"(largest finite value {biggest:g}, and the range's width must not exceed it); "
        "use smaller parameters or a wider dtype",
    )


def _culprits(scheme: str, p: Mapping[str, Any], dtype: str) -> tuple[str, ...]:
    """The fields to blame when a one-call draw's range does not fit ``dtype``: for ``uniform``
    the bound that does not fit (both when each fits but their distance does not); for
    ``normal`` the mean when it alone does not fit, else the std; otherwise the scale factor."""
    if scheme == "uniform":
        bad = tuple(f for f in ("a", "b") if not _fits(dtype, p[f], p[f]))
        return bad or ("a", "b")
    if scheme == "normal":
        return ("mean",) if not _fits(dtype, p["mean"], p["mean"]) else ("std",)
    return (next((f for f in ("gain", "scale", "std", "a") if f in p), "scheme"),)


def _value_problems(scheme: str, p: Mapping[str, Any], shape: tuple[int, ...], dtype: str) -> list[Problem]:
    """Every value the scheme can make must be finite in the dtype torch computes it in."""
    work_dtype = compute_dtype(scheme, dtype)
    if math.prod(shape) == 0:
        return []
    if scheme in ("constant",):
        value = p["val"]
        return [] if _fits(dtype, value, value) else [_range_problem(scheme, dtype, value, value, ("init", "val"))]
    if scheme == "trunc_normal":
        low = max(p["a"], p["mean"] - NORMAL_REACH_STDS * p["std"])
        high = min(p["b"], p["mean"] + NORMAL_REACH_STDS * p["std"])
        problems = [] if _fits(dtype, low, high) else [_range_problem(scheme, dtype, low, high, ("init", "std"))]
        if not _fits(dtype, p["a"], p["b"]):  # narrow windows are drawn with uniform_(a, b)
            problems.append(_range_problem(scheme, dtype, p["a"], p["b"], ("init", "b")))
        return problems[:1]
    if scheme == "trunc_normal_tf":
        unit_low, unit_high = max(p["a"], -NORMAL_REACH_STDS), min(p["b"], NORMAL_REACH_STDS)
        low, high = p["mean"] + p["std"] * unit_low, p["mean"] + p["std"] * unit_high
        if not _fits(dtype, p["a"], p["b"]):
            return [_range_problem(scheme, dtype, p["a"], p["b"], ("init", "b"))]
        return [] if _fits(dtype, min(low, high), max(low, high)) else [_range_problem(scheme, dtype, low, high, ("init", "std"))]
    dist = describe(scheme, p, shape)
    if dist.draw is not None:
        op, p1, p2 = dist.draw
        low, high = (p1, p2) if op == "uniform" else (p1 - NORMAL_REACH_STDS * p2, p1 + NORMAL_REACH_STDS * p2)
        if _fits(work_dtype, low, high):
            return []
        return [_range_problem(scheme, work_dtype, low, high, ("init", f)) for f in _culprits(scheme, p, work_dtype)]
    if dist.std_used is not None:  # sparse, truncated variance scaling: normal draws
        reach = NORMAL_REACH_STDS * dist.std_used
        field = "std" if "std" in p else "scale"
        return [] if _fits(dtype, -reach, reach) else [_range_problem(scheme, dtype, -reach, reach, ("init", field))]
    if scheme == "orthogonal":
        gain = abs(dist.gain or 0.0)
        return [] if _fits(dtype, -gain, gain) else [_range_problem(scheme, dtype, -gain, gain, ("init", "gain"))]
    return []


def check_recipe(scheme: str, params: Mapping[str, Any], shape: tuple[int, ...], dtype: str) -> None:
    """Raise ``RecipeError`` naming each field that makes this recipe impossible."""
    for field in ("a", "gain"):  # a leaky_relu slope whose square overflows has no gain
        try:
            if field == "a" and scheme.startswith("kaiming"):
                calculate_gain(params["nonlinearity"], params["a"])
            elif field == "gain" and field in params:
                resolve_gain(params["gain"])
        except ValueError as exc:
            raise RecipeError.at(("init", field), str(exc)) from None
    rule = SCHEME_TABLE[scheme].shape
    if not rule.allows(len(shape)):
        raise RecipeError.at(
            ("shape",),
            f"{scheme} needs a shape {rule.text}; got {len(shape)}-D shape {list(shape)}",
        )
    if scheme == "dirac" and shape[0] % params["groups"] != 0:
        raise RecipeError.at(
            ("init", "groups"),
            f"dirac needs shape[0] divisible by groups; got shape[0]={shape[0]}, groups={params['groups']}",
        )
    if scheme in ("xavier_uniform", "xavier_normal") and (shape[0] + shape[1]) * math.prod(shape[2:]) == 0:
        raise RecipeError.at(
            ("shape",),
            f"{scheme} needs fan_in + fan_out > 0 (its std divides by it); got shape {list(shape)}",
        )
    problems = _value_problems(scheme, params, shape, dtype)
    if problems:
        raise RecipeError(problems)
