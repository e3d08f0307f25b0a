"""The draws follow the distribution each scheme promises (scipy KS tests), and the structured
schemes have their defining properties. Thresholds: p > 1e-4 for a sample from a correct
distribution fails about once in 10,000 runs; the seeds are fixed, so a pass is repeatable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load
from scipy import stats as sps
from torch.nn import init

from service.engine.gains import NONLINEARITIES, calculate_gain

P_MIN = 1e-4


def _values(http, shape, init_, dtype="float32", seed=1):
    r = http.post("/v1/tensor", json={"shape": shape, "init": init_, "dtype": dtype, "seed": seed, "device": "cpu"})
    assert r.status_code == 200, r.text
    return load(r.content)["weight"]


def _sample(http, shape, init_, dtype="float32"):
    return _values(http, shape, init_, dtype).to(torch.float64).numpy().ravel()


KS_CASES = [
    pytest.param([200, 100], {"scheme": "uniform", "a": -2.0, "b": 3.0}, sps.uniform(-2.0, 5.0), id="uniform"),
    pytest.param([200, 100], {"scheme": "normal", "mean": 1.0, "std": 0.5}, sps.norm(1.0, 0.5), id="normal"),
    pytest.param([200, 100], {"scheme": "trunc_normal", "std": 1.0, "a": -1.0, "b": 2.5}, sps.truncnorm(-1.0, 2.5), id="trunc-normal"),
    pytest.param([200, 100], {"scheme": "trunc_normal", "std": 1.0, "a": 1.0, "b": 3.0}, sps.truncnorm(1.0, 3.0), id="trunc-normal-tail"),
    pytest.param([200, 100], {"scheme": "trunc_normal_tf", "mean": 0.5, "std": 0.1}, sps.truncnorm(-2, 2, loc=0.5, scale=0.1), id="trunc-normal-tf"),
    pytest.param([300, 80], {"scheme": "xavier_uniform"}, sps.uniform(-math.sqrt(6 / 380), 2 * math.sqrt(6 / 380)), id="xavier-uniform"),
    pytest.param([300, 80], {"scheme": "xavier_normal", "gain": 2.0}, sps.norm(0, 2 * math.sqrt(2 / 380)), id="xavier-normal"),
    pytest.param([200, 16, 3, 3], {"scheme": "kaiming_normal", "nonlinearity": "relu"}, sps.norm(0, math.sqrt(2 / 144)), id="kaiming-normal-conv"),
    pytest.param(
        [200, 120], {"scheme": "kaiming_uniform", "a": math.sqrt(5)},
        sps.uniform(-math.sqrt(3 / 6) * math.sqrt(2) / math.sqrt(120), 2 * math.sqrt(3 / 6) * math.sqrt(2) / math.sqrt(120)),
        id="kaiming-uniform-linear-default",
    ),
    pytest.param(
        [150, 100], {"scheme": "variance_scaling", "scale": 2.0, "mode": "fan_avg", "distribution": "truncated_normal"},
        sps.truncnorm(-2, 2, scale=math.sqrt(2 / 125) / 0.87962566103423978), id="variance-scaling-truncated",
    ),
    pytest.param(
        [150, 100], {"scheme": "variance_scaling", "mode": "fan_out", "distribution": "normal"},
        sps.norm(0, math.sqrt(1 / 150)), id="variance-scaling-normal",
    ),
    pytest.param([150, 100], {"scheme": "lecun_uniform"}, sps.uniform(-math.sqrt(3 / 100), 2 * math.sqrt(3 / 100)), id="lecun-uniform"),
    pytest.param([150, 100], {"scheme": "lecun_normal"}, sps.truncnorm(-2, 2, scale=0.1 / 0.87962566103423978), id="lecun-normal"),
]


@pytest.mark.parametrize("shape,init_,dist", KS_CASES)
def test_draws_pass_a_ks_test_against_the_scheme_distribution(http, shape, init_, dist):
    sample = _sample(http, shape, init_, "float64")
    assert sps.kstest(sample, dist.cdf).pvalue > P_MIN


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_uniform_is_uniform_apart_from_its_atom_at_a(http, dtype):
    # torch computes in float and casts; values that round to b are mapped onto a, so a carries a
    # little extra mass. Drop the atom and test the rest against U(a, b) on the dtype's grid.
    sample = _sample(http, [200, 100], {"scheme": "uniform", "a": -1.0, "b": 1.0}, dtype)
    interior = sample[sample > -1.0]
    eps = torch.finfo(getattr(torch, dtype)).eps
    assert (sample == -1.0).mean() < 4 * eps + 1e-3 and sample.max() < 1.0
    assert sps.kstest(interior, sps.uniform(-1.0, 2.0).cdf).statistic < 2 * eps + 0.02


def test_a_ks_test_does_reject_the_wrong_distribution(http):
    sample = _sample(http, [200, 100], {"scheme": "normal", "std": 1.0}, "float64")
    assert sps.kstest(sample, sps.norm(0, 1.1).cdf).pvalue < 1e-6


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_gain_table_matches_torch(http, nonlinearity):
    r = http.get("/v1/gain", params={"nonlinearity": nonlinearity})
    name = "linear" if nonlinearity == "identity" else nonlinearity
    assert r.status_code == 200 and r.json()["gain"] == init.calculate_gain(name)
    assert calculate_gain(nonlinearity) == init.calculate_gain(name)


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.5, 3])
def test_leaky_relu_gain_uses_the_slope_as_torch_does(http, slope):
    r = http.get("/v1/gain", params={"nonlinearity": "leaky_relu", "param": slope})
    assert r.json() == {"nonlinearity": "leaky_relu", "param": slope, "gain": init.calculate_gain("leaky_relu", slope)}


def test_eye_is_the_identity(http):
    t = _values(http, [4, 6], {"scheme": "eye"})
    assert torch.equal(t, torch.eye(4, 6))


def test_dirac_maps_channels_to_the_kernel_centre(http):
    t = _values(http, [6, 3, 5, 5], {"scheme": "dirac", "groups": 2})
    nonzero = t.nonzero().tolist()
    assert nonzero == [[g * 3 + d, d, 2, 2] for g in range(2) for d in range(3)]
    assert t.sum() == 6


@pytest.mark.parametrize("shape", [[20, 50], [50, 20], [8, 4, 3, 3]], ids=["wide", "tall", "conv"])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(http, shape):
    w = _values(http, shape, {"scheme": "orthogonal", "gain": 1.5}, "float64").reshape(shape[0], -1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(small, 1.5**2 * torch.eye(small.shape[0], dtype=torch.float64), atol=1e-12)


def test_sparse_has_exactly_ceil_sparsity_rows_zero_in_every_column(http):
    t = _values(http, [10, 300], {"scheme": "sparse", "sparsity": 0.35, "std": 1.0}, "float64")
    zeros_per_column = (t == 0).sum(dim=0)
    assert torch.all(zeros_per_column == math.ceil(0.35 * 10))
    nonzero = t[t != 0].numpy()
    assert sps.kstest(nonzero, sps.norm(0, 1).cdf).pvalue > P_MIN


def test_different_seeds_give_different_tensors(http):
    a = _values(http, [32], {"scheme": "normal"}, seed=1)
    b = _values(http, [32], {"scheme": "normal"}, seed=2)
    assert not torch.equal(a, b)
    assert np.unique(a.numpy()).size == 32
