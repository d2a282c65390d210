"""Self-calibrating priors (galcat.priors, measure.priors = calibrate; issue 13)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from galcat.config import load_config
from galcat.metrics import nmad
from galcat.morphology import measure_shard
from galcat.priors import SD_FLOOR, calibrated_priors, index_prior, isophotal_snr
from galcat.segment import segment_shard
from galcat.surveys import synthetic


def test_isophotal_snr_by_hand():
    image = np.zeros((2, 5, 5))
    image[0, 2, 2], image[0, 2, 3] = 3.0, 1.0
    sigma = np.full((2, 5, 5), 0.5)
    seg = np.zeros((2, 5, 5), int)
    seg[0, 2, 2:4] = 1
    seg[0, 0, 0] = 2  # a neighbour does not count
    snr = isophotal_snr(image, sigma, seg)
    assert snr[0] == pytest.approx(4.0 / np.sqrt(2 * 0.25)) and np.isnan(snr[1])


def test_calibrated_priors_are_median_and_nmad_with_the_noise_removed_from_the_colour():
    rng = np.random.default_rng(1)
    n = 400
    true_delta = 0.3 + 0.1 * rng.standard_normal(n)
    err = np.full(n, 0.08)
    fits = [{"n_bulge": nb, "log_ratio": lr, "colour_delta": d + e * rng.standard_normal(),
             "colour_delta_err": e}
            for nb, lr, d, e in zip(rng.normal(4.5, 0.8, n), rng.normal(-0.3, 0.01, n),
                                    true_delta, err, strict=True)]
    structure, colour, used = calibrated_priors(fits, keys=["n_bulge", "log_ratio"],
                                                colour=True, min_galaxies=10)
    assert used == n
    mean, sd = structure["n_bulge"]
    values = [f["n_bulge"] for f in fits]
    assert mean == pytest.approx(np.median(values)) and sd == pytest.approx(nmad(values))
    assert structure["log_ratio"][1] == SD_FLOOR["log_ratio"]  # 0.01 dex is floored
    # observed spread sqrt(0.1^2 + 0.08^2): the prior gets the galaxies' 0.1 back
    assert colour[0] == pytest.approx(0.3, abs=0.02) and colour[1] == pytest.approx(0.1, abs=0.02)
    # too few usable fits: no calibration
    few = fits[:5] + [{"n_bulge": np.nan}] * 20
    assert calibrated_priors(few, keys=["n_bulge"], colour=True, min_galaxies=10)[:2] == (
        None, None)


def test_the_index_prior_is_the_median_and_spread_of_log_n_less_the_fits_noise():
    rng = np.random.default_rng(2)
    true_log_n = rng.normal(0.4, 0.15, 2000)
    err_dex = 0.09  # as much noise as spread: the prior must not take it for galaxies
    n = 10.0 ** (true_log_n + err_dex * rng.standard_normal(true_log_n.size))
    n_err = n * np.log(10.0) * err_dex
    mean, sd = index_prior(n, n_err, min_galaxies=10)
    assert mean == pytest.approx(0.4, abs=0.01) and sd == pytest.approx(0.15, abs=0.01)
    assert nmad(np.log10(n)) > 0.17  # what the prior would be with the noise left in
    # NaN and non-positive fits are left out; identical galaxies get the floor
    assert index_prior([2.0] * 10 + [np.nan, -1.0], [0.01] * 12, min_galaxies=10) == (
        pytest.approx(np.log10(2.0)), SD_FLOOR["log_n"])
    assert index_prior([2.0] * 9 + [np.nan], [0.01] * 10, min_galaxies=10) is None


@pytest.fixture(scope="module")
def shard():
    cfg = load_config(overrides={"synthetic": {"n_objects": 10}})
    rows = synthetic.query(cfg)
    batch = synthetic.cutouts(rows, cfg)
    seg = segment_shard(batch, config=cfg)
    return cfg, batch, seg.segmap


def _measure(cfg, batch, segmap, **measure):
    run = {**cfg, "measure": {**cfg.get("measure", {}), **measure}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return measure_shard(batch, segmap, config=run, scheduler="synchronous")


def test_calibrate_fits_the_bright_galaxies_then_everyone_with_their_priors(shard, caplog):
    cfg, batch, segmap = shard
    calibration = {"min_snr": 30.0, "min_galaxies": 4}
    cal = _measure(cfg, batch, segmap, priors="calibrate", prior_calibration=calibration)
    record = cal.attrs["priors"]
    assert record["mode"] == "calibrate" and record["n_bright"] >= 4
    assert record["calibrated"] == ["colour", "log_ratio", "n_bulge", "q_bulge"]
    priors = record["bulge_disc_priors"]
    defaults = load_config()["measure"]["bulge_disc_priors"]
    assert priors != {k: list(v) for k, v in defaults.items()}
    assert 0.8 <= priors["n_bulge"][0] <= 6.0 and priors["n_bulge"][1] >= SD_FLOOR["n_bulge"]
    # the second pass is a fixed-prior run with the calibrated values, galaxy for galaxy
    fixed = _measure(cfg, batch, segmap, priors="fixed", bulge_disc_priors=priors,
                     half_mass_colour_prior=record["half_mass_colour_prior"])
    assert fixed.attrs["priors"]["mode"] == "fixed"
    np.testing.assert_array_equal(cal["r50_mass"], fixed["r50_mass"])
    np.testing.assert_array_equal(cal["bulge_to_total"], fixed["bulge_to_total"])
    # a shard with too few bright galaxies keeps the configured priors and says so
    with caplog.at_level(logging.WARNING, logger="galcat.morphology"):
        kept = _measure(cfg, batch, segmap, priors="calibrate",
                        prior_calibration={"min_snr": 30.0, "min_galaxies": 50})
    assert kept.attrs["priors"]["calibrated"] == []
    assert kept.attrs["priors"]["bulge_disc_priors"] == {k: list(v) for k, v in
                                                         defaults.items()}
    assert "min_galaxies = 50" in caplog.text


def test_an_index_prior_from_the_bright_galaxies_pulls_the_faint_ones_towards_them(shard):
    """``sersic_n_prior: calibrate``: the prior is `index_prior` of the bright galaxies'
    maximum-likelihood fits (those of a run without it), and every index moves towards
    its mean, none away from it."""
    cfg, batch, segmap = shard
    calibration = {"min_snr": 30.0, "min_galaxies": 4}
    ml = _measure(cfg, batch, segmap, prior_calibration=calibration)
    cal = _measure(cfg, batch, segmap, sersic_n_prior="calibrate",
                   prior_calibration=calibration)
    record = cal.attrs["priors"]
    assert ml.attrs["priors"]["sersic_n_prior"] is None
    assert record["mode"] == "fixed" and record["calibrated"] == ["sersic_n"]
    r = batch.band_index("r")
    snr = isophotal_snr(batch.image[:, r], batch.sigma[:, r], segmap)
    bright = (snr >= 30.0) & (ml["sersic_flag"] == 0).to_numpy()
    assert bright.sum() >= 4
    mean, sd = index_prior(ml["sersic_n"][bright], ml["sersic_n_err"][bright], min_galaxies=4)
    assert record["sersic_n_prior"] == [pytest.approx(mean), pytest.approx(sd)]
    ok = np.isfinite(ml["sersic_n"]) & np.isfinite(cal["sersic_n"])
    before = np.abs(np.log10(ml["sersic_n"][ok]) - mean)
    after = np.abs(np.log10(cal["sersic_n"][ok]) - mean)
    assert (after <= before + 1e-3).all() and (after < before - 1e-3).any()
    # the posterior is narrower in log10 n (in n it scales with the index it moved to)
    dex = {k: (t["sersic_n_err"] / t["sersic_n"])[ok] for k, t in (("ml", ml), ("cal", cal))}
    assert (dex["cal"] <= dex["ml"] * (1 + 1e-3)).all()
