"""Error statistics (galcat.metrics) on hand-made values whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from galcat import metrics
from galcat.metrics import (
    assign_bins,
    bin_label,
    binned_bias_scatter,
    coverage,
    fractional_error,
    median_abs,
    nmad,
    rmse,
    summarize,
)


def test_nmad_of_hand_made_values():
    # median 3, |x - 3| = 2 1 0 1 97 -> median 1; the outlier does not matter
    assert nmad([1, 2, 3, 4, 100]) == pytest.approx(1.482602218505602, rel=1e-15)
    assert nmad([5.0, 5.0, 5.0]) == 0.0
    assert nmad([1.0, np.nan, 2.0, 3.0, np.inf]) == pytest.approx(1.482602218505602)
    assert math.isnan(nmad([]))
    assert math.isnan(nmad([np.nan, np.nan]))
    # 1 / Phi^-1(3/4)
    from scipy.stats import norm

    assert metrics.NMAD_SCALE == pytest.approx(1.0 / norm.ppf(0.75), rel=1e-15)


def test_nmad_is_the_standard_deviation_of_gaussian_data():
    x = np.random.default_rng(1).normal(0.3, 0.07, 200_000)
    assert nmad(x) == pytest.approx(0.07, rel=0.01)


def test_fractional_error_and_median_abs():
    err = fractional_error([1.1, 0.8, 2.0, np.nan, 1.0], [1.0, 1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(err[[0, 1, 4]], [0.1, -0.2, -0.5])
    assert np.isnan(err[2]) and np.isnan(err[3])  # truth 0, measurement NaN
    assert median_abs([0.1, -0.2, -0.5, np.nan]) == pytest.approx(0.2)
    assert math.isnan(median_abs([np.nan]))


def test_rmse_of_hand_made_values():
    assert rmse([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
    assert rmse([1.0, np.nan, -1.0, np.inf]) == 1.0
    assert math.isnan(rmse([np.nan]))


def test_summarize_counts_only_finite_values():
    s = summarize([-0.1, 0.0, 0.3, np.nan])
    assert s["n"] == 3
    assert s["bias"] == pytest.approx(0.0)
    assert s["median_abs"] == pytest.approx(0.1)
    assert s["nmad"] == pytest.approx(1.482602218505602 * 0.1)
    empty = summarize([np.nan])
    assert empty["n"] == 0 and math.isnan(empty["bias"])


def test_coverage_of_k_sigma_intervals():
    pred = np.array([0.0, 0.0, 0.0, 0.0, np.nan])
    truth = np.array([0.5, -1.0, 1.5, 3.0, 0.0])
    sigma = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    assert coverage(pred, truth, sigma) == pytest.approx(0.5)  # |d| <= 1: 0.5, 1.0
    assert coverage(pred, truth, sigma, k=2.0) == pytest.approx(0.75)
    assert coverage(pred, truth, 0.5) == pytest.approx(0.25)  # sigma broadcasts
    assert math.isnan(coverage([np.nan], [1.0], [1.0]))
    # calibrated Gaussian errors cover erf(k / sqrt 2)
    rng = np.random.default_rng(3)
    s = rng.uniform(0.5, 2.0, 100_000)
    t = rng.normal(0.0, s)
    for k in (1.0, 2.0):
        assert coverage(np.zeros_like(t), t, s, k=k) == pytest.approx(
            math.erf(k / math.sqrt(2)), abs=0.005)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive finite k"):
            coverage([0.0], [0.0], [1.0], k=bad)


def test_assign_bins_edges_are_left_closed():
    idx = assign_bins([5.0, 20.0, 49.9, 50.0, 300.0, np.nan, -np.inf], (20.0, 50.0))
    assert idx.tolist() == [0, 1, 1, 2, 2, -1, 0]
    assert [bin_label((20, 50), k) for k in range(3)] == ["<20", "20-50", ">=50"]
    with pytest.raises(IndexError):
        bin_label((20, 50), 3)
    for bad in ((), (50, 20), (20, 20)):
        with pytest.raises(ValueError, match="edges must increase strictly"):
            assign_bins([1.0], bad)


def test_binned_bias_scatter_by_hand():
    by = [10.0, 15.0, 30.0, 40.0, 45.0, np.nan]
    err = [0.2, -0.2, 0.0, 0.1, np.nan, 5.0]
    t = binned_bias_scatter(err, by, (20.0, 50.0)).set_index("bin")
    assert t.index.tolist() == ["<20", "20-50", ">=50"]
    assert t.loc["<20", "n_bin"] == 2 and t.loc["<20", "n"] == 2
    assert t.loc["<20", "bias"] == pytest.approx(0.0)
    assert t.loc["<20", "nmad"] == pytest.approx(1.482602218505602 * 0.2)
    assert t.loc["<20", "rmse"] == pytest.approx(0.2)
    assert t.loc["20-50", "n_bin"] == 3 and t.loc["20-50", "n"] == 2
    assert t.loc["20-50", "bias"] == pytest.approx(0.05)
    assert t.loc["20-50", "median_abs"] == pytest.approx(0.05)
    assert t.loc["20-50", "failed"] == pytest.approx(1 / 3)
    # the empty bin is kept; the value with a NaN binning quantity is in no bin
    assert t.loc[">=50", "n_bin"] == 0 and math.isnan(t.loc[">=50", "bias"])
    assert math.isnan(t.loc[">=50", "failed"])
    with pytest.raises(ValueError, match="errors has shape"):
        binned_bias_scatter([0.1], [1.0, 2.0], (1.5,))
