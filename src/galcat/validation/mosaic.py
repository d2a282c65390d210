"""Synthetic mosaics with known truth: what a user brings, for tests and benchmarks.

`synthetic_mosaic` scatters galaxies of the synthetic survey's population (bulge +
disc, rendered by `galcat.surveys.synthetic.render_noiseless` at sub-pixel positions,
dimmed by U(0, ``dim_max``) mag so that the faint end reaches the detection limit)
and stars (the PSF) over a frame, with the survey's sky noise and the sources' Poisson
noise, plus a smooth sky pedestal that a detection must remove. `write_mosaic` writes
it as FITS files a user would have: one file per band in a chosen pixel unit
(nanomaggy, nJy, MJy/sr, electron/s with PHOTFLAM/PHOTPLAM and EXPTIME, counts with
MAGZERO, GAIN and EXPTIME), with a rotated TAN WCS or none, optional sigma maps and a
bad-pixel mask, and returns the ``local`` section that reads them.

The truth (`Mosaic.truth`) gives, per source, its 0-based pixel position, RA/Dec
(when written with a WCS), kind (galaxy or star), true total flux per band in
nanomaggies (bulge + disc), the r-band circular half-light radius (arcsec) and the
synthetic row's truth columns for galaxies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from galcat.config import load_config
from galcat.surveys import synthetic
from galcat.surveys._cutting import ARCSEC_PER_RAD, NANOMAGGY_JY, ZEROPOINT
from galcat.validation.recovery import dim_population

__all__ = ["UNITS", "Mosaic", "synthetic_mosaic", "write_mosaic"]

#: Pixel units `write_mosaic` writes.
UNITS = ("nanomaggy", "nJy", "MJy/sr", "electron/s", "counts")
#: AB magnitude of one electron/s (HST-like) and of one count.
_ZP_RATE = 25.0
_ZP_COUNT = 30.0
_PIVOT_A = 6200.0


@dataclass
class Mosaic:
    """A synthetic mosaic in nanomaggies per pixel, with its truth.

    Attributes
    ----------
    images, sigma : dict of band -> 2D ndarray
        Noisy image (with the sky pedestal) and its exact 1-sigma noise.
    pedestal : dict of band -> 2D ndarray
        The smooth sky added to the image (what a background step must remove).
    psf : dict of band -> 2D ndarray
        PSF stamps (unit sum).
    truth : pandas.DataFrame
        One row per source (module docstring).
    pixel_scale : float
        Arcsec per pixel.
    gain : dict of band -> float
        Electrons per nanomaggy (Poisson noise).
    """

    images: dict[str, np.ndarray]
    sigma: dict[str, np.ndarray]
    pedestal: dict[str, np.ndarray]
    psf: dict[str, np.ndarray]
    truth: pd.DataFrame
    pixel_scale: float
    gain: dict[str, float]
    config: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.images.values())).shape

    @property
    def bands(self) -> list[str]:
        return list(self.images)


def _config(seed: int, n: int, pixel_scale: float, stamp: int,
            redshift: tuple[float, float], mag_limit: float) -> dict:
    return load_config(overrides={"synthetic": {
        "n_objects": max(n, 1), "seed": seed, "pixel_scale": pixel_scale,
        "cutout_size": stamp, "merger_fraction": 0.0, "projection_fraction": 0.0,
        "redshift": {"min": redshift[0], "max": redshift[1]}, "mag_limit_r": mag_limit}})


def _positions(rng, n: int, shape, margin: int, min_separation: float) -> np.ndarray:
    """``n`` positions (x, y) at least ``min_separation`` pixels apart (best effort)."""
    ny, nx = shape
    out: list[tuple[float, float]] = []
    for _ in range(50 * max(n, 1)):
        if len(out) == n:
            break
        p = (rng.uniform(margin, nx - margin - 1), rng.uniform(margin, ny - margin - 1))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_separation ** 2 for q in out):
            out.append(p)
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _offset(p: float, ip: int, stamp: int) -> float:
    """Shift from a render's centre, (stamp - 1) / 2, that puts its object at mosaic
    position ``p`` once the render is pasted at ``ip - stamp // 2``."""
    return p - ip + stamp // 2 - (stamp - 1) / 2.0


