"""Morphology of every galaxy of a shard: statmorph and the half-mass radius.

`measure_shard` maps `measure_object` over blocks of objects with Dask
(`galcat.parallel.map_blocks_of_objects`); blocks come back in object order, so
serial and parallel runs give identical tables. One galaxy that cannot be
measured gets NaN in the affected columns and a bit in ``flag``
(`galcat.flags.MeasureFlag`), and a `MeasureWarning` naming its ``object_id``; it never
stops the shard.

For one object, in the run's detection band (``detect_band``, `galcat.bands`; with
``sum`` the shard gains a ``sum`` band, `galcat.bands.with_sum_band`):

1. **Checks.** The central segment (label 1 of the segmentation map) must exist,
   hold mostly valid pixels (not masked, finite, positive sigma), a positive
   flux, and its centroid must not sit at the cutout border (`EDGE`).
2. **Background.** statmorph needs background-subtracted images. With
   ``measure.background = none`` (default) the cutouts are taken as they come:
   every galcat survey writes sky-subtracted cutouts, and a residual sky
   measured inside a 64-pixel cutout takes the wings of large galaxies for sky
   (on 60 synthetic galaxies it shrank r50_mass by 8% and r50 by 7%).
   ``sigma_clipped_median`` subtracts, in every band, the 3-sigma-clipped median
   of the pixels outside every segment grown by 6 pixels.
3. **statmorph** (Rodriguez-Gomez et al. 2019): `statmorph.SourceMorphology`
   for label 1 (what `statmorph.source_morphology` runs for each label), with
   ``weightmap`` = the sigma map, ``psf`` = the band's PSF, and ``mask`` = bad
   pixels and neighbours (labels > 1). One small function per statistic turns
   its attributes into columns: radii from pixels to arcsec with the batch
   pixel scale, angles to degrees, statmorph's -99 to NaN. statmorph flag 1
   (suspect) sets ``STATMORPH_WARNING``; 2 (bad) and 4 (catastrophic) set
   ``STATMORPH_FAILED`` and blank its columns; ``flag_sersic`` likewise blanks
   the Sérsic columns.
   With ``measure.sersic_refine`` (default) statmorph's Sérsic fit is not run:
   `fit_sersic` fits all seven parameters (amplitude, r_eff, n, centre, axis ratio,
   angle) from statmorph's own start (`sersic_start`: asymmetry centre, moments,
   elliptical half-light radius). statmorph samples its model at pixel centres, which for a
   cuspy n = 4 galaxy a few pixels across gives n ≈ 5–7; `fit_sersic` integrates a
   3-px core over sub-pixels and gives n = 4.0 ± 0.1 (`sersic_model`), with an
   analytic Jacobian (the light profile is fitted once, not by statmorph and
   again by galcat). It weighs every pixel by the sky's noise (`sky_sigma`), not
   the source's Poisson noise, so that the index it fits to a bulge + disc does
   not change with the depth of the image.
   **Bulge + disc** (`galcat.bulgedisc`): a Sérsic bulge + exponential disc fitted
   jointly to the detection band and the bands of the M/L colour, through their
   PSFs, with the (refined) Sérsic centre and angle held (statmorph's r50, centre
   and moments when the Sérsic fit failed) and weak population priors
   (``measure.bulge_disc_priors``); ``bulge_to_total`` is its detection-band B/T.
   ~0.1 s a galaxy (two bands); run when ``measure.r50_model`` or
   ``measure.half_mass_colour_model`` is ``bulge_disc`` (the defaults). Its total
   fluxes are the model photometry ``mag_model_{band}`` of the stellar mass
   (`galcat.photometry`); without the fit they are NaN.
   **PSF-corrected r50** (``r50_psf_corrected``): statmorph's r50 is measured on
   the PSF-convolved image within 1.5 Petrosian radii (≈ +20% below one PSF FWHM,
   −10–15% above three, where that total and the cutout miss the wings). Szomoru
   et al. (2010, 2013): a PSF-free model plus the residual (data − model ⊗ PSF),
   integrated in circles about the model centre, the model alone beyond 3
   Petrosian radii and the cutout. The model is the bulge + disc
   (``measure.r50_model = bulge_disc``, `galcat.bulgedisc.light_radius`) or the
   refined single Sérsic cut at ``measure.r50_model_extent`` = 8 r_eff (``sersic``,
   and the fallback when the bulge + disc fit failed;
   `galcat.halfmass.psf_corrected_light_radius`). A single Sérsic fitted to a
   bulge + disc has heavy wings: +7–9% for galaxies above 2 PSF FWHM on the
   dimmed synthetic survey, against ±1% for the bulge + disc. No usable model: NaN
   and ``R50_PSF_FAILED``.
4. **Half-mass radius**: with ``measure.half_mass_colour_model = bulge_disc``
   (default) the colours of the two components give their M/L
   (`galcat.bulgedisc.mass_radius`; the colour difference shrunk to
   ``measure.half_mass_colour_prior`` by its error). Otherwise, or when the bulge +
   disc fit failed (``r50_mass_flag`` NO_BULGE_DISC), the ring-colour route
   `galcat.halfmass.half_mass_radius` around statmorph's asymmetry centre, in
   circles (default, the convention of the synthetic ``truth_r50_mass``) or in
   ellipses of statmorph's axis ratio and orientation (``measure.half_mass_annuli``),
   with neighbours and bad pixels masked.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize as opt
from scipy import ndimage, signal

from galcat import bulgedisc, halfmass, photometry, relations, sersic
from galcat import priors as galcat_priors
from galcat.bands import SUM, resolve_detect_band, with_sum_band
from galcat.config import defaults, measure_fits_bulge_disc, setting, settings
from galcat.flags import HalfMassFlag, MeasureFlag, describe
from galcat.parallel import dask_options, map_blocks_of_objects
from galcat.store import CutoutBatch

__all__ = [
    "DEFAULTS",
    "RADIUS_COLUMNS",
    "centroid_position",
    "FEATURE_DESCRIPTIONS",
    "FEATURE_UNITS",
    "MEASURE_COLUMNS",
    "MeasureWarning",
    "measure_object",
    "measure_settings",
    "measure_shard",
    "neighbour_columns",
    "photometry_bands",
    "psf_r50_pixels",
    "RESIDUAL_THRESHOLD",
    "residual_significance",
    "fit_sersic",
    "sersic_start",
    "sky_sigma",
    "run_statmorph",
    "sersic_model",
    "statmorph_columns",
]

log = logging.getLogger("galcat.morphology")
#: What a block imports on its first galaxy (statmorph, astropy.modeling, photutils:
#: ~1 s of CPU): imported once by the job before its Dask workers start, so that
#: they inherit it (`galcat.parallel.map_blocks_of_objects`).
_WORKER_MODULES = ("galcat.fastmorph",)

#: Defaults of the ``measure`` config section, read from the config schema (their one home).
DEFAULTS: dict[str, Any] = defaults("measure")

#: Fewest background pixels for a background estimate (else NO_SKY).
MIN_SKY_PIXELS = 20
#: Segments are grown by this many pixels before sky pixels are chosen.
SKY_DILATION = 6
#: A centroid closer to the border than this fraction of the cutout side is at the EDGE.
EDGE_FRACTION = 0.1
#: Most of the central segment (this fraction) must be valid pixels.
MIN_VALID_FRACTION = 0.5


class MeasureWarning(UserWarning):
    """A galaxy could not be (fully) measured; the message names its object_id."""


# --------------------------------------------------------------------------- columns
#: statmorph-derived columns: name -> (unit, description).
_STATMORPH_COLUMNS: dict[str, tuple[str, str]] = {
    "r20": ("arcsec", "radius of the circle holding 20% of the light within 1.5 rpetro_circ "
            "(statmorph, CAS)"),
    "r50": ("arcsec", "radius of the circle holding 50% of the light within 1.5 rpetro_circ "
            "(statmorph, CAS)"),
    "r80": ("arcsec", "radius of the circle holding 80% of the light within 1.5 rpetro_circ "
            "(statmorph, CAS)"),
    "rpetro_circ": ("arcsec", "circular Petrosian radius, eta = 0.2 (statmorph)"),
    "concentration": ("", "C = 5 log10(r80 / r20) (Conselice 2003; Lotz et al. 2004)"),
    "asymmetry": ("", "rotational asymmetry A, background-corrected (Conselice 2003)"),
    "smoothness": ("", "clumpiness S (Conselice 2003; Lotz et al. 2004)"),
    "gini": ("", "Gini coefficient of the pixel fluxes (Lotz et al. 2004)"),
    "m20": ("", "M20, normalised second moment of the brightest 20% of the light "
            "(Lotz et al. 2004)"),
    "gini_m20_merger": ("", "S(G, M20): distance above the Gini-M20 merger line; > 0 merger "
                        "candidate (Lotz et al. 2008; Snyder et al. 2015)"),
    "gini_m20_bulge": ("", "F(G, M20): bulge statistic; > 0 early type (Snyder et al. 2015)"),
    "multimode": ("", "M, multimode statistic (Freeman et al. 2013)"),
    "intensity": ("", "I, intensity statistic (Freeman et al. 2013)"),
    "deviation": ("", "D, deviation statistic (Freeman et al. 2013)"),
    "shape_asymmetry": ("", "asymmetry of the binary detection mask (Pawlik et al. 2016)"),
    "ellipticity": ("", "1 - b/a from the image moments about the asymmetry centre "
                    "(statmorph ellipticity_asymmetry)"),
    "orientation_deg": ("deg", "position angle of the major axis from +x, counter-clockwise "
                        "(statmorph orientation_asymmetry)"),
    "sn_per_pixel": ("", "mean signal-to-noise per pixel of the central segment (statmorph)"),
}
_SERSIC_COLUMNS: dict[str, tuple[str, str]] = {
    "sersic_n": ("", "Sersic index of the PSF-convolved 2-D Sersic fit (galcat's, with a "
                 "sub-pixel core: galcat.morphology.fit_sersic; statmorph's own with "
                 "measure.sersic_refine false); maximum likelihood, or the posterior mode "
                 "with measure.sersic_n_prior calibrate"),
    "sersic_r_eff": ("arcsec", "half-light semi-major axis of the Sersic fit "
                     "(circularised: sersic_r_eff * sqrt(sersic_q))"),
    "sersic_q": ("", "axis ratio b/a of the Sersic fit"),
}
_OTHER_COLUMNS: dict[str, tuple[str, str]] = {
    "sersic_n_err": ("", "1-sigma error of sersic_n from the fit's Jacobian (sky noise "
                     "only, the other shape parameters marginalised, the centre held): "
                     "what the noise allows, a lower bound where the galaxy's own Poisson "
                     "noise matters; the posterior's with measure.sersic_n_prior calibrate; "
                     "NaN with measure.sersic_refine false"),
    "statmorph_flag": ("", "statmorph's flag: 0 good, 1 suspect, 2 bad, 4 catastrophic; "
                       "-1 not run"),
    "sersic_flag": ("", "Sersic fit: 0 good, 1 n or r_eff on a bound, 2 failed (with "
                    "measure.sersic_refine false statmorph's flag_sersic: 0 good, 1 suspect, "
                    "2 bad, 4 catastrophic); -1 not run"),
    "r50_mass": ("arcsec", "half-stellar-mass radius from colour -> M/L -> mass profile, "
                 "circular aperture: bulge and disc colours of the bulge + disc fit "
                 "(galcat.bulgedisc, default) or ring colours (galcat.halfmass; Szomoru "
                 "et al. 2013; sqrt(ab) with measure.half_mass_annuli = elliptical)"),
    "r50_psf_corrected": ("arcsec", "PSF-corrected half-light radius in circles about the "
                          "model centre (Szomoru et al. 2010): PSF-free model + residual "
                          "(data - model * PSF) inside 3 Petrosian radii, the model beyond; "
                          "model = bulge + disc (measure.r50_model = bulge_disc, default) "
                          "or the single Sersic cut at measure.r50_model_extent r_eff"),
    "r50_mass_flag": ("", "bit word of galcat.flags.HalfMassFlag; -1 not run"),
    "bulge_to_total": ("", "bulge-to-total flux ratio in the detection band of the "
                       "Sersic bulge + exponential disc fit (galcat.bulgedisc), fitted "
                       "with the neighbours' own bulge + disc models subtracted when "
                       "measure.neighbour_model is bulge_disc (the default); NaN when "
                       "the fit failed or was not run"),
    "bulge_q": ("", "axis ratio b/a of the bulge of the bulge + disc fit; NaN when the "
                "fit failed or was not run"),
    "disc_q": ("", "axis ratio b/a of the disc of the bulge + disc fit; NaN when the fit "
               "failed or was not run"),
    "bulge_to_total_err": ("", "1-sigma error of bulge_to_total: the bulge + disc fit's "
                           "inverse Fisher matrix (the structure marginalised, the "
                           "measure.bulge_disc_priors included, scaled by the reduced "
                           "chi-square where above 1); with measure.priors "
                           "calibrate_mixture its second moment over the fits of every "
                           "galaxy type, weighted by their probabilities (the doubt over "
                           "the type included); the bounds 0 and 1 are not in it"),
    "bulge_q_err": ("", "1-sigma error of bulge_q (as bulge_to_total_err)"),
    "disc_q_err": ("", "1-sigma error of disc_q (as bulge_to_total_err)"),
    "bulge_colour": ("mag", "blue - red colour (the two bands of measure.mass_to_light, "
                     "g - r by default) of the bulge of the bulge + disc fit; NaN when "
                     "the fit failed, lacks a band or the bulge's flux is not positive"),
    "disc_colour": ("mag", "blue - red colour of the disc of the bulge + disc fit (as "
                    "bulge_colour): a quenched disc is redder than a star-forming one"),
    "residual_flux_fraction": ("", "light the bulge + disc fit leaves unexplained in "
                               "the central segment: the absolute residual (image - "
                               "model) summed over the fit's bands, less the noise's own "
                               "share (sqrt(2/pi) sigma per pixel), over the model's flux "
                               "there (Hoyos et al.'s residual flux fraction, the "
                               "source's Poisson noise included); ~0 for a galaxy the "
                               "model describes, a few per cent for tidal features or "
                               "a lopsided disc; NaN without a fit"),
    "neighbour_flux_ratio": ("", "detection-band flux of the brightest neighbour segment "
                             "over the central's (segment sums); 0 without a neighbour"),
    "neighbour_colour_offset": ("mag", "blue - red colour of the brightest neighbour "
                                "segment minus the central's (bands as bulge_colour): near "
                                "0 for a companion at the same redshift; NaN without one"),
    "neighbour_separation": ("", "distance of the brightest neighbour's centroid from the "
                             "central's, over the central segment's half-light radius "
                             "(PSF included); NaN without a neighbour"),
    "neighbour_size_ratio": ("", "half-light radius of the brightest neighbour segment "
                             "over the central's (same estimator); NaN without a neighbour"),
    "flag": ("", "bit word of galcat.flags.MeasureFlag"),
}
_POSITION_COLUMNS: dict[str, tuple[str, str]] = {
    "x_centroid": ("pix", "x of the measured object's centroid (flux-weighted, central "
                   "segment, detection band), 0-based pixel of the image it was cut from "
                   "(survey local: the mosaic); of the cutout where there is none"),
    "y_centroid": ("pix", "y of that centroid, 0-based pixel (as x_centroid)"),
    "ra_centroid": ("deg", "right ascension of that centroid, through the cutout's WCS "
                    "(NaN without one; synthetic survey: north up, east left)"),
    "dec_centroid": ("deg", "declination of that centroid (as ra_centroid)"),
}
_ALL = {**_POSITION_COLUMNS, **_STATMORPH_COLUMNS, **_SERSIC_COLUMNS, **_OTHER_COLUMNS}
#: Radii in arcsec; each is also given in pixels (``{name}_pix``) and, in the
#: catalogue, in kpc where there is a redshift (``{name}_kpc``).
RADIUS_COLUMNS: list[str] = [c for c, (unit, _) in _ALL.items() if unit == "arcsec"]
_ALL.update({f"{c}_pix": ("pix", f"{c} in pixels of the cutout ({c} / pixel scale)")
             for c in RADIUS_COLUMNS})
#: Columns of the features table after ``object_id``, in order.
MEASURE_COLUMNS: list[str] = [
    "x_centroid", "y_centroid", "ra_centroid", "dec_centroid",
    "r20", "r50", "r80", "rpetro_circ", "concentration", "asymmetry", "smoothness", "gini",
    "m20", "gini_m20_merger", "gini_m20_bulge", "multimode", "intensity", "deviation",
    "shape_asymmetry", "ellipticity", "orientation_deg", "sersic_n", "sersic_r_eff",
    "sersic_q", "sersic_n_err", "sn_per_pixel", "statmorph_flag", "sersic_flag",
    "r50_psf_corrected", "r50_mass", "r50_mass_flag", "bulge_to_total", "bulge_q", "disc_q",
    "bulge_to_total_err", "bulge_q_err", "disc_q_err", "bulge_colour", "disc_colour",
    "residual_flux_fraction", "neighbour_flux_ratio", "neighbour_colour_offset",
    "neighbour_separation", "neighbour_size_ratio",
    *[f"{c}_pix" for c in RADIUS_COLUMNS],
    "flag",
]
assert set(MEASURE_COLUMNS) == set(_ALL)
#: Astropy unit string of every column ('' dimensionless).
FEATURE_UNITS: dict[str, str] = {"object_id": "", **{c: _ALL[c][0] for c in MEASURE_COLUMNS}}
#: One-line description of every column.
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "object_id": "stable object key",
    **{c: _ALL[c][1] for c in MEASURE_COLUMNS},
}
_INT_COLUMNS = ("statmorph_flag", "sersic_flag", "r50_mass_flag", "flag")


def measure_settings(config: Mapping | None, bands: Sequence[str] | None = None
                     ) -> dict[str, Any]:
    """The ``measure`` section of ``config``, validated, with the schema defaults filled
    in, plus ``detect_band``: the run's `detect_band` resolved against ``bands`` (the
    shard's; `galcat.bands.resolve_detect_band`), or as configured when ``bands`` is None.

    Raises
    ------
    galcat.config.ConfigError
        For an unknown key or a value of the wrong type or out of bounds, naming it.
    galcat.store.LayoutError
        ``detect_band`` names a band that ``bands`` lacks.
    """
    opts = dict(settings(config, "measure"))
    band = setting(config, "detect_band")
    opts["detect_band"] = band if bands is None else resolve_detect_band(band, bands)
    return opts


# --------------------------------------------------------------------------- statmorph
def _value(morph, attr: str) -> float:
    try:
        value = float(getattr(morph, attr))
    except (TypeError, ValueError, AttributeError):
        return math.nan
    return value if np.isfinite(value) and value != -99.0 else math.nan


def _radius(morph, attr: str, pixel_scale: float) -> float:
    value = _value(morph, attr)
    return value * pixel_scale if value > 0 else math.nan


def _r20(m, ps): return _radius(m, "r20", ps)
def _r50(m, ps): return _radius(m, "r50", ps)
def _r80(m, ps): return _radius(m, "r80", ps)
def _rpetro_circ(m, ps): return _radius(m, "rpetro_circ", ps)
def _concentration(m, ps): return _value(m, "concentration")
def _asymmetry(m, ps): return _value(m, "asymmetry")
def _smoothness(m, ps): return _value(m, "smoothness")
def _gini(m, ps): return _value(m, "gini")
def _m20(m, ps): return _value(m, "m20")
def _gini_m20_merger(m, ps): return _value(m, "gini_m20_merger")
def _gini_m20_bulge(m, ps): return _value(m, "gini_m20_bulge")
def _multimode(m, ps): return _value(m, "multimode")
def _intensity(m, ps): return _value(m, "intensity")
def _deviation(m, ps): return _value(m, "deviation")
def _shape_asymmetry(m, ps): return _value(m, "shape_asymmetry")
def _ellipticity(m, ps): return _value(m, "ellipticity_asymmetry")
def _orientation_deg(m, ps): return math.degrees(_value(m, "orientation_asymmetry"))
def _sn_per_pixel(m, ps): return _value(m, "sn_per_pixel")
def _sersic_n(m, ps): return _value(m, "sersic_n")
def _sersic_r_eff(m, ps): return _radius(m, "sersic_rhalf", ps)
def _sersic_q(m, ps): return 1.0 - _value(m, "sersic_ellip")


#: column -> function(morph, pixel_scale) for the statmorph columns, one statistic each.
STATMORPH_STATISTICS: dict[str, Callable[[Any, float], float]] = {
    name: globals()[f"_{name}"] for name in [*_STATMORPH_COLUMNS, *_SERSIC_COLUMNS]
}


def run_statmorph(
    image: np.ndarray,
    segmap: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray,
    psf: np.ndarray | None,
    *,
    skip_sersic: bool = False,
):
    """statmorph's measurement of label 1 of ``segmap``.

    ``statmorph.SourceMorphology(image, segmap, 1, mask=mask, weightmap=sigma,
    psf=psf)`` (the call that `statmorph.source_morphology` makes for each label)
    through `galcat.fastmorph.SourceMorphology`, which gives statmorph's values at
    less than half its cost (tests compare the two). Images keep their float dtype
    (float32 from the cutout store, as in statmorph's own reference test). ``image``
    must be background-subtracted; neighbours (labels > 1) are masked by statmorph.
    ``skip_sersic``: leave statmorph's Sérsic fit out (`fit_sersic` replaces it).
    """
    from galcat import fastmorph

    def floats(arr):
        arr = np.asarray(arr)
        return arr if arr.dtype.kind == "f" else arr.astype(np.float64)

    return fastmorph.SourceMorphology(
        floats(image),
        np.asarray(segmap, dtype=np.int64),
        1,
        mask=np.asarray(mask, dtype=bool),
        weightmap=floats(sigma),
        psf=None if psf is None else floats(psf),
        skip_sersic=skip_sersic,
    )


def statmorph_columns(morph, pixel_scale: float, *, sersic: bool = True
                      ) -> tuple[dict[str, float], int]:
    """Columns of one statmorph result and the `MeasureFlag` bits they imply.

    ``sersic=False``: the statmorph columns only, not the Sérsic ones (which reading
    would run statmorph's Sérsic fit; `fit_sersic` gives them instead).
    """
    flag = 0
    names = [*_STATMORPH_COLUMNS, *(_SERSIC_COLUMNS if sersic else ())]
    row = {name: STATMORPH_STATISTICS[name](morph, pixel_scale) for name in names}
    row["statmorph_flag"] = int(morph.flag)
    if morph.flag >= 2:
        flag |= MeasureFlag.STATMORPH_FAILED
        row.update(dict.fromkeys(_STATMORPH_COLUMNS, math.nan))
    elif morph.flag == 1:
        flag |= MeasureFlag.STATMORPH_WARNING
    if not sersic:
        return row, flag
    row["sersic_flag"] = int(morph.flag_sersic)
    sersic_bad = any(not np.isfinite(row[c]) for c in _SERSIC_COLUMNS)
    if morph.flag_sersic >= 2 or sersic_bad:
        flag |= MeasureFlag.SERSIC_FAILED
        row.update(dict.fromkeys(_SERSIC_COLUMNS, math.nan))
    elif morph.flag_sersic == 1:
        flag |= MeasureFlag.SERSIC_WARNING
    return row, flag


# --------------------------------------------------------------------------- Sersic fit
#: Sub-samples per axis, and radius (pixels) of the core where the Sersic model is
#: integrated over sub-pixels rather than sampled at pixel centres: the bulge + disc
#: fit's (`galcat.bulgedisc`). A 1-px core of 5² left n of a noiseless n = 4 galaxy
#: through the PSF at 4.2–4.3 and without PSF at 3.8 (pixel-centre samples of a cusp
#: 1–3 px out); with 3 px and 7² both are within 2%.
CORE_SUBSAMPLES = 7
CORE_RADIUS = 3.0
#: Softening radius (pixels) of the cusp while `fit_sersic` finds the centre: half a core
#: sub-pixel (`galcat.sersic.SersicImage` ``softening``). Without it the fitted centre was
#: drawn onto a sub-pixel sample (the cusp's point sample peaks there) and the fit stopped
#: unconverged; with it for the whole fit, a noiseless n = 4 of r_e 2.5 px fitted n = 4.17.
CENTRE_SOFTENING = 0.5 / CORE_SUBSAMPLES
#: Relative change of the cost and of the parameters at which `fit_sersic`'s first fit,
#: which only places the centre, stops (scipy's default 1e-8 let a flat valley run a few
#: galaxies to the evaluation limit); the second fit refits all but the centre.
CENTRE_FIT_TOLERANCE = 1e-3


def sersic_model(shape: tuple[int, int], psf: np.ndarray | None,
                 centre: tuple[float, float], theta: float, *,
                 softening: float = 0.0) -> sersic.SersicImage:
    """The Sérsic model of `fit_sersic`: `galcat.sersic.SersicImage` with this module's core.

    statmorph samples its model at pixel centres and convolves the samples with the
    PSF image. An effective PSF (a PSF image, which includes the pixel response) wants
    exactly that, except at a cuspy centre, where one sample misrepresents the light of
    its pixel: an n = 4 galaxy of 2.5 px half-light radius then fits n ≈ 7 (5 at 6 px).
    Here the pixels within `CORE_RADIUS` of the centre are integrated over
    `CORE_SUBSAMPLES`² sub-pixels, each through the PSF shifted to its sub-pixel
    position; on the same galaxies this gives n = 4.0 ± 0.1. ``psf`` None: no PSF.
    ``softening``: the cusp's softening radius, pixels (`galcat.sersic.SersicImage`).
    """
    return sersic.SersicImage(shape, centre, theta, [psf], core_radius=CORE_RADIUS,
                              core_subsamples=CORE_SUBSAMPLES, softening=softening)


def _model_image(render: sersic.SersicImage, params) -> np.ndarray:
    """``render``'s PSF-convolved image of the Sérsic parameters
    ``(amplitude, r_eff, n, x0, y0, q, theta)`` (centre and angle are the renderer's)."""
    amplitude, r_eff, n, _, _, q, _ = params
    return render.convolved(render.sample(amplitude, r_eff, n, q))


def sky_sigma(sigma: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """The weights' sigma of `fit_sersic`: the sky's noise alone, everywhere.

    Parameters
    ----------
    sigma : 2-D array
        The cutout's 1-sigma noise (flux per pixel), with or without the source's
        Poisson term.
    sky : 2-D bool array
        Valid pixels outside every segment.

    Returns
    -------
    2-D array
        ``sigma``'s median over ``sky`` in every pixel (flux per pixel); ``sigma`` as
        it is when fewer than `MIN_SKY_PIXELS` sky pixels have a positive sigma.

    Notes
    -----
    A single Sérsic does not describe a bulge + disc, so the index it fits depends on
    how the pixels are weighted. With the source's Poisson term in the weights a
    deeper image of the same galaxy weighs its core less and fits a lower n (a
    noiseless bulge + disc of issue 13's other population, the Poisson sigma of
    S/N ~500: −7% against the same fit with constant weights), and two surveys whose
    sigma maps include or leave out that term fit different indices. With the sky's
    noise the fitted index is a property of the galaxy, the one a fit of its noiseless
    image gives. For a galaxy that is a Sérsic the weights change only the precision.
    """
    values = sigma[sky & np.isfinite(sigma) & (sigma > 0)]
    if values.size < MIN_SKY_PIXELS:
        return sigma
    return np.full(sigma.shape, float(np.median(values)))


def sersic_start(morph) -> tuple[float, ...]:
    """Start of `fit_sersic`, ``(amplitude, r_eff, n, x0, y0, q, theta)`` in pixels, from
    statmorph's non-parametric quantities as statmorph starts its own fit: the
    asymmetry centre and its moments' axis ratio and angle, the elliptical half-light
    radius, n from the concentration (``10^-1.5 C^3.5`` in [1, 3.5]); the amplitude
    gives the model the flux statmorph measured within twice the elliptical Petrosian
    radius. Raises ValueError when one of them is missing.

    statmorph's own start (`statmorph.SourceMorphology._sersic_model`) but for the
    amplitude, which statmorph reads from an annulus at r_eff.
    """
    concentration = _value(morph, "concentration")
    n = min(max(10.0 ** -1.5 * concentration ** 3.5, 1.0), 3.5) if np.isfinite(
        concentration) else 2.0
    r_eff, flux = _value(morph, "rhalf_ellip"), _value(morph, "flux_ellip")
    q = 1.0 - _value(morph, "ellipticity_asymmetry")
    geometry = (_value(morph, "xc_asymmetry"), _value(morph, "yc_asymmetry"), q,
                _value(morph, "orientation_asymmetry"))
    if not (np.isfinite([r_eff, flux, *geometry]).all() and r_eff > 0 and flux > 0 and q > 0):
        raise ValueError(f"statmorph gives no usable start (r_eff {r_eff}, flux {flux}, "
                         f"centre, q, angle {geometry})")
    q = min(q, 1.0)
    return (flux / sersic.total_flux(1.0, r_eff, n, q), r_eff, n, *geometry[:2], q,
            geometry[3])


def fit_sersic(image, sigma, valid, psf, start, *, n_prior: tuple[float, float] | None = None
               ) -> tuple[tuple[float, ...], int, float]:
    """Fit a PSF-convolved elliptical Sérsic (`sersic_model`) to one galaxy.

    The one Sérsic fit of a galaxy: statmorph's own (`statmorph.SourceMorphology`'s
    Levenberg–Marquardt over seven parameters, of a model sampled at pixel centres,
    with a finite-difference Jacobian) is not run. Fitted: the same seven. statmorph's sampling at
    pixel centres gives a cuspy n = 4 galaxy a few pixels across n ≈ 5–7;
    `sersic_model` integrates a 3-px core over sub-pixels and gives n = 4.0 ± 0.1.

    Parameters
    ----------
    image, sigma : 2-D arrays
        Background-subtracted image and the weights' 1-sigma noise (`sky_sigma`), flux
        per pixel.
    valid : 2-D bool array
        Pixels to fit (the galaxy's and the sky's; not neighbours or bad pixels).
    psf : 2-D array or None
        Normalised PSF image.
    start : tuple
        ``(amplitude, r_eff, n, x0, y0, q, theta)`` in pixels and radians
        (`sersic_start`): amplitude ``I(r_eff)``, semi-major half-light axis, index,
        centre, axis ratio, angle of the major axis from +x.
    n_prior : (mean, sd), optional
        Gaussian prior on log10 n (`galcat.priors.index_prior`), one more residual of the
        second fit: n is then the posterior mode and ``n_error`` its error. Default None:
        maximum likelihood.

    Returns
    -------
    model : tuple
        The fitted ``(amplitude, r_eff, n, x0, y0, q, theta)``, as ``start``.
    flag : int
        1 when n or r_eff ends on a bound (n in [0.2, 8], r_eff in [0.3, 5 × the
        cutout side] pixels), else 0.
    n_error : float
        1-sigma error of n from the second fit's Jacobian, ``sqrt((JᵀJ)⁻¹)`` with the
        other four parameters marginalised and the centre held: the Cramér–Rao bound for
        the weights' noise (with ``n_prior``, the posterior's). NaN where JᵀJ is singular.

    Raises
    ------
    RuntimeError
        The fit did not converge.

    Notes
    -----
    The centre starts at statmorph's asymmetry centre and is fitted (it may move 3
    pixels): the asymmetry centre of the synthetic galaxies is 0.25 px from the true
    one, statmorph's Sérsic centre 0.05 px, and the bulge + disc fit holds this centre.
    Two fits: all seven with the cusp softened within half a core sub-pixel
    (`CENTRE_SOFTENING`), else the centre is drawn onto a sample point, where the
    cusp's point sample peaks; then, the centre held, the other five with the exact
    cusp. The Jacobians are analytic (`galcat.sersic.SersicImage.sample_gradient` and
    `~galcat.sersic.SersicImage.sample_geometry_gradient`: up to seven images through
    the PSF in one batched FFT). The first fit only has to place the centre and stops
    at a relative change of `CENTRE_FIT_TOLERANCE`. Cost: ~5 + 9 evaluations a galaxy
    (64 default galaxies); `measure` as a whole takes 8–14% less CPU than with
    statmorph's fit followed by a three-parameter refit (interleaved runs, 96 galaxies).
    """
    data, w, use = _fit_pixels(image, sigma, valid)
    # 1. every parameter, the cusp softened; 2. the centre held there, the cusp exact
    centred = _placing_fit(data, w, use, image.shape, psf, start)
    return _sersic_least_squares(data, w, use, image.shape, psf, centred,
                                 free_centre=False, softening=0.0, n_prior=n_prior)


def _fit_pixels(image, sigma, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels a Sérsic fit sees: their values, their weights 1/sigma and where
    they are (``valid``)."""
    weight = np.where(valid, 1.0 / np.where(valid, sigma, 1.0), 0.0)
    use = weight > 0
    return np.asarray(image, dtype=np.float64)[use], weight[use], use


def _placing_fit(data, w, use, shape, psf, start) -> tuple[float, ...]:
    """`fit_sersic`'s first fit: every parameter, the centre included, the cusp
    softened (`CENTRE_SOFTENING`), stopped at `CENTRE_FIT_TOLERANCE`."""
    params, _, _ = _sersic_least_squares(data, w, use, shape, psf, start,
                                         free_centre=True, softening=CENTRE_SOFTENING,
                                         tolerance=CENTRE_FIT_TOLERANCE)
    return params


def _sersic_least_squares(data, w, use, shape, psf, start, *, free_centre: bool,
                          softening: float, tolerance: float = 1e-8,
                          n_prior: tuple[float, float] | None = None
                          ) -> tuple[tuple[float, ...], int, float]:
    """One least-squares Sérsic fit of `fit_sersic`: ``(model, flag, n_error)`` as it
    returns; ``tolerance`` is scipy's ``ftol`` and ``xtol``; ``n_prior`` (log10 n mean,
    sd) adds its residual ``(log10 n - mean) / sd``."""
    amplitude, r_eff, n, x0, y0, q, theta = start
    ln10 = math.log(10.0)
    renders: dict[tuple[float, float, float], sersic.SersicImage] = {}

    def unpack(v):
        centre = (float(v[5]), float(v[6])) if free_centre else (x0, y0)
        return (10.0 ** v[0], 10.0 ** v[1], v[2], v[3]), (*centre, float(v[4]))

    def render(v) -> sersic.SersicImage:
        key = unpack(v)[1]
        if key not in renders:
            renders.clear()  # the last one is all a residual and its Jacobian share
            renders[key] = sersic_model(shape, psf, key[:2], key[2], softening=softening)
        return renders[key]

    def residual(v):
        model = render(v)
        pixels = (data - model.convolved(model.sample(*unpack(v)[0]))[use]) * w
        if n_prior is None:
            return pixels
        return np.append(pixels, (math.log10(v[2]) - n_prior[0]) / n_prior[1])

    def jacobian(v):
        model, profile = render(v), unpack(v)[0]
        samples, d_ln_r, d_n, d_q = model.sample_gradient(*profile)
        d_x0, d_y0, d_theta = model.sample_geometry_gradient(*profile)
        sets = [samples, d_ln_r, d_n, d_q, d_theta, *((d_x0, d_y0) if free_centre else ())]
        images = model.convolved_many(sets, [0])[0]
        columns = [ln10 * images[0], ln10 * images[1], *images[2:]]
        pixels = -np.column_stack([c[use] for c in columns]) * w[:, None]
        if n_prior is None:
            return pixels
        prior_row = np.zeros((1, len(v)))
        prior_row[0, 2] = 1.0 / (v[2] * ln10 * n_prior[1])
        return np.vstack([pixels, prior_row])

    lo = [math.log10(amplitude) - 4.0, math.log10(0.3), 0.2, 0.05, theta - math.pi]
    hi = [math.log10(amplitude) + 4.0, math.log10(5.0 * max(shape)), 8.0, 1.0,
          theta + math.pi]
    v0 = [math.log10(amplitude), math.log10(r_eff), min(max(n, 0.5), 6.0), q, theta]
    scale = [0.1, 0.1, 0.3, 0.1, 0.3]
    if free_centre:
        lo, hi = [*lo, x0 - 3.0, y0 - 3.0], [*hi, x0 + 3.0, y0 + 3.0]
        v0, scale = [*v0, x0, y0], [*scale, 0.3, 0.3]
    res = opt.least_squares(residual, np.clip(v0, lo, hi), jac=jacobian, bounds=(lo, hi),
                            x_scale=scale, max_nfev=200, ftol=tolerance, xtol=tolerance)
    if not res.success or not np.all(np.isfinite(res.x)):
        raise RuntimeError(f"Sersic fit did not converge: {res.message}")
    # q = 1 is a round galaxy, not a stuck fit; only r_eff and n flag a bound
    at_bound = np.any(np.isclose(res.x[1:3], lo[1:3]) | np.isclose(res.x[1:3], hi[1:3]))
    (amplitude, r_eff, n, q), (x0, y0, theta) = unpack(res.x)
    return (amplitude, r_eff, float(n), x0, y0, float(q), theta), int(at_bound), \
        _index_error(res.jac)


def _index_error(jac: np.ndarray) -> float:
    """1-sigma error of the index (parameter 2) from a least-squares Jacobian."""
    with np.errstate(all="ignore"):
        try:
            variance = float(np.linalg.inv(jac.T @ jac)[2, 2])
        except np.linalg.LinAlgError:
            return math.nan
    return math.sqrt(variance) if np.isfinite(variance) and variance > 0 else math.nan


# --------------------------------------------------------------------------- one object
def _segment_light(image: np.ndarray, region: np.ndarray) -> tuple[float, float, float, float]:
    """Flux, flux-weighted centroid (x, y) and circular half-light radius (pixels) of
    the pixels ``region`` of a background-subtracted ``image``: the radius where the
    pixels sorted by distance from the centroid reach half the positive flux. PSF
    included and no model, so two segments of one cutout compare like with like."""
    ys, xs = np.nonzero(region)
    light = np.clip(image[ys, xs].astype(np.float64), 0.0, None)
    total = float(light.sum())
    if not total > 0:
        return float(image[ys, xs].sum()), math.nan, math.nan, math.nan
    xc, yc = float(light @ xs) / total, float(light @ ys) / total
    distance = np.hypot(xs - xc, ys - yc)
    order = np.argsort(distance)
    half = np.searchsorted(np.cumsum(light[order]), 0.5 * total)
    return float(image[ys, xs].sum()), xc, yc, float(distance[order][min(half, order.size - 1)])


def neighbour_columns(batch: CutoutBatch, index: int, seg: np.ndarray, opts: Mapping,
                      background: Any) -> dict[str, float]:
    """What the segmentation map shows of the brightest neighbour (label > 1, by its
    flux in the detection band) against the central galaxy (label 1).

    A companion at the galaxy's redshift and a galaxy projected from another differ
    in colour and in size for their flux; the Galaxy Zoo "odd" question turns on
    which it is. Segment sums over good pixels, background subtracted
    (``background(image, good)``); no fits, ~1 ms.

    Returns
    -------
    dict
        ``neighbour_flux_ratio`` (0 without a neighbour), ``neighbour_colour_offset``
        (mag; the neighbour's blue - red colour minus the central's, bands of
        ``mass_to_light``), ``neighbour_separation`` (centroid distance over the
        central's half-light radius) and ``neighbour_size_ratio`` (half-light radii);
        NaN where a neighbour or a band is missing or a flux is not positive.
    """
    out = {"neighbour_flux_ratio": 0.0, "neighbour_colour_offset": math.nan,
           "neighbour_separation": math.nan, "neighbour_size_ratio": math.nan}
    labels = np.unique(seg[seg > 1])
    if labels.size == 0:
        return out

    @functools.cache
    def band_image(band: str) -> tuple[np.ndarray, np.ndarray]:
        k = batch.band_index(band)
        img = batch.image[index, k].astype(np.float64)
        ok = _valid_pixels(img, batch.sigma[index, k], batch.mask[index, k])
        return np.where(ok, img - background(img, ok), 0.0), ok

    detect, ok = band_image(opts["detect_band"])
    central = _segment_light(detect, (seg == 1) & ok)
    fluxes = [float(detect[(seg == lab) & ok].sum()) for lab in labels]
    brightest = int(labels[int(np.argmax(fluxes))])
    neighbour = _segment_light(detect, (seg == brightest) & ok)
    if not (central[0] > 0 and neighbour[0] > 0):
        out["neighbour_flux_ratio"] = math.nan
        return out
    out["neighbour_flux_ratio"] = neighbour[0] / central[0]
    if central[3] > 0:
        out["neighbour_separation"] = math.hypot(neighbour[1] - central[1],
                                                 neighbour[2] - central[2]) / central[3]
        out["neighbour_size_ratio"] = neighbour[3] / central[3]
    bands = _colour_bands(opts)
    if all(b in batch.bands for b in bands):
        images = [band_image(b) for b in bands]

        def colour(label: int) -> float:  # zeropoints cancel in the offset
            blue, red = (float(img[(seg == label) & good].sum()) for img, good in images)
            return -2.5 * math.log10(blue / red) if blue > 0 and red > 0 else math.nan

        out["neighbour_colour_offset"] = colour(brightest) - colour(1)
    return out


#: `neighbour_models` fits at most this many neighbours, the brightest first ...
NEIGHBOUR_MODEL_MAX = 3
#: ... of at least this fraction of the central's detection-band flux (segment sums)
NEIGHBOUR_MODEL_MIN_FLUX_RATIO = 0.02
#: ... whose centroid is within this many of its half-light radii (segment, PSF
#: included) of the central's segment: an exponential holds 0.2% of its light beyond 5.
NEIGHBOUR_MODEL_REACH = 5.0
#: Pixels of sky around a neighbour's segment that its fit also sees: they hold its
#: wings, which is what reaches the central galaxy.
NEIGHBOUR_MODEL_RING = 3


def _segment_start(image: np.ndarray, region: np.ndarray) -> tuple[float, ...]:
    """`fit_sersic`'s start ``(amplitude, r_eff, n, x0, y0, q, theta)`` for the light
    of a segment: its centroid and half-light radius (`_segment_light`), the axis ratio
    and angle of its second moments, n = 1.5. Raises ValueError without positive flux."""
    flux, xc, yc, r_half = _segment_light(image, region)
    if not (flux > 0 and np.isfinite(r_half)):
        raise ValueError(f"segment without positive flux ({flux})")
    ys, xs = np.nonzero(region)
    light = np.clip(image[ys, xs], 0.0, None)
    dx, dy = xs - xc, ys - yc
    cxx, cyy, cxy = (float(light @ v) / float(light.sum()) for v in (dx * dx, dy * dy, dx * dy))
    spread = math.hypot(0.5 * (cxx - cyy), cxy)
    major, minor = 0.5 * (cxx + cyy) + spread, max(0.5 * (cxx + cyy) - spread, 0.0)
    q = min(max(math.sqrt(minor / major), 0.2), 1.0) if major > 0 else 1.0
    r_eff, n = max(r_half, 1.0), 1.5
    return (flux / sersic.total_flux(1.0, r_eff, n, q), r_eff, n, xc, yc, q,
            0.5 * math.atan2(2.0 * cxy, cxx - cyy))


def neighbour_models(images: Sequence[np.ndarray], sigmas: Sequence[np.ndarray],
                     valid: Sequence[np.ndarray], psfs: Sequence[np.ndarray],
                     segmap: np.ndarray, *, bands: Sequence[str],
                     central: Sequence[np.ndarray] | None = None,
                     object_id: int | None = None) -> list[np.ndarray]:
    """PSF-convolved bulge + disc models of the neighbours' light, one image per band,
    to subtract before the central galaxy is fitted again (as GALFIT users fit
    neighbours with the galaxy).

    Masking a neighbour's segment leaves its wings in the central's segment and in the
    sky the fit sees: a companion within a few half-light radii reads as part of a
    bulge or a disc. Each neighbour (label > 1; at most `NEIGHBOUR_MODEL_MAX`, the
    brightest first, each holding at least `NEIGHBOUR_MODEL_MIN_FLUX_RATIO` of the
    central's flux, its centroid within `NEIGHBOUR_MODEL_REACH` of its half-light radii
    of the central's segment) is fitted on its segment and `NEIGHBOUR_MODEL_RING`
    pixels of sky around it, with the central's model ``central`` and the brighter
    neighbours' models subtracted: a Sérsic in the first band places its centre, angle, size and
    axis ratio (`fit_sersic`'s first fit), then `galcat.bulgedisc.fit_bulge_disc`
    (no priors, every band, its own colours) gives the model. A neighbour is a galaxy
    like the central, so it gets the central's model family: a single Sérsic fitted
    to a bulge + disc extrapolates its wings, which are what reaches the central,
    too far (two bulge + disc galaxies 2.5 disc radii apart: Σ|model - truth| over the
    central's pixels is 28% of the companion's light there with a Sérsic, 17% with a
    bulge + disc).

    Parameters
    ----------
    images, sigmas, valid : sequences of 2-D arrays
        Per band: the background-subtracted image, its 1-sigma noise (flux per pixel)
        and its usable pixels; the first band is the detection band.
    psfs : sequence of 2-D arrays
        Per band, the PSF image.
    segmap : int 2-D array
        0 sky, 1 the central galaxy, > 1 neighbours.
    bands : sequence of str
        The bands' names, in the order of ``images``.
    central : sequence of 2-D arrays, optional
        The central's PSF-convolved model per band; default None: nothing is taken
        off for it.
    object_id : int, optional
        Named in the warning of a neighbour whose fit fails (it is left in the image).

    Returns
    -------
    list of 2-D arrays
        The neighbours' summed models per band (zeros without a neighbour to fit).

    Notes
    -----
    Cost: per neighbour fitted, one Sérsic fit in one band and one bulge + disc fit
    in every band, about what the central's own fits cost; a galaxy without
    neighbours costs nothing.
    """
    shape = segmap.shape
    models = [np.zeros(shape) for _ in images]
    ok = valid[0]
    labels = np.unique(segmap[segmap > 1])
    detect = np.asarray(images[0], dtype=np.float64)
    central_flux = float(detect[(segmap == 1) & ok].sum())
    distance = ndimage.distance_transform_edt(segmap != 1)
    fluxes = {}
    for label in labels:
        flux, xc, yc, r_half = _segment_light(detect, (segmap == label) & ok)
        reaches = (np.isfinite([xc, yc, r_half]).all() and distance[
            min(max(round(yc), 0), shape[0] - 1), min(max(round(xc), 0), shape[1] - 1)]
            <= NEIGHBOUR_MODEL_REACH * r_half)
        if reaches and flux > NEIGHBOUR_MODEL_MIN_FLUX_RATIO * max(central_flux, 0.0):
            fluxes[int(label)] = flux
    chosen = sorted(fluxes, key=lambda lab: -fluxes[lab])[:NEIGHBOUR_MODEL_MAX]
    residuals = [np.asarray(image, dtype=np.float64)
                 - (central[k] if central is not None else 0.0)
                 for k, image in enumerate(images)]
    psf = sersic.normalised_psf(psfs[0])
    weights_sigma = sky_sigma(np.asarray(sigmas[0], dtype=np.float64), (segmap == 0) & ok)
    for label in chosen:
        own = segmap == label
        ring = ndimage.binary_dilation(own, iterations=NEIGHBOUR_MODEL_RING) & (segmap == 0)
        region = (own | ring) & np.all(valid, axis=0)
        if not float(residuals[0][own & ok].sum()) > 0:
            continue  # the galaxy's model already holds the segment's light
        try:
            # the Sérsic only places the neighbour: the first fit is enough
            _, r_eff, _, x0, y0, q, theta = _placing_fit(
                *_fit_pixels(residuals[0], weights_sigma, region), shape, psf,
                _segment_start(residuals[0], own & ok))
            fit = bulgedisc.fit_bulge_disc(residuals, sigmas, region, psfs, (x0, y0),
                                           bands=bands, theta=theta, r_start=r_eff,
                                           q_start=q, bulge_extent=0.0)
        except (RuntimeError, ValueError, FloatingPointError,
                bulgedisc.BulgeDiscError) as exc:
            _warn(object_id, f"neighbour {label}'s model failed, left in: {exc}")
            continue
        for k, band in enumerate(bands):
            models[k] = models[k] + fit.convolved[band]
            residuals[k] = residuals[k] - fit.convolved[band]
    return models


def _empty_row(object_id: int) -> dict[str, Any]:
    row: dict[str, Any] = {"object_id": int(object_id)}
    row.update(dict.fromkeys(MEASURE_COLUMNS, math.nan))
    row.update({"statmorph_flag": -1, "sersic_flag": -1, "r50_mass_flag": -1, "flag": 0})
    return row


def _valid_pixels(image: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~mask & np.isfinite(image) & np.isfinite(sigma) & (sigma > 0)


def _sky_pixels(segmap: np.ndarray, valid: np.ndarray) -> np.ndarray:
    grown = ndimage.binary_dilation(segmap > 0, iterations=SKY_DILATION)
    return valid & ~grown


def estimate_background(image: np.ndarray, sky: np.ndarray) -> float:
    """3-sigma-clipped median of ``image`` over the ``sky`` pixels."""
    from astropy.stats import sigma_clipped_stats

    _, median, _ = sigma_clipped_stats(image[sky], sigma=3.0, maxiters=5)
    return float(median)


def _centroid(image: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Flux-weighted (positive flux) centroid of ``region``; geometric if no flux."""
    y, x = np.nonzero(region)
    w = np.clip(np.nan_to_num(image[y, x]), 0.0, None)
    if w.sum() <= 0:
        return float(x.mean()), float(y.mean())
    return float(np.sum(w * x) / w.sum()), float(np.sum(w * y) / w.sum())


def _touches_border(region: np.ndarray) -> bool:
    return bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())


def _warn(object_id: int, what: str) -> None:
    warnings.warn(f"measure: object {object_id}: {what}", MeasureWarning, stacklevel=3)


def measure_object(
    batch: CutoutBatch,
    index: int,
    segmap: np.ndarray,
    *,
    config: Mapping | None = None,
    settings: Mapping | None = None,
) -> dict[str, Any]:
    """Measure object ``index`` of ``batch``; one row of the features table.

    Parameters
    ----------
    batch : CutoutBatch
    index : int
        Position of the object in the batch.
    segmap : int array (y, x)
        This object's segmentation map: 0 background, 1 the galaxy, > 1 neighbours.
    config : mapping, optional
        The whole galcat config (its ``measure`` section is read).
    settings : mapping, optional
        The ``measure`` section with defaults filled (`measure_settings`); wins over
        ``config``.

    Returns
    -------
    dict
        ``object_id`` and every column of `MEASURE_COLUMNS`.
    """
    opts = dict(settings) if settings is not None else measure_settings(config, batch.bands)
    object_id = int(batch.object_id[index])
    row = _empty_row(object_id)
    flag = 0
    seg = np.asarray(segmap)
    if seg.shape != batch.image.shape[-2:]:
        raise ValueError(f"segmap shape {seg.shape} differs from the cutouts' "
                         f"{batch.image.shape[-2:]}")
    central = seg == 1

    def finish(extra: int, reason: str | None = None) -> dict[str, Any]:
        row["flag"] = int(flag | extra)
        if row["flag"] & MeasureFlag.UNRESOLVED:
            # the PSF dominates: a PSF-corrected size is noise (issue 13)
            row["r50_psf_corrected"] = row["r50_mass"] = math.nan
        for name in RADIUS_COLUMNS:
            row[f"{name}_pix"] = row[name] / batch.pixel_scale
        if reason:
            _warn(object_id, reason)
        return row

    if not central.any():
        return finish(MeasureFlag.NO_CENTRAL_SEGMENT | MeasureFlag.STATMORPH_FAILED
                      | MeasureFlag.SERSIC_FAILED | MeasureFlag.HALFMASS_FAILED | MeasureFlag.R50_PSF_FAILED,
                      "no central segment (label 1)")
    if opts["detect_band"] not in batch.bands:
        return finish(MeasureFlag.MISSING_BAND | MeasureFlag.STATMORPH_FAILED
                      | MeasureFlag.SERSIC_FAILED | MeasureFlag.HALFMASS_FAILED | MeasureFlag.R50_PSF_FAILED,
                      f"detection band {opts['detect_band']!r} is not in the shard")
    b = batch.band_index(opts["detect_band"])
    image = batch.image[index, b]  # float32, as stored
    sigma = batch.sigma[index, b]
    valid = _valid_pixels(image, sigma, batch.mask[index, b])
    if np.any(valid & central):
        row.update(centroid_position(batch, index, *_centroid(image, central & valid)))
    everything_failed = (MeasureFlag.STATMORPH_FAILED | MeasureFlag.SERSIC_FAILED
                         | MeasureFlag.HALFMASS_FAILED | MeasureFlag.R50_PSF_FAILED)

    # 1. checks on the central segment
    if np.count_nonzero(valid & central) < MIN_VALID_FRACTION * np.count_nonzero(central):
        return finish(MeasureFlag.BAD_PIXELS | everything_failed,
                      "most of the central segment is masked or not finite")
    if not np.sum(image[valid & central]) > 0:
        return finish(MeasureFlag.NO_FLUX | everything_failed,
                      "the central segment has no positive flux")
    # bad pixels never join a segment, so a masked block on the galaxy is a hole in (or
    # a bite out of) its segment: look in the filled, slightly grown footprint
    footprint = ndimage.binary_dilation(ndimage.binary_fill_holes(central), iterations=2)
    if np.any(footprint & ~valid):
        flag |= MeasureFlag.PARTLY_MASKED
    if _touches_border(central):
        flag |= MeasureFlag.EDGE
        xc, yc = _centroid(image, central & valid)
        ny, nx = seg.shape
        margin = EDGE_FRACTION * min(ny, nx)
        if min(xc, yc, nx - 1 - xc, ny - 1 - yc) < margin:
            return finish(everything_failed, f"centred at the cutout border ({xc:.1f}, {yc:.1f})")

    # 2. background
    no_sky = np.count_nonzero((seg == 0) & valid) < MIN_SKY_PIXELS
    if no_sky:
        flag |= MeasureFlag.NO_SKY

    def background(img: np.ndarray, ok: np.ndarray) -> float:
        if opts["background"] == "none" or no_sky:
            return 0.0
        sky_band = _sky_pixels(seg, ok)
        return estimate_background(img, sky_band) if sky_band.sum() >= MIN_SKY_PIXELS else 0.0

    row.update(neighbour_columns(batch, index, seg, opts, background))

    # 3. statmorph
    morph = None
    bd_fit = None
    if not opts["statmorph"]:
        flag |= MeasureFlag.SKIPPED
    elif no_sky:
        flag |= (MeasureFlag.STATMORPH_FAILED | MeasureFlag.SERSIC_FAILED
                 | MeasureFlag.R50_PSF_FAILED)
        _warn(object_id, "no background pixels: statmorph not run")
    else:
        bad = ~valid | (seg > 1)
        bg = background(image, valid)
        try:
            own_fit = bool(opts["sersic_refine"])
            morph = run_statmorph(np.where(valid, image - image.dtype.type(bg), 0),
                                  seg, np.where(valid, sigma, 0), bad,
                                  sersic.normalised_psf(batch.psf[b]), skip_sersic=own_fit)
            values, bits = statmorph_columns(morph, batch.pixel_scale, sersic=not own_fit)
            row.update(values)
            flag |= bits | _unresolved(row["r50"], batch, b, opts)
            if bits & MeasureFlag.STATMORPH_FAILED:
                _warn(object_id, f"statmorph flag {morph.flag}")
            model = None
            if own_fit:
                fit_bits, model = _sersic_columns(row, morph, image, bg,
                                                  sky_sigma(sigma, (seg == 0) & valid),
                                                  valid & ~bad, batch, b, object_id,
                                                  n_prior=opts.get(_INDEX_PRIOR))
                flag |= fit_bits
            elif not bits & MeasureFlag.SERSIC_FAILED:
                model = _statmorph_sersic(morph)
            bd_fit, row["residual_flux_fraction"], residual_map = _bulge_disc(
                batch, index, seg, opts, _bulge_disc_start(morph, model), background,
                object_id)
            if residual_map is not None:
                row[_RESIDUAL_MAP] = residual_map
            if opts.get(_CALIBRATION):
                row[_CALIBRATION] = _calibration_values(bd_fit, row, batch, opts)
            row.update(_bulge_disc_columns(bd_fit, opts["detect_band"]))
            row.update(_component_colour_columns(bd_fit, _zeropoints(batch),
                                                 _colour_bands(opts)))
            row.update(photometry.model_magnitudes(bd_fit, _zeropoints(batch)))
            if opts["r50_model"] == "bulge_disc" and bd_fit is not None:
                flag |= _r50_bulge_disc(row, bd_fit, image, bg, bad, batch, opts)
            else:
                flag |= _r50_psf(row, model, image, bg, sigma, bad, batch, b, object_id,
                                 float(opts["r50_model_extent"]))
        except Exception as exc:  # noqa: BLE001 - one galaxy must not stop the shard
            morph = None
            row.update(dict.fromkeys([*_STATMORPH_COLUMNS, *_SERSIC_COLUMNS,
                                      "sersic_n_err", "r50_psf_corrected"], math.nan))
            flag |= (MeasureFlag.STATMORPH_FAILED | MeasureFlag.SERSIC_FAILED
                     | MeasureFlag.R50_PSF_FAILED)
            _warn(object_id, f"statmorph raised {type(exc).__name__}: {exc}")

    # 4. half-mass radius
    if not opts["half_mass"]:
        flag |= MeasureFlag.SKIPPED
    else:
        r50_mass, hm_flag = _half_mass(batch, index, seg, opts, morph, valid, image,
                                       background, object_id, bd_fit)
        row["r50_mass"] = r50_mass
        row["r50_mass_flag"] = int(hm_flag)
        if hm_flag & HalfMassFlag.MISSING_BAND:
            flag |= MeasureFlag.MISSING_BAND
        if not np.isfinite(r50_mass):
            flag |= MeasureFlag.HALFMASS_FAILED
    return finish(0)


def _bulge_disc_columns(fit: bulgedisc.BulgeDiscFit | None, band: str) -> dict[str, float]:
    """B/T in ``band`` and the two axis ratios of the bulge + disc fit, with their
    errors; NaN without a fit."""
    values = ((fit.bulge_to_total(band), fit.q_bulge, fit.q_disc,
               fit.bulge_to_total_err(band), fit.structure_err("q_bulge"),
               fit.structure_err("q_disc")) if fit is not None else (math.nan,) * 6)
    return dict(zip(("bulge_to_total", "bulge_q", "disc_q", "bulge_to_total_err",
                     "bulge_q_err", "disc_q_err"), values, strict=True))


def centroid_position(batch: CutoutBatch, index: int, x: float, y: float
                      ) -> dict[str, float]:
    """``x_centroid``, ``y_centroid``, ``ra_centroid``, ``dec_centroid`` of a position
    (x, y) in object ``index``'s cutout, through the batch's cut geometry
    (`galcat.store`: ``cut_origin``, ``cut_wcs`` at the stamp centre, linear over the
    stamp: sub-milliarcsecond for stamps of a few hundred pixels)."""
    origin = batch.cut_origin[index]
    shift = np.where(np.isfinite(origin), origin, 0.0)
    ra0, dec0, c11, c12, c21, c22 = batch.cut_wcs[index]
    centre = (batch.image.shape[-1] - 1) / 2.0
    dx, dy = x - centre, y - centre
    dec = dec0 + c21 * dx + c22 * dy
    ra = (ra0 + (c11 * dx + c12 * dy) / math.cos(math.radians(dec0))) % 360.0
    return {"x_centroid": float(x + shift[0]), "y_centroid": float(y + shift[1]),
            "ra_centroid": float(ra), "dec_centroid": float(dec)}


@functools.lru_cache(maxsize=64)
def _psf_r50(psf_bytes: bytes, shape: tuple[int, int]) -> float:
    import statmorph

    psf = np.frombuffer(psf_bytes, dtype=np.float64).reshape(shape)
    image = np.pad(psf / psf.sum(), max(shape))
    segmap = (image > 1e-3 * image.max()).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        morph = statmorph.SourceMorphology(image, segmap, 1,
                                           weightmap=np.full(image.shape, 1e-4 * image.max()))
    return _value(morph, "r50")


def psf_r50_pixels(psf: np.ndarray) -> float:
    """statmorph's r50 (pixels) of a PSF stamp, noiseless: what a point source measures
    (cached per stamp; ~50 ms the first time)."""
    psf = np.ascontiguousarray(psf, dtype=np.float64)
    if not (np.all(np.isfinite(psf)) and psf.sum() > 0):
        return math.nan  # no usable PSF: nothing is known to be unresolved
    return _psf_r50(psf.tobytes(), psf.shape)


def _unresolved(r50_arcsec: float, batch: CutoutBatch, band: int, opts) -> int:
    """`MeasureFlag.UNRESOLVED` when the observed r50 is within ``unresolved_ratio`` of a
    point source's (the PSF's, measured alike)."""
    ratio = float(opts["unresolved_ratio"])
    if ratio <= 0 or not np.isfinite(r50_arcsec):
        return 0
    point = psf_r50_pixels(batch.psf[band]) * batch.pixel_scale
    return MeasureFlag.UNRESOLVED if r50_arcsec < ratio * point else 0


def _statmorph_sersic(morph) -> tuple[float, ...]:
    """statmorph's Sersic fit ``(amplitude, r_eff, n, x0, y0, q, theta)``, pixels."""
    start = tuple(_value(morph, a) for a in (
        "sersic_amplitude", "sersic_rhalf", "sersic_n", "sersic_xc", "sersic_yc"))
    return (*start, 1.0 - _value(morph, "sersic_ellip"), _value(morph, "sersic_theta"))


def _sersic_columns(row, morph, image, bg, sigma, use, batch, band, object_id, *,
                    n_prior: tuple[float, float] | None = None):
    """The Sérsic columns from `fit_sersic` (statmorph's fit is not run), with the
    calibrated ``n_prior`` on log10 n when there is one.

    Returns ``(flag bits, model (amplitude, r_eff, n, x0, y0, q, theta) or None)``;
    ``sersic_flag`` is 0, 1 (n or r_eff on a bound) or 2 (no fit).
    """
    try:
        model, at_bound, n_error = fit_sersic(image - bg, sigma, use,
                                              sersic.normalised_psf(batch.psf[band]),
                                              sersic_start(morph), n_prior=n_prior)
    except (RuntimeError, ValueError, FloatingPointError) as exc:
        _warn(object_id, f"Sersic fit failed: {exc}")
        row["sersic_flag"] = 2
        row.update(dict.fromkeys(_SERSIC_COLUMNS, math.nan))
        return MeasureFlag.SERSIC_FAILED, None
    row["sersic_n"] = model[2]
    row["sersic_r_eff"] = model[1] * batch.pixel_scale
    row["sersic_q"] = model[5]
    row["sersic_n_err"] = n_error
    row["sersic_flag"] = int(at_bound)
    return (MeasureFlag.SERSIC_WARNING if at_bound else 0), model


def _r50_psf(row, model, image, bg, sigma, bad, batch, band, object_id,
             model_extent: float) -> int:
    """``row['r50_psf_corrected']`` from the Sersic ``model`` (statmorph's parameters,
    pixels) by `galcat.halfmass.psf_corrected_light_radius`; the flag bit on failure."""
    try:
        if model is None:
            raise ValueError("no Sersic fit")
        amplitude, r_eff, n, x0, y0, q, theta = (float(x) for x in model)
        if not (np.isfinite([amplitude, r_eff, n, x0, y0, q, theta]).all() and amplitude > 0
                and r_eff > 0 and n > 0 and 0 < q <= 1):
            raise ValueError(f"unusable Sersic fit {model}")
        total = sersic.total_flux(amplitude, r_eff, n, q)
        psf = sersic.normalised_psf(batch.psf[band])
        convolved = _model_image(sersic_model(image.shape, psf, (x0, y0), theta),
                                 (amplitude, r_eff, n, x0, y0, q, theta))
        radius, _ = halfmass.psf_corrected_light_radius(
            np.asarray(image, dtype=np.float64) - bg, np.asarray(sigma, dtype=np.float64),
            bad, (x0, y0), pixel_scale=batch.pixel_scale, psf=psf, q=q, theta=theta,
            sersic=(total, r_eff, n), convolved_model=convolved, model_extent=model_extent)
    except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
        radius = math.nan
        _warn(object_id, f"PSF-corrected r50 failed: {exc}")
    row["r50_psf_corrected"] = radius
    return 0 if np.isfinite(radius) else MeasureFlag.R50_PSF_FAILED


#: Row key (not a column) of the prior-free fit values of the calibration pass.
_CALIBRATION = "_prior_calibration"
#: the row key (and setting) of the residual significance map, taken off the row by
#: `measure_shard`
_RESIDUAL_MAP = "_residual_snr"
#: Settings key (not a config key) of the calibrated prior on log10 n (`fit_sersic`).
_INDEX_PRIOR = "_sersic_n_prior"
#: Settings key (not a config key) of the calibrated mixture prior of the bulge + disc
#: fit (`galcat.bulgedisc.PriorComponent` list, built once per shard; None: the single
#: prior).
_MIXTURE = "_bulge_disc_mixture"
#: ``measure.priors`` values that calibrate on the shard's bright galaxies.
CALIBRATING_PRIORS = ("calibrate", "calibrate_mixture")


def _calibration_values(fit, row, batch, opts) -> dict[str, float]:
    """The Sérsic index and its error (``row``, a clean fit only), and the structure and
    bulge − disc colour (of the M/L relation) of the prior-free bulge + disc ``fit``."""
    clean = row.get("sersic_flag") == 0
    values = {"sersic_n": row["sersic_n"] if clean else math.nan,
              "sersic_n_err": row["sersic_n_err"] if clean else math.nan}
    if fit is None:
        return values
    values.update(bulgedisc.structure(fit))
    values.update({f"{key}_err": fit.structure_err(key) for key in bulgedisc.PARAMETERS})
    values["bulge_to_total"] = fit.bulge_to_total(opts["detect_band"])
    values["bulge_to_total_err"] = fit.bulge_to_total_err(opts["detect_band"])
    blue, red = _colour_bands(opts)
    values["colour_delta"] = values["colour_delta_err"] = math.nan
    if blue in fit.bands and red in fit.bands:
        zps = _zeropoints(batch)
        try:
            colours = bulgedisc.component_colours(fit, blue, red, zps[blue] - zps[red])
        except bulgedisc.BulgeDiscError:
            return values
        values["colour_delta"] = colours["delta_measured"]
        values["colour_delta_err"] = colours["delta_err"]
    return values


def _uses_bulge_disc(opts) -> tuple[bool, bool]:
    """Whether the structure priors and the colour prior change any measurement."""
    fit = measure_fits_bulge_disc(opts)
    return fit, fit and opts["half_mass"] and opts["half_mass_colour_model"] == "bulge_disc"


def _calibrate_priors(batch: CutoutBatch, segmap: np.ndarray, opts: dict,
                      parallel: dict, label: str) -> tuple[dict, dict]:
    """``opts`` with priors calibrated on the shard's bright galaxies (`galcat.priors`),
    and the record of what was done (``DataFrame.attrs["priors"]`` of the features)."""
    cal = opts["prior_calibration"]
    structure, colour = _uses_bulge_disc(opts)
    if opts["priors"] not in CALIBRATING_PRIORS:
        structure = colour = False
    mixture = structure and opts["priors"] == "calibrate_mixture"
    index = opts["sersic_n_prior"] == "calibrate" and bool(opts["sersic_refine"])
    record: dict[str, Any] = {"mode": opts["priors"], "min_snr": float(cal["min_snr"]),
                              "min_galaxies": int(cal["min_galaxies"])}
    b = batch.band_index(opts["detect_band"])
    snr = galcat_priors.isophotal_snr(batch.image[:, b], batch.sigma[:, b], segmap)
    bright = np.nonzero(snr >= float(cal["min_snr"]))[0]
    record["n_bright"] = int(bright.size)
    keys = list((opts["bulge_disc_priors"] or {}).keys()) if structure else []
    fits: list[dict[str, float]] = []
    if (structure or index) and bright.size >= int(cal["min_galaxies"]):
        free = {**opts, "half_mass": False, _CALIBRATION: True}
        if structure:
            free.update(bulge_disc_priors={}, half_mass_colour_prior=None)
        else:  # only the index is calibrated: the bulge + disc fit would be wasted
            free["r50_model"] = "sersic"
        blocks = map_blocks_of_objects(
            functools.partial(_measure_indices, batch, segmap, free, bright),
            int(bright.size), label=f"{label} (prior calibration)",
            preload=_WORKER_MODULES, **parallel)
        fits = [row[_CALIBRATION] for block in blocks for row in block if _CALIBRATION in row]
    want_colour = colour and opts["half_mass_colour_prior"] is not None
    found, colour_prior, used = galcat_priors.calibrated_priors(
        fits, keys=keys, colour=want_colour, min_galaxies=int(cal["min_galaxies"]))
    n_prior = galcat_priors.index_prior(
        [f["sersic_n"] for f in fits], [f["sersic_n_err"] for f in fits],
        min_galaxies=int(cal["min_galaxies"])) if index else None
    record["n_used"] = max(used, sum(np.isfinite(f["sersic_n"]) for f in fits) if index else 0)
    components = (_calibrated_mixture(fits, keys, int(cal["min_galaxies"]), label)
                  if mixture else None)
    out = dict(opts)
    if found is not None:
        out["bulge_disc_priors"] = found
    out[_MIXTURE] = (None if components is None else
                     [bulgedisc.PriorComponent(c["weight"], c["priors"], c["bulge_to_total"])
                      for c in components])
    record["bulge_disc_mixture"] = (None if components is None else
                                    [{"weight": c["weight"],
                                      "priors": {k: list(v) for k, v in c["priors"].items()},
                                      "bulge_to_total": list(c["bulge_to_total"])}
                                     for c in components])
    if colour_prior is not None:
        out["half_mass_colour_prior"] = list(colour_prior)
    out[_INDEX_PRIOR] = n_prior
    record["sersic_n_prior"] = None if n_prior is None else list(n_prior)
    record["calibrated"] = sorted([*(found or {}), *(["colour"] if colour_prior else []),
                                   *(["sersic_n"] if n_prior else []),
                                   *(["mixture"] if components else [])])
    record["bulge_disc_priors"] = {k: list(v) for k, v in
                                   (out["bulge_disc_priors"] or {}).items()}
    record["half_mass_colour_prior"] = (None if out["half_mass_colour_prior"] is None
                                        else list(out["half_mass_colour_prior"]))
    if (keys and found is None) or (want_colour and colour_prior is None) \
            or (index and n_prior is None):
        log.warning("%s: %d galaxies with S/N >= %g gave %d usable prior-free fits (fewer "
                    "than measure.prior_calibration.min_galaxies = %d): the configured "
                    "priors are kept where none could be calibrated, and n has no prior",
                    label, bright.size, float(cal["min_snr"]), record["n_used"],
                    int(cal["min_galaxies"]))
    else:
        log.info("%s: priors calibrated on %d bright galaxies: %s, colour %s, log10 n %s, "
                 "mixture %s", label, record["n_used"], record["bulge_disc_priors"],
                 record["half_mass_colour_prior"], record["sersic_n_prior"],
                 record["bulge_disc_mixture"])
    return out, record


def _calibrated_mixture(fits, keys, min_galaxies: int, label: str) -> list[dict] | None:
    """The mixture prior of ``measure.priors: calibrate_mixture`` from the bright
    galaxies' prior-free ``fits`` (`galcat.priors.mixture_priors`); None, said in the log,
    where they give fewer than two types. One type gets no B/T prior: for all galaxies,
    it pulls the types that a shard's few bright galaxies could not tell apart towards
    each other (on shards of 80 galaxies, early types off by more than 0.1 in B/T went
    from 54% to 77%); they are fitted with one prior for all, as with calibrate."""
    components = galcat_priors.mixture_priors(fits, keys=keys, min_galaxies=min_galaxies)
    if components is not None and len(components) >= 2:
        return components
    log.warning("%s: the %d bright galaxies' fits gave no mixture of two or more types of "
                "%d members each (measure.priors: calibrate_mixture); every galaxy is "
                "fitted with one prior for all, as with calibrate", label, len(fits),
                galcat_priors.MIN_COMPONENT_GALAXIES)
    return None


def _bulge_disc_prior(opts, fitted: list[str]) -> dict:
    """The prior arguments of `galcat.bulgedisc.fit_bulge_disc`: the calibrated mixture
    (B/T in the detection band, or the first fitted band) when there is one, else the
    structure priors."""
    components = opts.get(_MIXTURE)
    if not components:
        return {"priors": _structure_priors(opts)}
    band = opts["detect_band"] if opts["detect_band"] in fitted else fitted[0]
    return {"mixture": components, "bt_band": band}


def _structure_priors(opts) -> dict[str, tuple[float, float]]:
    return {key: (float(m), float(sd)) for key, (m, sd) in
            (opts["bulge_disc_priors"] or {}).items()}


def _colour_prior(opts) -> tuple[float, float] | None:
    prior = opts["half_mass_colour_prior"]
    return None if prior is None else (float(prior[0]), float(prior[1]))


def _colour_bands(opts) -> tuple[str, str]:
    """The (blue, red) bands of the M/L relation: the colour measure publishes."""
    (blue, red), _, _, _ = halfmass.MASS_TO_LIGHT_RELATIONS[opts["mass_to_light"]]
    return blue, red


def _required_bulge_disc_bands(opts) -> list[str]:
    """The bands the bulge + disc fit needs: the detection band and the M/L route's."""
    lum = halfmass.LUMINOSITY_BAND[opts["mass_to_light"]]
    return list(dict.fromkeys((opts["detect_band"], *_colour_bands(opts), lum)))


def _bulge_disc_bands(opts) -> list[str]:
    """Bands of the bulge + disc fit: the required ones, then ``bulge_disc_extra_bands``
    (the caller keeps those the shard has)."""
    extra = opts.get("bulge_disc_extra_bands") or ()
    return list(dict.fromkeys((*_required_bulge_disc_bands(opts), *extra)))


def _component_colour_columns(fit, zeropoints: Mapping[str, float], bands: tuple[str, str]
                              ) -> dict[str, float]:
    """``bulge_colour`` and ``disc_colour`` (mag, blue - red) of a bulge + disc fit.

    NaN for a component whose flux is not positive in either band, and for both when
    the fit lacks a band or there is no fit. Not `galcat.bulgedisc.component_colours`,
    which gives such a component the galaxy's colour (what the half-mass route needs);
    a catalogue column must not pass that off as a measurement.
    """
    out = {"bulge_colour": math.nan, "disc_colour": math.nan}
    if fit is None or not all(b in fit.bands for b in bands):
        return out
    blue, red = (fit.band(b) for b in bands)
    zp = float(zeropoints[bands[0]]) - float(zeropoints[bands[1]])
    for name, flux in (("bulge_colour", fit.flux_bulge), ("disc_colour", fit.flux_disc)):
        if flux[blue] > 0 and flux[red] > 0:
            out[name] = zp - 2.5 * math.log10(float(flux[blue]) / float(flux[red]))
    return out


def _bulge_disc_start(morph, model) -> tuple[float, ...] | None:
    """Start of the bulge + disc fit ``(r_eff, x0, y0, q, theta)`` in pixels: the Sersic
    ``model`` when there is one, else statmorph's r50, asymmetry centre and moments."""
    if model is not None:
        _, r_eff, _, x0, y0, q, theta = (float(x) for x in model)
        return r_eff, x0, y0, q, theta
    if morph is None or morph.flag >= 2:  # statmorph's own values are not trusted
        return None
    start = (_value(morph, "r50"), _value(morph, "xc_asymmetry"), _value(morph, "yc_asymmetry"),
             1.0 - _value(morph, "ellipticity_asymmetry"), _value(morph, "orientation_asymmetry"))
    return start if np.all(np.isfinite(start)) and start[0] > 0 else None


def _zeropoints(batch: CutoutBatch) -> dict[str, float]:
    return {band: float(zp) for band, zp in zip(batch.bands, batch.zeropoints, strict=True)}


def photometry_bands(settings: Mapping, bands) -> list[str]:
    """Bands of the ``mag_model_*`` columns: those of `_bulge_disc_bands` in ``bands``."""
    return [band for band in _bulge_disc_bands(settings) if band in bands]


def _bulge_disc(batch, index, seg, opts, start, background, object_id):
    """`galcat.bulgedisc.fit_bulge_disc` in `_bulge_disc_bands` from ``start``
    (`_bulge_disc_start`; centre and angle held), and its `residual_flux_fraction` on
    the same background-subtracted images; (None, NaN, None) when not wanted or it fails
    (warned). With ``neighbour_model: bulge_disc`` and a neighbour in the segmentation
    map, the neighbours' models (`neighbour_models`, fitted with this fit taken off)
    are subtracted and the galaxy is fitted again. Third, where ``opts`` asks for it
    (`measure_shard`'s ``residual_maps``), the `residual_significance` of the images
    with the galaxy's final model taken off (the neighbours' light left in: a companion
    is what it is for), smoothed by the detection band's PSF; else None."""
    if not measure_fits_bulge_disc(opts) or start is None:
        return None, math.nan, None
    bands = [band for band in _bulge_disc_bands(opts) if band in batch.bands]
    required = _required_bulge_disc_bands(opts)
    images, sigmas, psfs, fitted, central, valid = [], [], [], [], [], []
    use = seg <= 1
    for band in bands:
        k = batch.band_index(band)
        img = batch.image[index, k].astype(np.float64)
        sig = batch.sigma[index, k].astype(np.float64)
        ok = _valid_pixels(img, sig, batch.mask[index, k])
        if band not in required and not ok[use].all():
            continue  # an optional band must not cost the others their pixels
        use &= ok
        fitted.append(band)
        images.append(img - background(img, ok))
        sigmas.append(sig)
        psfs.append(batch.psf[k])
        central.append(ok & (seg == 1))
        valid.append(ok)
    r_eff, x0, y0, q, theta = start

    def fit_central(data):
        return bulgedisc.fit_bulge_disc(data, sigmas, use, psfs, (x0, y0), bands=fitted,
                                        theta=theta, r_start=r_eff, q_start=q,
                                        bulge_extent=float(opts["r50_model_extent"]),
                                        **_bulge_disc_prior(opts, fitted))

    observed = images
    try:
        fit = fit_central(images)
        if opts.get("neighbour_model") == "bulge_disc" and np.any(seg > 1):
            # one round: a second (the neighbours refitted with this refit taken off)
            # moved B/T of the blended pairs of tests/test_morphology.py by up to 0.05,
            # as often away from the truth as towards it
            models = neighbour_models(images, sigmas, valid, psfs, seg, bands=fitted,
                                      central=[fit.convolved[b] for b in fitted],
                                      object_id=object_id)
            if any(model.any() for model in models):
                images = [image - model for image, model in zip(images, models, strict=True)]
                fit = fit_central(images)
    except (bulgedisc.BulgeDiscError, ValueError, FloatingPointError) as exc:
        _warn(object_id, f"bulge + disc fit failed: {exc}")
        return None, math.nan, None
    snr = (residual_significance(observed, [fit.convolved[b] for b in fitted], sigmas, valid,
                                 batch.psf[batch.band_index(opts["detect_band"])])
           if opts.get(_RESIDUAL_MAP) else None)
    return fit, residual_flux_fraction(fit, images, sigmas, central), snr


#: The soft threshold of `residual_significance`, in units of the smoothed residual's
#: own noise: noise alone passes it on 0.13% of the pixels (one-sided).
RESIDUAL_THRESHOLD = 3.0


def residual_significance(images: Sequence[np.ndarray], models: Sequence[np.ndarray],
                          sigmas: Sequence[np.ndarray], valid: Sequence[np.ndarray],
                          psf: np.ndarray, *, threshold: float = RESIDUAL_THRESHOLD
                          ) -> np.ndarray:
    """Where the light a model leaves is significant: a map of the residual's
    matched-filter significance above ``threshold``.

    The residuals ``image - model`` of every band (zero where not ``valid``) are summed
    and smoothed by ``psf``, the matched filter of unresolved light; over the noise of
    that sum and smoothing (the variances ``sigma**2`` summed and convolved with
    ``psf**2``: exact for noise that varies over the image) this is a map ``t`` in units
    of its own noise, and ``sign(t) * max(|t| - threshold, 0)`` keeps what noise alone
    rarely gives. For a galaxy the model describes the map is zero on all but ~0.1% of
    its pixels at any depth; tidal light, a lopsided disc and a companion's light stand
    out. Because it is in units of the data's own noise it needs no scale from the
    population it is run on.

    Parameters
    ----------
    images, models, sigmas : sequence of 2-D arrays
        Per band: background-subtracted flux, the model's flux and the 1-sigma noise,
        all on one pixel grid (image units).
    valid : sequence of bool arrays
        Per band, the pixels to use.
    psf : 2-D array
        The smoothing kernel (normalised here to unit sum): the detection band's PSF.
    threshold : float
        Subtracted from ``|t|`` (default `RESIDUAL_THRESHOLD`).

    Returns
    -------
    ndarray of float32, the grid's shape
        Noise sigmas above ``threshold`` (negative where the model is too bright); 0
        where no valid pixel is within the kernel's reach. Cost: two FFT convolutions
        of the grid.
    """
    shape = np.shape(images[0])
    residual = np.zeros(shape)
    variance = np.zeros(shape)
    for image, model, sigma, ok in zip(images, models, sigmas, valid, strict=True):
        residual += np.where(ok, np.asarray(image, float) - model, 0.0)
        variance += np.where(ok, np.square(np.asarray(sigma, float)), 0.0)
    kernel = np.asarray(psf, float) / np.sum(psf)
    smoothed = signal.fftconvolve(residual, kernel, mode="same")
    noise_variance = signal.fftconvolve(variance, np.square(kernel), mode="same")
    # FFT round-off leaves ~1e-16 of the peak where no valid pixel is in reach
    covered = noise_variance > 1e-9 * max(float(noise_variance.max()), 0.0)
    t = np.divide(smoothed, np.sqrt(np.where(covered, noise_variance, 1.0)),
                  out=np.zeros(shape), where=covered)
    return (np.sign(t) * np.maximum(np.abs(t) - threshold, 0.0)).astype(np.float32)


#: the mean |x| of a unit normal deviate: what noise alone adds to a sum of |residual|
_MEAN_ABS_NORMAL = math.sqrt(2.0 / math.pi)


def residual_flux_fraction(fit: bulgedisc.BulgeDiscFit, images: Sequence[np.ndarray],
                           sigmas: Sequence[np.ndarray],
                           regions: Sequence[np.ndarray]) -> float:
    """The residual flux fraction of a bulge + disc ``fit`` (as Hoyos et al.'s):
    ``(sum |I - M| - sqrt(2/pi) sum sigma) / sum M`` over ``regions`` (per band of
    ``fit.bands``: the central segment's valid pixels) of the background-subtracted
    ``images`` the fit saw. Subtracting the noise's expected share makes it ~0 for a
    galaxy the model describes at any depth; tidal tails, lopsided discs and other
    features a smooth, symmetric model cannot follow raise it. NaN where the model has
    no positive flux there. Cost: one pass over the fitted bands' pixels."""
    absolute = noise = model_flux = 0.0
    for band, image, sigma, region in zip(fit.bands, images, sigmas, regions, strict=True):
        model = fit.convolved[band][region]
        absolute += float(np.abs(image[region] - model).sum())
        noise += _MEAN_ABS_NORMAL * float(sigma[region].sum())
        model_flux += float(model.sum())
    return (absolute - noise) / model_flux if model_flux > 0 else math.nan


def _r50_bulge_disc(row, fit, image, bg, bad, batch, opts) -> int:
    """``row['r50_psf_corrected']`` from the bulge + disc ``fit``; the flag bit on failure."""
    radius, _ = bulgedisc.light_radius(
        fit, np.asarray(image, dtype=np.float64) - bg, ~bad, band=opts["detect_band"])
    row["r50_psf_corrected"] = radius * batch.pixel_scale
    return 0 if np.isfinite(radius) else MeasureFlag.R50_PSF_FAILED


def _half_mass_impossible(opts, bands, label: str) -> bool:
    """True (said once, in the log) when the shard lacks a band of the half-mass route:
    then no object can have it, and it is skipped rather than failed object by object."""
    missing = [b for b in relations.mass_to_light(opts["mass_to_light"]).bands
               if b not in bands]
    if missing:
        log.warning("%s: the half-mass route (measure.mass_to_light = %s) needs band(s) %s, "
                    "which this survey lacks (it has %s): r50_mass is not measured (flag "
                    "SKIPPED); set measure.half_mass: false to say so in the config",
                    label, opts["mass_to_light"], missing, list(bands))
    return bool(missing)


def _half_mass(batch, index, seg, opts, morph, valid_detect, image_detect, background,
               object_id, bd_fit=None) -> tuple[float, int]:
    relation = opts["mass_to_light"]
    used = list(relations.mass_to_light(relation).bands)
    missing = [band for band in used if band not in batch.bands]
    if missing:
        _warn(object_id, f"no {'/'.join(missing)} band for the half-mass radius")
        return math.nan, HalfMassFlag.MISSING_BAND
    images, sigmas, psfs = {}, {}, {}
    mask = seg > 1
    for band in used:
        k = batch.band_index(band)
        img = batch.image[index, k].astype(np.float64)
        sig = batch.sigma[index, k].astype(np.float64)
        ok = _valid_pixels(img, sig, batch.mask[index, k])
        mask = mask | ~ok
        images[band] = img - background(img, ok)
        sigmas[band] = sig
        psfs[band] = batch.psf[k]
    no_fit = 0
    if opts["half_mass_colour_model"] == "bulge_disc":
        if bd_fit is not None:
            lum = halfmass.LUMINOSITY_BAND[relation]
            valid = ~mask
            zps = {band: float(batch.zeropoints[batch.band_index(band)]) for band in used}
            try:
                radius, hm_flag, _ = bulgedisc.mass_radius(
                    bd_fit, images[lum], valid, relation=relation, zeropoints=zps,
                    colour_prior=_colour_prior(opts))
            except bulgedisc.BulgeDiscError as exc:  # e.g. no flux in a colour band
                _warn(object_id, f"bulge + disc half-mass radius: {exc}; ring colours used")
                radius = math.nan
            if np.isfinite(radius):
                return radius * batch.pixel_scale, hm_flag
        no_fit = HalfMassFlag.NO_BULGE_DISC
    # centre and ellipse from statmorph when it succeeded
    xc = yc = math.nan
    q, theta = 1.0, 0.0
    if morph is not None and morph.flag < 4:
        xc, yc = _value(morph, "xc_asymmetry"), _value(morph, "yc_asymmetry")
        if opts["half_mass_annuli"] == "elliptical":
            q = 1.0 - _value(morph, "ellipticity_asymmetry")
            theta = _value(morph, "orientation_asymmetry")
    if not (np.isfinite(xc) and np.isfinite(yc)):
        xc, yc = _centroid(image_detect, (seg == 1) & valid_detect)
    if not (np.isfinite(q) and 0.05 <= q <= 1 and np.isfinite(theta)):
        q, theta = 1.0, 0.0
    try:
        radius, hm_flag = halfmass.half_mass_radius(
            images, sigmas, mask, (xc, yc), bands=batch.bands,
            zeropoints=batch.zeropoints, pixel_scale=batch.pixel_scale,
            relation=relation, psf_by_band=psfs, q=q, theta=theta,
            min_snr=float(opts["half_mass_min_snr"]),
            extent=float(opts["half_mass_extent"]),
            psf_correction=bool(opts["half_mass_psf_correction"]),
            colour_model=("gradient" if no_fit else opts["half_mass_colour_model"]),
        )
    except Exception as exc:  # noqa: BLE001 - one galaxy must not stop the shard
        _warn(object_id, f"half-mass radius raised {type(exc).__name__}: {exc}")
        return math.nan, HalfMassFlag.BAD_INPUT
    hm_flag |= no_fit
    if not np.isfinite(radius):
        _warn(object_id, "half-mass radius failed: "
              + ", ".join(describe(hm_flag, HalfMassFlag)))
    return radius, hm_flag


# --------------------------------------------------------------------------- a shard
def _measure_block(batch: CutoutBatch, segmap: np.ndarray, settings: dict,
                   block: slice) -> list[dict[str, Any]]:
    # each object at its own cut size (the stamp may be larger: galcat.store)
    return [measure_object(batch.crop(i), 0, segmap[i][batch.box(i)], settings=settings)
            for i in range(block.start, block.stop)]


def _measure_indices(batch: CutoutBatch, segmap: np.ndarray, settings: dict,
                     indices: np.ndarray, block: slice) -> list[dict[str, Any]]:
    """`_measure_block` of the objects ``indices[block]`` (a subset of the shard)."""
    return [row for i in indices[block]
            for row in _measure_block(batch, segmap, settings, slice(int(i), int(i) + 1))]


def _residual_maps(batch: CutoutBatch, rows: list[dict[str, Any]]) -> np.ndarray:
    """The rows' residual maps (taken off them), each placed on the stamp at its
    object's own cut; NaN where an object has none."""
    maps = np.full(batch.image.shape[:1] + batch.image.shape[2:], np.nan, np.float32)
    for i, row in enumerate(rows):
        snr = row.pop(_RESIDUAL_MAP, None)
        if snr is not None:
            maps[i][batch.box(i)] = snr
    return maps


def measure_shard(
    batch: CutoutBatch,
    segmap: np.ndarray,
    *,
    config: Mapping,
    label: str = "measure",
    scheduler: str | None = None,
    workers: int | None = None,
    residual_maps: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Morphology of every object of a shard, one row per object in object order.

    Parameters
    ----------
    batch : CutoutBatch
    segmap : int array (n, y, x)
        0 background, 1 the central object, > 1 neighbours (masked).
    config : mapping
        The whole validated galcat config; ``measure`` and ``dask`` are read.
    label : str
        Name of the progress lines in the log.
    scheduler, workers : optional
        Override ``config['dask']`` (e.g. ``'synchronous'`` in tests).
    residual_maps : bool
        Also return each object's `residual_significance` map: what its bulge + disc
        model leaves, in units of the noise above `RESIDUAL_THRESHOLD` (default False).
        Cost: two FFT convolutions of the cut per galaxy, beside its fits.

    Returns
    -------
    pandas.DataFrame, or (DataFrame, ndarray) with ``residual_maps``
        The maps are float32 ``(n, y, x)`` on the stamp, NaN where an object has no
        bulge + disc fit and outside its own cut (`CutoutBatch.box`).
        ``object_id`` (int64), `MEASURE_COLUMNS` (units in `FEATURE_UNITS`), then the
        model photometry ``mag_model_{band}``, ``mag_model_err_{band}`` of
        `photometry_bands` (`galcat.photometry`; NaN where the bulge + disc fit failed).
        ``attrs["priors"]`` records the priors used: ``mode`` (``measure.priors``),
        ``bulge_disc_priors``, ``half_mass_colour_prior``, ``sersic_n_prior`` (log10 n
        mean and sd, or None) and, when calibrated (`galcat.priors`), ``n_bright``,
        ``n_used`` and ``calibrated`` (the keys set from the shard; the others kept as
        configured); with ``calibrate_mixture`` also ``bulge_disc_mixture`` (the
        components: ``weight``, ``priors``, ``bulge_to_total``; None where the shard
        gave none and the single prior was used). Cost with ``calibrate``
        (``measure.priors`` or ``measure.sersic_n_prior``): the bright galaxies are
        fitted twice; with ``calibrate_mixture`` every galaxy is fitted once per
        component.
    """
    segmap = np.asarray(segmap)
    if segmap.ndim != 3 or segmap.shape[0] != batch.n_objects \
            or segmap.shape[1:] != batch.image.shape[-2:]:
        raise ValueError(f"segmap must be (n, y, x) = ({batch.n_objects}, "
                         f"{batch.image.shape[-2]}, {batch.image.shape[-1]}); "
                         f"got {segmap.shape}")
    settings = measure_settings(config, batch.bands)
    if settings["detect_band"] == SUM:
        batch = with_sum_band(batch)
    if settings["half_mass"] and _half_mass_impossible(settings, batch.bands, label):
        settings["half_mass"] = False
    parallel = dask_options(config)
    parallel.update({k: v for k, v in (("scheduler", scheduler), ("workers", workers)) if v})
    record: dict[str, Any] = {"mode": settings["priors"]}
    if (settings["priors"] in CALIBRATING_PRIORS and any(_uses_bulge_disc(settings))) \
            or settings["sersic_n_prior"] == "calibrate":
        settings, record = _calibrate_priors(batch, segmap, settings, parallel, label)
    else:
        record["bulge_disc_priors"] = {k: list(v) for k, v in
                                       (settings["bulge_disc_priors"] or {}).items()}
        record["half_mass_colour_prior"] = settings["half_mass_colour_prior"]
        record["sersic_n_prior"] = None
    if residual_maps:  # after the calibration, whose fits are not kept
        settings = {**settings, _RESIDUAL_MAP: True}
    blocks = map_blocks_of_objects(
        functools.partial(_measure_block, batch, segmap, settings),
        batch.n_objects,
        label=label,
        preload=_WORKER_MODULES,
        **parallel,
    )
    rows = [row for block in blocks for row in block]
    maps = _residual_maps(batch, rows) if residual_maps else None
    mags = photometry.column_names(photometry_bands(settings, batch.bands))
    table = pd.DataFrame.from_records(rows, columns=["object_id", *MEASURE_COLUMNS, *mags])
    table["object_id"] = table["object_id"].astype(np.int64)
    for name in [*MEASURE_COLUMNS, *mags]:
        table[name] = table[name].astype(np.int64 if name in _INT_COLUMNS else np.float64)
    table.attrs["priors"] = record
    return (table, maps) if residual_maps else table
