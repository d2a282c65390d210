"""Self-calibrating priors (galcat.priors, measure.priors = calibrate; issue 13)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from galcat.config import load_config
from galcat.metrics import nmad
from galcat.morphology import measure_shard
from galcat.priors import SD_FLOOR, calibrated_priors, isophotal_snr
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
