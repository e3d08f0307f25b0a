"""The init recipe: a union discriminated on ``scheme``, with ``torch.nn.init``'s names and defaults.

With a discriminator, a bad ``std`` is one error at ``init.normal.std`` and an unknown scheme
lists the known ones (a plain ``Union`` would report every member). Every model forbids unknown
keys, so a misspelt ``sdt`` is a 422 at its own ``loc``. Numbers must be finite JSON numbers;
booleans are never numbers (torch rejects ``True`` as a slope too). Defaults are the scheme
registry's (``service.scheme_table``); ``tests/test_scheme_tables.py`` pins the rest of each
model (parameter names, types, required-ness, constraints) to it.

Longer than the ~300 lines most modules keep to: one model per scheme with its validators; the discriminated union is the one table the API documents, so it stays in one file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from service.scheme_table import SCHEME_TABLE, check_covers


def _default(scheme: str, name: str) -> Any:
    """A parameter's default, from the scheme registry (``service.scheme_table``)."""
    return SCHEME_TABLE[scheme].param(name).default


Nonlinearity = Literal[
    "linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu",
]
FanMode = Literal["fan_in", "fan_out"]
VarianceMode = Literal["fan_in", "fan_out", "fan_avg"]


def _lower(value: Any) -> Any:
    """torch matches ``mode`` case-insensitively (``mode.lower()``), and so does docs/api.md:
    ``"FAN_OUT"`` is ``"fan_out"``, and the normalized request says ``"fan_out"``."""
    return value.lower() if isinstance(value, str) else value


# ``mode`` as torch reads it: any case, normalized to lower case before the Literal is checked.
CaseFreeFanMode = Annotated[FanMode, BeforeValidator(_lower)]
CaseFreeVarianceMode = Annotated[VarianceMode, BeforeValidator(_lower)]
VarianceDistribution = Literal["truncated_normal", "normal", "uniform"]

