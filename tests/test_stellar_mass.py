"""Photometric stellar mass (galcat.stellar_mass) against the synthetic survey's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat import relations, stellar_mass
from galcat.config import load_config
from galcat.flags import MassFlag
from galcat.stellar_mass import distance_modulus, photometric_mass
from galcat.surveys import synthetic


@pytest.fixture(scope="module")
def objects():
    return synthetic.query(load_config(overrides={"synthetic": {"n_objects": 400}}))


def _mags(rows: pd.DataFrame, bands=("g", "r", "i")):
    return ({b: rows[f"mag_{b}"].to_numpy() for b in bands},
            {b: np.zeros(len(rows)) for b in bands})


# the synthetic survey draws L_r, so it renders with the relations whose M/L is in r
@pytest.mark.parametrize("relation", sorted(k for k, r in relations.MASS_TO_LIGHT.items()
                                            if r.band == "r"))
def test_true_magnitudes_give_the_true_mass(relation):
    """With the rendered (noiseless) magnitudes the mass misses the truth only by the
    bulge and disc having different M/L (the relation is applied to the total colour)."""
    cfg = load_config(overrides={"synthetic": {"n_objects": 400, "mass_to_light": relation}})
    rows = synthetic.query(cfg)
    mags, errs = _mags(rows)
    out = photometric_mass(mags, errs, rows["z"], relation=relation)
    delta = out["log_mass_phot"] - rows["truth_log_mass"].to_numpy()
    assert np.median(np.abs(delta)) < 0.03  # bell2003_gr 0.005, zibetti2009_gi 0.016
    assert np.all(np.abs(delta) < 0.15)
    # zero magnitude errors: the error is the relation's own scatter
    np.testing.assert_allclose(out["log_mass_phot_err"], relations.mass_to_light(relation).scatter_dex)


def test_errors_propagate_per_band_with_the_red_band_also_the_luminosity_band(objects):
    rows = objects.iloc[:5]
    mags, errs = _mags(rows)
    errs["g"] = np.full(5, 0.02)
    errs["r"] = np.full(5, 0.03)
    out = photometric_mass(mags, errs, rows["z"], relation="bell2003_gr")
    b = relations.mass_to_light("bell2003_gr").b
    # log M = a + b (g - r) - 0.4 r + ...: d/dg = b, d/dr = -(b + 0.4)
    expected = np.sqrt(0.1**2 + (b * 0.02) ** 2 + ((b + 0.4) * 0.03) ** 2)
    np.testing.assert_allclose(out["log_mass_phot_err"], expected)
    # a shift of 0.1 mag in both bands (colour kept) is 0.04 dex of luminosity
    shifted = photometric_mass({k: v + 0.1 for k, v in mags.items()}, errs, rows["z"])
    np.testing.assert_allclose(out["log_mass_phot"] - shifted["log_mass_phot"], 0.04)


def test_bad_galaxies_are_flagged_never_fatal(objects):
    rows = objects.iloc[:4]
    mags, errs = _mags(rows)
    mags["g"] = mags["g"].copy()
    mags["g"][0] = np.nan                          # no fit: no photometry
    z = rows["z"].to_numpy().copy()
    z[1] = -1.0                                    # no usable redshift
    mags["g"][2] = mags["r"][2] + 3.0              # g - r = 3: beyond the calibration
    out = photometric_mass(mags, errs, z, relation="bell2003_gr")
    flags = out["log_mass_phot_flag"]
    assert flags[0] == MassFlag.NO_PHOTOMETRY and np.isnan(out["log_mass_phot"][0])
    assert flags[1] == MassFlag.NO_REDSHIFT and np.isnan(out["log_mass_phot_err"][1])
    assert flags[2] == MassFlag.COLOUR_CLIPPED and np.isfinite(out["log_mass_phot"][2])
    assert flags[3] == 0
    # a relation whose band the survey lacks: every galaxy flagged, none fatal
    out = photometric_mass({"g": mags["r"], "r": mags["r"]}, errs, z, relation="zibetti2009_gi")
    assert np.all(out["log_mass_phot_flag"] & MassFlag.NO_PHOTOMETRY)


def test_unknown_relation_or_cosmology_is_a_clear_error(objects):
    mags, errs = _mags(objects.iloc[:2])
    with pytest.raises(ValueError, match="unknown mass_to_light relation 'nope'"):
        photometric_mass(mags, errs, [0.1, 0.1], relation="nope")
    with pytest.raises(ValueError, match="unknown cosmology 'Planck99'"):
        distance_modulus([0.1], cosmology="Planck99")


def test_distance_modulus_is_astropys_planck18():
    from astropy.cosmology import Planck18

    z = np.array([1e-3, 0.02, 0.1, 0.15, 0.5, 3.0, 8.0])
    np.testing.assert_allclose(distance_modulus(z), Planck18.distmod(z).value, atol=1e-4)
    assert np.isnan(distance_modulus([0.0, np.nan, -0.1])).all()


def test_catalogue_masses_read_the_model_magnitudes(objects):
    rows = objects.iloc[:3]
    cat = pd.DataFrame({"object_id": rows["object_id"], "z": rows["z"],
                        "mag_model_r": rows["mag_r"], "mag_model_err_r": 0.0,
                        "mag_model_g": rows["mag_g"], "mag_model_err_g": 0.0})
    out = stellar_mass.catalogue_masses(cat, relation="bell2003_gr")
    assert list(out.columns) == ["object_id", *stellar_mass.MASS_COLUMNS]
    np.testing.assert_allclose(out["log_mass_phot"], rows["truth_log_mass"], atol=0.06)
    with pytest.raises(ValueError, match="no redshift column 'z'"):
        stellar_mass.catalogue_masses(cat.drop(columns="z"), relation="bell2003_gr")


def test_taylor2011_equation_8():
    """Taylor et al. 2011, eq. 8: log M* = 1.15 + 0.70 (g - i) - 0.4 M_i (absolute AB
    i, rest frame), i.e. eq. 7 with their M_sun,i = 4.58; galcat's Sun (Willmer 2018,
    4.53) sits 0.02 dex lower."""
    z = np.array([0.05, 0.1])
    g_i, m_i = np.array([0.6, 1.1]), np.array([-20.0, -22.0])
    dm = distance_modulus(z)
    mags = {"g": m_i + dm + g_i, "i": m_i + dm}
    out = photometric_mass(mags, {}, z, relation="taylor2011_gi")
    published = 1.15 + 0.70 * g_i - 0.4 * m_i
    np.testing.assert_allclose(out["log_mass_phot"], published - 0.4 * (4.58 - 4.53), atol=3e-3)
