"""From an init recipe and a shape to the portable-v1 family and its float64 parameters.

Torch-free and numpy-free: the bounds and stds are torch's formulas, in torch's order of
operations, evaluated with Python floats (IEEE binary64, correctly rounded ``+ − × ÷`` and
``math.sqrt``). Fans are ``service.formulas``' (torch's ``_calculate_fan_in_and_fan_out``).

=============================== ============ ===============================================
scheme                          family       parameters
=============================== ============ ===============================================
uniform(a, b)                   uniform      low = a, high = b
xavier_uniform(gain)            uniform      std = gain*sqrt(2.0/(fan_in + fan_out));
                                             bound = sqrt(3.0)*std
kaiming_uniform(a, mode, nl)    uniform      std = gain(nl, a)/sqrt(fan_mode);
                                             bound = sqrt(3.0)*std
variance_scaling(…, uniform)    uniform      bound = sqrt(3*v)
lecun_uniform                   uniform      variance_scaling(1, fan_in, uniform)
normal(mean, std)               normal       mean, std
xavier_normal(gain)             normal       std = gain*sqrt(2.0/(fan_in + fan_out))
kaiming_normal(a, mode, nl)     normal       std = gain(nl, a)/sqrt(fan_mode)
variance_scaling(…, normal)     normal       std = sqrt(v)
trunc_normal(mean, std, a, b)   truncated    alpha = (a − mean)/std, beta = (b − mean)/std
trunc_normal_tf(mean, std, a,b) truncated    alpha = a, beta = b
variance_scaling(…, trunc…)     truncated    std = sqrt(v)/0.87962566103423978, alpha = −2,
                                             beta = 2, mean = 0
lecun_normal                    truncated    variance_scaling(1, fan_in, truncated_normal)
sparse(sparsity, std)           sparse       mean = 0, std; num_zeros = ceil(sparsity*rows)
constant/ones/zeros/eye/dirac   deterministic as torch
orthogonal                      —            no portable form in v1: PortableUnsupportedError
=============================== ============ ===============================================

``v = scale / n`` with ``n = fan_in | fan_out | (fan_in + fan_out)/2``; uniform bounds are
``low = −bound, high = bound``. ``gain(nl, param)`` is ``calculate_gain``, except that
leaky_relu's ``negative_slope**2`` is ``slope*slope`` (libm's ``pow`` is not correctly
rounded, so ``**`` would differ between clients by an ulp for about 0.1% of slopes; for 0,
0.01, 0.2, √5 and other common slopes the two are the same double).

Example: ``resolve_recipe({"scheme": "kaiming_uniform"}, [256, 784])`` is the uniform family
with ``high = sqrt(3.0) * (sqrt(2.0) / sqrt(784))``.

Longer than the ~300 lines most modules keep to: portable-v1's recipe-to-transform table for every scheme, one row per scheme.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import SupportsIndex

from service.formulas import (
    LEAKY_RELU_DEFAULT_SLOPE,
    NONLINEARITIES,
    TRUNCATED_NORMAL_STD_2SIGMA,
    calculate_gain,
    compute_fans,
)
from service.scheme_table import (
    AT_LEAST_2D,
    CONV_3_TO_5D,
    DISTRIBUTIONS,
    EXACTLY_2D,
    SCHEME_TABLE,
    VARIANCE_MODES,
    ShapeRule,
)

MIN_WINDOW_PROBABILITY = 1e-4

# scheme -> (defaults, shape rule), from the registry; None marks a required parameter
_SCHEMES: dict[str, tuple[dict[str, object], ShapeRule]] = {
    name: (row.defaults, row.shape) for name, row in SCHEME_TABLE.items()
}
SCHEMES: tuple[str, ...] = tuple(_SCHEMES)


class PortableError(ValueError):
    """Base of the portable generator's errors: the recipe cannot be made in portable-v1."""


class PortableRecipeError(PortableError):
    """A recipe (or shape) that portable-v1 rejects: unknown key, bad value, shape rule."""


