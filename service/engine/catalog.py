"""The scheme table behind ``/v1/schemes``: shape rule, formula, reference call, expected stats.

Parameters (names, types, defaults, constraints) come from the request schemas at the API layer;
a test checks this table and the schemas name the same schemes.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine.schemes import SCHEMES


@dataclass(frozen=True)
class CatalogEntry:
    formula: str
    reference: str
    expected: str
    portable: bool = True  # has a portable-v1 form


CATALOG: dict[str, CatalogEntry] = {
    "uniform": CatalogEntry("w ~ U(a, b)", "torch.nn.init.uniform_(t, a, b)", "mean (a+b)/2, std (b-a)/sqrt(12), [a, b]"),
    "normal": CatalogEntry("w ~ N(mean, std²)", "torch.nn.init.normal_(t, mean, std)", "mean, std"),
    "trunc_normal": CatalogEntry(
        "w ~ N(mean, std²) truncated to [a, b] (absolute cut-offs)",
        "torch.nn.init.trunc_normal_(t, mean, std, a, b)",
        "the truncated normal's mean and std, [a, b]",
    ),
    "constant": CatalogEntry("w = val", "torch.nn.init.constant_(t, val)", "point mass at val"),
    "ones": CatalogEntry("w = 1", "torch.nn.init.ones_(t)", "point mass at 1"),
    "zeros": CatalogEntry("w = 0", "torch.nn.init.zeros_(t)", "point mass at 0"),
    "eye": CatalogEntry("w = I (2-D identity)", "torch.nn.init.eye_(t)", "null (draws nothing)", portable=True),
    "dirac": CatalogEntry(
        "w[g·oc/groups + d, d, centre...] = 1, else 0", "torch.nn.init.dirac_(t, groups)", "null (draws nothing)"
    ),
    "xavier_uniform": CatalogEntry(
        "w ~ U(-b, b), b = gain·sqrt(6 / (fan_in + fan_out))",
        "torch.nn.init.xavier_uniform_(t, gain)",
        "mean 0, std b/sqrt(3), [-b, b]",
    ),
    "xavier_normal": CatalogEntry(
        "w ~ N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out))", "torch.nn.init.xavier_normal_(t, gain)", "mean 0, std"
    ),
    "kaiming_uniform": CatalogEntry(
        "w ~ U(-b, b), b = gain·sqrt(3 / fan_mode), gain = calculate_gain(nonlinearity, a)",
        "torch.nn.init.kaiming_uniform_(t, a, mode, nonlinearity)",
        "mean 0, std b/sqrt(3), [-b, b]",
    ),
    "kaiming_normal": CatalogEntry(
        "w ~ N(0, std²), std = gain / sqrt(fan_mode), gain = calculate_gain(nonlinearity, a)",
        "torch.nn.init.kaiming_normal_(t, a, mode, nonlinearity)",
        "mean 0, std",
    ),
    "orthogonal": CatalogEntry(
        "w = gain·Q, QR of a N(0, 1) matrix (trailing dims flattened), signs from diag(R)",
        "torch.nn.init.orthogonal_(t, gain)",
        "mean 0, std gain/sqrt(max(rows, cols)), |w| <= |gain|",
        portable=False,
    ),
    "sparse": CatalogEntry(
        "per column ceil(sparsity·rows) zeros at randperm rows, the rest N(0, std²)",
        "torch.nn.init.sparse_(t, sparsity, std)",
        "mean 0, std·sqrt(1 - zeros/rows)",
    ),
    "variance_scaling": CatalogEntry(
        "v = scale / n (n = fan_in | fan_out | (fan_in+fan_out)/2); truncated_normal: trunc_normal_tf(0, sqrt(v)/0.8796, -2, 2); "
        "normal: N(0, v); uniform: U(-sqrt(3v), sqrt(3v))",
        "jax.nn.initializers.variance_scaling(scale, mode, distribution) on torch's fan layout",
        "mean 0, std sqrt(v)",
    ),
    "lecun_uniform": CatalogEntry(
        "variance_scaling(1, fan_in, uniform)", "jax.nn.initializers.lecun_uniform()", "mean 0, std sqrt(1/fan_in)"
    ),
    "lecun_normal": CatalogEntry(
        "variance_scaling(1, fan_in, truncated_normal)", "jax.nn.initializers.lecun_normal()", "mean 0, std sqrt(1/fan_in)"
    ),
    "trunc_normal_tf": CatalogEntry(
        "w = mean + std·z, z ~ N(0, 1) truncated to [a, b] (cut-offs in std units)",
        "timm.layers.trunc_normal_tf_(t, mean, std, a, b)",
        "mean + std·E[z], std·sd[z], [mean + a·std, mean + b·std]",
    ),
}


def shape_rule(scheme: str) -> str:
    return SCHEMES[scheme].shape_rule.text
