"""Synthetic blended galaxy pairs with known truth, and deblending scores.

This module feeds the deblending benchmark (``bench/deblend_vs_sextractor.py``):
it renders SDSS-like 64x64 cutouts (0.396"/pixel) of one galaxy or of two
overlapping galaxies with GalSim, keeps every component's truth (position, flux,
half-light radius), runs galcat's deblending (`galcat.segment.segment_image`)
and SExtractor (`galcat.validation.sextractor.run_sextractor`) on them, and scores the
result against the truth.

Rendering (`make_pair`, `make_isolated`)
----------------------------------------
- Components are Sérsic profiles: discs n = 1 (60 %), n = 1.5 (15 %), n = 2.5
  (10 %) and spheroids n = 4 (15 %), truncated at 8 r50, axis ratio q in
  [0.35, 1], random position angle. Circularised half-light radius r50 log-uniform in
  0.8-2.0" for discs and 0.5-1.5" for spheroids (SDSS main-sample galaxies at
  z ~ 0.05-0.15, e.g. Shen et al. 2003, MNRAS 343, 978).
- A pair: the secondary is fainter by ``flux_ratio`` in [1, 5] (uniform), its
  r50 scaled by ``flux_ratio**-0.3`` (log-normal scatter 0.15 dex), at
  ``separation`` in [1, 4] x the **primary's** r50 (uniform; by default its
  r50 as observed through the PSF, see `make_pair`) along a random direction; the pair's midpoint lies within 1.5 pixels of the cutout centre.
- PSF: Moffat (beta = 3.5), FWHM uniform in 1.1-1.7" (SDSS r-band seeing).
- Noise: a sky of ``sky`` e-/pixel (subtracted) and Poisson noise of sky +
  galaxies; ``sigma`` is the true per-pixel noise (sky + source), as in an SDSS
  inverse-variance map. The primary's flux is set for a target S/N (log-uniform
  30-300 for pairs, 5-200 for isolated galaxies); the recorded ``snr`` of each
  component is its optimal (matched-filter) S/N, sqrt(sum(model**2 / sigma**2)).

Truth radii: ``r50`` is the circularised half-light radius (GalSim's
``half_light_radius``; the shear preserves area). ``r50_circ`` is the radius of
the *circular* aperture, centred on the galaxy, that holds half its total
flux without the PSF -- what a circular-aperture measurement (SExtractor's
``FLUX_RADIUS``, photutils' ``fluxfrac_radius``) estimates -- and
``r50_circ_psf`` the same with the PSF. Positions are 0-based pixel coordinates
(NumPy ``[y, x]``, pixel centres at integers).

Scoring (`score_detections`)
----------------------------
A true component is *recovered* when it is matched, one to one (Hungarian
assignment on distance), to a detection within ``match_radius`` pixels (3). A
pair is *deblended* when both components are recovered by distinct detections,
and a *success* when, in addition, each matched flux is within ``flux_tol``
(20 %) of the component's true total flux.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from galcat.metrics import summarize
from galcat.segment import psf_fwhm_pixels, segment_image
from galcat.validation.sextractor import run_sextractor

__all__ = [
    "GALCAT_METHODS",
    "PIXEL_SCALE",
    "SEPARATION_BINS",
    "STAMP_SIZE",
    "Blend",
    "detections_from_segmap",
    "evaluate",
    "evaluate_many",
    "make_isolated",
    "make_pair",
    "measure",
    "score_detections",
    "summarise_isolated",
    "summarise_pairs",
]

#: Arcseconds per pixel (SDSS).
PIXEL_SCALE = 0.396
#: Side of the cutouts in pixels.
STAMP_SIZE = 64
#: Sky level in e-/pixel (SDSS r band: about 21 mag/arcsec^2 in 54 s).
SKY = 600.0
#: galcat deblending methods measured by default.
GALCAT_METHODS = ("watershed", "multithreshold", "dbscan")
#: Edges of the separation bins (units of the primary's r50).
SEPARATION_BINS = (1.0, 1.5, 2.0, 3.0, 4.0)

_SERSIC_N = (1.0, 1.5, 2.5, 4.0)
_SERSIC_P = (0.60, 0.15, 0.10, 0.15)
_TRUNC = 8.0
_PSF_STAMP = 25


@dataclass
class Blend:
    """One rendered cutout and the truth of its components.

    Attributes
    ----------
    image : ndarray of float64, shape (64, 64)
        Sky-subtracted image in e-/pixel, with noise.
    sigma : ndarray of float64, shape (64, 64)
        True 1-sigma noise per pixel (sky + sources).
    psf : ndarray of float64, shape (25, 25)
        The PSF at the same pixel scale, unit sum.
    truth : pandas.DataFrame
        One row per component (primary first): ``x``, ``y`` (0-based pixels),
        ``flux`` (total, e-), ``flux_stamp`` (the part inside the cutout),
        ``r50`` (circularised, pixels), ``r50_circ``, ``r50_circ_psf`` (circular
        aperture without and with the PSF, pixels), ``sersic_n``, ``q``,
        ``beta_deg``, ``snr``.
    meta : dict
        ``kind`` (``"pair"`` or ``"isolated"``), ``psf_fwhm`` (pixels),
        ``sky``, and for pairs ``separation`` (pixels), ``separation_r50``
        (units of the primary's r50), ``separation_unit`` (which r50, see
        `make_pair`) and ``flux_ratio`` (primary/secondary).
    """

    image: np.ndarray
    sigma: np.ndarray
    psf: np.ndarray
    truth: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- rendering


def _draw_component(galsim, params: Mapping[str, Any], psf, size: int) -> dict[str, Any]:
    """Noiseless PSF-convolved stamp and radii of one Sérsic component."""
    r50_arcsec = params["r50"] * PIXEL_SCALE
    gal = galsim.Sersic(
        n=params["sersic_n"],
        half_light_radius=r50_arcsec,
        flux=params["flux"],
        trunc=_TRUNC * r50_arcsec,
    ).shear(q=params["q"], beta=params["beta_deg"] * galsim.degrees)
    centre = (size - 1) / 2.0
    offset = (params["x"] - centre, params["y"] - centre)
    model = (
        galsim.Convolve(gal, psf)
        .drawImage(nx=size, ny=size, scale=PIXEL_SCALE, offset=offset)
        .array.astype(np.float64)
    )
    # circular-aperture half-light radius without the PSF, on a 4x finer grid
    fine = 4
    nfine = 256
    sharp = gal.drawImage(
        nx=nfine, ny=nfine, scale=PIXEL_SCALE / fine, method="no_pixel"
    ).array.astype(np.float64)
    r50_circ = _circular_r50(sharp, (nfine - 1) / 2.0, (nfine - 1) / 2.0, params["flux"]) / fine
    r50_circ_psf = _circular_r50(model, params["x"], params["y"], float(model.sum()))
    return {"model": model, "r50_circ": r50_circ, "r50_circ_psf": r50_circ_psf}


def _circular_r50(image: np.ndarray, x: float, y: float, total: float) -> float:
    """Radius (pixels) of the circle about (x, y) holding half of ``total``."""
    yy, xx = np.indices(image.shape)
    rr = np.hypot(xx - x, yy - y).ravel()
    order = np.argsort(rr, kind="stable")
    cum = np.cumsum(image.ravel()[order])
    return float(np.interp(0.5 * total, cum, rr[order]))


def _flux_for_snr(snr: float, r50_pix: float, fwhm_pix: float, sky: float) -> float:
    """Flux (e-) whose aperture S/N is about ``snr`` (aperture of radius 2 r_eff)."""
    r_eff2 = r50_pix**2 + (0.5 * fwhm_pix) ** 2
    area = math.pi * 4.0 * r_eff2
    s2 = snr * snr
    return 0.5 * (s2 + math.sqrt(s2 * s2 + 4.0 * s2 * sky * area))


def _random_shape(rng: np.random.Generator) -> dict[str, float]:
    n = float(rng.choice(_SERSIC_N, p=_SERSIC_P))
    lo, hi = (0.5, 1.5) if n >= 4 else (0.8, 2.0)
    return {
        "sersic_n": n,
        "r50": math.exp(rng.uniform(math.log(lo), math.log(hi))) / PIXEL_SCALE,
        "q": float(rng.uniform(0.35, 1.0)),
        "beta_deg": float(rng.uniform(0.0, 180.0)),
    }


def _render(
    rng: np.random.Generator, components: list[dict[str, Any]], fwhm_arcsec: float, sky: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    import galsim

    psf = galsim.Moffat(beta=3.5, fwhm=fwhm_arcsec)
    psf_img = psf.drawImage(nx=_PSF_STAMP, ny=_PSF_STAMP, scale=PIXEL_SCALE).array
    psf_img = np.asarray(psf_img, dtype=np.float64)
    psf_img /= psf_img.sum()
    size = STAMP_SIZE
    drawn = [_draw_component(galsim, comp, psf, size) for comp in components]
    model = np.sum([d["model"] for d in drawn], axis=0)
    expected = np.clip(model, 0.0, None) + sky
    image = rng.poisson(expected).astype(np.float64) - sky
    sigma = np.sqrt(expected)
    rows = []
    for comp, d in zip(components, drawn, strict=True):
        rows.append(
            {
                **comp,
                "flux_stamp": float(d["model"].sum()),
                "r50_circ": d["r50_circ"],
                "r50_circ_psf": d["r50_circ_psf"],
                "snr": float(np.sqrt(np.sum(d["model"] ** 2 / expected))),
            }
        )
    cols = [
        "x",
        "y",
        "flux",
        "flux_stamp",
        "r50",
        "r50_circ",
        "r50_circ_psf",
        "sersic_n",
        "q",
        "beta_deg",
        "snr",
    ]
    return image, sigma, psf_img, pd.DataFrame(rows, columns=cols)


def make_pair(
    rng: np.random.Generator,
    *,
    separation_r50: float | None = None,
    flux_ratio: float | None = None,
    snr: float | None = None,
    psf_fwhm_arcsec: float | None = None,
    sky: float = SKY,
    separation_unit: str = "observed",
) -> Blend:
    """Render two overlapping galaxies with known truth.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice (shapes, positions, noise).
    separation_r50 : float, optional
        Centre-to-centre separation in units of the primary's r50 (default
        uniform in [1, 4]); see ``separation_unit``.
    flux_ratio : float, optional
        Primary flux / secondary flux, >= 1 (default uniform in [1, 5]).
    snr : float, optional
        Target S/N of the primary (default log-uniform in [30, 300]).
    psf_fwhm_arcsec : float, optional
        Moffat FWHM (default uniform in [1.1, 1.7]).
    sky : float
        Sky level in e-/pixel.
    separation_unit : {"observed", "intrinsic"}
        The r50 the separation is measured in: ``"observed"`` (default), the
        primary's half-light radius seen through the PSF,
        ``sqrt(r50**2 + (FWHM / 2)**2)`` (exact for Gaussians); or
        ``"intrinsic"``, its circularised r50 without the PSF. SDSS galaxies
        have r50 of 2-5 pixels and a PSF of 3-4 pixels FWHM, so 1-2 intrinsic
        r50 is below the resolution of any deblender.

    Returns
    -------
    Blend
        ``truth`` has two rows, primary first.
    """
    sep_f = float(rng.uniform(1.0, 4.0)) if separation_r50 is None else float(separation_r50)
    ratio = float(rng.uniform(1.0, 5.0)) if flux_ratio is None else float(flux_ratio)
    if ratio < 1.0:
        raise ValueError(f"flux_ratio={ratio} must be >= 1 (primary / secondary)")
    target = math.exp(rng.uniform(math.log(30.0), math.log(300.0))) if snr is None else float(snr)
    fwhm = float(rng.uniform(1.1, 1.7)) if psf_fwhm_arcsec is None else float(psf_fwhm_arcsec)
    fwhm_pix = fwhm / PIXEL_SCALE

    primary = _random_shape(rng)
    secondary = _random_shape(rng)
    secondary["r50"] = float(
        np.clip(
            primary["r50"] * ratio**-0.3 * 10 ** rng.normal(0.0, 0.15),
            0.4 / PIXEL_SCALE,
            2.0 / PIXEL_SCALE,
        )
    )
    primary["flux"] = _flux_for_snr(target, primary["r50"], fwhm_pix, sky)
    secondary["flux"] = primary["flux"] / ratio
    if separation_unit == "observed":
        unit = math.hypot(primary["r50"], 0.5 * fwhm_pix)
    elif separation_unit == "intrinsic":
        unit = primary["r50"]
    else:
        raise ValueError(f"separation_unit={separation_unit!r} must be 'observed' or 'intrinsic'")
    sep = sep_f * unit
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    centre = (STAMP_SIZE - 1) / 2.0
    mid_x, mid_y = centre + rng.uniform(-1.5, 1.5, size=2)
    dx, dy = 0.5 * sep * math.cos(angle), 0.5 * sep * math.sin(angle)
    primary.update(x=float(mid_x - dx), y=float(mid_y - dy))
    secondary.update(x=float(mid_x + dx), y=float(mid_y + dy))
    image, sigma, psf, truth = _render(rng, [primary, secondary], fwhm, sky)
    meta = {
        "kind": "pair",
        "psf_fwhm": fwhm_pix,
        "sky": sky,
        "separation": sep,
        "separation_r50": sep_f,
        "separation_unit": separation_unit,
        "flux_ratio": ratio,
    }
    return Blend(image=image, sigma=sigma, psf=psf, truth=truth, meta=meta)


def make_isolated(
    rng: np.random.Generator,
    *,
    snr: float | None = None,
    psf_fwhm_arcsec: float | None = None,
    sky: float = SKY,
) -> Blend:
    """Render one galaxy within 2 pixels of the cutout centre.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    snr : float, optional
        Target S/N (default log-uniform in [5, 200]).
    psf_fwhm_arcsec : float, optional
        Moffat FWHM (default uniform in [1.1, 1.7]).
    sky : float
        Sky level in e-/pixel.

    Returns
    -------
    Blend
        ``truth`` has one row.
    """
    target = math.exp(rng.uniform(math.log(5.0), math.log(200.0))) if snr is None else float(snr)
    fwhm = float(rng.uniform(1.1, 1.7)) if psf_fwhm_arcsec is None else float(psf_fwhm_arcsec)
    comp = _random_shape(rng)
    comp["flux"] = _flux_for_snr(target, comp["r50"], fwhm / PIXEL_SCALE, sky)
    centre = (STAMP_SIZE - 1) / 2.0
    comp["x"], comp["y"] = (float(v) for v in centre + rng.uniform(-2.0, 2.0, size=2))
    image, sigma, psf, truth = _render(rng, [comp], fwhm, sky)
    meta = {"kind": "isolated", "psf_fwhm": fwhm / PIXEL_SCALE, "sky": sky}
    return Blend(image=image, sigma=sigma, psf=psf, truth=truth, meta=meta)


# --------------------------------------------------------------------------- measuring


def detections_from_segmap(
    data: np.ndarray,
    segmap: np.ndarray,
    *,
    error: np.ndarray | None = None,
    kron: bool = True,
) -> pd.DataFrame:
    """Position, flux and size of every segment of a segmentation map.

    Parameters
    ----------
    data : ndarray, shape (ny, nx)
        **Background-subtracted** image.
    segmap : ndarray of int, shape (ny, nx)
        0 background, a positive label per object.
    error : ndarray, optional
        1-sigma noise, passed to photutils.
    kron : bool
        Also measure, with `photutils.segmentation.SourceCatalog`, the Kron flux
        (Kron factor 2.5, minimum radius 3.5, neighbours' pixels replaced by
        their mirror images as in SExtractor's ``MASK_TYPE CORRECT``) and the
        circular radius holding half of it (``r50``).

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label``, ``x``, ``y`` (flux-weighted centroid of
        the segment's positive pixels, 0-based), ``flux`` (sum of the segment),
        ``area``, and with ``kron`` ``flux_kron`` and ``r50``.
    """
    from scipy import ndimage

    labels = np.unique(segmap[segmap > 0])
    cols = ["label", "x", "y", "flux", "area"] + (["flux_kron", "r50"] if kron else [])
    if labels.size == 0:
        return pd.DataFrame(columns=cols, dtype=np.float64)
    pos = np.clip(data, 0.0, None)
    yy, xx = np.indices(data.shape, dtype=np.float64)
    area = np.asarray(ndimage.sum(np.ones_like(pos), segmap, labels), dtype=np.float64)
    wsum = np.asarray(ndimage.sum(pos, segmap, labels), dtype=np.float64)
    # flux-weighted centroid of the positive pixels; the geometric centre of a
    # segment with none
    ok = wsum > 0
    norm = np.where(ok, wsum, 1.0)
    x = np.asarray(ndimage.sum(xx * pos, segmap, labels)) / norm
    y = np.asarray(ndimage.sum(yy * pos, segmap, labels)) / norm
    if not ok.all():
        x = np.where(ok, x, np.asarray(ndimage.sum(xx, segmap, labels)) / area)
        y = np.where(ok, y, np.asarray(ndimage.sum(yy, segmap, labels)) / area)
    table = pd.DataFrame(
        {
            "label": labels.astype(np.int64),
            "x": x,
            "y": y,
            "flux": np.asarray(ndimage.sum(data, segmap, labels), dtype=np.float64),
            "area": area,
        }
    )
    if kron:
        import warnings

        from photutils.segmentation import SegmentationImage, SourceCatalog

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cat = SourceCatalog(
                data,
                SegmentationImage(np.asarray(segmap, dtype=np.int32)),
                error=error,
                kron_params=(2.5, 3.5),
            )
            by_label = dict(zip(cat.labels, range(len(cat.labels)), strict=True))
            kflux = np.asarray(cat.kron_flux, dtype=np.float64)
            r50 = np.asarray(cat.fluxfrac_radius(0.5), dtype=np.float64)
        idx = [by_label[int(lab)] for lab in labels]
        table["flux_kron"] = kflux[idx]
        table["r50"] = r50[idx]
    return table


def measure(
    blend: Blend,
    *,
    methods: Sequence[str] = (*GALCAT_METHODS, "sextractor"),
    segment_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    sextractor_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """Detections of every method on one cutout, in one common form.

    Parameters
    ----------
    blend : Blend
        The cutout.
    methods : sequence of str
        galcat methods (`galcat.segment.METHODS`) and ``"sextractor"`` (sky
        estimated on the cutout, as galcat does) or ``"sextractor_truesky"``
        (sky fixed at its true value 0, as on a large frame).
    segment_kwargs : mapping, optional
        Per-method keyword arguments for `galcat.segment.segment_image`
        (``{"multithreshold": {"deblend_contrast": 0.005}}``); the key ``"*"``
        applies to all galcat methods. ``kernel_fwhm`` defaults to the PSF's
        FWHM (`galcat.segment.psf_fwhm_pixels`).
    sextractor_kwargs : mapping, optional
        Keyword arguments for `galcat.validation.sextractor.run_sextractor`;
        ``filter_fwhm`` defaults to ``filter_fwhm_scale`` (an extra key, default
        1; 0 switches the filter off) times the PSF's FWHM.

    Returns
    -------
    dict of str to pandas.DataFrame
        Per method: ``x``, ``y``, ``flux`` (segment sum, or ``FLUX_AUTO``),
        ``flux_kron`` (photutils Kron flux on the segmap, or ``FLUX_AUTO``),
        ``r50`` (photutils ``fluxfrac_radius(0.5)``, or ``FLUX_RADIUS``),
        ``flux_iso`` (segment sum, or ``FLUX_ISO``). A method that raised gives
        an empty table with ``attrs['error']``.
    """
    fwhm = psf_fwhm_pixels(blend.psf)
    segment_kwargs = dict(segment_kwargs or {})
    out: dict[str, pd.DataFrame] = {}
    for method in methods:
        try:
            if method.startswith("sextractor"):
                kw = dict(sextractor_kwargs or {})
                scale = kw.pop("filter_fwhm_scale", 1.0)
                kw.setdefault("filter_fwhm", None if not scale else scale * fwhm)
                if method == "sextractor_truesky":
                    kw["back_value"] = 0.0
                elif method != "sextractor":
                    raise ValueError(f"unknown method {method!r}")
                table, _ = run_sextractor(blend.image, blend.sigma, **kw)
                det = pd.DataFrame(
                    {
                        "x": table["x"].to_numpy(np.float64),
                        "y": table["y"].to_numpy(np.float64),
                        "flux": table["FLUX_AUTO"].to_numpy(np.float64),
                        "flux_kron": table["FLUX_AUTO"].to_numpy(np.float64),
                        "flux_iso": table["FLUX_ISO"].to_numpy(np.float64),
                        "r50": table["FLUX_RADIUS"].to_numpy(np.float64),
                    }
                )
            else:
                kw = {
                    "kernel_fwhm": fwhm,
                    **dict(segment_kwargs.get("*", {})),
                    **dict(segment_kwargs.get(method, {})),
                }
                segmap, _flags, info = segment_image(blend.image, blend.sigma, method=method, **kw)
                data = blend.image - float(info.get("background", 0.0) or 0.0)
                det = detections_from_segmap(data, segmap, error=blend.sigma)
                det["flux_iso"] = det["flux"]
                det = det[["x", "y", "flux", "flux_kron", "flux_iso", "r50"]].reset_index(drop=True)
        except Exception as exc:  # a broken method must not stop the benchmark
            det = pd.DataFrame(columns=["x", "y", "flux", "flux_kron", "flux_iso", "r50"])
            det.attrs["error"] = f"{type(exc).__name__}: {exc}"
        out[method] = det
    return out


# --------------------------------------------------------------------------- scoring


def score_detections(
    truth: pd.DataFrame,
    detections: pd.DataFrame,
    *,
    match_radius: float = 3.0,
    flux_tol: float = 0.2,
    flux_columns: Iterable[str] = ("flux", "flux_kron"),
) -> dict[str, Any]:
    """Match true components to detections and score the flux split.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``x``, ``y``, ``flux`` of each true component.
    detections : pandas.DataFrame
        ``x``, ``y`` and the ``flux_columns`` of each detection.
    match_radius : float
        Largest centre distance (pixels) of a match.
    flux_tol : float
        Largest relative flux error of a success.
    flux_columns : iterable of str
        Flux columns scored; the first is the headline ``success``.

    Returns
    -------
    dict
        ``n_true``, ``n_det``, ``n_matched``, ``recovered`` (all components
        matched to distinct detections), ``matched_index`` (detection row per
        component, -1 if none), ``distance`` (pixels, NaN if unmatched), per
        flux column ``c``: ``rel_err_c`` (list, NaN if unmatched) and
        ``success_c`` (recovered and every ``|rel_err| <= flux_tol``);
        ``success`` is that of the first column. ``share_ok``: recovered and
        each component's share of the matched flux (first column) within
        ``flux_tol`` (relative) of its true share.
    """
    flux_columns = list(flux_columns)
    n_true = len(truth)
    n_det = len(detections)
    tx = truth[["x", "y"]].to_numpy(np.float64)
    matched = np.full(n_true, -1, dtype=np.int64)
    dist = np.full(n_true, np.nan)
    if n_det:
        dx = detections[["x", "y"]].to_numpy(np.float64)
        d = np.hypot(tx[:, None, 0] - dx[None, :, 0], tx[:, None, 1] - dx[None, :, 1])
        cost = np.where(d <= match_radius, d, 1.0e6)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if d[r, c] <= match_radius:
                matched[r] = c
                dist[r] = d[r, c]
    recovered = bool(n_true > 0 and np.all(matched >= 0))
    out: dict[str, Any] = {
        "n_true": n_true,
        "n_det": n_det,
        "n_matched": int(np.count_nonzero(matched >= 0)),
        "recovered": recovered,
        "matched_index": matched.tolist(),
        "distance": dist.tolist(),
    }
    true_flux = truth["flux"].to_numpy(np.float64)
    for col in flux_columns:
        if n_det and col in detections:
            vals = detections[col].to_numpy(np.float64)
            meas = np.where(matched >= 0, vals[np.clip(matched, 0, None)], np.nan)
        else:
            meas = np.full(n_true, np.nan)
        rel = meas / true_flux - 1.0
        out[f"rel_err_{col}"] = rel.tolist()
        out[f"success_{col}"] = bool(recovered and np.all(np.abs(rel) <= flux_tol))
        if col == flux_columns[0]:
            out["success"] = out[f"success_{col}"]
            share_true = true_flux / true_flux.sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                share = meas / np.nansum(meas)
            out["share_ok"] = bool(
                recovered and np.all(np.abs(share / share_true - 1.0) <= flux_tol)
            )
    return out


def evaluate(
    blend: Blend,
    *,
    methods: Sequence[str] = (*GALCAT_METHODS, "sextractor"),
    match_radius: float = 3.0,
    flux_tol: float = 0.2,
    segment_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    sextractor_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Measure one cutout with every method and score it: one row per method.

    Parameters
    ----------
    blend : Blend
    methods, segment_kwargs, sextractor_kwargs
        See `measure`.
    match_radius, flux_tol
        See `score_detections`.

    Returns
    -------
    list of dict
        Per method: ``method``, ``kind``, the pair's ``separation_r50`` and
        ``flux_ratio`` (NaN for isolated galaxies), ``snr`` (the primary's),
        the scores of `score_detections`, ``r50_meas`` (the first component's
        matched radius, NaN if unmatched), ``r50_true`` / ``r50_circ`` /
        ``r50_circ_psf`` (truth), ``error`` (None, or why the method failed).
    """
    dets = measure(
        blend, methods=methods, segment_kwargs=segment_kwargs, sextractor_kwargs=sextractor_kwargs
    )
    rows = []
    first = blend.truth.iloc[0]
    for method, det in dets.items():
        score = score_detections(blend.truth, det, match_radius=match_radius, flux_tol=flux_tol)
        i = score["matched_index"][0]
        rows.append(
            {
                "method": method,
                "kind": blend.meta["kind"],
                "separation_r50": blend.meta.get("separation_r50", math.nan),
                "flux_ratio": blend.meta.get("flux_ratio", math.nan),
                "snr": float(first["snr"]),
                **score,
                "r50_meas": float(det["r50"].iloc[i]) if i >= 0 else math.nan,
                "r50_true": float(first["r50"]),
                "r50_circ": float(first["r50_circ"]),
                "r50_circ_psf": float(first["r50_circ_psf"]),
                "error": det.attrs.get("error"),
            }
        )
    return rows


def evaluate_many(
    kind: str,
    indices: Iterable[int],
    *,
    seed: int,
    separation_unit: str = "observed",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Render and evaluate cutouts ``indices`` of one kind: rows of `evaluate`.

    Cutout ``i`` of kind ``kind`` is drawn from
    ``numpy.random.default_rng([seed, k, i])`` (``k`` 0 for pairs, 1 for
    isolated galaxies), so a cutout does not depend on how the indices are split
    between processes.

    Parameters
    ----------
    kind : {"pair", "isolated"}
    indices : iterable of int
    seed : int
    separation_unit : str
        See `make_pair`.
    **kwargs
        Passed to `evaluate`.

    Returns
    -------
    list of dict
        The rows of `evaluate`, each with ``index``.
    """
    if kind not in ("pair", "isolated"):
        raise ValueError(f"kind={kind!r} must be 'pair' or 'isolated'")
    rows = []
    for i in indices:
        rng = np.random.default_rng([int(seed), 0 if kind == "pair" else 1, int(i)])
        if kind == "pair":
            blend = make_pair(rng, separation_unit=separation_unit)
        else:
            blend = make_isolated(rng)
        for row in evaluate(blend, **kwargs):
            rows.append({"index": int(i), **row})
    return rows


# --------------------------------------------------------------------------- summaries


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median and NMAD of the finite ``values`` (NaN, NaN for none)."""
    stats = summarize(values)
    return stats["bias"], stats["nmad"]


def summarise_pairs(rows: pd.DataFrame, *, bins: Sequence[float] = SEPARATION_BINS) -> dict:
    """Success rates of the pair rows of `evaluate`, overall and per separation bin.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of `evaluate` for pairs (``kind == "pair"``).
    bins : sequence of float
        Separation bin edges (units of the primary's r50).

    Returns
    -------
    dict
        Per method: ``n``, ``success`` (segment sum or ``FLUX_AUTO``),
        ``success_kron`` (Kron flux), ``recovered`` (both found, any flux),
        ``share_ok``, ``errors`` (cutouts where the method raised), and
        ``by_separation``: bin label -> {``n``, ``success``, ``recovered``}.
    """
    rows = rows[rows["kind"] == "pair"]
    out: dict[str, Any] = {}
    edges = list(bins)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    for method, grp in rows.groupby("method", sort=False):
        cut = pd.cut(grp["separation_r50"], edges, labels=labels, include_lowest=True)
        by = {}
        for lab in labels:
            sub = grp[cut == lab]
            by[lab] = {
                "n": len(sub),
                "success": float(sub["success"].mean()) if len(sub) else math.nan,
                "recovered": float(sub["recovered"].mean()) if len(sub) else math.nan,
            }
        out[str(method)] = {
            "n": len(grp),
            "success": float(grp["success"].mean()),
            "success_kron": float(grp["success_flux_kron"].mean()),
            "recovered": float(grp["recovered"].mean()),
            "share_ok": float(grp["share_ok"].mean()),
            "errors": int(grp["error"].notna().sum()),
            "by_separation": by,
        }
    return out


def summarise_isolated(
    rows: pd.DataFrame, *, snr_bins: Sequence[float] = (0.0, 10.0, 20.0, 50.0, math.inf)
) -> dict:
    """Completeness, shredding, flux and radius accuracy on isolated galaxies.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of `evaluate` for isolated galaxies.
    snr_bins : sequence of float
        Edges of the S/N bins of the completeness.

    Returns
    -------
    dict
        Per method: ``n``, ``completeness`` (galaxy matched within the radius),
        ``by_snr`` (bin -> completeness), ``shredded`` (fraction of detected
        galaxies with more than one detection), ``flux_bias`` / ``flux_scatter``
        (median and 1.4826 MAD of measured/true - 1, matched galaxies with
        S/N >= 20, first flux column), ``r50_bias`` / ``r50_scatter`` (the same
        for the radius against the true circular half-light radius without the
        PSF, ``r50_circ``), ``r50_psf_bias`` (against ``r50_circ_psf``) and
        ``r50_circularised_bias`` (against the circularised ``r50``).
    """
    rows = rows[rows["kind"] == "isolated"]
    edges = list(snr_bins)
    labels = [
        f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">={lo:g}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    out: dict[str, Any] = {}
    for method, grp in rows.groupby("method", sort=False):
        cut = pd.cut(grp["snr"], edges, labels=labels, right=False)
        found = grp["recovered"].to_numpy(bool)
        bright = found & (grp["snr"].to_numpy() >= 20.0)
        rel = np.array([r[0] for r in grp["rel_err_flux"]], dtype=np.float64)[bright]
        meas = grp["r50_meas"].to_numpy(np.float64)[bright]
        fb, fs = _robust(rel)
        rb, rs = _robust(meas / grp["r50_circ"].to_numpy(np.float64)[bright] - 1.0)
        pb, ps = _robust(meas / grp["r50_circ_psf"].to_numpy(np.float64)[bright] - 1.0)
        cb, cs = _robust(meas / grp["r50_true"].to_numpy(np.float64)[bright] - 1.0)
        out[str(method)] = {
            "n": len(grp),
            "completeness": float(found.mean()) if len(grp) else math.nan,
            "by_snr": {
                lab: (
                    float(grp.loc[cut == lab, "recovered"].mean())
                    if (cut == lab).any()
                    else math.nan
                )
                for lab in labels
            },
            "shredded": float((grp.loc[found, "n_det"] > 1).mean()) if found.any() else math.nan,
            "flux_bias": fb,
            "flux_scatter": fs,
            "r50_bias": rb,
            "r50_scatter": rs,
            "r50_psf_bias": pb,
            "r50_psf_scatter": ps,
            "r50_circularised_bias": cb,
            "r50_circularised_scatter": cs,
            "errors": int(grp["error"].notna().sum()),
        }
    return out