class PortableUnsupportedError(PortableError):
    """A scheme with no portable form in v1 (``orthogonal``)."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        super().__init__(
            f"scheme {scheme!r} has no portable form in rng 'portable-v1' (its QR has no "
            f"bit-exact cross-device definition); use rng 'torch' for it"
        )


class PortableWindowError(PortableError):
    """A truncated window whose N(0, 1) probability is below ``MIN_WINDOW_PROBABILITY``."""

    def __init__(self, scheme: str, a: float, b: float, alpha: float, beta: float, probability: float):
        self.scheme, self.a, self.b = scheme, a, b
        self.alpha, self.beta, self.probability = alpha, beta, probability
        super().__init__(
            f"{scheme} window [a={a!r}, b={b!r}] is [{alpha!r}, {beta!r}] in std units and has "
            f"probability {probability:.3g} under N(0, 1); portable-v1 draws truncated values "
            f"by rejection and needs a window probability of at least {MIN_WINDOW_PROBABILITY:g} "
            f"(widen [a, b] or move mean inside it)"
        )


@dataclass(frozen=True)
class PortablePlan:
    """What portable-v1 draws for a recipe on a shape; unused fields are ``None``.

    uniform: ``low + (high − low)*u``; normal: ``mean + std*x``; truncated: ``mean + std*x``
    with ``alpha <= x <= beta`` by rejection; sparse: ``0 + std*x`` with ``num_zeros`` zeros
    per column; deterministic: ``fill`` is ``constant`` (``value``), ``eye`` or ``dirac``
    (``groups``). A zero-element shape whose formula divides by zero has no parameters.
    """

    scheme: str
    family: str
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None
    alpha: float | None = None
    beta: float | None = None
    probability: float | None = None
    num_zeros: int | None = None
    fill: str | None = None
    value: float | None = None
    groups: int | None = None


def _number(scheme: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PortableRecipeError(f"{scheme}.{name} must be a number; got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise PortableRecipeError(f"{scheme}.{name} must be finite; got {value!r}")
    return x


def _choice(scheme: str, name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise PortableRecipeError(f"{scheme}.{name} must be one of {list(allowed)}; got {value!r}")
    return value


def resolve_gain(scheme: str, gain: object) -> float:
    """A ``gain`` given as a number or as ``{"nonlinearity": NAME, "param": X}``."""
    if isinstance(gain, Mapping):
        extra = set(gain) - {"nonlinearity", "param"}
        if extra or "nonlinearity" not in gain:
            raise PortableRecipeError(
                f"{scheme}.gain as an object takes 'nonlinearity' (required) and 'param'; "
                f"got keys {sorted(gain)}"
            )
        param = gain.get("param")
        if param is not None:
            param = _number(scheme, "gain.param", param)
        return nonlinearity_gain(scheme, gain["nonlinearity"], param)
    value = _number(scheme, "gain", gain)
    if value < 0:
        raise PortableRecipeError(f"{scheme}.gain must be >= 0; got {gain!r}")
    return value


def nonlinearity_gain(scheme: str, nonlinearity: object, param: float | None) -> float:
    """``calculate_gain(nonlinearity, param)``, leaky_relu as ``sqrt(2.0/(1 + s*s))``."""
    name = _choice(scheme, "nonlinearity", nonlinearity, NONLINEARITIES)
    if name == "leaky_relu":
        slope = LEAKY_RELU_DEFAULT_SLOPE if param is None else param
        return math.sqrt(2.0 / (1 + slope * slope))
    return float(calculate_gain(name, param))


def window_probability(alpha: float, beta: float) -> float:
    """P(alpha <= X <= beta) for X ~ N(0, 1), from erfc on the side that keeps precision."""
    if alpha > beta:
        return 0.0
    if alpha >= 0.0:
        return 0.5 * (math.erfc(alpha / math.sqrt(2.0)) - math.erfc(beta / math.sqrt(2.0)))
    if beta <= 0.0:
        return 0.5 * (math.erfc(-beta / math.sqrt(2.0)) - math.erfc(-alpha / math.sqrt(2.0)))
    return 1.0 - 0.5 * (math.erfc(-alpha / math.sqrt(2.0)) + math.erfc(beta / math.sqrt(2.0)))


def _check_shape(scheme: str, rule: ShapeRule, shape: Sequence[int]) -> None:
    nd = len(shape)
    if rule.allows(nd):
        return
    if rule == EXACTLY_2D:
        raise PortableRecipeError(f"{scheme} needs an exactly 2-D shape; got {nd}-D shape {list(shape)}")
    if rule == AT_LEAST_2D:
        raise PortableRecipeError(f"{scheme} needs a shape with at least 2 dimensions; got {list(shape)}")
    if rule == CONV_3_TO_5D:
        raise PortableRecipeError(f"{scheme} needs a 3-, 4- or 5-D shape; got {nd}-D shape {list(shape)}")


def _params(recipe: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    if not isinstance(recipe, Mapping):
        raise PortableRecipeError(f"a recipe is an object with a 'scheme'; got {recipe!r}")
    scheme = recipe.get("scheme")
    if scheme not in _SCHEMES:
        raise PortableRecipeError(f"scheme must be one of {list(SCHEMES)}; got {scheme!r}")
    defaults, _ = _SCHEMES[scheme]
    unknown = sorted(set(recipe) - set(defaults) - {"scheme"})
    if unknown:
        raise PortableRecipeError(
            f"{scheme} takes {sorted(defaults) or 'no parameters'}; got unknown key(s) {unknown}"
        )
    params = {**defaults, **{k: v for k, v in recipe.items() if k != "scheme"}}
    missing = [k for k, v in params.items() if v is None]
    if missing:
        raise PortableRecipeError(f"{scheme} needs {missing}")
    return scheme, params


def resolve_recipe(recipe: Mapping[str, object], shape: Sequence[int]) -> PortablePlan:
    """The portable-v1 plan of ``recipe`` on the full ``shape`` (fans come from the full shape).

    Raises ``PortableRecipeError`` for a bad recipe or shape, ``PortableUnsupportedError`` for
    ``orthogonal`` and ``PortableWindowError`` for a truncated window below 1e-4.
    """
    shape = [_dim(d) for d in shape]
    scheme, p = _params(recipe)
    _check_shape(scheme, _SCHEMES[scheme][1], shape)
    if scheme == "orthogonal":
        raise PortableUnsupportedError(scheme)
    empty = math.prod(shape) == 0
    try:
        plan = _plan(scheme, p, shape)
    except ZeroDivisionError:
        if scheme.startswith("xavier_") or not empty:
            fans = compute_fans(shape)
            raise PortableRecipeError(
                f"{scheme} divides by zero on shape {shape} (fan_in={fans.fan_in}, "
                f"fan_out={fans.fan_out})"
            ) from None
        return PortablePlan(scheme=scheme, family=_empty_family(scheme, p))
    for name in ("low", "high", "mean", "std", "alpha", "beta"):
        v = getattr(plan, name)
        if v is not None and not math.isfinite(v):
            raise PortableRecipeError(f"{scheme}: {name} = {v!r} is not finite (float64 overflow)")
    if plan.family == "uniform":
        assert plan.low is not None and plan.high is not None  # set for the uniform family
        if not math.isfinite(plan.high - plan.low):
            raise PortableRecipeError(f"{scheme}: b - a overflows float64 for a={plan.low!r}, b={plan.high!r}")
    return plan


def _empty_family(scheme: str, p: Mapping[str, object]) -> str:
    """The family of a fan-based scheme whose formula cannot be evaluated (a zero fan)."""
    if scheme == "variance_scaling":
        dist = _choice(scheme, "distribution", p["distribution"], DISTRIBUTIONS)
        return {"truncated_normal": "truncated", "normal": "normal", "uniform": "uniform"}[dist]
    return {"lecun_normal": "truncated", "lecun_uniform": "uniform"}.get(
        scheme, "uniform" if scheme.endswith("_uniform") else "normal"
    )


def _dim(d: object) -> int:
    try:
        n = operator.index(d) if isinstance(d, SupportsIndex) else None  # int and numpy integers, not floats
    except TypeError:  # a numpy array that is not one integer refuses __index__
        n = None
    if isinstance(d, bool) or n is None or n < 0:
        raise PortableRecipeError(f"shape entries must be integers >= 0; got {d!r}")
    return n


def _variance(scheme: str, scale: float, mode: str, shape: Sequence[int]) -> float:
    """``v = scale / n``, ``n = fan_in | fan_out | (fan_in + fan_out)/2`` (timm's order)."""
    fans = compute_fans(shape)
    denom: float
    if mode == "fan_in":
        denom = fans.fan_in
    elif mode == "fan_out":
        denom = fans.fan_out
    else:
        denom = (fans.fan_in + fans.fan_out) / 2
    return scale / denom


def _variance_plan(scheme: str, scale: float, mode: str, distribution: str, shape) -> PortablePlan:
    v = _variance(scheme, scale, mode, shape)
    if distribution == "truncated_normal":
        std = math.sqrt(v) / TRUNCATED_NORMAL_STD_2SIGMA
        return _truncated(scheme, 0.0, std, -2.0, 2.0, -2.0, 2.0)
    if distribution == "normal":
        return PortablePlan(scheme, "normal", mean=0.0, std=math.sqrt(v))
    bound = math.sqrt(3 * v)
    return PortablePlan(scheme, "uniform", low=-bound, high=bound)


def _truncated(scheme, mean, std, a, b, alpha, beta) -> PortablePlan:
    prob = window_probability(alpha, beta)
    if not prob >= MIN_WINDOW_PROBABILITY:
        raise PortableWindowError(scheme, a, b, alpha, beta, prob)
    return PortablePlan(scheme, "truncated", mean=mean, std=std, alpha=alpha, beta=beta, probability=prob)


def _plan(scheme: str, p: dict[str, object], shape: list[int]) -> PortablePlan:
    num = lambda name: _number(scheme, name, p[name])  # noqa: E731
    if scheme == "uniform":
        a, b = num("a"), num("b")
        if a > b:
            raise PortableRecipeError(f"uniform needs a <= b; got a={a!r}, b={b!r}")
        return PortablePlan(scheme, "uniform", low=a, high=b)
    if scheme == "normal":
        mean, std = num("mean"), num("std")
        if std < 0:
            raise PortableRecipeError(f"normal needs std >= 0; got std={std!r}")
        return PortablePlan(scheme, "normal", mean=mean, std=std)
    if scheme in ("trunc_normal", "trunc_normal_tf"):
        mean, std, a, b = num("mean"), num("std"), num("a"), num("b")
        # trunc_normal divides by std; trunc_normal_tf only scales by it, so std = 0 is a point
        if not (std > 0 if scheme == "trunc_normal" else std >= 0):
            rule = "std > 0" if scheme == "trunc_normal" else "std >= 0"
            raise PortableRecipeError(f"{scheme} needs {rule}; got std={std!r}")
        if not a < b:
            raise PortableRecipeError(f"{scheme} needs a < b; got a={a!r}, b={b!r}")
        if scheme == "trunc_normal":
            return _truncated(scheme, mean, std, a, b, (a - mean) / std, (b - mean) / std)
        return _truncated(scheme, mean, std, a, b, a, b)
    if scheme in ("constant", "ones", "zeros"):
        value = {"ones": 1.0, "zeros": 0.0}.get(scheme)
        if value is None:
            value = num("val")
        return PortablePlan(scheme, "deterministic", fill="constant", value=value)
    if scheme == "eye":
        return PortablePlan(scheme, "deterministic", fill="eye")
    if scheme == "dirac":
        groups = p["groups"]
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise PortableRecipeError(f"dirac.groups must be an integer >= 1; got {groups!r}")
        if shape[0] % groups:
            raise PortableRecipeError(
                f"dirac needs shape[0] divisible by groups; got shape[0]={shape[0]}, groups={groups}"
            )
        return PortablePlan(scheme, "deterministic", fill="dirac", groups=groups)
    if scheme in ("xavier_uniform", "xavier_normal"):
        gain = resolve_gain(scheme, p["gain"])
        fans = compute_fans(shape)
        std = gain * math.sqrt(2.0 / float(fans.fan_in + fans.fan_out))
        if scheme == "xavier_normal":
            return PortablePlan(scheme, "normal", mean=0.0, std=std)
        bound = math.sqrt(3.0) * std
        return PortablePlan(scheme, "uniform", low=-bound, high=bound)
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        slope = num("a")
        mode = _choice(scheme, "mode", p["mode"], ("fan_in", "fan_out"))
        gain = nonlinearity_gain(scheme, p["nonlinearity"], slope)
        fan = compute_fans(shape).by_mode(mode)
        std = gain / math.sqrt(fan)
        if scheme == "kaiming_normal":
            return PortablePlan(scheme, "normal", mean=0.0, std=std)
        bound = math.sqrt(3.0) * std
        return PortablePlan(scheme, "uniform", low=-bound, high=bound)
    if scheme == "sparse":
        sparsity, std = num("sparsity"), num("std")
        if not 0.0 <= sparsity <= 1.0:
            raise PortableRecipeError(f"sparse needs 0 <= sparsity <= 1; got sparsity={sparsity!r}")
        if std < 0:
            raise PortableRecipeError(f"sparse needs std >= 0; got std={std!r}")
        rows = shape[0]
        return PortablePlan(scheme, "sparse", mean=0.0, std=std, num_zeros=math.ceil(sparsity * rows))
    if scheme == "variance_scaling":
        scale = num("scale")
        if not scale > 0:
            raise PortableRecipeError(f"variance_scaling needs scale > 0; got scale={scale!r}")
        mode = _choice(scheme, "mode", p["mode"], VARIANCE_MODES)
        dist = _choice(scheme, "distribution", p["distribution"], DISTRIBUTIONS)
        return _variance_plan(scheme, scale, mode, dist, shape)
    if scheme == "lecun_uniform":
        return _variance_plan(scheme, 1.0, "fan_in", "uniform", shape)
    if scheme == "lecun_normal":
        return _variance_plan(scheme, 1.0, "fan_in", "truncated_normal", shape)
    raise AssertionError(f"no plan for scheme {scheme!r}")  # _SCHEMES and _plan out of step
