"""What each scheme draws every element from: the formulas behind ``stats`` and fast paths.

Torch's formulas are restated here once, in torch's order of operations (so the floats are the
same), because three things need them without running an initializer: ``stats.expected``, the
``fan_in``/``fan_out``/``gain``/``bound``/``std_used`` fields, and the chunked generators, which
must know the ``uniform_(a, b)`` or ``normal_(mean, std)`` call a scheme reduces to. The parity
tests pin every one of them against ``torch.nn.init`` bit for bit.

    xavier_uniform   std = gain·sqrt(2 / (fan_in + fan_out)),  bound = sqrt(3)·std
    xavier_normal    std = gain·sqrt(2 / (fan_in + fan_out))
    kaiming_uniform  std = gain / sqrt(fan_mode),              bound = sqrt(3)·std
    kaiming_normal   std = gain / sqrt(fan_mode),              gain = calculate_gain(nonlinearity, a)
    orthogonal       std = gain / sqrt(max(rows, cols)),       |w| <= |gain|
    sparse           zeros: ceil(sparsity·rows) per column, the rest N(0, std²)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.engine.fans import compute_fans
from service.engine.gains import calculate_gain
from service.engine.variance import TRUNCATED_NORMAL_STD_2SIGMA, scaled_variance
from service.scheme_table import check_covers

GainSpec = float | Mapping[str, Any]


def resolve_gain(gain: GainSpec) -> float:
    """A gain given as a number, or as ``{"nonlinearity": N, "param": X}`` = ``calculate_gain(N, X)``."""
    if isinstance(gain, Mapping):
        return calculate_gain(gain["nonlinearity"], gain.get("param"))
    return float(gain)


@dataclass(frozen=True)
class Moments:
    """The distribution of one element: mean, std and support (``None`` where unbounded)."""

    mean: float | None = None
    std: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Distribution:
    """Everything the formulas say about a scheme on a shape, before drawing anything."""

    expected: Moments | None
    fan_in: int | None = None
    fan_out: int | None = None
    gain: float | None = None
    bound: float | None = None
    std_used: float | None = None
    # The single torch call the scheme reduces to, when it is one: ("uniform", a, b) or
    # ("normal", mean, std). Chunked and sliced generation need exactly this.
    draw: tuple[Literal["uniform", "normal"], float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _norm_mass(alpha: float, beta: float) -> float:
    """P(alpha <= Z <= beta) for Z ~ N(0, 1), accurate in both tails."""
    if alpha > 0:
        return 0.5 * (math.erfc(alpha / math.sqrt(2)) - math.erfc(beta / math.sqrt(2)))
    if beta < 0:
        return 0.5 * (math.erfc(-beta / math.sqrt(2)) - math.erfc(-alpha / math.sqrt(2)))
    return 0.5 * (math.erf(beta / math.sqrt(2)) - math.erf(alpha / math.sqrt(2)))


def truncated_normal_moments(mean: float, std: float, a: float, b: float) -> Moments:
    """Moments of N(mean, std²) truncated to [a, b] (absolute cut-offs).

    With α = (a − mean)/std, β = (b − mean)/std, Z = Φ(β) − Φ(α):
    E = mean + std·(φ(α) − φ(β))/Z,
    Var = std²·[1 + (αφ(α) − βφ(β))/Z − ((φ(α) − φ(β))/Z)²].
    """
    alpha, beta = (a - mean) / std, (b - mean) / std
    mass = _norm_mass(alpha, beta)
    if mass > 0:
        pa, pb = _norm_pdf(alpha), _norm_pdf(beta)
        ta = alpha * pa if math.isfinite(alpha) else 0.0
        tb = beta * pb if math.isfinite(beta) else 0.0
        shift = (pa - pb) / mass
        variance = 1 + (ta - tb) / mass - shift * shift
        if variance > _CANCELLATION_LIMIT * max(1.0, shift * shift, abs(ta - tb) / mass):
            return Moments(mean=mean + std * shift, std=std * math.sqrt(variance), low=a, high=b)
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha < beta):
        return Moments(mean=None, std=None, low=a, high=b)
    offset, spread = _narrow_or_far_moments(alpha, beta)
    return Moments(mean=mean + std * offset, std=std * spread, low=a, high=b)


# The closed form's variance is a difference of terms as large as 1, the squared shift and
# |αφ(α) − βφ(β)|/Z; where it is under 1e-4 of the largest, more than four of its digits have
# cancelled: a window much narrower than std (variance ≈ (β − α)²/12), or one far in a tail
# (≈ 1/α²). Those take the quadrature.
_CANCELLATION_LIMIT = 1e-4
_LEGENDRE_NODES = 64
# exp(-45) of the peak: where the weight stops mattering in float64 sums.
_TAIL_E_FOLDS = 45.0


def _narrow_or_far_moments(alpha: float, beta: float) -> tuple[float, float]:
    """Mean and std of N(0, 1) truncated to [α, β] by Gauss–Legendre quadrature, for the windows
    the closed form cannot resolve. The weight exp(−(x² − m²)/2), with m the point of [α, β]
    nearest 0, is 1 at m; where it falls below e^-45 the window is cut; moments are taken about
    the window's start, so a window at 10⁶ keeps its width's digits."""
    import numpy as np

    peak = min(max(0.0, alpha), beta)
    reach = math.sqrt(peak * peak + 2 * _TAIL_E_FOLDS)
    low, high = max(alpha, -reach), min(beta, reach)
    if peak > 0:
        high = min(beta, peak + 2 * _TAIL_E_FOLDS / (peak + reach))
    elif peak < 0:
        low = max(alpha, peak - 2 * _TAIL_E_FOLDS / (-peak + reach))
    nodes, weights = np.polynomial.legendre.leggauss(_LEGENDRE_NODES)
    half = (high - low) / 2
    u = half * (nodes + 1)  # x − low, in [0, high − low]
    x = low + u
    w = weights * np.exp(-(x - peak) * (x + peak) / 2)
    total = w.sum()
    mean_u = float((w * u).sum() / total)
    variance = float((w * (u - mean_u) ** 2).sum() / total)
    return low + mean_u, math.sqrt(variance)


def _uniform(a: float, b: float) -> Moments:
    return Moments(mean=(a + b) / 2, std=(b - a) / math.sqrt(12), low=a, high=b)


def _point(value: float) -> Moments:
    return Moments(mean=value, std=0.0, low=value, high=value)


def _fan_based(shape: tuple[int, ...]) -> tuple[int, int, bool]:
    fans = compute_fans(shape)
    return fans.fan_in, fans.fan_out, math.prod(shape) > 0


def describe(scheme: str, params: Mapping[str, Any], shape: tuple[int, ...]) -> Distribution:
    """The distribution ``scheme`` with ``params`` draws each element of a ``shape`` tensor from."""
    try:
        describer = _DESCRIBERS[scheme]
    except KeyError:
        raise ValueError(f"scheme must be one of {sorted(_DESCRIBERS)}, got {scheme!r}") from None
    return describer(params, shape)


def _d_uniform(p, shape):
    return Distribution(_uniform(p["a"], p["b"]), draw=("uniform", p["a"], p["b"]))


def _d_normal(p, shape):
    return Distribution(Moments(mean=p["mean"], std=p["std"]), std_used=p["std"], draw=("normal", p["mean"], p["std"]))


def _d_trunc_normal(p, shape):
    return Distribution(truncated_normal_moments(p["mean"], p["std"], p["a"], p["b"]), std_used=p["std"])


def _d_trunc_normal_tf(p, shape):
    unit = truncated_normal_moments(0.0, 1.0, p["a"], p["b"])
    mean, std = p["mean"], p["std"]
    expected = Moments(
        mean=None if unit.mean is None else mean + std * unit.mean,
        std=None if unit.std is None else std * unit.std,
        low=mean + std * p["a"],
        high=mean + std * p["b"],
    )
    return Distribution(expected, std_used=std)


def _d_constant(p, shape):
    return Distribution(_point(p["val"]))


def _d_fixed(value):
    return lambda p, shape: Distribution(_point(value))


def _d_nothing(p, shape):
    return Distribution(None)


def _d_xavier(kind):
    def describe_xavier(p, shape):
        fan_in, fan_out, _ = _fan_based(shape)
        gain = resolve_gain(p["gain"])
        std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
        if kind == "normal":
            return Distribution(Moments(mean=0.0, std=std), fan_in, fan_out, gain, std_used=std, draw=("normal", 0.0, std))
        bound = math.sqrt(3.0) * std
        return Distribution(_uniform(-bound, bound), fan_in, fan_out, gain, bound=bound, draw=("uniform", -bound, bound))

    return describe_xavier


def _d_kaiming(kind):
    def describe_kaiming(p, shape):
        fan_in, fan_out, nonempty = _fan_based(shape)
        gain = calculate_gain(p["nonlinearity"], p["a"])
        if not nonempty:  # torch: "Initializing zero-element tensors is a no-op"
            return Distribution(None, fan_in, fan_out, gain)
        std = gain / math.sqrt(fan_in if p["mode"] == "fan_in" else fan_out)
        if kind == "normal":
            return Distribution(Moments(mean=0.0, std=std), fan_in, fan_out, gain, std_used=std, draw=("normal", 0.0, std))
        bound = math.sqrt(3.0) * std
        return Distribution(_uniform(-bound, bound), fan_in, fan_out, gain, bound=bound, draw=("uniform", -bound, bound))

    return describe_kaiming


def _d_orthogonal(p, shape):
    gain = float(p["gain"]) if not isinstance(p["gain"], Mapping) else resolve_gain(p["gain"])
    rows = shape[0]
    cols = math.prod(shape[1:])
    if rows == 0 or cols == 0:
        return Distribution(None, gain=gain)
    std = abs(gain) / math.sqrt(max(rows, cols))
    return Distribution(Moments(mean=0.0, std=std, low=-abs(gain), high=abs(gain)), gain=gain)


def _d_sparse(p, shape):
    rows = shape[0]
    zeros = math.ceil(p["sparsity"] * rows)
    nonzero_fraction = (rows - min(zeros, rows)) / rows if rows else 0.0
    return Distribution(
        Moments(mean=0.0, std=p["std"] * math.sqrt(nonzero_fraction)),
        std_used=p["std"],
        extra={"zeros_per_column": min(zeros, rows)},
    )


def variance_scaling_distribution(scale: float, mode: str, distribution: str, shape: tuple[int, ...]) -> Distribution:
    fan_in, fan_out, nonempty = _fan_based(shape)
    if not nonempty:
        return Distribution(None, fan_in, fan_out)
    v = scaled_variance(shape, scale, mode)
    if distribution == "truncated_normal":
        used = math.sqrt(v) / TRUNCATED_NORMAL_STD_2SIGMA
        return Distribution(truncated_normal_moments(0.0, used, -2 * used, 2 * used), fan_in, fan_out, std_used=used)
    if distribution == "normal":
        std = math.sqrt(v)
        return Distribution(Moments(mean=0.0, std=std), fan_in, fan_out, std_used=std, draw=("normal", 0.0, std))
    bound = math.sqrt(3 * v)
    return Distribution(_uniform(-bound, bound), fan_in, fan_out, bound=bound, draw=("uniform", -bound, bound))


def _d_variance_scaling(p, shape):
    return variance_scaling_distribution(p["scale"], p["mode"], p["distribution"], shape)


def _d_lecun(distribution):
    return lambda p, shape: variance_scaling_distribution(1.0, "fan_in", distribution, shape)


# Expected moments, one describer per registry scheme (``service.scheme_table``).
_DESCRIBERS = {
    "uniform": _d_uniform,
    "normal": _d_normal,
    "trunc_normal": _d_trunc_normal,
    "constant": _d_constant,
    "ones": _d_fixed(1.0),
    "zeros": _d_fixed(0.0),
    "eye": _d_nothing,
    "dirac": _d_nothing,
    "xavier_uniform": _d_xavier("uniform"),
    "xavier_normal": _d_xavier("normal"),
    "kaiming_uniform": _d_kaiming("uniform"),
    "kaiming_normal": _d_kaiming("normal"),
    "orthogonal": _d_orthogonal,
    "sparse": _d_sparse,
    "variance_scaling": _d_variance_scaling,
    "lecun_uniform": _d_lecun("uniform"),
    "lecun_normal": _d_lecun("truncated_normal"),
    "trunc_normal_tf": _d_trunc_normal_tf,
}
check_covers(_DESCRIBERS, "expected moments (distributions._DESCRIBERS)")
