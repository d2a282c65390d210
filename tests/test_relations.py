"""Published relations: the numbers of the papers and the registries."""

from __future__ import annotations

import numpy as np
import pytest

from galcat import halfmass, relations


def test_vanderwel2014_table1_at_z025():
    r, s = relations.size_mass_vanderwel2014(
        np.log10([5e10, 5e10, 5e11, 5e11]), np.array([True, False, True, False]), 0.25
    )
    np.testing.assert_allclose(r, [10**0.60, 10**0.86, 10**1.35, 10**1.11], rtol=1e-12)
    np.testing.assert_allclose(s, [0.10, 0.16, 0.10, 0.16])
    # size evolution at fixed mass: (1 + z)^-1.48 (early), (1 + z)^-0.75 (late)
    r0, _ = relations.size_mass_vanderwel2014(10.7, np.array([True, False]), 0.0)
    r1, _ = relations.size_mass_vanderwel2014(10.7, np.array([True, False]), 0.25)
    np.testing.assert_allclose(r0 / r1, [1.25**1.48, 1.25**0.75], rtol=1e-12)
    assert relations.SIZE_MASS["vanderwel2014"] is relations.size_mass_vanderwel2014


def test_tremonti2004_mzr():
    np.testing.assert_allclose(relations.mzr_tremonti2004(10.0), -1.492 + 18.47 - 8.026)
    x = np.linspace(8.5, 11.5, 7)
    assert np.all(np.diff(relations.mzr_tremonti2004(x)) > 0)


def test_mass_to_light_relations():
    bell = relations.mass_to_light("bell2003_gr")
    assert bell.colour_bands == ("g", "r") and bell.band == "r"
    np.testing.assert_allclose(bell.log_ml(0.5), -0.306 + 1.097 * 0.5)
    zib = relations.mass_to_light("zibetti2009_gi")
    assert zib.colour_bands == ("g", "i")
    np.testing.assert_allclose(zib.log_ml(1.0), -0.977 + 1.157)
    with pytest.raises(ValueError, match="bell2003_gr"):
        relations.mass_to_light("nope")


@pytest.mark.parametrize(("name", "luminosity_band", "colour", "log_ml"), [
    # Bell et al. 2003, Table 7, g - i row, M/L_i: -0.152 + 0.518 (g - i)
    ("bell2003_gi", "i", 1.2, -0.152 + 0.518 * 1.2),
    # Into & Portinari 2013, Table 3, exponential SFHs, M/L_r: -0.652 + 1.005 (g - i)
    ("into2013_gi", "r", 1.0, 0.353),
    # Taylor et al. 2011, eq. 7: M/L_i = -0.68 + 0.70 (g - i)
    ("taylor2011_gi", "i", 1.15, 0.125),
])
def test_more_colour_mass_to_light_relations(name, luminosity_band, colour, log_ml):
    rel = relations.mass_to_light(name)
    assert rel.colour_bands == ("g", "i") and rel.band == luminosity_band
    assert {"bell2003_gi": "Bell", "into2013_gi": "Into & Portinari",
            "taylor2011_gi": "Taylor"}[name] in rel.reference
    np.testing.assert_allclose(rel.log_ml(colour), log_ml, atol=1e-9)
    assert name in halfmass.COLOUR_LIMITS


def test_main_sequence_and_early_fraction():
    ms, sigma = relations.main_sequence_renzini_peng2015(10.0)
    np.testing.assert_allclose(ms, 0.76 * 10 - 7.64 - 10)
    assert sigma == pytest.approx(0.3)
    f = relations.early_type_fraction(np.array([9.5, 10.6, 11.5]))
    assert f[0] < 0.05 and f[1] == pytest.approx(0.5) and f[2] > 0.95


def test_mass_function_sampling_follows_baldry2012():
    rng = np.random.default_rng(0)
    x = relations.sample_log_mass(rng, 200_000, 9.0, 11.5)
    assert x.min() >= 9.0 and x.max() <= 11.5
    grid = np.linspace(9.0, 11.5, 5001)
    phi = relations.mass_function_baldry2012(grid)
    below = np.trapezoid(phi[grid <= 10.0], grid[grid <= 10.0]) / np.trapezoid(phi, grid)
    assert np.mean(x <= 10.0) == pytest.approx(below, abs=0.005)
    with pytest.raises(ValueError):
        relations.sample_log_mass(rng, 10, 11.0, 10.0)
