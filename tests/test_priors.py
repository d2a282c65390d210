"""Self-calibrating priors (galcat.priors, measure.priors = calibrate; issue 13)."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

from galcat.config import load_config
from galcat.metrics import nmad
from galcat.morphology import measure_shard
from galcat.priors import (
    MIN_COMPONENT_GALAXIES,
    SD_FLOOR,
    calibrated_priors,
    index_prior,
    isophotal_snr,
    mixture_priors,
)
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


def _two_types(rng, n: int, *, bt_noise: float) -> list[dict]:
    """Prior-free fits of a population of 60% discs (B/T 0.14 ± 0.11, n 2.8 ± 0.7) and
    40% early types (B/T 0.74 ± 0.14, n 4.0 ± 0.5), B/T measured with ``bt_noise``."""
    early = rng.random(n) < 0.4
    bt = np.where(early, rng.normal(0.74, 0.14, n), rng.normal(0.14, 0.11, n))
    nb = np.where(early, rng.normal(4.0, 0.5, n), rng.normal(2.8, 0.7, n))
    return [{"bulge_to_total": b + bt_noise * rng.standard_normal(),
             "bulge_to_total_err": bt_noise, "n_bulge": m, "n_bulge_err": np.nan}
            for b, m in zip(bt, nb, strict=True)]


def test_a_mixture_of_two_types_is_found_with_the_fits_noise_removed():
    """Extreme deconvolution of 2000 fits: each type's weight, means and intrinsic
    spreads come back (B/T observed with 0.08 of noise on 0.11-0.14 of spread; the
    prior gets the galaxies' spread, not the fits'). A missing error takes the key's
    median; the components are ordered by B/T."""
    fits = _two_types(np.random.default_rng(3), 2000, bt_noise=0.08)
    late, early = mixture_priors(fits, keys=["n_bulge"], min_galaxies=15)
    assert late["weight"] == pytest.approx(0.6, abs=0.04)
    assert early["weight"] == pytest.approx(0.4, abs=0.04)
    for comp, bt, bt_sd, n, n_sd in ((late, 0.14, 0.11, 2.8, 0.7), (early, 0.74, 0.14, 4.0, 0.5)):
        assert comp["bulge_to_total"][0] == pytest.approx(bt, abs=0.03)
        assert comp["bulge_to_total"][1] == pytest.approx(bt_sd, abs=0.03)
        assert comp["priors"]["n_bulge"][0] == pytest.approx(n, abs=0.15)
        assert comp["priors"]["n_bulge"][1] == pytest.approx(n_sd, abs=0.15)
    # told the fits are exact, the mixture takes their noise for galaxies: sqrt(.14²+.08²)
    exact = [{**f, "bulge_to_total_err": 0.0} for f in fits]
    noisy = mixture_priors(exact, keys=["n_bulge"], min_galaxies=15)[1]["bulge_to_total"][1]
    assert noisy == pytest.approx(np.hypot(0.14, 0.08), abs=0.03)
    assert noisy > early["bulge_to_total"][1] + 0.015


def test_one_population_gives_one_component_and_too_few_fits_none():
    """The Bayesian information criterion keeps one component for one Gaussian type; a
    two-type shard of 120 bright galaxies gives two, one of 30 only one (a type needs
    `MIN_COMPONENT_GALAXIES` = 20 members)."""
    rng = np.random.default_rng(4)
    one = [{"bulge_to_total": b, "n_bulge": m} for b, m in
           zip(rng.normal(0.3, 0.1, 300), rng.normal(3.0, 1.0, 300), strict=True)]
    (only,) = mixture_priors(one, keys=["n_bulge"], min_galaxies=15)
    assert only["weight"] == 1.0 and only["bulge_to_total"][0] == pytest.approx(0.3, abs=0.02)
    # no error given: nothing is deconvolved, the spread is the values'
    assert only["bulge_to_total"][1] == pytest.approx(0.1, abs=0.01)
    assert len(mixture_priors(_two_types(rng, 120, bt_noise=0.05), keys=["n_bulge"],
                              min_galaxies=15)) == 2
    assert len(mixture_priors(_two_types(rng, 30, bt_noise=0.05), keys=["n_bulge"],
                              min_galaxies=15)) == 1
    few = one[:10] + [{"bulge_to_total": np.nan, "n_bulge": 3.0}] * 20
    assert mixture_priors(few, keys=["n_bulge"], min_galaxies=15) is None
    assert mixture_priors([], keys=["n_bulge"], min_galaxies=15) is None  # no bright galaxy
    # identical galaxies: every width is floored
    same = [{"bulge_to_total": 0.2, "n_bulge": 2.0}] * 20
    (floored,) = mixture_priors(same, keys=["n_bulge"], min_galaxies=15)
    assert floored["bulge_to_total"][1] == SD_FLOOR["bulge_to_total"]
    assert floored["priors"]["n_bulge"][1] == SD_FLOOR["n_bulge"]


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


@pytest.fixture(scope="module")
def bright_shard():
    """60 galaxies of the default survey (58 at S/N >= 50) and their truth."""
    cfg = load_config(overrides={"synthetic": {"n_objects": 60}})
    rows = synthetic.query(cfg)
    batch = synthetic.cutouts(rows, cfg)
    return cfg, batch, segment_shard(batch, config=cfg).segmap, rows


@pytest.mark.slow
def test_calibrate_mixture_fits_each_type_with_its_own_prior(bright_shard):
    """``measure.priors: calibrate_mixture`` on 60 galaxies (~1 min): the bright
    galaxies give two types (discs and bulge-dominated galaxies), the single priors and
    colour are those of calibrate, and the single galaxies' B/T against the truth moves
    from rms 0.087 (calibrate) to 0.069 (measured)."""
    cfg, batch, segmap, rows = bright_shard
    cal = _measure(cfg, batch, segmap, priors="calibrate")
    mix = _measure(cfg, batch, segmap, priors="calibrate_mixture")
    record = mix.attrs["priors"]
    json.dumps(record)  # it goes into the features table's metadata
    assert record["mode"] == "calibrate_mixture" and "mixture" in record["calibrated"]
    types = record["bulge_disc_mixture"]
    assert len(types) >= 2 and sum(t["weight"] for t in types) == pytest.approx(1.0)
    assert min(t["weight"] for t in types) * record["n_used"] >= MIN_COMPONENT_GALAXIES - 1
    bt_means = [t["bulge_to_total"][0] for t in types]
    assert bt_means == sorted(bt_means) and bt_means[0] < 0.2 < 0.5 < bt_means[-1]
    for key in ("bulge_disc_priors", "half_mass_colour_prior", "n_used"):
        assert record[key] == cal.attrs["priors"][key]
    truth = rows.set_index("object_id").loc[mix["object_id"]]
    single = ~(truth["truth_merger"] | truth["truth_projection"]).to_numpy()
    rms = {name: float(np.sqrt(np.nanmean(((t["bulge_to_total"].to_numpy()
                                            - truth["truth_bt"].to_numpy())[single]) ** 2)))
           for name, t in (("calibrate", cal), ("mixture", mix))}
    assert rms["mixture"] < 0.9 * rms["calibrate"], rms


def test_calibrate_mixture_without_two_types_fits_as_calibrate(shard, caplog):
    """10 bright galaxies cannot give two types of 20: the run says so and is the
    calibrate run, galaxy for galaxy."""
    cfg, batch, segmap = shard
    calibration = {"min_snr": 30.0, "min_galaxies": 4}
    with caplog.at_level(logging.WARNING, logger="galcat.morphology"):
        mix = _measure(cfg, batch, segmap, priors="calibrate_mixture",
                       prior_calibration=calibration)
    cal = _measure(cfg, batch, segmap, priors="calibrate", prior_calibration=calibration)
    assert "no mixture of two or more types of 20 members" in caplog.text
    assert mix.attrs["priors"]["bulge_disc_mixture"] is None
    assert "mixture" not in mix.attrs["priors"]["calibrated"]
    np.testing.assert_array_equal(mix["bulge_to_total"], cal["bulge_to_total"])
    np.testing.assert_array_equal(mix["r50_mass"], cal["r50_mass"])
