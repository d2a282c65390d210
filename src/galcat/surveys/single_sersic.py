"""Single elliptical Sérsic galaxies drawn as the synthetic survey draws its galaxies.

The synthetic survey's galaxies are a bulge plus a disc, so their Sérsic index is a
convention; a single Sérsic has an exact one. `render_single_sersic` draws them with the
survey's r-band PSF, pixel scale and sky noise: the sersic network trains on them
(`galcat.models.injections`) and the recovery benchmark scores the fit of `measure` and
the network on them (`galcat.validation.recovery.single_sersic_table`).
`sersic_circular_r50` is their circular half-light radius, defined as ``truth_r50_r``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import galsim
import numpy as np
import pandas as pd

from galcat.surveys import synthetic

__all__ = ["SINGLE_SERSIC_N", "SINGLE_SERSIC_SNR", "render_single_sersic", "sersic_circular_r50"]


def sersic_circular_r50(n, q, r_eff, *, fraction: float = 0.5) -> np.ndarray:
    """Circular-aperture half-light radius of Sérsic fits (arcsec); ``fraction`` other
    than 0.5 gives the radius holding that fraction of the light (e.g. 0.8: r80).

    ``r_eff`` is the half-light **semi-major axis** (statmorph / astropy ``Sersic2D``);
    the profile is elliptical with axis ratio ``q``. The enclosed light in circles uses
    `galcat.surveys.synthetic.enclosed_fraction` (n on its 0.1 grid, clipped to 0.5–6,
    profiles truncated at 8 r_e as the synthetic bulges), so the radius is defined as
    ``truth_r50_r`` is. NaN where an input is not finite or out of range.
    """
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    r_eff = np.atleast_1d(np.asarray(r_eff, dtype=np.float64))
    out = np.full(np.broadcast(n, q, r_eff).shape, np.nan)
    n, q, r_eff = np.broadcast_arrays(n, q, r_eff)
    x = np.geomspace(0.02, 20.0, 600)  # R / r_e (circularised)
    for i in range(out.size):
        ni, qi, ri = float(n.flat[i]), float(q.flat[i]), float(r_eff.flat[i])
        if not (np.isfinite(ni) and np.isfinite(qi) and np.isfinite(ri)):
            continue
        if ri <= 0 or not 0 < qi <= 1:
            continue
        r_e = ri * math.sqrt(qi)  # GalSim's half_light_radius: circularised
        frac = np.asarray(synthetic.enclosed_fraction(min(max(ni, 0.5), 6.0), qi, 1.0, x))
        frac = np.maximum.accumulate(frac.astype(np.float64)) + 1e-12 * np.arange(x.size)
        if frac[0] > fraction or frac[-1] < fraction:
            continue
        out.flat[i] = r_e * float(np.interp(fraction, frac, x))
    return out


#: Sérsic index range of the injections (GalSim's range is 0.3-6.2).
SINGLE_SERSIC_N = (0.5, 6.0)
#: The index range GalSim's Sérsic profile accepts.
SINGLE_SERSIC_GALSIM_N = (0.3, 6.2)
#: Default matched-filter S/N range (log-uniform; `galcat.validation.recovery.single_sersic_table`'s):
#: isophotal S/N ~10-150.
SINGLE_SERSIC_SNR = (25.0, 400.0)


def render_single_sersic(
    n: int,
    synthetic_config: Mapping,
    *,
    rng: np.random.Generator,
    snr: tuple[float, float] = SINGLE_SERSIC_SNR,
    n_range: tuple[float, float] = SINGLE_SERSIC_N,
    size_scale: tuple[float, float] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Draw ``n`` single elliptical Sérsic galaxies in the synthetic survey's r band.

    Each galaxy is one GalSim Sérsic: n ~ U(``n_range``) on a 0.1 grid (default
    0.5-6), truncated at 8 r_e as the survey's bulges; circularised r_e ~ U(0.5, 2.5)
    arcsec (times a log-uniform factor in ``size_scale`` where given), shrunk so that r80
    fits the cutout as the survey does; q ~ U(0.4, 1); a random angle. It is convolved
    with the survey's r-band PSF and pixel, over its r-band sky noise, with the flux
    set by a matched-filter S/N log-uniform in ``snr``.

    Parameters
    ----------
    n : int
        Galaxies to draw.
    synthetic_config : mapping
        The config's ``synthetic`` section (cutout size, pixel scale, PSF, sky).
    rng : numpy.random.Generator
        Draws every parameter and the noise (the same generator state draws the same
        galaxies).
    snr : (float, float)
        Range of the matched-filter S/N (default `SINGLE_SERSIC_SNR`).
    n_range : (float, float)
        Range of the Sérsic index (default `SINGLE_SERSIC_N`; within GalSim's 0.3-6.2).
    size_scale : (float, float) or None
        Range of a log-uniform factor on r_e (another population's sizes,
        `galcat.validation.population.Population.size_scale`); None: no factor. It is
        drawn after every other parameter, so the other draws do not change with it.

    Returns
    -------
    truth : DataFrame
        ``truth_n``, ``truth_q``, ``truth_r50`` (circular half-light radius, arcsec,
        `sersic_circular_r50`) and ``truth_snr_optimal``, one row per galaxy.
    images : ndarray, shape (n, 1, size, size)
        The noisy r-band images (nanomaggies).
    sky : float
        The sky noise per pixel (nanomaggies).

    Notes
    -----
    Cost: ~3 ms per 64 x 64 galaxy (GalSim).
    """
    cfg = {"synthetic": dict(synthetic_config)}
    size, ps = int(synthetic_config["cutout_size"]), float(synthetic_config["pixel_scale"])
    sky = synthetic.band_set(cfg)["r"].sky_sigma(ps)
    if not SINGLE_SERSIC_GALSIM_N[0] <= n_range[0] <= n_range[1] <= SINGLE_SERSIC_GALSIM_N[1]:
        raise ValueError(f"n_range must be [lo, hi] within GalSim's {SINGLE_SERSIC_GALSIM_N}; "
                         f"got {n_range!r}")
    n_true = np.round(rng.uniform(*n_range, n) / 0.1) * 0.1
    r_e = rng.uniform(0.5, 2.5, n)
    q = rng.uniform(0.4, 1.0, n)
    beta = rng.uniform(0.0, 180.0, n)
    target = np.exp(rng.uniform(*np.log(snr), n))
    noise = rng.standard_normal((n, size, size))
    if size_scale is not None:
        r_e = r_e * np.exp(rng.uniform(*np.log(size_scale), n))
    r_max = 0.8 * 0.5 * size * ps
    images, truth_r50 = np.empty((n, 1, size, size)), np.empty(n)
    for i in range(n):
        # r80 of the circular curve of growth must fit the cutout, as in the survey
        r80 = float(sersic_circular_r50(n_true[i], q[i], r_e[i] / math.sqrt(q[i]),
                                        fraction=0.8)[0])
        r_e[i] *= min(1.0, r_max / r80)
        gal = galsim.Sersic(n=float(n_true[i]), half_light_radius=float(r_e[i]),
                            trunc=synthetic.TRUNC * float(r_e[i]), flux_untruncated=True,
                            flux=1.0)
        gal = gal.shear(q=float(q[i]), beta=float(beta[i]) * galsim.degrees)
        model = synthetic.draw_profile(gal, cfg, band="r")
        flux = target[i] / float(np.sqrt(np.sum((model / sky) ** 2)))
        images[i, 0] = flux * model + sky * noise[i]
        truth_r50[i] = float(sersic_circular_r50(n_true[i], q[i], r_e[i] / math.sqrt(q[i]))[0])
    truth = pd.DataFrame({"truth_n": n_true, "truth_q": q, "truth_r50": truth_r50,
                          "truth_snr_optimal": target})
    return truth, images, float(sky)
