"""Injection–recovery validation of segmentation and morphology on the synthetic survey.

The synthetic survey knows every truth, so the pipeline can be scored end to end:
render galaxies (`galcat.surveys.synthetic`), segment them (`galcat.segment.segment_shard`)
and measure them (`galcat.morphology.measure_shard`) exactly as the workflow does, join
the features with the truth, and compare. `bench/morphology_recovery.py` runs it on a few
hundred galaxies and writes tables and plots; ``tests/test_validation.py`` runs it on a
few dozen with looser bounds.

Definitions
-----------
fractional error
    ``(measured - truth) / truth`` (`galcat.metrics.fractional_error`).
bias, scatter
    The median of the fractional errors and their normalised median absolute deviation,
    NMAD = 1.4826 median(|x - median(x)|) (`galcat.metrics.nmad`), which equals the
    standard deviation for a Gaussian and ignores outliers. NaN measurements (failed or
    flagged blank) are left out of both and counted in ``failed``.
S/N
    Isophotal signal-to-noise of the central object in the detection band, from the
    measurement: ``S/N = F_1 / sqrt(sum_1 sigma^2)`` where ``F_1`` is the
    background-subtracted flux in label 1 of the segmentation map
    (``seg_central_flux``) and the sum runs over the pixels of label 1 of the cutout's
    sigma map (sky + source Poisson noise). This is the S/N of the flux a catalogue
    would quote (SExtractor's FLUX_ISO / FLUXERR_ISO); it depends on the segmentation
    but not on the morphology fit. The table also holds the truth-side matched-filter
    S/N of the primary's noiseless model, bulge + disc with any tidal features
    (``snr_optimal``, `snr_optimal`): segmentation independent, and 1.2–4 times larger.
injection at low S/N
    The magnitude-limited survey of the default config has isophotal S/N > 50 for every
    galaxy. To populate the low-S/N bins, `dim_population` dims each galaxy by
    U(0, ``dim_max``) magnitudes before rendering (all its fluxes, companion included;
    shapes and every truth radius unchanged), over the same sky noise.
size in PSF units
    ``truth_r50_r / FWHM_r`` (the r-band PSF FWHM of the survey config).
isolated
    No merger, no chance projection, and not shrunk to fit the cutout
    (``~truth_merger & ~truth_projection & ~truth_size_clipped``).

Quantities compared (`QUANTITIES`)
----------------------------------
``r50``        the headline light r50: ``r50_psf_corrected``, the PSF-corrected circular
               half-light radius (Szomoru et al. 2010: PSF-free model + residual, the
               model beyond the aperture; by default the bulge + disc model of
               `galcat.bulgedisc.light_radius`, else the single Sérsic of
               `galcat.halfmass.psf_corrected_light_radius`) vs ``truth_r50_r``
               (PSF-free circular-aperture r50).
``r50_statmorph`` statmorph's circular r50 (light, PSF-convolved image, total = flux
               within 1.5 Petrosian radii) vs ``truth_r50_r``: not PSF-corrected, so
               +20% below one PSF FWHM and −10–15% above three.
``r50_sersic`` circular-aperture r50 of the PSF-deconvolved Sérsic fit (n, q, r_eff),
               integrated with the synthetic survey's own enclosed-light table
               (`sersic_circular_r50`), vs ``truth_r50_r``. Reported as the extrapolated,
               PSF-corrected alternative to ``r50``.
``r50_mass``   the half-mass radius (colour -> M/L -> mass profile; by default the
               component colours of `galcat.bulgedisc.mass_radius`, else the ring
               colours of `galcat.halfmass`) vs ``truth_r50_mass``.
``sersic_n``   the headline: ``sersic_n`` vs ``sersic_n_ref``, the same single-Sérsic fit
               (the same code path, `galcat.morphology.measure_object`) run on the
               NOISELESS, PSF-free render of the galaxy (`sersic_reference_n`). The
               estimators match, so the error is what noise, the PSF and the
               segmentation do to the fit, which is what injection–recovery measures.
               For a bulge + disc the PSF's part is a floor: the PSF-free fit follows
               the bulge's cusp, which a fit through the PSF cannot see (noiseless,
               median 8% on the ``steep_gradients`` population; implementation notes).
               Computed only for the headline galaxies (isolated, S/N > 20): NaN (and
               counted as failed) in the other bins.
``sersic_n_truth`` ``sersic_n`` vs ``truth_sersic_n``, the concentration-matched index
               (r80/r20) of the composite bulge + disc: a different estimator from a 2-D
               single-Sérsic fit, so its error mixes model mismatch with measurement.
``q``          ``sersic_q`` vs ``truth_q`` (axis ratio of the dominant component).
``diff_bulge_to_total`` (a column, not a `QUANTITIES` entry) ``bulge_to_total`` −
               ``truth_bt``: the r-band B/T of the bulge + disc fit
               (`galcat.bulgedisc`) against the drawn one, an absolute difference.
``q_moments``  ``1 - ellipticity`` (image moments) vs ``truth_q``.

Deblending
----------
For every galaxy with a companion (merger or projection) and each segmentation method,
`deblend_outcome` scores the segmentation map against the companion's true position
(`companion_pixel`): *recovered* when the cutout centre pixel is label 1 and the
companion's centre pixel carries a label > 1 (a distinct object); *flux ok* when the
detection-band flux in label 1 is within 20 per cent of the true flux of the primary
(`primary_flux`: bulge + disc, plus the tidal tail and lopsided component of a merger,
which the truth map counts as the primary's); *success* is both. Because F_1 is an
isophotal flux it misses the primary's faint outskirts (a median 26 per cent for the
isolated galaxies of the default survey, more when dimmed), so a second criterion, *split ok*, compares the measured
split F_1 / (F_1 + F_c) (F_c: flux in the companion's label) with the true one
F_p / (F_p + F_comp) within 20 per cent (*success_split*: recovered and split ok).
``visible`` says whether the truth map (``extras['truth_class']``) marks the companion's
centre pixel as companion (class 3), i.e. whether the companion dominates there above the
sky noise.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from galcat.bands import resolve_detect_band
from galcat.config import setting
from galcat.flags import MeasureFlag
from galcat.metrics import (
    assign_bins,
    bin_label,
    binned_bias_scatter,
    fractional_error,
    median_abs,
)
from galcat.morphology import MeasureWarning, measure_object, measure_settings, measure_shard
from galcat.segment import METHODS, segment_shard
from galcat.store import CutoutBatch
from galcat.surveys import configured_bands, synthetic

# the injections are drawn by the science (the sersic network trains on them) and
# re-exported here, where the benchmarks have always found them
from galcat.surveys.single_sersic import (
    SINGLE_SERSIC_N,
    SINGLE_SERSIC_SNR,
    render_single_sersic,
    sersic_circular_r50,
)
from galcat.validation.population import Population, apply_population

__all__ = [
    "BENIGN_FLAGS",
    "GOALS",
    "POPULATION_GOALS",
    "POPULATION_MAX_BIAS",
    "POPULATION_MAX_N",
    "POPULATION_SINGLE_SERSIC_SNR",
    "POPULATION_SNR_EDGES",
    "QUANTITIES",
    "SINGLE_SERSIC_N",
    "SINGLE_SERSIC_SNR",
    "SIZE_EDGES",
    "SNR_EDGES",
    "Quantity",
    "binned_statistics",
    "companion_pixel",
    "deblend_outcome",
    "deblend_summary",
    "dim_population",
    "headline",
    "isolated",
    "population_scores",
    "primary_flux",
    "recovery_table",
    "render_single_sersic",
    "run_deblending",
    "sersic_circular_r50",
    "single_sersic_table",
    "snr_matched_median_abs",
    "snr_isophotal",
    "sersic_reference_n",
    "snr_optimal",
]

#: S/N bin edges (`snr_isophotal`): < 20, 20–50, 50–200, > 200.
SNR_EDGES: tuple[float, ...] = (20.0, 50.0, 200.0)
#: Size bin edges in units of the r-band PSF FWHM (truth r50 / FWHM).
SIZE_EDGES: tuple[float, ...] = (1.0, 2.0, 3.0)
#: Headline goals: median |fractional error| on isolated galaxies with S/N > 20.
GOALS: dict[str, float] = {"r50": 0.05, "r50_mass": 0.10, "sersic_n": 0.15}
#: Headline S/N cut.
HEADLINE_MIN_SNR = 20.0
#: Measurement flag bits that only warn (statmorph flag 1, Sérsic parameter at a bound).
BENIGN_FLAGS = int(MeasureFlag.STATMORPH_WARNING | MeasureFlag.SERSIC_WARNING)
#: Largest |F_1 / F_primary - 1| of a successful deblend.
FLUX_TOLERANCE = 0.2


@dataclass(frozen=True)
class Quantity:
    """A measured column compared with a truth column."""

    name: str
    measured: str
    truth: str
    label: str


#: The quantities scored (see the module docstring).
QUANTITIES: tuple[Quantity, ...] = (
    Quantity("r50", "r50_psf_corrected", "truth_r50_r",
             "r50 PSF-corrected (Sersic model + residual) [arcsec]"),
    Quantity("r50_statmorph", "r50", "truth_r50_r",
             "r50 statmorph (PSF-convolved, 1.5 r_P) [arcsec]"),
    Quantity("r50_sersic", "r50_sersic", "truth_r50_r", "r50 of the Sersic fit [arcsec]"),
    Quantity("r50_mass", "r50_mass", "truth_r50_mass", "half-mass r50 [arcsec]"),
    Quantity("sersic_n", "sersic_n", "sersic_n_ref",
             "Sersic n vs the same fit, noiseless PSF-free"),
    Quantity("sersic_n_truth", "sersic_n", "truth_sersic_n",
             "Sersic n vs truth (concentration-matched)"),
    Quantity("q", "sersic_q", "truth_q", "axis ratio (Sersic fit)"),
    Quantity("q_moments", "q_moments", "truth_q", "axis ratio (1 - ellipticity)"),
)


# --------------------------------------------------------------------------- S/N, sizes
def snr_isophotal(flux: np.ndarray, sigma: np.ndarray, segmap: np.ndarray) -> np.ndarray:
    """Isophotal S/N of label 1 per object: ``flux / sqrt(sum of sigma^2 over label 1)``.

    Parameters
    ----------
    flux : (n,) background-subtracted flux in label 1 (``seg_central_flux``)
    sigma : (n, y, x) noise map of the detection band
    segmap : (n, y, x) segmentation maps

    NaN where label 1 is empty or its noise is not finite and positive.
    """
    sig = np.asarray(sigma, dtype=np.float64)
    central = np.asarray(segmap) == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(central, sig**2, 0.0).sum(axis=(1, 2))
        noise = np.sqrt(var)
        out = np.asarray(flux, dtype=np.float64) / noise
    out[~(np.isfinite(noise) & (noise > 0))] = np.nan
    return out


def snr_optimal(model: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Matched-filter S/N ``sqrt(sum (model / sigma)^2)`` of noiseless models (truth side).

    ``model`` and ``sigma`` are (n, y, x) or (y, x); pixels with a non-positive or
    non-finite sigma are left out. Independent of any segmentation.
    """
    m = np.asarray(model, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    ok = np.isfinite(sig) & (sig > 0) & np.isfinite(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(ok, (m / np.where(ok, sig, 1.0)) ** 2, 0.0)
    return np.sqrt(term.sum(axis=(-2, -1)))


def isolated(table: pd.DataFrame) -> np.ndarray:
    """No merger, no projection, not size-clipped."""
    return ~(
        table["truth_merger"].to_numpy(bool)
        | table["truth_projection"].to_numpy(bool)
        | table["truth_size_clipped"].to_numpy(bool)
    )


# --------------------------------------------------------------------------- deblending
def companion_pixel(row: Mapping, size: int, pixel_scale: float) -> tuple[float, float]:
    """(row, column) pixel position of the companion's centre in a synthetic cutout.

    The primary is at ((size-1)/2, (size-1)/2); GalSim shifts the companion by
    ``sep (cos a, sin a)`` arcsec in (x, y), x along columns and y along rows.
    """
    c = (size - 1) / 2.0
    sep = float(row["truth_companion_sep"])
    ang = math.radians(float(row["truth_companion_angle_deg"]))
    return c + sep * math.sin(ang) / pixel_scale, c + sep * math.cos(ang) / pixel_scale


def primary_flux(row: Mapping, band: str) -> float:
    """True flux of the primary in ``band``: bulge + disc (+ tidal tail and lopsided
    component for a merger, rendered with the disc's colour)."""
    f_b = float(row[f"truth_flux_bulge_{band}"])
    f_d = float(row[f"truth_flux_disc_{band}"])
    total = f_b + f_d
    if bool(row["truth_merger"]):
        f_r = float(row["truth_flux_bulge_r"]) + float(row["truth_flux_disc_r"])
        colour = f_d / float(row["truth_flux_disc_r"])
        total += (float(row["truth_tail_frac"]) + float(row["truth_lopsided_frac"])) * f_r * colour
    return total


def deblend_outcome(
    segmap: np.ndarray,
    row: Mapping,
    central_flux: float,
    *,
    pixel_scale: float,
    band: str = "r",
    truth_class: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> dict[str, object]:
    """Score one segmentation map of a galaxy with a companion (see the module docstring).

    Parameters
    ----------
    segmap : (y, x) labels; row : the galaxy's truth row; central_flux : F_1, the
    background-subtracted ``band`` flux in label 1 (``seg_central_flux``).
    image : (y, x), optional
        The background-subtracted ``band`` image; with it, the flux in the companion's
        label gives the measured split F_1 / (F_1 + F_c).

    Returns
    -------
    dict
        ``recovered``; ``flux_ratio`` = F_1 / F_primary and ``flux_ok`` (within
        `FLUX_TOLERANCE`); ``success`` = recovered and flux_ok; ``split_ratio`` =
        [F_1 / (F_1 + F_c)] / [F_p / (F_p + F_comp)] and ``split_ok`` (within the same
        tolerance; NaN / False without ``image`` or when not recovered), a criterion that
        the isophotal loss of both objects largely cancels from; ``visible`` (None
        without ``truth_class``); ``companion_label``.
    """
    seg = np.asarray(segmap)
    ny, nx = seg.shape
    c = (ny - 1) / 2.0
    # the primary's centre lies between pixels for an even side: any of the central ones
    rows = sorted({math.floor(c), math.ceil(c)})
    centre_labels = {int(seg[r, k]) for r in rows for k in rows}
    yc, xc = companion_pixel(row, ny, pixel_scale)
    iy = min(max(int(round(yc)), 0), ny - 1)
    ix = min(max(int(round(xc)), 0), nx - 1)
    comp_label = int(seg[iy, ix])
    recovered = (1 in centre_labels) and comp_label > 1
    truth = primary_flux(row, band)
    ratio = float(central_flux) / truth if truth > 0 else math.nan
    flux_ok = bool(np.isfinite(ratio) and abs(ratio - 1.0) <= FLUX_TOLERANCE)
    split = math.nan
    if image is not None and recovered:
        f_c = float(np.asarray(image, dtype=np.float64)[seg == comp_label].sum())
        f_comp = float(row[f"truth_flux_companion_{band}"])
        measured = float(central_flux) / (float(central_flux) + f_c)
        true_split = truth / (truth + f_comp)
        split = measured / true_split if true_split > 0 else math.nan
    split_ok = bool(np.isfinite(split) and abs(split - 1.0) <= FLUX_TOLERANCE)
    visible = None if truth_class is None else bool(np.asarray(truth_class)[iy, ix] == 3)
    return {
        "recovered": bool(recovered),
        "flux_ratio": ratio,
        "flux_ok": flux_ok,
        "success": bool(recovered and flux_ok),
        "split_ratio": split,
        "split_ok": split_ok,
        "success_split": bool(recovered and split_ok),
        "visible": visible,
        "companion_label": comp_label,
    }


def _nanmedian(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan


def deblend_summary(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per method (and kind: merger / projection / all): counts and success fractions."""
    rows = []
    for method, grp in outcomes.groupby("method", sort=False):
        for kind, sub in [("all", grp), *grp.groupby("kind", sort=True)]:
            vis = sub[sub["visible"].astype(bool)]
            rows.append({
                "method": method,
                "kind": kind,
                "n": len(sub),
                "recovered": float(sub["recovered"].mean()) if len(sub) else math.nan,
                "flux_ok": float(sub["flux_ok"].mean()) if len(sub) else math.nan,
                "success": float(sub["success"].mean()) if len(sub) else math.nan,
                "success_split": float(sub["success_split"].mean()) if len(sub) else math.nan,
                "n_visible": len(vis),
                "success_visible": float(vis["success"].mean()) if len(vis) else math.nan,
                "median_flux_ratio": _nanmedian(sub["flux_ratio"]),
                "median_split_ratio": _nanmedian(sub["split_ratio"]),
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the run
def dim_population(rows: pd.DataFrame, dim_max: float, seed: int) -> pd.DataFrame:
    """Dim every galaxy by ``dim_mag`` ~ U(0, ``dim_max``) magnitudes (injection at lower S/N).

    All flux columns (``truth_flux_*``: bulge, disc and companion in every band) are
    multiplied by ``10**(-0.4 dim_mag)`` and ``mag_*`` grow by ``dim_mag``; shapes,
    radii, colours and flux ratios are unchanged, so every truth but the flux still holds
    and the renderer (`galcat.surveys.synthetic.cutouts`) draws the same galaxy fainter
    over the same sky noise. The draw depends only on (``seed``, ``object_id``).
    """
    out = rows.copy()
    if dim_max <= 0:
        out["dim_mag"] = 0.0
        return out
    dm = np.array([
        np.random.default_rng([int(seed), 0x64696D, int(oid)]).uniform(0.0, dim_max)
        for oid in out["object_id"]
    ])
    factor = 10.0 ** (-0.4 * dm)
    for col in out.columns:
        if col.startswith("truth_flux_"):
            out[col] = out[col].to_numpy(np.float64) * factor
        elif col.startswith("mag_"):
            out[col] = out[col].to_numpy(np.float64) + dm
    out["dim_mag"] = dm
    return out


def _set_dask(cfg: dict, scheduler: str | None, workers: int | None) -> None:
    """Override the Dask scheduler and worker count of ``cfg`` (in place) where given."""
    if scheduler is None and workers is None:
        return
    cfg["dask"] = dict(cfg.get("dask") or {})
    if scheduler is not None:
        cfg["dask"]["scheduler"] = scheduler
    if workers is not None:
        cfg["dask"]["workers"] = int(workers)


def _render(n: int, config: Mapping, dim_max: float, population=None):
    cfg = copy.deepcopy(dict(config))
    cfg["synthetic"] = {**cfg["synthetic"], "n_objects": int(n)}
    rows = synthetic.query(cfg).copy()  # consolidate: query builds the frame without copy
    seed = int(cfg["synthetic"]["seed"])
    if population is not None:
        rows = apply_population(rows, population, cfg, seed=seed)
    return cfg, dim_population(rows, dim_max, seed)


#: Noise of the noiseless reference images, as a fraction of their peak (weights only).
REFERENCE_SIGMA = 1e-3


def sersic_reference_n(
    rows: pd.DataFrame,
    segmaps: np.ndarray,
    config: Mapping,
    *,
    band: str | None = None,
) -> np.ndarray:
    """Sérsic n of the same fit as the measurement on noiseless, PSF-free renders.

    For each row: `galcat.surveys.synthetic.render_noiseless` (``psf=False``) of the
    object in ``band`` (default: the run's ``detect_band``), measured by `galcat.morphology.measure_object` with the
    config's ``measure`` section (half-mass off) over the object's own segmentation
    map (``segmaps[i]``: label 1 and the masked neighbours of the measurement), a
    constant sigma of `REFERENCE_SIGMA` times the peak (noiseless: it only weights the
    fit) and no PSF. The reference shares the estimator with ``sersic_n``
    (`galcat.morphology.fit_sersic`), so ``sersic_n / sersic_n_ref - 1`` is what noise and
    PSF do to the fit, unlike the comparison with ``truth_sersic_n`` (concentration-matched n of a
    bulge + disc). NaN where the fit fails.
    """
    settings = measure_settings(config, configured_bands(config))
    band = band or settings["detect_band"]
    settings = {**settings, "half_mass": False, "detect_band": band, "r50_model": "sersic"}
    ps = float(config["synthetic"]["pixel_scale"])
    out = np.full(len(rows), np.nan)
    for i, (_, row) in enumerate(rows.iterrows()):
        img = synthetic.render_noiseless(row, config, band=band, psf=False)
        peak = float(np.max(img))
        if not np.isfinite(peak) or peak <= 0:
            continue
        shape = (1, 1, *img.shape)
        batch = CutoutBatch(
            object_id=np.array([int(row["object_id"])]),
            image=img.reshape(shape).astype(np.float32),
            sigma=np.full(shape, REFERENCE_SIGMA * peak, np.float32),
            mask=np.zeros(shape, bool), psf=np.zeros((1, 3, 3), np.float32),
            bands=[band], pixel_scale=ps, zeropoints=[22.5],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = measure_object(batch, 0, np.asarray(segmaps[i]), settings=settings)
            except (ValueError, RuntimeError, MeasureWarning):
                continue
        out[i] = float(res["sersic_n"])
    return out


def recovery_table(
    n: int,
    config: Mapping,
    *,
    methods: Sequence[str] = (),
    scheduler: str | None = None,
    workers: int | None = None,
    shard_size: int | None = None,
    dim_max: float = 0.0,
    reference_n: bool = True,
    population: Population | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render ``n`` synthetic galaxies, segment and measure them, join with the truth.

    Parameters
    ----------
    n : int
        Galaxies (object ids 1 .. n of the config's survey).
    config : mapping
        A whole galcat config (`galcat.config.load_config`); its ``segment`` and
        ``measure`` sections are used as they are.
    methods : sequence of str
        Extra segmentation methods scored for deblending (the config's method always is).
    scheduler, workers : optional
        Dask settings for segment and measure (default: the config's ``dask``).
    shard_size : int, optional
        Objects per processed shard (default ``sharding.objects_per_shard``).
    dim_max : float
        Dim each galaxy by U(0, dim_max) mag before rendering (`dim_population`) so that
        the sample spans lower S/N than the magnitude-limited survey (whose isophotal
        S/N is > 50 for the default config). 0 renders the survey as it is.
    reference_n : bool
        Fit the noiseless PSF-free render of every headline galaxy (isolated, S/N > 20)
        for ``sersic_n_ref`` (`sersic_reference_n`); otherwise it is NaN.
    population : Population, optional
        Redraw the galaxies as another population before dimming
        (`galcat.validation.population.apply_population`); its ``dim_max`` is the
        caller's business (``dim_max`` here is used as given).

    Returns
    -------
    table : DataFrame
        One row per galaxy: truth columns, the segmentation table, the features
        table, and derived columns ``dim_mag``, ``snr``, ``snr_optimal``,
        ``primary_flux``, ``sersic_n_ref``, ``size_psf``, ``r50_sersic``, ``q_moments``, ``isolated``, ``snr_bin``, ``size_bin`` and
        ``err_<quantity>`` for every `QUANTITIES` entry. ``attrs["priors"]``: the
        priors each processed shard was measured with (`measure_shard`).
    deblend : DataFrame
        One row per (galaxy with a companion, method): `deblend_outcome` columns plus
        ``object_id``, ``method``, ``kind``, ``sep_psf`` (separation / FWHM).
    """
    cfg, truth = _render(n, config, dim_max, population)
    _set_dask(cfg, scheduler, workers)
    per = int(shard_size or cfg.get("sharding", {}).get("objects_per_shard", 200))
    base_method = cfg.get("segment", {}).get("method", "multithreshold")
    all_methods = [base_method, *[m for m in methods if m != base_method]]
    for m in all_methods:
        if m not in METHODS:
            raise ValueError(f"unknown segmentation method {m!r}")
    det_band = resolve_detect_band(setting(cfg, "detect_band"), configured_bands(cfg))
    fwhm = synthetic.psf_fwhm(cfg, "r")
    ps = float(cfg["synthetic"]["pixel_scale"])

    parts, deblend_rows, priors = [], [], []
    for start in range(0, len(truth), per):
        rows = truth.iloc[start : start + per]
        batch = synthetic.cutouts(rows, cfg)
        band = batch.band_index(det_band)
        rows = rows.set_index("object_id").loc[batch.object_id].reset_index()
        segs = {}
        for m in all_methods:
            mcfg = {**cfg, "segment": {**cfg.get("segment", {}), "method": m}}
            segs[m] = segment_shard(batch, config=mcfg, label=f"validation segment[{m}]")
        seg = segs[base_method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeasureWarning)
            feats = measure_shard(batch, seg.segmap, config=cfg, label="validation measure")
        priors.append(feats.attrs.get("priors"))
        part = rows.merge(seg.table, on="object_id").merge(feats, on="object_id")
        sigma = batch.sigma[:, band]
        records = rows.to_dict("records")
        true_flux = np.array([primary_flux(r, det_band) for r in records])
        model = np.stack([
            synthetic.render_noiseless(r, cfg, band=det_band, components=("bulge", "disc"))
            for r in records
        ])
        part = part.assign(
            snr=snr_isophotal(part["seg_central_flux"].to_numpy(), sigma, seg.segmap),
            snr_optimal=snr_optimal(model, sigma),
            primary_flux=true_flux,
        )
        n_ref = np.full(len(part), np.nan)
        if reference_n:
            scored = isolated(part) & (part["snr"].to_numpy(np.float64) > HEADLINE_MIN_SNR)
            k = np.nonzero(scored)[0]
            if k.size:
                n_ref[k] = sersic_reference_n(rows.iloc[k], seg.segmap[k], cfg)
        part = part.assign(sersic_n_ref=n_ref)
        parts.append(part)

        truth_class = batch.extras.get("truth_class")
        det_image = batch.image[:, band].astype(np.float64)
        for i, r in enumerate(records):
            if not (bool(r["truth_merger"]) or bool(r["truth_projection"])):
                continue
            kind = "merger" if bool(r["truth_merger"]) else "projection"
            for m, res in segs.items():
                out = deblend_outcome(
                    res.segmap[i], r, float(res.table["seg_central_flux"].iloc[i]),
                    pixel_scale=ps, band=det_band,
                    truth_class=None if truth_class is None else truth_class[i],
                    image=det_image[i] - float(res.table["seg_background"].iloc[i]),
                )
                out.update({
                    "object_id": int(r["object_id"]), "method": m, "kind": kind,
                    "sep_psf": float(r["truth_companion_sep"]) / fwhm,
                    "flux_ratio_companion": float(r["truth_companion_flux_ratio"]),
                })
                deblend_rows.append(out)

    table = pd.concat(parts, ignore_index=True)
    extra: dict[str, object] = {
        "q_moments": 1.0 - table["ellipticity"].to_numpy(np.float64),
        "r50_sersic": sersic_circular_r50(
            table["sersic_n"], table["sersic_q"], table["sersic_r_eff"]
        ),
        "size_psf": table["truth_r50_r"].to_numpy(np.float64) / fwhm,
        "isolated": isolated(table),
    }
    extra["snr_bin"] = [
        bin_label(SNR_EDGES, k) if k >= 0 else "nan" for k in assign_bins(table["snr"], SNR_EDGES)
    ]
    extra["size_bin"] = [
        bin_label(SIZE_EDGES, k) if k >= 0 else "nan"
        for k in assign_bins(extra["size_psf"], SIZE_EDGES)
    ]
    table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)
    errors = {
        f"err_{q.name}": fractional_error(table[q.measured], table[q.truth]) for q in QUANTITIES
    }
    # B/T is a fraction: scored by its absolute difference, not relative to the truth
    errors["diff_bulge_to_total"] = (table["bulge_to_total"].to_numpy(np.float64)
                                     - table["truth_bt"].to_numpy(np.float64))
    table = pd.concat([table, pd.DataFrame(errors, index=table.index)], axis=1)
    deblend = pd.DataFrame(deblend_rows)
    table.attrs["priors"] = priors
    return table, deblend


def single_sersic_table(
    n: int,
    config: Mapping,
    *,
    seed: int = 0,
    scheduler: str | None = None,
    workers: int | None = None,
    return_images: bool = False,
    snr: tuple[float, float] = SINGLE_SERSIC_SNR,
    population: Population | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Inject ``n`` single elliptical Sérsic galaxies, whose index is exact, and measure them.

    The synthetic survey is bulge + disc, so its galaxies have no exact Sérsic index; here
    each galaxy is one Sérsic drawn by `render_single_sersic` (matched-filter S/N
    log-uniform in ``snr``, default `SINGLE_SERSIC_SNR`; ``seed`` fixes every draw). One band (r), segmented and measured
    with the config's ``segment`` and ``measure`` sections (half-mass off: it needs
    colours). A ``population`` draws the index from its ``n_bulge`` range and scales the
    sizes by its ``size_scale`` (the rest of a population is about colours and bulge +
    disc structure, which one single-band Sérsic does not have).

    Returns one row per galaxy: ``object_id``, ``truth_n``, ``truth_q``, ``truth_r50``
    (circular, arcsec, `sersic_circular_r50`), ``snr`` (isophotal), the features
    columns and ``err_sersic_n``, ``err_r50``, ``err_q`` (fractional errors). With
    ``return_images``, also the noisy r-band images ``(n, 1, y, x)`` in the table's
    order (what a network is scored on beside the fit).
    """
    cfg = copy.deepcopy(dict(config))
    cfg["measure"] = {**cfg.get("measure", {}), "half_mass": False}
    _set_dask(cfg, scheduler, workers)
    shape = {}
    if population is not None:
        shape = {"n_range": population.n_bulge or SINGLE_SERSIC_N,
                 "size_scale": population.size_scale}
    truth, images, sky = render_single_sersic(n, cfg["synthetic"], snr=snr,
                                              rng=np.random.default_rng([int(seed), 0x53E5]),
                                              **shape)
    ps = float(cfg["synthetic"]["pixel_scale"])
    batch = CutoutBatch(
        object_id=np.arange(1, n + 1, dtype=np.int64), image=images.astype(np.float32),
        sigma=np.full(images.shape, sky, np.float32), mask=np.zeros(images.shape, bool),
        psf=synthetic.psf_image(cfg, "r")[None].astype(np.float32), bands=["r"],
        pixel_scale=ps, zeropoints=[22.5],
    )
    seg = segment_shard(batch, config=cfg, label="validation segment[single Sersic]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeasureWarning)
        feats = measure_shard(batch, seg.segmap, config=cfg,
                              label="validation measure[single Sersic]")
    table = pd.concat([pd.DataFrame({"object_id": batch.object_id}), truth], axis=1)
    table = table.merge(seg.table, on="object_id").merge(feats, on="object_id")
    table["snr"] = snr_isophotal(table["seg_central_flux"].to_numpy(), batch.sigma[:, 0],
                                 seg.segmap)
    table["err_sersic_n"] = fractional_error(table["sersic_n"], table["truth_n"])
    table["err_r50"] = fractional_error(table["r50_psf_corrected"], table["truth_r50"])
    table["err_q"] = fractional_error(table["sersic_q"], table["truth_q"])
    if return_images:
        order = np.searchsorted(batch.object_id, table["object_id"].to_numpy())
        return table, batch.image[order]
    return table


def binned_statistics(
    table: pd.DataFrame,
    by: str,
    edges: Sequence[float],
    *,
    quantities: Sequence[Quantity] = QUANTITIES,
    selection: np.ndarray | None = None,
) -> pd.DataFrame:
    """Bias, NMAD, median |error| and failed fraction of every quantity per bin of ``by``.

    One row per (bin, quantity); ``flagged`` is the fraction of the bin's galaxies with
    any bit of the measurement ``flag`` set, ``flagged_bad`` those with a bit other than
    the two warnings (`BENIGN_FLAGS`), ``failed`` the fraction whose quantity is NaN.
    Bins with no galaxy are kept (n_bin = 0) so that tables line up.
    """
    sel = np.ones(len(table), bool) if selection is None else np.asarray(selection, bool)
    sub = table[sel]
    idx = assign_bins(sub[by], edges)
    flags = sub["flag"].to_numpy(np.int64)
    stats = {q.name: binned_bias_scatter(sub[f"err_{q.name}"], sub[by], edges).to_dict("records")
             for q in quantities}
    rows = []
    for k in range(len(edges) + 1):
        in_bin = flags[idx == k]
        flagged = float((in_bin != 0).mean()) if in_bin.size else math.nan
        bad = float((in_bin & ~BENIGN_FLAGS != 0).mean()) if in_bin.size else math.nan
        for q in quantities:
            cell = stats[q.name][k]
            rows.append({
                "binning": by, "bin": cell["bin"], "quantity": q.name,
                **{key: cell[key] for key in ("n_bin", "n", "bias", "nmad", "median_abs",
                                              "failed")},
                "flagged": flagged, "flagged_bad": bad,
            })
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame, goals: Mapping[str, float] = GOALS) -> dict[str, object]:
    """Median |fractional error| on isolated galaxies with S/N > 20, against ``goals``.

    Returns a dict ``{"n": .., "figures": {q: value}, "goals": {..}, "pass": {q: bool},
    "failed": {q: fraction NaN}}``; a quantity with no finite value fails.
    """
    sel = isolated(table) & (table["snr"].to_numpy(np.float64) > HEADLINE_MIN_SNR)
    sub = table[sel]
    figures, passed, failed = {}, {}, {}
    for name, goal in goals.items():
        err = sub[f"err_{name}"].to_numpy(np.float64)
        value = median_abs(err)
        figures[name] = value
        passed[name] = bool(np.isfinite(value) and value <= goal)
        failed[name] = float(np.mean(~np.isfinite(err))) if err.size else math.nan
    return {
        "n": int(sel.sum()),
        "figures": figures,
        "goals": dict(goals),
        "pass": passed,
        "failed": failed,
    }


#: Goals on another population (issue 13): median |error| at S/N > 20 of the bulge +
#: disc galaxies for the radii, and of the population's single-Sérsic injections (an
#: exact index, n <= 6) for ``sersic_n`` (`population_scores`) ...
POPULATION_GOALS: dict[str, float] = {"r50": 0.05, "r50_mass": 0.08, "sersic_n": 0.10}
#: ... and the largest |median bias| of r50 and r50_mass in any S/N bin of
#: `POPULATION_SNR_EDGES` between 10 and 200.
POPULATION_MAX_BIAS = 0.03
POPULATION_SNR_EDGES: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0, 200.0)
#: Matched-filter S/N range of a population's single-Sérsic injections: wide enough that
#: every isophotal S/N bin of the bulge + disc headline galaxies (20 to > 200) holds some.
POPULATION_SINGLE_SERSIC_SNR = (25.0, 2000.0)
#: The index range scored by the population's ``sersic_n`` goal ("n <= 6").
POPULATION_MAX_N = 6.0


def snr_matched_median_abs(err, snr, reference_snr, edges: Sequence[float]) -> float:
    """Median |err| reweighted so that ``snr`` follows the distribution of ``reference_snr``.

    Each value is weighted by (share of ``reference_snr`` in its bin of ``edges``) /
    (share of ``snr`` in that bin), so a figure measured on injections with their own
    S/N distribution is the one the reference galaxies would have. NaN errors count
    as failures (infinitely large); NaN where a bin holding reference galaxies holds
    no injection, or where there is nothing to weigh.
    """
    err = np.abs(np.asarray(err, np.float64))
    err = np.where(np.isfinite(err), err, np.inf)
    idx = assign_bins(np.asarray(snr, np.float64), edges)
    reference_snr = np.asarray(reference_snr, np.float64)
    ref_idx = assign_bins(reference_snr[np.isfinite(reference_snr)], edges)
    if err.size == 0 or ref_idx.size == 0:
        return math.nan
    weights = np.zeros(err.size)
    for k in np.unique(ref_idx):
        here = idx == k
        if not here.any():
            return math.nan
        weights[here] = np.mean(ref_idx == k) / np.mean(here)
    order = np.argsort(err)
    cum = np.cumsum(weights[order])
    value = float(err[order][np.searchsorted(cum, 0.5 * cum[-1])])
    return value if np.isfinite(value) else math.nan


def _exact_index_figure(single: pd.DataFrame | None, reference_snr: np.ndarray
                        ) -> tuple[float, int, float]:
    """`population_scores`'s Sérsic-n figure: ``(value, injections scored, NaN fraction)``
    of the injections with ``truth_n`` <= `POPULATION_MAX_N` and S/N > 20, weighted to
    ``reference_snr``; NaN and 0 without injections."""
    if single is None or not len(single):
        return math.nan, 0, math.nan
    s_snr = single["snr"].to_numpy(np.float64)
    scored = (single["truth_n"].to_numpy(np.float64) <= POPULATION_MAX_N + 1e-9) \
        & (s_snr > HEADLINE_MIN_SNR)
    err = single.loc[scored, "err_sersic_n"].to_numpy(np.float64)
    failed = float(np.mean(~np.isfinite(err))) if err.size else math.nan
    value = snr_matched_median_abs(err, s_snr[scored], reference_snr, POPULATION_SNR_EDGES)
    return value, int(scored.sum()), failed


def population_scores(table: pd.DataFrame, single: pd.DataFrame | None = None
                      ) -> dict[str, object]:
    """The issue-13 figures of a `recovery_table` run on another population.

    ``r50`` and ``r50_mass``: `headline` of the bulge + disc galaxies against
    `POPULATION_GOALS`. ``sersic_n``: a bulge + disc has no exact Sérsic index (its
    single-Sérsic fit through the PSF misses the PSF-free one by a median 8% even without
    noise: the module docstring), so the goal "n <= 6 within 10%" is scored on ``single``,
    the population's single-Sérsic injections (`single_sersic_table` with
    ``population=``): those with ``truth_n`` <= `POPULATION_MAX_N` and S/N > 20, their
    median |Δn|/n reweighted to the headline galaxies' S/N distribution
    (`snr_matched_median_abs` over `POPULATION_SNR_EDGES`). Without ``single`` it is NaN and fails.
    The bulge + disc galaxies' own figure is kept as ``figures["sersic_n_composite"]``
    (not scored). Plus the bias of ``r50`` and ``r50_mass`` on isolated galaxies per S/N
    bin of `POPULATION_SNR_EDGES` (the bins below 10 and above 200 are reported, not
    scored) against `POPULATION_MAX_BIAS`. Returns ``{"headline": .., "bias": {quantity:
    {bin: (n, bias)}}, "bias_pass": bool, "all_pass": bool}``; ``headline["n_single"]``
    counts the scored injections.
    """
    head = headline(table, POPULATION_GOALS)
    head["figures"]["sersic_n_composite"] = head["figures"].pop("sersic_n")
    head["failed"]["sersic_n_composite"] = head["failed"].pop("sersic_n")
    iso = isolated(table)
    snr = table["snr"].to_numpy(np.float64)
    value, head["n_single"], head["failed"]["sersic_n"] = _exact_index_figure(
        single, snr[iso & (snr > HEADLINE_MIN_SNR)])
    head["figures"]["sersic_n"] = value
    head["pass"]["sersic_n"] = bool(np.isfinite(value) and value <= POPULATION_GOALS["sersic_n"])
    edges = POPULATION_SNR_EDGES
    bias: dict[str, dict[str, tuple[int, float]]] = {}
    ok = True
    for name in ("r50", "r50_mass"):
        stats = binned_bias_scatter(table.loc[iso, f"err_{name}"], table.loc[iso, "snr"], edges)
        bias[name] = {}
        for k, row in enumerate(stats.to_dict("records")):
            bias[name][row["bin"]] = (int(row["n"]), float(row["bias"]))
            scored = 0 < k < len(edges)
            if scored and not (np.isfinite(row["bias"])
                               and abs(row["bias"]) <= POPULATION_MAX_BIAS):
                ok = False
    return {"headline": head, "bias": bias, "bias_pass": ok,
            "all_pass": ok and all(head["pass"].values())}


def run_deblending(deblend: pd.DataFrame) -> pd.DataFrame:
    """`deblend_summary` of the outcomes, or an empty frame for no companion."""
    if deblend.empty:
        return pd.DataFrame(columns=["method", "kind", "n", "recovered", "flux_ok", "success",
                                     "success_split", "n_visible", "success_visible",
                                     "median_flux_ratio", "median_split_ratio"])
    return deblend_summary(deblend)