Number = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0)]
Positive = Annotated[float, Field(allow_inf_nan=False, gt=0)]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are validated strictly, JSON bodies and the GET forms alike (the
    query strings are parsed into JSON values first, by ``service/api/query.py``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class GainSpec(StrictModel):
    """``calculate_gain(nonlinearity, param)``: the recommended gain of a nonlinearity."""

    nonlinearity: Nonlinearity = Field(description="Name of the nonlinearity, as torch.nn.init.calculate_gain.")
    param: Number | None = Field(None, description="Optional parameter: leaky_relu's negative slope (default 0.01).")


_GAIN_SPEC = TypeAdapter(GainSpec)


def _json_text(value: Any) -> str:
    """``value`` as a JSON body spells it (``null``, ``true``, ``"x"``), for messages."""
    return json.dumps(value) if value is None or isinstance(value, (bool, str)) else repr(value)


def require_tag(discriminator: str, known: Iterable[str]):
    """A before-validator for a union discriminated on ``discriminator``: a missing tag, or one that
    is not a string (``null``, a number), is one error at ``<loc>.<discriminator>`` that lists the
    ``known`` tags (pydantic's own says only "Unable to extract tag" or "Input tag 'None'"). An
    unknown string goes on to the union, whose error the API answers with a did-you-mean."""
    names = tuple(known)
    listed = ", ".join(names)

    def check(value: Any) -> Any:
        if not isinstance(value, dict) or isinstance(value.get(discriminator), str):
            return value
        if discriminator not in value:
            error = PydanticCustomError(
                "missing", "{field} is required: one of {known}", {"field": discriminator, "known": listed}
            )
        else:
            error = PydanticCustomError(
                "string_type", "{field} must be a string, one of {known}; got {value}",
                {"field": discriminator, "known": listed, "value": _json_text(value[discriminator])},
            )
        detail = InitErrorDetails(type=error, loc=(discriminator,), input=value)
        raise ValidationError.from_exception_data(discriminator, [detail])

    return check


def _gain_validator(minimum: float | None):
    """One error at ``gain`` (not one per union member) naming what was wrong."""

    def validate(value: Any) -> float | dict[str, Any]:
        if isinstance(value, (dict, GainSpec)):
            try:
                return _GAIN_SPEC.validate_python(value).model_dump()
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                msg = first["msg"]
                if first["type"] == "extra_forbidden":
                    msg = f"{msg}; allowed: {', '.join(GainSpec.model_fields)}"
                raise PydanticCustomError("gain", "gain.{where}: {msg}", {"where": where, "msg": msg}) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PydanticCustomError(
                "gain", "gain must be a number or an object {nonlinearity, param}; got {value}", {"value": _json_text(value)}
            )
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            allowed = "a finite number" + ("" if minimum is None else f" >= {minimum:g}")
            raise PydanticCustomError("gain", "gain must be {allowed}; got {value}", {"allowed": allowed, "value": value})
        return float(value)

    return validate


def _gain_json_schema(minimum: float | None, description: str) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number"} if minimum is None else {"type": "number", "minimum": minimum}
    return WithJsonSchema({"anyOf": [number, _GAIN_SPEC.json_schema()], "description": description})


_GAIN = "A number (>= 0), or {nonlinearity, param} meaning calculate_gain(nonlinearity, param)."
_SIGNED_GAIN = "Optional scaling factor: a number, or {nonlinearity, param} meaning calculate_gain(...)."
# A number, or a GainSpec kept as its plain dict.
Gain = Annotated[
    float | dict[str, Any],
    PlainValidator(_gain_validator(0.0)),
    _gain_json_schema(0.0, _GAIN),
    Field(description=_GAIN),
]
SignedGain = Annotated[
    float | dict[str, Any],
    PlainValidator(_gain_validator(None)),
    _gain_json_schema(None, _SIGNED_GAIN),
    Field(description=_SIGNED_GAIN),
]


def _greater(field: str, other: str, strict: bool):
    """A validator: ``field`` must be > (or >=) the already-validated ``other``."""

    def check(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get(other)
        if low is not None and (value <= low if strict else value < low):
            relation = ">" if strict else ">="
            raise PydanticCustomError(
                "order",
                "{field} must be {relation} {other}; got {other}={low}, {field}={value}",
                {"field": field, "other": other, "relation": relation, "low": low, "value": value},
            )
        return value

    return field_validator(field)(check)


class UniformInit(StrictModel):
    """U(a, b). ``torch.nn.init.uniform_``."""

    scheme: Literal["uniform"]
    a: Number = Field(_default("uniform", "a"), description="The lower bound of the uniform distribution.")
    b: Number = Field(_default("uniform", "b"), validate_default=True, description="The upper bound of the uniform distribution (a <= b).")
    _b_ge_a = _greater("b", "a", strict=False)


class NormalInit(StrictModel):
    """N(mean, std²). ``torch.nn.init.normal_``."""

    scheme: Literal["normal"]
    mean: Number = Field(_default("normal", "mean"), description="The mean of the normal distribution.")
    std: NonNegative = Field(_default("normal", "std"), description="The standard deviation of the normal distribution (>= 0).")


class TruncNormalInit(StrictModel):
    """N(mean, std²) with values outside [a, b] redrawn. ``torch.nn.init.trunc_normal_``."""

    scheme: Literal["trunc_normal"]
    mean: Number = Field(_default("trunc_normal", "mean"), description="The mean of the normal distribution.")
    std: Positive = Field(_default("trunc_normal", "std"), description="The standard deviation of the normal distribution (> 0).")
    a: Number = Field(_default("trunc_normal", "a"), description="The minimum cutoff value (absolute, not in std units).")
    b: Number = Field(_default("trunc_normal", "b"), validate_default=True, description="The maximum cutoff value (absolute, a < b).")
    _b_gt_a = _greater("b", "a", strict=True)


class TruncNormalTFInit(StrictModel):
    """TensorFlow-style truncated normal: cut-offs in std units, applied before scaling (timm's ``trunc_normal_tf_``)."""

    scheme: Literal["trunc_normal_tf"]
    mean: Number = Field(_default("trunc_normal_tf", "mean"), description="The mean added after truncation.")
    std: Positive = Field(_default("trunc_normal_tf", "std"), description="The scale applied after truncation (> 0).")
    a: Number = Field(_default("trunc_normal_tf", "a"), description="The minimum cutoff, in standard deviations.")
    b: Number = Field(_default("trunc_normal_tf", "b"), validate_default=True, description="The maximum cutoff, in standard deviations (a < b).")
    _b_gt_a = _greater("b", "a", strict=True)


class ConstantInit(StrictModel):
    """Every element = val. ``torch.nn.init.constant_``."""

    scheme: Literal["constant"]
    val: Number = Field(description="The value to fill the tensor with.")


class OnesInit(StrictModel):
    """Every element = 1. ``torch.nn.init.ones_``."""

    scheme: Literal["ones"]


class ZerosInit(StrictModel):
    """Every element = 0. ``torch.nn.init.zeros_``."""

    scheme: Literal["zeros"]


class EyeInit(StrictModel):
    """The identity matrix (2-D only). ``torch.nn.init.eye_``."""

    scheme: Literal["eye"]


class DiracInit(StrictModel):
    """The Dirac delta: convolutions that preserve their input (3-, 4- or 5-D). ``torch.nn.init.dirac_``."""

    scheme: Literal["dirac"]
    groups: int = Field(_default("dirac", "groups"), ge=1, description="Number of groups in the conv layer; must divide shape[0].")


class XavierUniformInit(StrictModel):
    """U(−bound, bound), bound = gain·sqrt(6 / (fan_in + fan_out)). Glorot & Bengio 2010. ``torch.nn.init.xavier_uniform_``."""

    scheme: Literal["xavier_uniform"]
    gain: Gain = _default("xavier_uniform", "gain")


class XavierNormalInit(StrictModel):
    """N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out)). Glorot & Bengio 2010. ``torch.nn.init.xavier_normal_``."""

    scheme: Literal["xavier_normal"]
    gain: Gain = _default("xavier_normal", "gain")


_KAIMING_A = "The negative slope of the rectifier used after this layer (only used with 'leaky_relu')."
_KAIMING_MODE = (
    "Either 'fan_in' (default) or 'fan_out', in any case (torch lower-cases it). 'fan_in' preserves the magnitude "
    "of the variance of the weights in the forward pass; 'fan_out' preserves the magnitudes in the backwards pass."
)
_KAIMING_NONLINEARITY = "The non-linear function, recommended only with 'relu' or 'leaky_relu' (default)."


class KaimingUniformInit(StrictModel):
    """U(−bound, bound), bound = gain·sqrt(3 / fan_mode). He et al. 2015. ``torch.nn.init.kaiming_uniform_``."""

    scheme: Literal["kaiming_uniform"]
    a: Number = Field(_default("kaiming_uniform", "a"), description=_KAIMING_A)
    mode: CaseFreeFanMode = Field(_default("kaiming_uniform", "mode"), description=_KAIMING_MODE)
    nonlinearity: Nonlinearity = Field(_default("kaiming_uniform", "nonlinearity"), description=_KAIMING_NONLINEARITY)


class KaimingNormalInit(StrictModel):
    """N(0, std²), std = gain / sqrt(fan_mode). He et al. 2015. ``torch.nn.init.kaiming_normal_``."""

    scheme: Literal["kaiming_normal"]
    a: Number = Field(_default("kaiming_normal", "a"), description=_KAIMING_A)
    mode: CaseFreeFanMode = Field(_default("kaiming_normal", "mode"), description=_KAIMING_MODE)
    nonlinearity: Nonlinearity = Field(_default("kaiming_normal", "nonlinearity"), description=_KAIMING_NONLINEARITY)


class OrthogonalInit(StrictModel):
    """A (semi-)orthogonal matrix, trailing dims flattened. Saxe et al. 2013. ``torch.nn.init.orthogonal_``."""

    scheme: Literal["orthogonal"]
    gain: SignedGain = _default("orthogonal", "gain")


class SparseInit(StrictModel):
    """2-D: in each column ceil(sparsity·rows) zeros, the rest N(0, std²). Martens 2010. ``torch.nn.init.sparse_``."""

    scheme: Literal["sparse"]
    sparsity: float = Field(ge=0, le=1, allow_inf_nan=False, description="The fraction of elements in each column to be set to zero.")
    std: NonNegative = Field(_default("sparse", "std"), description="The standard deviation of the normal distribution used to generate the non-zero values.")


class VarianceScalingInit(StrictModel):
    """Variance v = scale / n, n = fan_in | fan_out | (fan_in + fan_out)/2; JAX/Keras ``VarianceScaling`` on torch's fan layout."""

    scheme: Literal["variance_scaling"]
    scale: Positive = Field(_default("variance_scaling", "scale"), description="Scaling factor of the variance (> 0).")
    mode: CaseFreeVarianceMode = Field(
        _default("variance_scaling", "mode"), description="Which fan n is: 'fan_in', 'fan_out' or 'fan_avg' (any case, as torch's mode.lower())."
    )
    distribution: VarianceDistribution = Field(
        _default("variance_scaling", "distribution"), description="'truncated_normal' (std corrected for truncation at ±2σ), 'normal' or 'uniform'."
    )


class LecunUniformInit(StrictModel):
    """``variance_scaling(1, fan_in, uniform)``: U(−sqrt(3 / fan_in), sqrt(3 / fan_in))."""

    scheme: Literal["lecun_uniform"]


class LecunNormalInit(StrictModel):
    """``variance_scaling(1, fan_in, truncated_normal)`` (LeCun normal, as used with SELU)."""

    scheme: Literal["lecun_normal"]


_RecipeUnion: TypeAlias = (
    UniformInit | NormalInit | TruncNormalInit | ConstantInit | OnesInit | ZerosInit | EyeInit | DiracInit
    | XavierUniformInit | XavierNormalInit | KaimingUniformInit | KaimingNormalInit | OrthogonalInit
    | SparseInit | VarianceScalingInit | LecunUniformInit | LecunNormalInit | TruncNormalTFInit
)
# The scheme names in the union's order (the order /openapi.json and /v1/schemes follow).
_SCHEMES = tuple(get_args(model.model_fields["scheme"].annotation)[0] for model in get_args(_RecipeUnion))

InitRecipe = Annotated[
    _RecipeUnion,
    Field(discriminator="scheme", description="The initializer and its parameters, discriminated on 'scheme'."),
    BeforeValidator(require_tag("scheme", _SCHEMES)),
]

# Scheme name -> model: InitRecipe's union members, each keyed by its Literal ``scheme`` (in the
# union's order, which /openapi.json and /v1/schemes follow); the registry's schemes, exactly.
RECIPE_MODELS: dict[str, type[StrictModel]] = {
    get_args(model.model_fields["scheme"].annotation)[0]: model for model in get_args(get_args(InitRecipe)[0])
}
check_covers(RECIPE_MODELS, "request schemas (InitRecipe)")


def recipe_params(recipe: BaseModel) -> dict[str, Any]:
    """The recipe's keyword arguments (everything but ``scheme``), gain specs as plain dicts."""
    return recipe.model_dump(exclude={"scheme"})
