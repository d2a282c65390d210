"""Other populations for injection-recovery (galcat.validation.population, issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat import relations
from galcat.config import load_config
from galcat.surveys import synthetic
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


def test_population_scores_check_every_snr_bin_from_10_to_200():
    n = 50
    snr = np.repeat([5.0, 15.0, 30.0, 70.0, 150.0, 300.0], n)
    err = np.full(snr.size, 0.01)
    table = pd.DataFrame({
        "snr": snr, "truth_merger": False, "truth_projection": False,
        "truth_size_clipped": False, "err_r50": err, "err_r50_mass": err,
        "err_sersic_n": err})
    assert v.population_scores(table)["all_pass"]
    # a bias outside 10-200 is reported, not scored; inside it fails
    table.loc[table["snr"] == 5.0, "err_r50"] = 0.2
    table.loc[table["snr"] == 300.0, "err_r50_mass"] = -0.2
    scores = v.population_scores(table)
    assert scores["bias_pass"] and scores["bias"]["r50"]["<10"] == (n, pytest.approx(0.2))
    table.loc[table["snr"] == 70.0, "err_r50_mass"] = 0.04
    assert not v.population_scores(table)["bias_pass"]
