"""Recipes the parity tests sweep: every scheme, with non-default parameters where it has any."""

from __future__ import annotations

import pytest

ANY = [[7], [5, 6], [3, 4, 5], [2, 3, 3, 3], [2, 2, 2, 2, 3], [0, 5], [33]]
AT_LEAST_2D = [[5, 6], [6, 5], [4, 3, 5], [6, 3, 3, 3], [2, 3, 2, 2, 2], [0, 5], [3, 0, 2]]
EXACTLY_2D = [[5, 6], [6, 5], [1, 9], [0, 5]]
CONV = [[4, 2, 3], [4, 4, 3, 3], [2, 2, 3, 3, 3], [0, 2, 3]]

RECIPES = [
    ("uniform", {"a": -0.5, "b": 2.0}, ANY),
    ("normal", {"mean": 0.25, "std": 3.0}, ANY),
    ("trunc_normal", {"mean": 0.0, "std": 0.02, "a": -0.04, "b": 0.04}, ANY),
    ("trunc_normal", {"mean": 0.0, "std": 1.0, "a": 1.0, "b": 3.0}, ANY[:3]),  # narrow window: rejection path
    ("constant", {"val": -0.125}, ANY),
    ("ones", {}, ANY[:3]),
    ("zeros", {}, ANY[:3]),
    ("eye", {}, EXACTLY_2D),
    ("dirac", {"groups": 2}, CONV),
    ("xavier_uniform", {"gain": {"nonlinearity": "tanh"}}, AT_LEAST_2D),
    ("xavier_normal", {"gain": 0.5}, AT_LEAST_2D),
    ("kaiming_uniform", {"a": 2.23606797749979}, AT_LEAST_2D),
    ("kaiming_uniform", {"a": 0.0, "mode": "fan_out", "nonlinearity": "relu"}, AT_LEAST_2D[:3]),
    ("kaiming_normal", {"mode": "fan_out", "nonlinearity": "leaky_relu", "a": 0.1}, AT_LEAST_2D),
    ("orthogonal", {"gain": 1.5}, AT_LEAST_2D),
    ("sparse", {"sparsity": 0.3, "std": 0.5}, EXACTLY_2D),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "truncated_normal"}, AT_LEAST_2D),
    ("variance_scaling", {"scale": 0.5, "mode": "fan_out", "distribution": "uniform"}, AT_LEAST_2D[:3]),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "normal"}, AT_LEAST_2D[:3]),
    ("lecun_uniform", {}, AT_LEAST_2D),
    ("lecun_normal", {}, AT_LEAST_2D),
    ("trunc_normal_tf", {"mean": 0.1, "std": 0.02, "a": -2.0, "b": 2.0}, ANY),
]

DTYPES = ["float32", "float16", "bfloat16", "float64"]
SEEDS = [0, 2**32 + 1, 2**64 - 1]


def shape_id(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def parity_cases(seeds=SEEDS, dtypes=DTYPES) -> list:
    return list(_parity_cases(seeds, dtypes))


def _parity_cases(seeds, dtypes):
    for scheme, params, shapes in RECIPES:
        tag = scheme + ("" if not params else "-" + "-".join(f"{k}" for k in params))
        for shape in shapes:
            for dtype in dtypes:
                for seed in seeds:
                    yield pytest.param(scheme, params, shape, dtype, seed, id=f"{tag}-{shape_id(shape)}-{dtype}-s{seed}")


def query_params(scheme, params, shape, dtype, seed) -> dict:
    """The GET form of a recipe."""
    q = {"shape": ",".join(map(str, shape)), "scheme": scheme, "dtype": dtype, "seed": str(seed), "device": "cpu"}
    for key, value in params.items():
        if key == "gain" and isinstance(value, dict):
            q["gain_nonlinearity"] = value["nonlinearity"]
            if value.get("param") is not None:
                q["gain_param"] = repr(value["param"])
        else:
            q[key] = repr(value) if isinstance(value, float) else str(value)
    return q
