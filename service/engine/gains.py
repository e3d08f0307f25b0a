"""The recommended gain of a nonlinearity, as ``torch.nn.init.calculate_gain``.

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
``linear``. Plain Python (no torch); ``tests/test_fans_and_gains.py`` pins every entry against torch.
"""

from __future__ import annotations

import math

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
