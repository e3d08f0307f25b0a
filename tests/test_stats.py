"""Stats: observed values equal those recomputed from the returned tensor; expected values are the
scheme's theory (computed here from the formulas and scipy); no NaN anywhere in the JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load
from scipy import stats as sps

from service.codec.header import decode_header


def _fetch(http, shape, init, dtype="float32", seed=0, bins=0):
    r = http.post(
        "/v1/tensor",
        json={"shape": shape, "init": init, "dtype": dtype, "seed": seed, "device": "cpu", "histogram_bins": bins},
    )
    assert r.status_code == 200, r.text
    meta, _, _ = decode_header(r.content)
    assert "NaN" not in meta["stats"] and "Infinity" not in meta["stats"]
    return load(r.content)["weight"], json.loads(meta["stats"])["weight"]


@pytest.mark.parametrize(
    "shape,init,dtype",
    [
        pytest.param([64, 48], {"scheme": "kaiming_uniform"}, "float32", id="kaiming-f32"),
        pytest.param([33, 7], {"scheme": "normal", "mean": 1000.0, "std": 0.001}, "float64", id="far-mean-tiny-std"),
        pytest.param([20, 30], {"scheme": "sparse", "sparsity": 0.5}, "float32", id="sparse"),
        pytest.param([16, 16], {"scheme": "xavier_normal"}, "bfloat16", id="xavier-bf16"),
        pytest.param([9, 9], {"scheme": "uniform"}, "float16", id="uniform-f16"),
        pytest.param([5, 5], {"scheme": "eye"}, "float32", id="eye"),
    ],
)
def test_observed_stats_equal_the_returned_tensors_own(http, shape, init, dtype):
    t, s = _fetch(http, shape, init, dtype)
    x = t.to(torch.float64).numpy().ravel()
    assert s["numel"] == x.size
    assert s["min"] == x.min() and s["max"] == x.max()
    assert s["zero_fraction"] == np.count_nonzero(x == 0) / x.size
    # float32 sums are exact to ~1e-7 relative (stats.Partial.of); float64 data far tighter
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-6, abs=1e-9)
    assert s["std"] == pytest.approx(x.std(ddof=1), rel=1e-6, abs=1e-12)


def test_constant_tensor_has_exactly_zero_std(http):
    _, s = _fetch(http, [1000, 3], {"scheme": "constant", "val": 0.1})
    assert s["std"] == 0.0 and s["expected"] == {"mean": 0.1, "std": 0.0, "low": 0.1, "high": 0.1}


def test_one_element_has_null_std_and_empty_tensor_has_nulls(http):
    _, one = _fetch(http, [1], {"scheme": "normal"})
    assert one["numel"] == 1 and one["std"] is None
    _, empty = _fetch(http, [0, 4], {"scheme": "normal"}, bins=8)
    assert empty["numel"] == 0
    assert empty["mean"] is None and empty["std"] is None and empty["min"] is None and empty["zero_fraction"] is None


def test_histogram_counts_every_element_over_min_max(http):
    t, s = _fetch(http, [50, 40], {"scheme": "normal"}, bins=20)
    h = s["histogram"]
    assert len(h["edges"]) == 21 and len(h["counts"]) == 20 and sum(h["counts"]) == 2000
    assert h["edges"][0] == s["min"] and h["edges"][-1] == s["max"]
    expected = torch.histc(t.to(torch.float64), bins=20, min=s["min"], max=s["max"])
    assert h["counts"] == [int(c) for c in expected]


def test_uniform_family_reports_bound_fans_and_gain(http):
    _, s = _fetch(http, [256, 784], {"scheme": "kaiming_uniform", "a": math.sqrt(5)})
    gain = math.sqrt(2.0 / (1 + 5))
    bound = math.sqrt(3.0) * gain / math.sqrt(784)
    assert s["fan_in"] == 784 and s["fan_out"] == 256
    assert s["gain"] == pytest.approx(gain, rel=1e-15)
    assert s["bound"] == pytest.approx(bound, rel=1e-15) and s["std_used"] is None
    assert s["expected"]["low"] == -s["bound"] and s["expected"]["std"] == pytest.approx(bound / math.sqrt(3), rel=1e-15)


def test_truncated_expected_moments_match_scipy(http):
    _, s = _fetch(http, [10], {"scheme": "trunc_normal", "mean": 0.5, "std": 2.0, "a": -1.0, "b": 4.0})
    dist = sps.truncnorm((-1.0 - 0.5) / 2.0, (4.0 - 0.5) / 2.0, loc=0.5, scale=2.0)
    assert s["expected"]["mean"] == pytest.approx(dist.mean(), rel=1e-12)
    assert s["expected"]["std"] == pytest.approx(dist.std(), rel=1e-12)
    assert (s["expected"]["low"], s["expected"]["high"]) == (-1.0, 4.0) and s["std_used"] == 2.0


def test_truncated_variance_scaling_reports_sqrt_v_and_the_std_used(http):
    _, s = _fetch(http, [128, 64], {"scheme": "variance_scaling", "scale": 2.0, "mode": "fan_in"})
    v = 2.0 / 64
    assert s["expected"]["std"] == pytest.approx(math.sqrt(v), rel=1e-9)
    assert s["std_used"] == pytest.approx(math.sqrt(v) / 0.87962566103423978, rel=1e-15)
    assert s["expected"]["high"] == pytest.approx(2 * s["std_used"], rel=1e-15)


def test_orthogonal_expected_std_is_gain_over_sqrt_of_the_larger_side(http):
    _, s = _fetch(http, [30, 120], {"scheme": "orthogonal", "gain": 2.0})
    assert s["expected"]["std"] == pytest.approx(2.0 / math.sqrt(120), rel=1e-15)
    assert s["std"] == pytest.approx(s["expected"]["std"], rel=0.05)


def test_sparse_expected_is_the_mixture(http):
    _, s = _fetch(http, [10, 400], {"scheme": "sparse", "sparsity": 0.25, "std": 0.1})
    zeros = math.ceil(0.25 * 10) / 10
    assert s["expected"]["std"] == pytest.approx(0.1 * math.sqrt(1 - zeros), rel=1e-15)
    assert s["zero_fraction"] >= zeros


def test_eye_and_dirac_expect_nothing(http):
    _, eye = _fetch(http, [3, 3], {"scheme": "eye"})
    _, dirac = _fetch(http, [4, 4, 3], {"scheme": "dirac"})
    assert eye["expected"] is None and dirac["expected"] is None


def test_trunc_normal_far_mean_warning_is_returned_in_provenance(http):
    r = http.post(
        "/v1/tensor",
        json={"shape": [8], "init": {"scheme": "trunc_normal", "mean": 10.0, "std": 1.0}, "seed": 0, "device": "cpu"},
        headers={"accept": "application/json"},
    )
    assert r.status_code == 200
    assert any("mean is more than 2 std" in w for w in r.json()["provenance"]["warnings"])


def test_kaiming_on_an_empty_tensor_returns_torchs_warning(http):
    r = http.post(
        "/v1/tensor",
        json={"shape": [0, 4], "init": {"scheme": "kaiming_uniform"}, "seed": 0, "device": "cpu"},
        headers={"accept": "application/json"},
    )
    assert r.json()["provenance"]["warnings"] == ["Initializing zero-element tensors is a no-op"]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda g: torch.empty(200_704).uniform_(-0.1, 0.1, generator=g), id="uniform"),
        pytest.param(lambda g: torch.empty(4099).normal_(1e4, 1e-3, generator=g), id="far-mean-tiny-std"),
        pytest.param(lambda g: torch.full((1000,), 2.5), id="constant"),
        pytest.param(lambda g: torch.tensor([0.0, -0.0, 3.0]), id="zeros-and-a-tail"),
        pytest.param(lambda g: torch.tensor([7.0]), id="one"),
    ],
)
def test_one_pass_float32_stats_equal_float64_numpy(values):
    from service.engine import transforms
    from service.engine.stats import Partial

    if transforms.library() is None:
        pytest.skip("no compiled kernel here: stats take torch's path")
    t = values(torch.Generator().manual_seed(5))
    x = t.to(torch.float64).numpy()
    part = Partial.of(t)
    assert part.n == x.size and part.low == x.min() and part.high == x.max()
    assert part.zeros == np.count_nonzero(x == 0)
    assert part.mean == pytest.approx(x.mean(), rel=1e-12, abs=1e-15)
    assert part.m2 == pytest.approx(((x - x.mean()) ** 2).sum(), rel=1e-9, abs=1e-12)


def test_one_pass_stats_leave_non_finite_values_to_torchs_path():
    from service.engine import transforms

    for bad in (float("nan"), float("inf"), float("-inf")):
        t = torch.tensor([1.0, bad, 2.0] * 11)
        assert transforms.moments_f32(t) is None
    assert transforms.moments_f32(torch.ones(3, dtype=torch.float64)) is None
    assert transforms.moments_f32(torch.ones(6)[::2]) is None  # not contiguous


def _truncated_moments_by_simpson(a: float, b: float, points: int = 2_000_001) -> tuple[float, float]:
    """Mean and std of N(0, 1) on [a, b] by Simpson's rule on a fine grid, the weight taken
    relative to its peak and the moments about ``a`` (a different method from the service's)."""
    from scipy.integrate import simpson

    peak = min(max(0.0, a), b)
    u = np.linspace(0.0, b - a, points)
    w = np.exp(-(a + u - peak) * (a + u + peak) / 2)
    total = simpson(w, x=u)
    mean_u = simpson(w * u, x=u) / total
    return a + mean_u, math.sqrt(simpson(w * (u - mean_u) ** 2, x=u) / total)


@pytest.mark.parametrize("a,b", [
    (-2.0, 2.0), (0.0, 3.0), (8.0, 9.0),  # the closed form
    (30.0, 31.0), (37.0, 80.0), (-40.0, -39.0), (-1000.0, -999.5),  # far in a tail (1/α² of variance)
    (0.5, 0.5001), (-3.0, -2.99),  # narrow: nearly uniform
])
def test_expected_moments_of_a_truncated_normal_hold_in_narrow_windows_and_far_tails(a, b):
    from service.engine.distributions import truncated_normal_moments

    got = truncated_normal_moments(0.0, 1.0, a, b)
    mean, std = _truncated_moments_by_simpson(a, b)
    assert got.mean == pytest.approx(mean, rel=1e-10, abs=1e-12)
    assert got.std == pytest.approx(std, rel=1e-9)


def test_a_window_much_narrower_than_std_is_nearly_uniform_in_the_stats(http):
    """std 1e30 on [-1, 1]: the draws are uniform on the window to float precision; the closed
    form cancelled to 0 here (and a window past float64's tail gave null)."""
    _, s = _fetch(http, [64], {"scheme": "trunc_normal", "std": 1e30, "a": -1.0, "b": 1.0})
    assert s["expected"]["std"] == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    assert s["expected"]["mean"] == pytest.approx(0.0, abs=1e-12)
    _, far = _fetch(http, [64], {"scheme": "trunc_normal_tf", "a": -40.0, "b": -39.0})
    assert far["expected"]["mean"] == pytest.approx(_truncated_moments_by_simpson(-40.0, -39.0)[0], rel=1e-10)


@pytest.mark.parametrize("mean,std,a,b", [
    (0.0, 1.0, -2.0, 2.0), (10.0, 1.0, -2.0, 2.0), (-10.0, 1.0, -2.0, 2.0), (4.0, 1.0, -2.0, 2.0),
    (4.000001, 1.0, -2.0, 2.0), (-4.0, 1.0, -2.0, 2.0), (-4.000001, 1.0, -2.0, 2.0), (0.0, 0.1, 0.3, 0.5),
    (0.5, 1e-3, -1.0, 0.49), (2.0, 0.5, 0.0, 1.0), (0.0, 1e30, -1.0, 1.0),
])
def test_the_service_knows_when_torch_warns_on_a_truncated_normal(mean, std, a, b):
    """``may_warn`` decides whether a fill's warnings are captured; it must say exactly when
    torch's ``trunc_normal_`` warns (for ``trunc_normal_tf``, on the N(0, 1) call it makes)."""
    import warnings

    from service.engine.maker import TensorSpec, may_warn

    def torch_warns(*args: float) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.nn.init.trunc_normal_(torch.empty(4), *args, generator=torch.Generator().manual_seed(0))
        return bool(caught)

    params = {"mean": mean, "std": std, "a": a, "b": b}
    assert may_warn(TensorSpec("w", (4,), "trunc_normal", params)) == torch_warns(mean, std, a, b)
    assert may_warn(TensorSpec("w", (4,), "trunc_normal_tf", params)) == torch_warns(0.0, 1.0, a, b)
