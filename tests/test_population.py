"""Other populations for injection-recovery (galcat.validation.population, issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat import relations
from galcat.config import load_config
from galcat.surveys import synthetic
from galcat.surveys.single_sersic import SINGLE_SERSIC_N, render_single_sersic
from galcat.validation import recovery as v
from galcat.validation.population import (
    POPULATIONS,
    Population,
    apply_population,
    load_population,
)

RADII = ("truth_r50_r", "truth_r50_g", "truth_r50_i", "truth_r50_mass", "truth_r80_r")


@pytest.fixture(scope="module")
def survey():
    cfg = load_config(overrides={"synthetic": {"n_objects": 40}})
    return cfg, synthetic.query(cfg)


def test_an_empty_population_is_the_survey(survey):
    """Nothing redrawn: every truth recomputed equals the survey's (its tables' 0.2%)."""
    cfg, rows = survey
    same = apply_population(rows, Population("same"), cfg)
    for col in RADII:
        np.testing.assert_allclose(same[col], rows[col], rtol=3e-3, err_msg=col)
    np.testing.assert_allclose(same["truth_bt_mass"], rows["truth_bt_mass"], rtol=1e-9)
    np.testing.assert_allclose(same["truth_log_mass"], rows["truth_log_mass"], atol=1e-9)
    assert (same["truth_size_clipped"] == rows["truth_size_clipped"]).all()


def test_steep_gradients_redraw_colours_indices_and_the_mass_map(survey):
    cfg, rows = survey
    pop = POPULATIONS["steep_gradients"]
    out = apply_population(rows, pop, cfg, seed=3)
    delta = out["truth_gr_bulge"] - out["truth_gr_disc"]
    assert delta.between(0.0, 0.4).all() and delta.max() > 0.3
    # the bulge's measured g - r is the drawn one; its r flux (so B/T in r) is kept
    gr = -2.5 * np.log10(out["truth_flux_bulge_g"] / out["truth_flux_bulge_r"])
    np.testing.assert_allclose(gr, out["truth_gr_bulge"], atol=1e-9)
    np.testing.assert_allclose(out["truth_flux_bulge_r"], rows["truth_flux_bulge_r"])
    assert out["truth_n_bulge"].between(1.0, 6.0).all() and out["truth_n_bulge"].max() > 5
    # the truth mass map weighs the i light with Taylor et al. 2011 M/L_i
    rel = relations.mass_to_light("taylor2011_gi")
    ml = {c: 10 ** rel.log_ml(-2.5 * np.log10(out[f"truth_flux_{c}_g"]
                                              / out[f"truth_flux_{c}_i"]))
          for c in ("bulge", "disc")}
    m_b, m_d = (ml[c] * out[f"truth_flux_{c}_i"] for c in ("bulge", "disc"))
    np.testing.assert_allclose(out["truth_bt_mass"], m_b / (m_b + m_d), rtol=1e-9)
    # redder bulges: mass more concentrated than light, more so than in the survey
    assert (out["truth_r50_mass"] <= out["truth_r50_r"] * 1.001).all()
    assert np.median(out["truth_r50_mass"] / out["truth_r50_r"]) < np.median(
        rows["truth_r50_mass"] / rows["truth_r50_r"])
    # every galaxy still fits its cutout
    half = 0.5 * cfg["synthetic"]["cutout_size"] * cfg["synthetic"]["pixel_scale"]
    assert (out["truth_r80_r"] <= synthetic.FIT_FRACTION * half * 1.01).all()
    # the same seed, the same galaxies
    again = apply_population(rows, pop, cfg, seed=3)
    pd.testing.assert_frame_equal(out, again)


def test_population_files_and_their_errors(tmp_path):
    path = tmp_path / "red.yaml"
    path.write_text("bulge_disc_gr: [0.2, 0.4]\nn_bulge: [4, 6]\ndim_max: 3\n")
    pop = load_population(path)
    assert pop.name == "red" and pop.bulge_disc_gr == (0.2, 0.4) and pop.dim_max == 3
    assert load_population("steep_gradients") is POPULATIONS["steep_gradients"]
    path.write_text("bulge_colour: [0.2, 0.4]\n")
    with pytest.raises(ValueError, match="red.yaml.*bulge_colour"):
        load_population(path)
    with pytest.raises(ValueError, match="n_bulge.*got \\(0.1, 6.0\\)"):
        Population("bad", n_bulge=(0.1, 6.0))
    with pytest.raises(ValueError, match="nope"):
        Population("bad", mass_to_light="nope")
    with pytest.raises(ValueError, match="neither a file nor"):
        load_population(tmp_path / "missing.yaml")


def _single(snr, err, truth_n=3.0):
    return pd.DataFrame({"snr": np.asarray(snr, float), "err_sersic_n": np.asarray(err, float),
                         "truth_n": np.broadcast_to(truth_n, np.shape(snr)).astype(float)})


def test_population_scores_check_every_snr_bin_from_10_to_200():
    n = 50
    snr = np.repeat([5.0, 15.0, 30.0, 70.0, 150.0, 300.0], n)
    err = np.full(snr.size, 0.01)
    table = pd.DataFrame({
        "snr": snr, "truth_merger": False, "truth_projection": False,
        "truth_size_clipped": False, "err_r50": err, "err_r50_mass": err,
        "err_sersic_n": err})
    single = _single([30.0, 70.0, 150.0, 300.0], 0.02)
    assert v.population_scores(table, single)["all_pass"]
    # a bias outside 10-200 is reported, not scored; inside it fails
    table.loc[table["snr"] == 5.0, "err_r50"] = 0.2
    table.loc[table["snr"] == 300.0, "err_r50_mass"] = -0.2
    scores = v.population_scores(table, single)
    assert scores["bias_pass"] and scores["bias"]["r50"]["<10"] == (n, pytest.approx(0.2))
    table.loc[table["snr"] == 70.0, "err_r50_mass"] = 0.04
    assert not v.population_scores(table, single)["bias_pass"]


def test_the_population_sersic_goal_is_scored_on_exact_indices_not_on_composites():
    """The bulge + disc figure is kept but not scored; single Sérsics with n <= 6 are."""
    snr = np.full(40, 60.0)
    ok = np.full(snr.size, 0.01)
    table = pd.DataFrame({"snr": snr, "truth_merger": False, "truth_projection": False,
                          "truth_size_clipped": False, "err_r50": ok, "err_r50_mass": ok,
                          "err_sersic_n": np.full(snr.size, 0.3)})
    head = v.population_scores(table, _single([60.0] * 9, [0.05] * 9))["headline"]
    assert head["figures"]["sersic_n_composite"] == pytest.approx(0.3)
    assert "sersic_n_composite" not in head["pass"] and head["pass"]["sersic_n"]
    assert head["figures"]["sersic_n"] == pytest.approx(0.05) and head["n_single"] == 9
    # indices above 6 and S/N <= 20 are outside the goal; NaN fits count as failures
    single = _single([60.0] * 6 + [15.0] * 6, [0.5, 0.5, 0.5, 0.05, np.nan, np.nan] + [0.9] * 6,
                     truth_n=[6.2, 6.2, 6.2, 4.0, 4.0, 4.0] + [3.0] * 6)
    head = v.population_scores(table, single)["headline"]
    assert head["n_single"] == 3 and head["failed"]["sersic_n"] == pytest.approx(2 / 3)
    assert not np.isfinite(head["figures"]["sersic_n"]) and not head["pass"]["sersic_n"]
    # no injections: the goal fails rather than passing unmeasured
    scores = v.population_scores(table)
    assert not scores["headline"]["pass"]["sersic_n"] and not scores["all_pass"]


def test_snr_matched_median_weighs_injections_to_the_reference_snr():
    err = np.r_[np.full(30, 0.2), np.full(10, 0.02)]  # faint injections are the many
    snr = np.r_[np.full(30, 30.0), np.full(10, 300.0)]
    edges = v.POPULATION_SNR_EDGES
    assert v.snr_matched_median_abs(err, snr, np.full(5, 400.0), edges) == pytest.approx(0.02)
    assert v.snr_matched_median_abs(err, snr, np.full(5, 25.0), edges) == pytest.approx(0.2)
    # 80% of the reference is bright: the weighted median is the bright injections' error
    ref = np.r_[np.full(8, 250.0), np.full(2, 40.0)]
    assert v.snr_matched_median_abs(err, snr, ref, edges) == pytest.approx(0.02)
    # a reference bin without injections cannot be weighted
    assert np.isnan(v.snr_matched_median_abs(err, snr, np.full(3, 70.0), edges))


def test_single_sersic_injections_take_a_population_index_range_and_sizes():
    syn = load_config()["synthetic"]

    def draw(**kw):
        return render_single_sersic(6, syn, rng=np.random.default_rng(5), **kw)

    base, base_img, _ = draw()
    same, same_img, _ = draw(n_range=SINGLE_SERSIC_N, size_scale=None)
    assert base.equals(same) and np.array_equal(base_img, same_img)
    pop, _, _ = draw(n_range=(5.0, 6.0), size_scale=(0.5, 0.5))
    assert pop["truth_n"].between(5.0, 6.0).all()
    assert pop["truth_q"].equals(base["truth_q"])  # the other draws do not move
    assert (pop["truth_r50"] < 0.75 * base["truth_r50"]).all()
    with pytest.raises(ValueError, match="n_range.*0.1, 6.0"):
        draw(n_range=(0.1, 6.0))
