"""MaNGA: the DRPall summary table for the objects, the DRP data cubes for the pixels.

``query(config)``
    Downloads (once, into the cache) ``drpall-{drpver}.fits`` from the SDSS
    Science Archive Server (``manga.sas_url``/``{data_release}/manga/spectro/redux/
    {drpver}/``) and selects galaxies by target sample (``mngtarg1`` bits of the
    Primary, Secondary and Colour-Enhanced samples), redshift, sky box and the
    DRP quality flag (``drp3qual`` bit 30, CRITICAL, excluded). Repeat
    observations of one galaxy (same ``mangaid``) are reduced to the first
    plate-IFU unless ``manga.unique_galaxies`` is false.

    ``object_id`` is ``plate * 100000 + ifudesign`` (stable, unique, e.g.
    8485-1901 -> 848501901); ``plateifu`` and ``mangaid`` are kept as strings.
    Labels: NSA stellar mass (elliptical Petrosian; ``log_mass_nsa`` is
    ``log10(nsa_elpetro_mass / h^2)`` with h = 0.7, the NSA masses being in
    Msun/h^2), Sérsic index, elliptical-Petrosian half-light radius and axis
    ratio.

``cutouts(rows, config)``
    Each galaxy's ``manga-{plate}-{ifudesign}-LOGCUBE.fits.gz``: the DRP's
    reconstructed broad-band images ``GIMG``, ``RIMG``, ``IIMG``, ``ZIMG``
    (nanomaggies per 0.5-arcsec spaxel, with a WCS) cut with their WCS, and the
    reconstructed PSF images ``GPSF`` ... ``ZPSF``. The noise is propagated from
    the cube's ``IVAR`` over a top-hat window of each band
    (:data:`BAND_WINDOWS`; an approximation of the SDSS filter curves) and
    converted to nanomaggies at the band's pivot wavelength. Spaxels outside the
    IFU footprint (no valid ``IVAR`` in the window) are masked. Cubes are large
    (tens to hundreds of MB): only the extracted images are cached
    (``.npz`` per plate-IFU); the cube is deleted unless ``manga.keep_cubes``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from galcat.config import settings
from galcat.sharding import assign_shards
from galcat.store import CutoutBatch
from galcat.surveys import _cutting
from galcat.surveys._http import (
    ArchiveError,
    EmptyResultError,
    request_key,
    session_for,
    warn_partial,
)

__all__ = ["COLUMN_DESCRIPTIONS", "COLUMN_UNITS", "cutouts", "query"]

log = logging.getLogger("galcat.surveys.manga")

PIXEL_SCALE = 0.5  # arcsec per spaxel of the DRP cubes
BANDS = ("g", "r", "i", "z")
#: Approximate wavelength windows (Angstrom) and pivot wavelengths of the SDSS filters.
BAND_WINDOWS = {"g": (4000.0, 5500.0), "r": (5500.0, 6900.0), "i": (6900.0, 8400.0),
                "z": (8400.0, 10300.0)}
PIVOT = {"g": 4702.0, "r": 6176.0, "i": 7490.0, "z": 8947.0}
#: mngtarg1 bits of the main samples (MaNGA targeting bitmask MANGA_TARGET1).
SAMPLE_BITS = {"primary": 10, "secondary": 11, "color_enhanced": 12}
DRP3QUAL_CRITICAL = 1 << 30
H = 0.7  # Hubble parameter for the NSA masses (Msun h^-2)

COLUMN_UNITS = {
    "object_id": "", "shard": "", "ra": "deg", "dec": "deg", "z": "",
    "plateifu": "", "mangaid": "", "plate": "", "ifudesign": "",
    "ifura": "deg", "ifudec": "deg", "nsa_z": "", "nsa_elpetro_mass": "Msun",
    "log_mass_nsa": "dex(Msun)", "nsa_sersic_n": "", "nsa_elpetro_th50_r": "arcsec",
    "nsa_elpetro_ba": "", "nsa_elpetro_phi": "deg", "mngtarg1": "", "drp3qual": "",
    "nsa_nsaid": "",
}
COLUMN_DESCRIPTIONS = {
    "object_id": "galcat object id: plate * 100000 + ifudesign",
    "shard": "shard holding the object (rank of its id in ascending order)",
    "ra": "object right ascension (DRPall objra)",
    "dec": "object declination (DRPall objdec)",
    "z": "redshift (DRPall z, the NSA redshift where that is missing)",
    "plateifu": "MaNGA plate-IFU designation",
    "mangaid": "MaNGA target id",
    "plate": "plate number",
    "ifudesign": "IFU design",
    "ifura": "IFU centre right ascension",
    "ifudec": "IFU centre declination",
    "nsa_z": "NSA redshift",
    "nsa_elpetro_mass": "NSA stellar mass from elliptical Petrosian photometry, in Msun h^-2 "
                        "(h = 1; the unit column says Msun)",
    "log_mass_nsa": "log10 of the NSA stellar mass in Msun (h = 0.7)",
    "nsa_sersic_n": "NSA single-Sersic index",
    "nsa_elpetro_th50_r": "NSA elliptical Petrosian half-light radius, r band",
    "nsa_elpetro_ba": "NSA elliptical Petrosian axis ratio b/a",
    "nsa_elpetro_phi": "NSA elliptical Petrosian position angle",
    "mngtarg1": "MaNGA main-sample targeting bits",
    "drp3qual": "DRP quality bits",
    "nsa_nsaid": "NSA id",
}
_COLUMNS = ("plateifu", "mangaid", "plate", "ifudsgn", "objra", "objdec", "ifura", "ifudec",
            "z", "nsa_z", "nsa_elpetro_mass", "nsa_sersic_n", "nsa_elpetro_th50_r",
            "nsa_elpetro_ba", "nsa_elpetro_phi", "mngtarg1", "drp3qual", "nsa_nsaid")


def _redux_url(section: Mapping) -> str:
    return (f"{section['sas_url'].rstrip('/')}/{section['data_release']}/manga/spectro/redux/"
            f"{section['drpver']}")


def drpall_url(section: Mapping) -> str:
    return f"{_redux_url(section)}/drpall-{section['drpver']}.fits"


def cube_url(section: Mapping, plate: int, ifudesign: int) -> str:
    return f"{_redux_url(section)}/{plate}/stack/manga-{plate}-{ifudesign}-LOGCUBE.fits.gz"


def _str(col) -> np.ndarray:
    arr = np.asarray(col)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii")
    return np.char.strip(arr.astype(str))


def query(config: Mapping) -> pd.DataFrame:
    """The MaNGA object table (see the module docstring)."""
    section = settings(config, "manga")
    session = session_for(config, "manga")
    url = drpall_url(section)
    path = session.download(url, what="MaNGA DRPall summary table", kind="fits")
    with fits.open(path, memmap=False) as hdul:
        hdu = hdul["MANGA"] if "MANGA" in hdul else hdul[1]
        data = hdu.data
        names = {n.lower(): n for n in data.columns.names}
        missing = [c for c in _COLUMNS if c not in names]
        if missing:
            raise ArchiveError(f"MaNGA DRPall {url} lacks columns {missing}")
        cols = {c: np.asarray(data[names[c]]) for c in _COLUMNS}
    df = pd.DataFrame({
        "plateifu": _str(cols["plateifu"]),
        "mangaid": _str(cols["mangaid"]),
        "plate": cols["plate"].astype(np.int64),
        "ifudesign": cols["ifudsgn"].astype(str).astype(np.int64)
        if cols["ifudsgn"].dtype.kind in "SU" else cols["ifudsgn"].astype(np.int64),
        "ra": cols["objra"].astype(float),
        "dec": cols["objdec"].astype(float),
        "ifura": cols["ifura"].astype(float),
        "ifudec": cols["ifudec"].astype(float),
        "z": cols["z"].astype(float),
        "nsa_z": cols["nsa_z"].astype(float),
        "nsa_elpetro_mass": cols["nsa_elpetro_mass"].astype(float),
        "nsa_sersic_n": cols["nsa_sersic_n"].astype(float),
        "nsa_elpetro_th50_r": cols["nsa_elpetro_th50_r"].astype(float),
        "nsa_elpetro_ba": cols["nsa_elpetro_ba"].astype(float),
        "nsa_elpetro_phi": cols["nsa_elpetro_phi"].astype(float),
        "mngtarg1": cols["mngtarg1"].astype(np.int64),
        "drp3qual": cols["drp3qual"].astype(np.int64),
        "nsa_nsaid": cols["nsa_nsaid"].astype(np.int64),
    })
    n_all = len(df)
    df["z"] = np.where(df["z"] > 0, df["z"], df["nsa_z"])
    keep = np.ones(len(df), dtype=bool)
    samples = section["samples"]
    if samples:
        bits = sum(1 << SAMPLE_BITS[s] for s in samples)
        keep &= (df["mngtarg1"].to_numpy() & bits) != 0
    if section["exclude_critical"]:
        keep &= (df["drp3qual"].to_numpy() & DRP3QUAL_CRITICAL) == 0
    sel = section["selection"]
    for key, col in (("z", "z"), ("ra", "ra"), ("dec", "dec")):
        rng = sel.get(key) or {}
        if rng.get("min") is not None:
            keep &= df[col].to_numpy() >= float(rng["min"])
        if rng.get("max") is not None:
            keep &= df[col].to_numpy() <= float(rng["max"])
    keep &= df["ra"].between(0, 360).to_numpy() & df["dec"].between(-90, 90).to_numpy()
    df = df[keep]
    df = df.assign(object_id=(df["plate"] * 100000 + df["ifudesign"]).astype(np.int64))
    df = df.sort_values("object_id")
    if section["unique_galaxies"]:
        df = df.drop_duplicates("mangaid", keep="first")
    df = df.drop_duplicates("object_id", keep="first")
    max_objects = section["max_objects"]
    if max_objects:
        df = df.iloc[: int(max_objects)]
    if df.empty:
        raise EmptyResultError(
            f"MaNGA: none of the {n_all} DRPall rows pass the selection (samples={samples}, "
            f"selection={dict(sel)}); widen it"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        df["log_mass_nsa"] = np.where(df["nsa_elpetro_mass"] > 0,
                                      np.log10(df["nsa_elpetro_mass"]) - 2 * np.log10(H), np.nan)
    out = assign_shards(df, settings(config, "sharding")["objects_per_shard"])
    cols = ["object_id", "ra", "dec", "z", "shard"]
    return out[cols + [c for c in out.columns if c not in cols]]


# --------------------------------------------------------------------------- cutouts


def _extract(cube_path: Path, bands, *, what: str, url: str) -> dict[str, np.ndarray]:
    """Images, noise, footprint mask, PSFs and WCS header of one LOGCUBE."""
    out: dict[str, np.ndarray] = {}
    try:
        with fits.open(cube_path, memmap=False) as hdul:
            names = {h.name for h in hdul}
            need = {f"{b.upper()}IMG" for b in bands} | {f"{b.upper()}PSF" for b in bands}
            need |= {"FLUX", "IVAR", "WAVE"}
            if need - names:
                raise ArchiveError(f"{what}: {url} lacks extensions {sorted(need - names)}")
            wave = np.asarray(hdul["WAVE"].data, dtype=np.float64)
            ivar = np.asarray(hdul["IVAR"].data, dtype=np.float64)
            header = hdul[f"{bands[0].upper()}IMG"].header
            out["wcs_header"] = np.frombuffer(
                WCS(header).celestial.to_header().tostring().encode("ascii"), dtype=np.uint8)
            for b in bands:
                img_hdu = hdul[f"{b.upper()}IMG"]
                unit = str(img_hdu.header.get("BUNIT", "nanomaggies/pixel"))
                factor = _cutting.nanomaggy_factor(unit, PIXEL_SCALE, what=f"{what} {b}")
                out[f"image_{b}"] = np.asarray(img_hdu.data, dtype=np.float64) * factor
                lo, hi = BAND_WINDOWS[b]
                sel = (wave >= lo) & (wave < hi)
                iv = ivar[sel]
                good = iv > 0
                n_good = good.sum(axis=0)
                var_sum = np.where(good, 1.0 / np.where(good, iv, 1.0), 0.0).sum(axis=0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    sigma_flam = np.sqrt(var_sum) / n_good  # 1e-17 erg/s/cm2/A per spaxel
                # f_nu [Jy] = 3.33564e4 * lambda^2 [A] * f_lambda [erg/s/cm2/A]
                jy = 3.33564e4 * PIVOT[b] ** 2 * sigma_flam * 1e-17
                out[f"sigma_{b}"] = np.where(n_good > 0, jy / _cutting.NANOMAGGY_JY, np.nan)
                out[f"footprint_{b}"] = n_good == 0
                out[f"psf_{b}"] = np.asarray(hdul[f"{b.upper()}PSF"].data, dtype=np.float64)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{what}: the cube {url} is truncated or corrupt ({exc})") from exc
    return out


def _cube_images(session, section: Mapping, row: pd.Series, bands) -> dict[str, np.ndarray]:
    plate, ifu = int(row["plate"]), int(row["ifudesign"])
    url = cube_url(section, plate, ifu)
    what = f"MaNGA object {int(row['object_id'])} ({plate}-{ifu})"
    key = request_key("GET", url) + "-" + "".join(bands)
    npz = session.cache.root / "images" / f"{key}.npz" if session.cache is not None else None
    if npz is not None and npz.exists():
        with np.load(npz) as data:
            return dict(data)
    path = session.download(url, what=f"{what}: LOGCUBE", kind="fits")
    images = _extract(path, bands, what=what, url=url)
    if npz is not None:
        npz.parent.mkdir(parents=True, exist_ok=True)
        tmp = npz.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **images)
        tmp.replace(npz)
        if not section["keep_cubes"]:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
    return images


def cutouts(rows: pd.DataFrame, config: Mapping) -> CutoutBatch:
    """Cutouts of ``rows`` in every ``manga.bands`` band (see the module docstring)."""
    section = settings(config, "manga")
    bands = list(section["bands"])
    size = int(section["cutout_size"])
    psf_size = int(section["psf_stamp_size"])
    off_image = settings(config, "archive")["off_image"]
    rows = rows.sort_values("object_id").reset_index(drop=True)
    if rows.empty:
        raise EmptyResultError("MaNGA cutouts: no rows given")
    session = session_for(config, "manga")
    n, nb = len(rows), len(bands)
    image = np.full((n, nb, size, size), np.nan, dtype=np.float32)
    sigma = np.full_like(image, np.nan)
    mask = np.ones(image.shape, dtype=bool)
    psfs: dict[str, list[np.ndarray]] = {b: [] for b in bands}
    partial: list[str] = []
    for i, row in rows.iterrows():
        oid = int(row["object_id"])
        data = _cube_images(session, section, row, bands)
        header = fits.Header.fromstring(bytes(data["wcs_header"]).decode("ascii"))
        wcs = WCS(header)
        for j, b in enumerate(bands):
            what = f"MaNGA object {oid} ({row['plateifu']}, {b} band)"
            try:
                cut = _cutting.cut_arrays([data[f"image_{b}"], data[f"sigma_{b}"]], wcs,
                                          float(row["ra"]), float(row["dec"]), size, what=what,
                                          extra_mask=data[f"footprint_{b}"])
            except _cutting.OffImageError:
                if off_image != "mask":
                    raise
                log.warning("%s lies wholly off its cube; kept fully masked", what)
                continue
            if cut.partial:
                partial.append(f"{oid} ({b})")
            image[i, j] = cut.arrays[0]
            sigma[i, j] = cut.arrays[1]
            mask[i, j] = cut.mask
            psfs[b].append(_cutting.stamp(data[f"psf_{b}"], psf_size))
    warn_partial("MaNGA", partial)
    for b in bands:
        if not psfs[b]:
            raise ArchiveError(f"MaNGA: no object of this batch has a {b}-band PSF")
    psf = np.stack([_cutting.mean_psf(psfs[b]) for b in bands])
    return CutoutBatch(
        object_id=rows["object_id"].to_numpy(np.int64), image=image, sigma=sigma, mask=mask,
        psf=psf, bands=bands, pixel_scale=PIXEL_SCALE, zeropoints=[_cutting.ZEROPOINT] * nb,
        flux_unit="nanomaggy", survey="manga",
    )
