"""Variance scaling (JAX/Keras ``VarianceScaling``) on torch's fan layout, and its relatives.

One general rule, ``variance_scaling_``; ``lecun_normal_`` and ``lecun_uniform_`` are one-line
specialisations, and ``trunc_normal_tf_`` is the TensorFlow-style truncated normal they use.
Every draw is ``torch.nn.init``'s own, from the caller's generator (docs/api.md §3)::

    v = scale / n,   n = fan_in | fan_out | (fan_in + fan_out) / 2      (by ``mode``)
    truncated_normal: trunc_normal_tf(0, sqrt(v) / 0.87962566103423978, -2, 2)
    normal:           normal(0, sqrt(v))
    uniform:          U(-sqrt(3 v), sqrt(3 v))

References: Klambauer et al. 2017 (SELU, LeCun normal), Glorot & Bengio 2010, He et al. 2015;
``jax.nn.initializers.variance_scaling``; timm's ``variance_scaling_``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import init

from service.engine.fans import compute_fans

# Standard deviation of a standard normal truncated to (-2, 2), as JAX's variance_scaling
# comments it; dividing by it makes the *truncated* distribution's std equal sqrt(v).
from service.formulas import TRUNCATED_NORMAL_STD_2SIGMA

VARIANCE_MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "normal", "uniform")


def scaled_variance(shape: tuple[int, ...], scale: float, mode: str) -> float:
    """``v = scale / n`` with ``n`` from ``mode``; the shape must have no zero-size dimension."""
    fans = compute_fans(shape)
    denominators = {
        "fan_in": fans.fan_in,
        "fan_out": fans.fan_out,
        "fan_avg": (fans.fan_in + fans.fan_out) / 2,
    }
    if mode not in denominators:
        raise ValueError(f"mode must be one of {list(VARIANCE_MODES)}, but got mode={mode!r}")
    return scale / denominators[mode]


def trunc_normal_tf_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Truncated normal with cut-offs ``a``, ``b`` in std units, applied before scaling.

    ``trunc_normal_(t, 0, 1, a, b)`` then ``t * std + mean``: values lie in
    ``[mean + a·std, mean + b·std]``. ``stats.expected`` reports the truncated moments.

    >>> w = torch.empty(3, 5)
    >>> trunc_normal_tf_(w, std=0.02)
    """
    init.trunc_normal_(tensor, 0.0, 1.0, a, b, generator=generator)
    with torch.no_grad():
        tensor.mul_(std).add_(mean)
    return tensor


def variance_scaling_(
    tensor: torch.Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` so each element has variance ``v = scale / n`` (see the module docstring).

    ``stats.expected.std`` is ``sqrt(v)``; ``std_used`` is what the sampler got (for
    ``truncated_normal`` that is ``sqrt(v) / 0.8796…``).

    >>> w = torch.empty(256, 784)
    >>> variance_scaling_(w, 2.0, "fan_in", "normal")   # He normal
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}, but got {distribution!r}")
    if tensor.numel() == 0:  # n may be 0; torch's zero-element fills are no-ops
        return tensor
    v = scaled_variance(tuple(tensor.shape), scale, mode)
    if distribution == "truncated_normal":
        return trunc_normal_tf_(tensor, 0.0, math.sqrt(v) / TRUNCATED_NORMAL_STD_2SIGMA, -2.0, 2.0, generator)
    if distribution == "normal":
        return init.normal_(tensor, 0.0, math.sqrt(v), generator=generator)
    bound = math.sqrt(3 * v)
    return init.uniform_(tensor, -bound, bound, generator=generator)


def lecun_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun normal: ``variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal")``."""
    return variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", generator)


def lecun_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun uniform: ``variance_scaling_(tensor, 1.0, "fan_in", "uniform")``."""
    return variance_scaling_(tensor, 1.0, "fan_in", "uniform", generator)
