"""Model photometry: total AB magnitudes of the bulge + disc fit, for the stellar mass.

`galcat.bulgedisc.fit_bulge_disc` fits a Sérsic bulge and an exponential disc to the
detection band and the bands of the configured colour → M/L relation
(``measure.mass_to_light``). The sum of the two fluxes of a band is that band's total
model flux (the bulge cut at ``measure.r50_model_extent`` r_e, as the synthetic survey
renders it), and `galcat.bulgedisc.BulgeDiscFit.flux_cov` (the structure
marginalised) gives its error. The measure stage writes them as ``mag_model_{band}``
and ``mag_model_err_{band}``; the catalogue stage turns them into a stellar mass
(`galcat.stellar_mass`), where the redshift is known.

Model magnitudes, not aperture ones: a fixed aperture misses a different fraction of
the light of every galaxy, and a total luminosity is what the M/L multiplies.
Neighbours are masked in the fit, so a companion's light is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["column_docs", "column_names", "model_magnitudes"]

#: 2.5 / ln 10: d(mag) = MAG_PER_LN_FLUX × dF / F.
MAG_PER_LN_FLUX = 2.5 / math.log(10.0)


def column_names(bands: Iterable[str]) -> list[str]:
    """``mag_model_{band}``, ``mag_model_err_{band}`` for each band, in order."""
    return [name for band in bands for name in (f"mag_model_{band}", f"mag_model_err_{band}")]


def model_magnitudes(fit, zeropoints: Mapping[str, float]) -> dict[str, float]:
    """Total AB magnitude and its 1-sigma error in every band of a bulge + disc fit.

    Parameters
    ----------
    fit : galcat.bulgedisc.BulgeDiscFit or None
        None (no fit) gives no columns: the caller's table fills them with NaN.
    zeropoints : mapping of band to float
        AB magnitude of one flux unit of the images, per band (the Zarr attribute).

    Returns
    -------
    dict
        ``mag_model_{band}`` and ``mag_model_err_{band}`` (mag) for each fitted band;
        NaN for a band whose total model flux is not positive.
    """
    if fit is None:
        return {}
    out = {}
    for k, band in enumerate(fit.bands):
        total = float(fit.flux_bulge[k] + fit.flux_disc[k])
        block = fit.flux_cov[2 * k:2 * k + 2, 2 * k:2 * k + 2]
        variance = float(block.sum())  # var(bulge) + var(disc) + 2 cov(bulge, disc)
        ok = total > 0 and np.isfinite(variance) and variance >= 0
        out[f"mag_model_{band}"] = (float(zeropoints[band]) - 2.5 * math.log10(total)
                                    if ok else math.nan)
        out[f"mag_model_err_{band}"] = (MAG_PER_LN_FLUX * math.sqrt(variance) / total
                                        if ok else math.nan)
    return out


def column_docs(columns: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Units and descriptions of the model-photometry columns among ``columns``."""
    units, descriptions = {}, {}
    for name in columns:
        if name.startswith("mag_model_err_"):
            band = name.removeprefix("mag_model_err_")
            units[name] = "mag"
            descriptions[name] = (
                f"1-sigma error of mag_model_{band}, from the bulge + disc flux covariance "
                "with the structure marginalised")
        elif name.startswith("mag_model_"):
            band = name.removeprefix("mag_model_")
            units[name] = "mag"
            descriptions[name] = (
                f"total AB magnitude in {band} of the bulge + disc model fit (galcat.bulgedisc; "
                "neighbours masked); NaN when the fit failed")
    return units, descriptions