def _paste(image: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    ny, nx = image.shape
    sy, sx = stamp.shape
    ys, xs = slice(max(0, y0), min(ny, y0 + sy)), slice(max(0, x0), min(nx, x0 + sx))
    image[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def synthetic_mosaic(
    shape: tuple[int, int] = (512, 512),
    *,
    n_galaxies: int = 30,
    n_stars: int = 8,
    bands: Sequence[str] = ("g", "r"),
    seed: int = 1,
    pixel_scale: float = 0.396,
    dim_max: float = 3.0,
    star_mag: tuple[float, float] = (17.0, 22.0),
    pedestal: float = 2.0,
    stamp: int = 64,
    min_separation: float = 12.0,
    redshift: tuple[float, float] = (0.02, 0.15),
    mag_limit: float = 18.5,
) -> Mosaic:
    """A mosaic of synthetic galaxies and stars with known truth (module docstring).

    Parameters
    ----------
    shape : (ny, nx)
        Pixels of the mosaic.
    n_galaxies, n_stars : int
        Sources; placed at random at least ``min_separation`` pixels apart.
    bands : sequence of str
        Bands of the synthetic survey's sdss set.
    seed : int
        The same seed gives the same mosaic.
    pixel_scale : float
        Arcsec per pixel.
    dim_max : float
        Galaxies are dimmed by U(0, dim_max) mag (`galcat.validation.recovery.dim_population`).
    star_mag : (float, float)
        Range of the stars' r-band AB magnitudes (uniform).
    pedestal : float
        Peak of the smooth sky added to the image (a tilted plane plus a broad bump),
        in units of the sky noise.
    stamp : int
        Side of each galaxy's render (the synthetic survey shrinks galaxies to fit it).
    redshift, mag_limit : optional
        The population's redshift range and r-band magnitude limit (the synthetic
        survey's defaults; at higher redshift galaxies are smaller).

    Returns
    -------
    Mosaic

    Notes
    -----
    Cost: ~10 ms per galaxy and band (GalSim) plus the noise.
    """
    cfg = _config(seed, n_galaxies, pixel_scale, stamp, redshift, mag_limit)
    rng = np.random.default_rng([seed, 0x6D6F73])
    rows = dim_population(synthetic.query(cfg).head(n_galaxies), dim_max, seed) \
        if n_galaxies else pd.DataFrame()
    pos = _positions(rng, n_galaxies + n_stars, shape, margin=8, min_separation=min_separation)
    bandinfo = synthetic.band_set(cfg)
    images = {b: np.zeros(shape) for b in bands}
    records = []
    for k, (_, row) in enumerate(rows.iterrows()):
        x, y = pos[k]
        ix, iy = int(math.floor(x)), int(math.floor(y))
        off = (_offset(x, ix, stamp), _offset(y, iy, stamp))
        for b in bands:
            img = synthetic.render_noiseless(row, cfg, band=b, components=("bulge", "disc"),
                                             offset=off)
            _paste(images[b], img, ix - stamp // 2, iy - stamp // 2)
        rec = {"kind": "galaxy", "x": x, "y": y,
               "r50_arcsec": float(synthetic.circular_radius(row, 0.5)),
               "object_id": int(row["object_id"])}
        for b in bands:
            rec[f"flux_{b}"] = float(row[f"truth_flux_bulge_{b}"] + row[f"truth_flux_disc_{b}"])
        rec.update({c: row[c] for c in row.index if c.startswith("truth_") or c == "dim_mag"})
        records.append(rec)
    for k in range(len(rows), len(pos)):
        x, y = pos[k]
        mag_r = rng.uniform(*star_mag)
        colour = rng.uniform(0.2, 1.2)  # g - r
        ix, iy = int(math.floor(x)), int(math.floor(y))
        rec = {"kind": "star", "x": x, "y": y, "r50_arcsec": 0.0, "object_id": -(k + 1)}
        for b in bands:
            mag = mag_r + (colour if b in "ug" else 0.0) - (0.3 * colour if b in "iz" else 0.0)
            flux = 10 ** (-0.4 * (mag - ZEROPOINT))
            star = galsim.DeltaFunction(flux=flux).shift(
                _offset(x, ix, stamp) * pixel_scale, _offset(y, iy, stamp) * pixel_scale)
            _paste(images[b], synthetic.draw_profile(star, cfg, band=b),
                   ix - stamp // 2, iy - stamp // 2)
            rec[f"flux_{b}"] = flux
        records.append(rec)
    truth = pd.DataFrame.from_records(records)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    out, sig, ped, psf, gain = {}, {}, {}, {}, {}
    for j, b in enumerate(bands):
        sky = bandinfo[b].sky_sigma(pixel_scale)
        gain[b] = float(bandinfo[b].gain)
        sigma = np.sqrt(sky ** 2 + np.clip(images[b], 0.0, None) / gain[b])
        noise = np.random.default_rng([seed, 0x6E6F6973, j]).standard_normal(shape)
        bump = np.exp(-((xx - 0.7 * nx) ** 2 + (yy - 0.3 * ny) ** 2) / (0.5 * max(shape)) ** 2)
        ped[b] = pedestal * sky * (0.5 + 0.3 * xx / nx - 0.2 * yy / ny + 0.4 * bump)
        out[b] = images[b] + sigma * noise + ped[b]
        sig[b] = sigma
        psf[b] = synthetic.psf_image(cfg, b)
    return Mosaic(out, sig, ped, psf, truth, pixel_scale, gain, cfg)


def _wcs(shape, pixel_scale: float, rotation_deg: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [shape[1] / 2.0 + 0.5, shape[0] / 2.0 + 0.5]
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    d = pixel_scale / 3600.0
    wcs.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return wcs


def _unit_header(unit: str, pixel_scale: float, gain: float) -> tuple[float, dict]:
    """(multiplier from nanomaggies, header cards) of a pixel unit."""
    if unit == "nanomaggy":
        return 1.0, {"BUNIT": "nanomaggy"}
    if unit == "nJy":
        return NANOMAGGY_JY * 1e9, {"BUNIT": "nJy"}
    if unit == "MJy/sr":
        omega = (pixel_scale / ARCSEC_PER_RAD) ** 2
        return NANOMAGGY_JY * 1e-6 / omega, {"BUNIT": "MJy/sr"}
    if unit == "electron/s":
        per_nmgy = 10 ** (-0.4 * (ZEROPOINT - _ZP_RATE))  # e/s of one nanomaggy
        photflam = 10 ** (-0.4 * (_ZP_RATE + 2.408 + 5.0 * math.log10(_PIVOT_A)))
        # EXPTIME makes the header's Poisson noise the mosaic's
        return per_nmgy, {"BUNIT": "ELECTRONS/S", "PHOTFLAM": photflam, "PHOTPLAM": _PIVOT_A,
                          "PHOTZPT": -21.1, "EXPTIME": gain / per_nmgy}
    if unit == "counts":
        per_nmgy = 10 ** (-0.4 * (ZEROPOINT - _ZP_COUNT))
        return per_nmgy, {"BUNIT": "COUNTS", "MAGZERO": _ZP_COUNT, "GAIN": gain / per_nmgy,
                          "EXPTIME": 1000.0}
    raise ValueError(f"unit {unit!r} is not one of {UNITS}")


def write_mosaic(
    mosaic: Mosaic,
    directory: str | Path,
    *,
    unit: str = "nanomaggy",
    wcs: bool = True,
    noise_maps: bool = False,
    mask: bool = False,
    rotation_deg: float = 20.0,
    psf_fwhm: bool = True,
) -> dict:
    """Write ``mosaic`` as FITS files; return the ``local`` config section reading them.

    Parameters
    ----------
    mosaic : Mosaic
    directory : path-like
        Created if needed; files ``mosaic_{band}.fits`` (and ``sigma_{band}.fits``,
        ``mask.fits``).
    unit : one of `UNITS`
        Pixel unit and the header cards that define it.
    wcs : bool
        A TAN WCS rotated by ``rotation_deg``; False writes none (pixel-only mode:
        the section then sets ``pixel_scale``).
    noise_maps : bool
        Write sigma maps (same unit) and name them in the section.
    mask : bool
        Write a bad-pixel map (a 3-pixel column of bad pixels, non-zero is bad; their
        image pixels are set to a large value) and name it in the section.
    psf_fwhm : bool
        Give the PSF as a Gaussian FWHM per band (True) or as PSF files.

    Returns
    -------
    dict
        The ``local`` section (``objects: detect``); the truth is ``mosaic.truth`` with
        ``ra``/``dec`` added in place when ``wcs``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header_wcs = _wcs(mosaic.shape, mosaic.pixel_scale, rotation_deg) if wcs else None
    if header_wcs is not None:
        ra, dec = header_wcs.pixel_to_world_values(mosaic.truth["x"], mosaic.truth["y"])
        mosaic.truth["ra"], mosaic.truth["dec"] = np.asarray(ra), np.asarray(dec)
    bad = np.zeros(mosaic.shape, dtype=np.uint8)
    if mask:
        col = mosaic.shape[1] // 3
        bad[:, col:col + 3] = 1
    files, noise, psf_files = {}, {}, {}
    for b in mosaic.bands:
        factor, cards = _unit_header(unit, mosaic.pixel_scale, mosaic.gain[b])
        header = header_wcs.to_header() if header_wcs is not None else fits.Header()
        header.update(cards)
        image = mosaic.images[b] * factor
        if mask:
            image = np.where(bad > 0, 1e4 * np.nanmax(np.abs(image)), image)
        files[b] = str(directory / f"mosaic_{b}.fits")
        fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(files[b],
                                                                         overwrite=True)
        if noise_maps:
            noise[b] = str(directory / f"sigma_{b}.fits")
            fits.PrimaryHDU((mosaic.sigma[b] * factor).astype(np.float32),
                            header=header).writeto(noise[b], overwrite=True)
        if not psf_fwhm:
            psf_files[b] = str(directory / f"psf_{b}.fits")
            fits.PrimaryHDU(mosaic.psf[b].astype(np.float32)).writeto(psf_files[b],
                                                                       overwrite=True)
    section: dict = {
        "objects": "detect", "bands": mosaic.bands,
        "images": {"kind": "mosaic", "files": files},
        "psf": ({"fwhm_arcsec": {b: float(synthetic.psf_fwhm(mosaic.config, b))
                                 for b in mosaic.bands}} if psf_fwhm else {"files": psf_files}),
    }
    if noise_maps:
        section["noise"] = {"kind": "sigma", "files": noise}
    if mask:
        path = directory / "mask.fits"
        fits.PrimaryHDU(bad).writeto(path, overwrite=True)
        section["mask"] = {"kind": "bad", "file": str(path)}
    if not wcs:
        section["pixel_scale"] = float(mosaic.pixel_scale)
    return section


def truth_fluxes(mosaic: Mosaic) -> Mapping[str, np.ndarray]:
    """True total flux per band (nanomaggies), in truth order."""
    return {b: mosaic.truth[f"flux_{b}"].to_numpy() for b in mosaic.bands}


# --------------------------------------------------------------------------- scoring
def match_sources(truth_xy: np.ndarray, found_xy: np.ndarray, radius: float) -> np.ndarray:
    """One-to-one match of true and found positions (pixels), closest pairs first:
    for every true source the index of its detection, or -1 (none within ``radius``)."""
    from scipy.spatial import cKDTree

    out = np.full(len(truth_xy), -1, dtype=np.int64)
    if not len(truth_xy) or not len(found_xy):
        return out
    pairs = cKDTree(truth_xy).sparse_distance_matrix(cKDTree(found_xy), radius,
                                                      output_type="ndarray")
    used = set()
    for i, j, _ in sorted(pairs.tolist(), key=lambda p: p[2]):
        i, j = int(i), int(j)
        if out[i] < 0 and j not in used:
            out[i] = j
            used.add(j)
    return out


def score_detections(truth: pd.DataFrame, found: pd.DataFrame, *, band: str,
                     radius: float, mag_bins: Sequence[float]) -> dict:
    """Completeness, position and flux accuracy of ``found`` (columns ``x``, ``y``,
    ``flux``) against ``truth`` (`Mosaic.truth`) in ``band``.

    Returns a dict: ``completeness`` (all) and ``by_mag`` (true AB magnitude bins of
    ``band``), ``spurious`` (detections matched to no true source), ``position``
    (median offset in pixels of matched galaxies and of stars), ``flux_error`` (median
    |found / true - 1| of matched galaxies) and ``flux_bias`` (median found / true - 1),
    and ``matched`` (the detection index of every true source, -1 none).
    """
    idx = match_sources(truth[["x", "y"]].to_numpy(), found[["x", "y"]].to_numpy(), radius)
    ok = idx >= 0
    true_flux = truth[f"flux_{band}"].to_numpy()
    mag = ZEROPOINT - 2.5 * np.log10(true_flux)
    galaxy = (truth["kind"] == "galaxy").to_numpy()
    by_mag = {}
    for lo, hi in zip(mag_bins[:-1], mag_bins[1:], strict=True):
        sel = (mag >= lo) & (mag < hi)
        by_mag[f"{lo:g}-{hi:g}"] = {"n": int(sel.sum()),
                                    "completeness": float(ok[sel].mean()) if sel.any() else None}
    offsets = np.full(len(truth), np.nan)
    ratio = np.full(len(truth), np.nan)
    fx, fy, ff = (found[c].to_numpy() for c in ("x", "y", "flux"))
    offsets[ok] = np.hypot(fx[idx[ok]] - truth["x"].to_numpy()[ok],
                           fy[idx[ok]] - truth["y"].to_numpy()[ok])
    ratio[ok] = ff[idx[ok]] / true_flux[ok]
    return {
        "n_true": int(len(truth)), "n_found": int(len(found)),
        "completeness": float(ok.mean()) if len(truth) else None,
        "by_mag": by_mag,
        "spurious": int(len(found) - ok.sum()),
        "position_galaxies": float(np.nanmedian(offsets[galaxy])) if (galaxy & ok).any()
        else None,
        "position_stars": float(np.nanmedian(offsets[~galaxy])) if (~galaxy & ok).any()
        else None,
        "flux_error": float(np.nanmedian(np.abs(ratio[galaxy] - 1))) if (galaxy & ok).any()
        else None,
        "flux_bias": float(np.nanmedian(ratio[galaxy] - 1)) if (galaxy & ok).any() else None,
        "matched": idx,
    }
