"""The scheme registry: one row per init scheme, read by every layer that knows schemes.

Plain Python (no torch, numpy or pydantic), so the portable-v1 core and the torch-free client
distribution (``clients/python``) read the same table as the server. A row holds:

* its parameters, in torch's argument order: name, JSON type, default (or required), and the
  constraints as data (``minimum``/``exclusive_minimum``/``maximum``, ``choices``, ``b >= a``);
* its shape rule (any, exactly 2-D, at least 2-D, 3- to 5-D);
* the reference call it reproduces, its formula and what ``stats.expected`` reports (the
  ``/v1/schemes`` text), whether it draws anything and whether it has a portable-v1 form.

Readers: ``service.portable.recipes`` (defaults and shape rules), ``service.engine.schemes``
(one filler per row), ``service.engine.checks`` (shape rules), ``service.engine.catalog``
(``/v1/schemes``), ``service.engine.distributions`` (one describer per row) and
``service.schemas.recipes`` (defaults). ``tests/test_scheme_tables.py`` pins each of them, the
request schemas' JSON schema and torch's own signatures to this table. Like ``formulas``, this
module imports nothing of ours but ``formulas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from service.formulas import FAN_MODES, NONLINEARITIES

ParamType = Literal["number", "integer", "string", "gain"]
VARIANCE_MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "normal", "uniform")


@dataclass(frozen=True)
class Param:
    """One keyword argument of a scheme.

    ``type`` is the JSON type: ``number`` (finite, never a boolean), ``integer``, ``string`` (one
    of ``choices``; matched case-insensitively when ``case_free``) or ``gain`` (a number, or
    ``{nonlinearity, param}`` meaning ``calculate_gain(nonlinearity, param)``). ``at_least`` /
    ``above`` name an earlier parameter this one must be >= / > than.
    """

    name: str
    type: ParamType
    default: float | int | str | None = None
    required: bool = False
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    case_free: bool = False
    at_least: str | None = None
    above: str | None = None


@dataclass(frozen=True)
class ShapeRule:
    """Dimensions a scheme accepts, inclusive; ``None`` means unbounded."""

    min_dims: int = 0
    max_dims: int | None = None
    text: str = "any"

    def allows(self, ndim: int) -> bool:
        return ndim >= self.min_dims and (self.max_dims is None or ndim <= self.max_dims)


ANY = ShapeRule()
AT_LEAST_2D = ShapeRule(2, None, "at least 2-D")
EXACTLY_2D = ShapeRule(2, 2, "exactly 2-D")
CONV_3_TO_5D = ShapeRule(3, 5, "3-, 4- or 5-D")


@dataclass(frozen=True)
class SchemeRow:
    name: str
    params: tuple[Param, ...]
    shape: ShapeRule
    torch_name: str | None  # the torch.nn.init function it reproduces, if one does
    reference: str  # the call it reproduces, as /v1/schemes shows it
    formula: str
    expected: str  # what stats.expected reports
    random: bool = True  # draws anything
    portable: bool = True  # has a portable-v1 form

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict[str, object]:
        """Parameter -> default, ``None`` for a required parameter."""
        return {p.name: None if p.required else p.default for p in self.params}

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def _number(name: str, default: float | None = None, **constraints) -> Param:
    return Param(name, "number", default, required=default is None, **constraints)


_KAIMING = (
    _number("a", 0.0),
    Param("mode", "string", "fan_in", choices=FAN_MODES, case_free=True),
    Param("nonlinearity", "string", "leaky_relu", choices=NONLINEARITIES),
)
_TRUNCATED = (
    _number("mean", 0.0),
    _number("std", 1.0, exclusive_minimum=0.0),
    _number("a", -2.0),
    _number("b", 2.0, above="a"),
)

_ROWS = (
    SchemeRow(
        "uniform", (_number("a", 0.0), _number("b", 1.0, at_least="a")), ANY,
        "torch.nn.init.uniform_", "torch.nn.init.uniform_(t, a, b)",
        "w ~ U(a, b)", "mean (a+b)/2, std (b-a)/sqrt(12), [a, b]",
    ),
    SchemeRow(
        "normal", (_number("mean", 0.0), _number("std", 1.0, minimum=0.0)), ANY,
        "torch.nn.init.normal_", "torch.nn.init.normal_(t, mean, std)",
        "w ~ N(mean, std²)", "mean, std",
    ),
    SchemeRow(
        "trunc_normal", _TRUNCATED, ANY,
        "torch.nn.init.trunc_normal_", "torch.nn.init.trunc_normal_(t, mean, std, a, b)",
        "w ~ N(mean, std²) truncated to [a, b] (absolute cut-offs)", "the truncated normal's mean and std, [a, b]",
    ),
    SchemeRow(
        "trunc_normal_tf", _TRUNCATED, ANY,
        None, "timm.layers.trunc_normal_tf_(t, mean, std, a, b)",
        "w = mean + std·z, z ~ N(0, 1) truncated to [a, b] (cut-offs in std units)",
        "mean + std·E[z], std·sd[z], [mean + a·std, mean + b·std]",
    ),
    SchemeRow(
        "constant", (_number("val"),), ANY,
        "torch.nn.init.constant_", "torch.nn.init.constant_(t, val)", "w = val", "point mass at val", random=False,
    ),
    SchemeRow("ones", (), ANY, "torch.nn.init.ones_", "torch.nn.init.ones_(t)", "w = 1", "point mass at 1", random=False),
    SchemeRow("zeros", (), ANY, "torch.nn.init.zeros_", "torch.nn.init.zeros_(t)", "w = 0", "point mass at 0", random=False),
    SchemeRow(
        "eye", (), EXACTLY_2D, "torch.nn.init.eye_", "torch.nn.init.eye_(t)",
        "w = I (2-D identity)", "null (draws nothing)", random=False,
    ),
    SchemeRow(
        "dirac", (Param("groups", "integer", 1, minimum=1),), CONV_3_TO_5D,
        "torch.nn.init.dirac_", "torch.nn.init.dirac_(t, groups)",
        "w[g·oc/groups + d, d, centre...] = 1, else 0", "null (draws nothing)", random=False,
    ),
    SchemeRow(
        "xavier_uniform", (Param("gain", "gain", 1.0, minimum=0.0),), AT_LEAST_2D,
        "torch.nn.init.xavier_uniform_", "torch.nn.init.xavier_uniform_(t, gain)",
        "w ~ U(-b, b), b = gain·sqrt(6 / (fan_in + fan_out))", "mean 0, std b/sqrt(3), [-b, b]",
    ),
    SchemeRow(
        "xavier_normal", (Param("gain", "gain", 1.0, minimum=0.0),), AT_LEAST_2D,
        "torch.nn.init.xavier_normal_", "torch.nn.init.xavier_normal_(t, gain)",
        "w ~ N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out))", "mean 0, std",
    ),
    SchemeRow(
        "kaiming_uniform", _KAIMING, AT_LEAST_2D,
        "torch.nn.init.kaiming_uniform_", "torch.nn.init.kaiming_uniform_(t, a, mode, nonlinearity)",
        "w ~ U(-b, b), b = gain·sqrt(3 / fan_mode), gain = calculate_gain(nonlinearity, a)",
        "mean 0, std b/sqrt(3), [-b, b]",
    ),
    SchemeRow(
        "kaiming_normal", _KAIMING, AT_LEAST_2D,
        "torch.nn.init.kaiming_normal_", "torch.nn.init.kaiming_normal_(t, a, mode, nonlinearity)",
        "w ~ N(0, std²), std = gain / sqrt(fan_mode), gain = calculate_gain(nonlinearity, a)", "mean 0, std",
    ),
    SchemeRow(
        "orthogonal", (Param("gain", "gain", 1.0),), AT_LEAST_2D,
        "torch.nn.init.orthogonal_", "torch.nn.init.orthogonal_(t, gain)",
        "w = gain·Q, QR of a N(0, 1) matrix (trailing dims flattened), signs from diag(R)",
        "mean 0, std gain/sqrt(max(rows, cols)), |w| <= |gain|",
        portable=False,
    ),
    SchemeRow(
        "sparse", (_number("sparsity", minimum=0.0, maximum=1.0), _number("std", 0.01, minimum=0.0)), EXACTLY_2D,
        "torch.nn.init.sparse_", "torch.nn.init.sparse_(t, sparsity, std)",
        "per column ceil(sparsity·rows) zeros at randperm rows, the rest N(0, std²)",
        "mean 0, std·sqrt(1 - zeros/rows)",
    ),
    SchemeRow(
        "variance_scaling",
        (
            _number("scale", 1.0, exclusive_minimum=0.0),
            Param("mode", "string", "fan_in", choices=VARIANCE_MODES, case_free=True),
            Param("distribution", "string", "truncated_normal", choices=DISTRIBUTIONS),
        ),
        AT_LEAST_2D,
        None, "jax.nn.initializers.variance_scaling(scale, mode, distribution) on torch's fan layout",
        "v = scale / n (n = fan_in | fan_out | (fan_in+fan_out)/2); truncated_normal: trunc_normal_tf(0, sqrt(v)/0.8796, -2, 2); "
        "normal: N(0, v); uniform: U(-sqrt(3v), sqrt(3v))",
        "mean 0, std sqrt(v)",
    ),
    SchemeRow(
        "lecun_uniform", (), AT_LEAST_2D, None, "jax.nn.initializers.lecun_uniform()",
        "variance_scaling(1, fan_in, uniform)", "mean 0, std sqrt(1/fan_in)",
    ),
    SchemeRow(
        "lecun_normal", (), AT_LEAST_2D, None, "jax.nn.initializers.lecun_normal()",
        "variance_scaling(1, fan_in, truncated_normal)", "mean 0, std sqrt(1/fan_in)",
    ),
)

SCHEME_TABLE: dict[str, SchemeRow] = {row.name: row for row in _ROWS}


def check_covers(keyed: Mapping[str, object], what: str) -> None:
    """Raise unless ``keyed`` has exactly the registry's schemes (run at import by each reader
    that keys something per scheme, e.g. fillers or expected moments)."""
    missing, extra = sorted(set(SCHEME_TABLE) - set(keyed)), sorted(set(keyed) - set(SCHEME_TABLE))
    if missing or extra:
        raise RuntimeError(f"{what} out of step with service.scheme_table: missing {missing}, not schemes {extra}")
