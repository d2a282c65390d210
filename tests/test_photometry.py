"""Model photometry of the bulge + disc fit (galcat.photometry) on synthetic galaxies.

The synthetic survey renders each galaxy as a Sérsic bulge + exponential disc, so its
total flux per band is known (``truth_flux_bulge_*`` + ``truth_flux_disc_*``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from galcat import photometry
from tests.test_bulgedisc import BANDS, _fit, _noiseless, _pick, survey  # noqa: F401

ZEROPOINTS = {band: 22.5 for band in BANDS}  # AB magnitude of one nanomaggy


def _truth_mag(row, band: str) -> float:
    flux = float(row[f"truth_flux_bulge_{band}"] + row[f"truth_flux_disc_{band}"])
    return 22.5 - 2.5 * math.log10(flux)


@pytest.mark.parametrize("early", [True, False])
def test_noiseless_model_magnitudes_are_the_rendered_totals(survey, early):  # noqa: F811
    cfg, iso = survey
    row = _pick(iso, early=early)
    fit = _fit(cfg, row, *_noiseless(cfg, row))
    mags = photometry.model_magnitudes(fit, ZEROPOINTS)
    assert list(mags) == photometry.column_names(BANDS)
    for band in BANDS:
        assert mags[f"mag_model_{band}"] == pytest.approx(_truth_mag(row, band), abs=0.02)
        assert 0 < mags[f"mag_model_err_{band}"] < 0.01  # "noiseless": a tiny sigma


def test_errors_describe_the_scatter_over_noise_realisations(survey):  # noqa: F811
    """The quoted error (flux covariance, structure marginalised, scaled by the reduced
    chi2) matches the scatter of the magnitude over independent noise draws."""
    cfg, iso = survey
    row = _pick(iso, early=False)
    prior = {"log_ratio": (-0.46, 0.25), "n_bulge": (3.5, 1.5), "q_bulge": (0.8, 0.2)}
    draws = []
    for seed in range(12):
        fit = _fit(cfg, row, *_noiseless(cfg, row, noise=0.03, seed=seed), priors=prior)
        draws.append(photometry.model_magnitudes(fit, ZEROPOINTS))
    for band in BANDS:
        mag = np.array([d[f"mag_model_{band}"] for d in draws])
        err = np.array([d[f"mag_model_err_{band}"] for d in draws])
        scatter = mag.std(ddof=1)
        assert 0.5 < np.median(err) / scatter < 2.0, (band, np.median(err), scatter)
        assert abs(np.mean(mag) - _truth_mag(row, band)) < 3 * np.median(err)


def test_no_fit_gives_no_columns_and_the_docs_cover_every_column():
    assert photometry.model_magnitudes(None, ZEROPOINTS) == {}
    names = photometry.column_names(["r", "g"])
    assert names == ["mag_model_r", "mag_model_err_r", "mag_model_g", "mag_model_err_g"]
    units, descriptions = photometry.column_docs([*names, "r50"])
    assert set(units) == set(descriptions) == set(names)
    assert set(units.values()) == {"mag"}
