"""``point_estimate``: the central value of a Gaussian output fitted as the mean
(least squares), the median (least absolute deviations) or Huber's M-estimate
(squared residuals in the core, absolute beyond ``huber_delta``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from galcat.config import POINT_ESTIMATE_FAMILIES
from galcat.models.registry import FAMILIES, build_net, get_family, regression_loss
from tests.models.conftest import tiny_settings

N_TARGETS = {"r50": 1, "metallicity": 1, "sersic": 2, "gz2": 37}


def _fitted_constant(target: torch.Tensor, **kw) -> float:
    """The one value ``regression_loss`` settles on for every object of ``target``."""
    value = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([value], lr=0.05)
    for step in range(1500):
        if step == 1000:
            opt.param_groups[0]["lr"] = 0.005
        opt.zero_grad()
        mean = value.expand(len(target), 1)
        regression_loss(mean, torch.ones_like(target), target, **kw).backward()
        opt.step()
    return float(value)


#: The three branches of regression_loss: plain, vote-weighted, with label errors.
BRANCHES = [{}, {"weight": torch.ones(401)}, {"error": torch.zeros(401, 1)}]


@pytest.mark.parametrize("branch", BRANCHES)
def test_the_central_value_is_the_mean_or_the_median_of_skewed_labels(branch):
    # exponential labels: mean 1.13, median 0.80 (this draw), far enough apart to tell
    target = torch.from_numpy(np.random.default_rng(0).exponential(size=(401, 1))).float()
    mean, median = float(target.mean()), float(target.median())
    assert _fitted_constant(target, **branch) == pytest.approx(mean, abs=0.01)
    assert _fitted_constant(target, point_estimate="median", **branch) == pytest.approx(median, abs=0.01)


def _huber_location(values: np.ndarray, delta: float) -> float:
    """Huber's M-estimate of location, by brute minimisation (the reference)."""
    def cost(c):
        size = np.abs(values - c)
        return np.where(size <= delta, size**2, 2 * delta * size - delta**2).sum()
    return minimize_scalar(cost, bounds=(0.0, 3.0), method="bounded").x


@pytest.mark.parametrize("branch", BRANCHES)
def test_huber_fits_its_m_estimate_between_the_median_and_the_mean(branch):
    target = torch.from_numpy(np.random.default_rng(0).exponential(size=(401, 1))).float()
    expected = _huber_location(target.numpy().ravel(), 1.0)
    assert float(target.median()) + 0.05 < expected < float(target.mean()) - 0.05
    fitted = _fitted_constant(target, point_estimate="huber", huber_delta=1.0, **branch)
    assert fitted == pytest.approx(expected, abs=0.01)


def test_a_huber_delta_that_is_not_positive_is_named():
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="huber_delta must be positive; got -0.1"):
        regression_loss(x, torch.ones_like(x), x, point_estimate="huber", huber_delta=-0.1)


def test_an_unknown_point_estimate_is_named():
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="'mode'"):
        regression_loss(x, torch.ones_like(x), x, point_estimate="mode")


@pytest.mark.parametrize("family", sorted(N_TARGETS))
def test_each_gaussian_family_fits_the_point_estimate_of_its_entry(tiny_config, family):
    name = next(n for n, s in tiny_config["models"].items() if s["family"] == family)
    fam = get_family(family)
    losses = {}
    # huber with a delta above every residual is least squares; with a tiny one, not
    for point, delta in (("mean", 0.25), ("median", 0.25), ("huber", 1e3), ("huber", 1e-3)):
        # gz2's multinomial vote loss has no point estimate to choose (its own test)
        settings = tiny_settings(tiny_config, name, point_estimate=point, huber_delta=delta,
                                 vote_loss="least_squares")
        torch.manual_seed(0)
        net = build_net(family, settings, n_bands=3, n_targets=N_TARGETS[family], size=32)
        assert (net.point_estimate, net.huber_delta) == (point, delta if point == "huber" else None)
        image = torch.rand(8, 3, 32, 32)
        inputs = torch.ones(8, net.n_inputs) if net.n_inputs else None
        target = torch.rand(8, N_TARGETS[family]) * 3
        with torch.no_grad():
            out = net(image, inputs)
            losses[point, delta] = float(fam.loss(out, target, {"image": image}, net))
    # the same network and batch: only the fit term differs, |r| against r^2
    assert losses["median", 0.25] != pytest.approx(losses["mean", 0.25], rel=1e-3)
    assert losses["huber", 1e3] == pytest.approx(losses["mean", 0.25], rel=1e-6)
    assert losses["huber", 1e-3] != pytest.approx(losses["mean", 0.25], rel=1e-3)


@pytest.mark.parametrize("family", ["vae", "pixels"])
def test_a_family_without_gaussian_outputs_refuses_a_median(tiny_config, family):
    name = next(n for n, s in tiny_config["models"].items() if s["family"] == family)
    settings = tiny_settings(tiny_config, name, point_estimate="median")
    with pytest.raises(ValueError, match=f"family '{family}'.*point_estimate 'median'"):
        build_net(family, settings, n_bands=1, n_targets=2, size=32)
    build_net(family, {**settings, "point_estimate": "mean"}, n_bands=1, n_targets=2, size=32)


def test_the_config_check_knows_the_families_that_fit_a_point_estimate():
    # the config is checked without torch, so it names them itself
    fitting = {name for name, fam in FAMILIES.items() if fam.fits_point_estimate}
    assert set(POINT_ESTIMATE_FAMILIES) == fitting


def test_r50_defaults_to_huber_and_the_others_to_the_mean(tiny_config):
    points = {s["family"]: s["point_estimate"] for s in tiny_config["models"].values()}
    assert points.pop("r50") == "huber"
    assert set(points.values()) == {"mean"}
