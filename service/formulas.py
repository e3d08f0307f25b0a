"""torch-free formulas the engine and the portable-v1 core share: fans, gains and the truncation constant.

Plain Python (no torch, no numpy), so ``/v1/fans``, the stats and the torch-free client
distribution (``clients/python``) use one copy; ``tests/test_catalog.py`` and
``tests/test_distributions.py`` pin both against torch. Dependencies point one way: ``formulas`` ← ``engine`` and ``formulas`` ←
``portable``; this module imports nothing of ours.

**Fans** mirror ``torch.nn.init._calculate_fan_in_and_fan_out`` for the weight layout
``[out_channels, in_channels, *kernel]``::

    receptive_field = prod(shape[2:])
    fan_in  = shape[1] * receptive_field
    fan_out = shape[0] * receptive_field

**Gains** are ``torch.nn.init.calculate_gain``'s:

================= ====================================================
nonlinearity      gain
================= ====================================================
Linear / Identity :math:`1`
Conv{1,2,3}D      :math:`1`
Sigmoid           :math:`1`
Tanh              :math:`\\frac{5}{3}`
ReLU              :math:`\\sqrt{2}`
Leaky Relu        :math:`\\sqrt{\\frac{2}{1 + \\text{negative\\_slope}^2}}` (slope defaults to 0.01)
SELU              :math:`\\frac{3}{4}`
================= ====================================================

``identity`` is in torch's docstring table but not accepted by its code; here it is an alias of
``linear``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# ---- the truncation constant ----------------------------------------------------------------------

# stddev of the standard normal truncated to (-2, 2), as JAX's variance_scaling comments it:
# variance_scaling's truncated_normal draws N(0, (sqrt(v) / 0.8796...)²) cut at ±2 std, whose std is sqrt(v).
TRUNCATED_NORMAL_STD_2SIGMA = 0.87962566103423978

# ---- fans -----------------------------------------------------------------------------------

FanMode = Literal["fan_in", "fan_out"]
FAN_MODES: tuple[str, ...] = ("fan_in", "fan_out")


@dataclass(frozen=True)
class Fans:
    fan_in: int
    fan_out: int
    receptive_field: int

    def by_mode(self, mode: str) -> int:
        """``fan_in`` or ``fan_out`` by name, as ``torch.nn.init._calculate_correct_fan``."""
        if mode == "fan_in":
            return self.fan_in
        if mode == "fan_out":
            return self.fan_out
        raise ValueError(f"mode must be one of {list(FAN_MODES)}, but got mode={mode!r}")


def compute_fans(shape: Sequence[int]) -> Fans:
    """Fans of a weight of ``shape`` (at least 2-D), as torch computes them."""
    if len(shape) < 2:
        raise ValueError(
            f"fans need a shape with at least 2 dimensions; got {len(shape)}-D shape {list(shape)}"
        )
    receptive_field = math.prod(shape[2:])
    return Fans(
        fan_in=shape[1] * receptive_field,
        fan_out=shape[0] * receptive_field,
        receptive_field=receptive_field,
    )


# ---- gains ----------------------------------------------------------------------------------

# SELU's 3/4 was found empirically: https://github.com/pytorch/pytorch/pull/50664
_FIXED_GAINS: dict[str, float] = {
    "linear": 1.0,
    "identity": 1.0,
    "conv1d": 1.0,
    "conv2d": 1.0,
    "conv3d": 1.0,
    "conv_transpose1d": 1.0,
    "conv_transpose2d": 1.0,
    "conv_transpose3d": 1.0,
    "sigmoid": 1.0,
    "tanh": 5.0 / 3,
    "relu": math.sqrt(2.0),
    "selu": 3.0 / 4,
}

NONLINEARITIES: tuple[str, ...] = (*_FIXED_GAINS, "leaky_relu")
LEAKY_RELU_DEFAULT_SLOPE = 0.01


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Gain for ``nonlinearity``; ``param`` is leaky_relu's negative slope (others ignore it)."""
    if nonlinearity == "leaky_relu":
        slope = LEAKY_RELU_DEFAULT_SLOPE if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"leaky_relu's param must be a number; got {param!r}")
        try:
            return math.sqrt(2.0 / (1 + slope**2))
        except OverflowError:  # torch raises here too; the gain would round to 0
            raise ValueError(
                f"leaky_relu's negative slope must satisfy |slope| < 1.3e154 (its square must be finite); got {slope!r}"
            ) from None
    try:
        return _FIXED_GAINS[nonlinearity]
    except KeyError:
        raise ValueError(
            f"nonlinearity must be one of {list(NONLINEARITIES)}; got {nonlinearity!r}"
        ) from None


def torch_nonlinearity(nonlinearity: str) -> str:
    """The name torch's own functions accept for ``nonlinearity`` (``identity`` → ``linear``)."""
    return "linear" if nonlinearity == "identity" else nonlinearity
