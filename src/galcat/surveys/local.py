"""``survey: local``: your own table of objects and your own FITS images.

The object table (``local.objects``: CSV, Parquet or FITS) gives each object's
position as ``ra``/``dec`` (degrees) or as ``x``/``y`` pixel coordinates on the
mosaic (``local.x_column``/``local.y_column``, origin ``local.pixel_origin``;
RA/Dec then follow from the mosaic's WCS), optionally an id, a redshift and
extra columns to carry along.

Images (``local.images``) are either

- ``kind: mosaic``: large images with a WCS, one FITS file per band
  (``files: {band: path}``) or one cube (``cube: path``, bands along the first
  axis in the order of ``bands``), cut around each object with the WCS; or
- ``kind: cutouts``: ready-made cutouts, one file per object and band or one
  cube per object, named by ``pattern`` with ``{object_id}`` (and ``{band}``)
  placeholders. A cutout with a WCS is re-cut around the object; one without
  is used as delivered, centred, and padded or cropped to ``cutout_size``.

Optional noise maps (``local.noise``, same layout; ``kind`` sigma, variance
or ivar) and PSFs (``local.psf``: a file per band or a cube; or a Gaussian of
``fwhm_arcsec``). Pixel values are converted to nanomaggies with
``local.zeropoint`` (the AB magnitude of one pixel unit) or, if it is null, the
``BUNIT`` of each image. Without a noise map, the noise is a constant per
cutout: 1.4826 times the median absolute deviation of the pixels (an estimate
that ignores the objects' Poisson noise; a warning says so).

Errors name what is wrong: a missing file, a file without a WCS where one is
needed, a band missing from the files or cube, an object off the image.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from galcat.config import settings
from galcat.metrics import nmad
from galcat.sharding import assign_shards
from galcat.store import CutoutBatch
from galcat.surveys import _cutting
from galcat.surveys._http import EmptyResultError, warn_partial

__all__ = ["COLUMN_DESCRIPTIONS", "COLUMN_UNITS", "LocalDataError", "cutouts", "query"]

log = logging.getLogger("galcat.surveys.local")

COLUMN_UNITS = {"object_id": "", "shard": "", "ra": "deg", "dec": "deg", "z": "",
                "source_id": "", "x": "pix", "y": "pix"}
COLUMN_DESCRIPTIONS = {
    "object_id": "galcat object id: local.id_column if integer, else a stable hash of it, "
                 "else the row number + 1",
    "shard": "shard holding the object (rank of its id in ascending order)",
    "ra": "right ascension", "dec": "declination",
    "z": "redshift from local.z_column (NaN without one)",
    "source_id": "the id of the input table, as a string",
    "x": "0-based x pixel of the object on the mosaic",
    "y": "0-based y pixel of the object on the mosaic",
}


class LocalDataError(ValueError):
    """The local table or images are not what the config says."""


# --------------------------------------------------------------------------- helpers


def _path(value: str, what: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise LocalDataError(f"{what}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise LocalDataError(f"{what}: {str(path)!r} is not a file")
    return path


def _read_table(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        return pd.read_csv(path)
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return pd.read_parquet(path)
    if suffix.endswith((".fits", ".fit", ".fits.gz")):
        table = Table.read(path)
        names = [n for n in table.colnames if len(table[n].shape) <= 1]
        return table[names].to_pandas()
    raise LocalDataError(f"local.objects: {str(path)!r} is not .csv, .parquet or .fits")


def _stable_id(value: str) -> int:
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2 or 1  # 62 bits, >= 1


def _open_image(path: Path, hdu, what: str) -> tuple[np.ndarray, fits.Header]:
    try:
        with fits.open(path, memmap=False) as hdul:
            if hdu is None:
                found = next((h for h in hdul if h.data is not None and h.data.ndim >= 2), None)
                if found is None:
                    raise LocalDataError(f"{what}: {str(path)!r} has no image HDU")
                return np.asarray(found.data, dtype=np.float64), found.header.copy()
            try:
                h = hdul[hdu]
            except (KeyError, IndexError):
                raise LocalDataError(f"{what}: {str(path)!r} has no HDU {hdu!r}") from None
            if h.data is None:
                raise LocalDataError(f"{what}: HDU {hdu!r} of {str(path)!r} holds no data")
            return np.asarray(h.data, dtype=np.float64), h.header.copy()
    except (OSError, ValueError, TypeError) as exc:
        # a file cut short fails only when its data are read, as a reshape ValueError
        raise LocalDataError(f"{what}: {str(path)!r} is not a readable FITS file; truncated "
                             f"or damaged? ({exc})") from exc


def _wcs(header: fits.Header) -> WCS | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception:  # a broken WCS is no WCS
            return None
    return wcs.celestial if wcs.has_celestial else None


class _Images:
    """Band images of one layout (files per band or a cube)."""

    def __init__(self, spec: Mapping, bands: list[str], what: str, *, hdu=None):
        self.spec = spec
        self.bands = bands
        self.what = what
        self.hdu = spec.get("hdu", hdu)
        self._cache: dict[str, tuple[np.ndarray, fits.Header]] = {}

    def band(self, band: str) -> tuple[np.ndarray, fits.Header]:
        if band in self._cache:
            return self._cache[band]
        files = self.spec.get("files") or {}
        if files:
            if band not in files:
                raise LocalDataError(
                    f"{self.what}: band {band!r} has no file; files are given for "
                    f"{sorted(files)}"
                )
            data, header = _open_image(_path(files[band], f"{self.what} ({band})"), self.hdu,
                                       f"{self.what} ({band})")
            if data.ndim != 2:
                raise LocalDataError(f"{self.what} ({band}): expected a 2-D image, got shape "
                                     f"{data.shape}")
        elif self.spec.get("cube"):
            path = _path(self.spec["cube"], self.what)
            cube, header = _open_image(path, self.hdu, self.what)
            if cube.ndim != 3:
                raise LocalDataError(f"{self.what}: {str(path)!r} is not a cube (band, y, x); "
                                     f"shape {cube.shape}")
            idx = self.bands.index(band)
            if idx >= cube.shape[0]:
                raise LocalDataError(
                    f"{self.what}: band {band!r} is plane {idx} but {str(path)!r} has only "
                    f"{cube.shape[0]} planes"
                )
            data = cube[idx]
        else:
            raise LocalDataError(f"{self.what}: give files (one per band) or a cube")
        self._cache[band] = (data, header)
        return data, header


# --------------------------------------------------------------------------- query


def query(config: Mapping) -> pd.DataFrame:
    """The object table of ``survey: local`` (see the module docstring)."""
    section = settings(config, "local")
    path = _path(section["objects"], "local.objects")
    table = _read_table(path)
    if table.empty:
        raise EmptyResultError(f"local.objects: {str(path)!r} has no rows")
    cols = {c.lower(): c for c in table.columns}

    def column(name: str | None, key: str, required: bool = True):
        if name is None:
            return None
        if name in table.columns:
            return table[name]
        if name.lower() in cols:
            return table[cols[name.lower()]]
        if required:
            raise LocalDataError(f"local.{key}: column {name!r} is not in {str(path)!r} "
                                 f"(columns: {list(table.columns)})")
        return None

    out = pd.DataFrame(index=table.index)
    ids = column(section["id_column"], "id_column")
    if ids is None:
        out["object_id"] = np.arange(1, len(table) + 1, dtype=np.int64)
    elif pd.api.types.is_integer_dtype(ids):
        out["object_id"] = ids.astype(np.int64)
        out["source_id"] = ids.astype(str)
    else:
        out["object_id"] = [_stable_id(str(v)) for v in ids]
        out["source_id"] = ids.astype(str)
    if (out["object_id"] < 1).any():
        raise LocalDataError("local.id_column: integer ids must be >= 1")
    if out["object_id"].duplicated().any():
        dup = out.loc[out["object_id"].duplicated(), "object_id"].head(5).tolist()
        raise LocalDataError(f"local.id_column: ids are not unique (e.g. {dup})")
    xcol, ycol = section["x_column"], section["y_column"]
    if xcol or ycol:
        if not (xcol and ycol):
            raise LocalDataError("local: give both x_column and y_column, or neither")
        origin = int(section["pixel_origin"])
        out["x"] = column(xcol, "x_column").astype(float) - origin
        out["y"] = column(ycol, "y_column").astype(float) - origin
        wcs, what = _mosaic_wcs(section)
        if wcs is None:
            raise LocalDataError(
                f"{what} has no WCS: RA/Dec cannot be computed from local.x_column/y_column"
            )
        ra, dec = wcs.pixel_to_world_values(out["x"].to_numpy(), out["y"].to_numpy())
        out["ra"], out["dec"] = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    else:
        out["ra"] = column(section["ra_column"], "ra_column").astype(float)
        out["dec"] = column(section["dec_column"], "dec_column").astype(float)
    zc = column(section["z_column"], "z_column")
    out["z"] = zc.astype(float) if zc is not None else np.nan
    for name in section["columns"]:
        out[name] = column(name, "columns").to_numpy()
    bad = ~(np.isfinite(out["ra"]) & np.isfinite(out["dec"]))
    if bad.any():
        raise LocalDataError(f"local.objects: {int(bad.sum())} row(s) without a finite position "
                             f"(object ids {out.loc[bad, 'object_id'].head(5).tolist()})")
    out = assign_shards(out.reset_index(drop=True),
                        settings(config, "sharding")["objects_per_shard"])
    first = ["object_id", "ra", "dec", "z", "shard"]
    return out[first + [c for c in out.columns if c not in first]]


def _mosaic_wcs(section: Mapping) -> tuple[WCS | None, str]:
    images = section["images"]
    if images.get("kind", "mosaic") != "mosaic":
        raise LocalDataError("local: x_column/y_column need images.kind: mosaic")
    bands = list(section["bands"])
    img = _Images(images, bands, "local.images")
    _, header = img.band(bands[0])
    return _wcs(header), f"local.images ({bands[0]})"


# --------------------------------------------------------------------------- cutouts


def _factor(section: Mapping, header: fits.Header, scale: float, what: str) -> float:
    zp = section.get("zeropoint")
    if zp is not None:
        return float(10 ** (-0.4 * (float(zp) - _cutting.ZEROPOINT)))
    bunit = header.get("BUNIT")
    if not bunit:
        raise LocalDataError(f"{what}: no BUNIT in the header and no local.zeropoint in the "
                             "config; say what the pixel values are")
    return _cutting.nanomaggy_factor(str(bunit), scale, what=what)


def _noise(values: np.ndarray | None, kind: str) -> np.ndarray | None:
    if values is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(values > 0, 1.0 / np.sqrt(values), np.nan)
        if kind == "variance":
            return np.where(values >= 0, np.sqrt(values), np.nan)
    return values


def _psfs(section: Mapping, bands: list[str], scale: float, size: int) -> np.ndarray:
    spec = section.get("psf") or {}
    if spec.get("files") or spec.get("cube"):
        imgs = _Images(spec, bands, "local.psf")
        return np.stack([_cutting.stamp(imgs.band(b)[0], size, centre="peak") for b in bands])
    fwhm = spec.get("fwhm_arcsec")
    if fwhm is None:
        raise LocalDataError("local.psf: give files, a cube, or fwhm_arcsec")
    if isinstance(fwhm, Mapping):
        missing = [b for b in bands if b not in fwhm]
        if missing:
            raise LocalDataError(f"local.psf.fwhm_arcsec: no value for band(s) {missing}")
        return np.stack([_cutting.gaussian_psf(float(fwhm[b]), scale, size) for b in bands])
    return np.stack([_cutting.gaussian_psf(float(fwhm), scale, size) for _ in bands])



def _cut_or_none(arrays, wcs, row, size: int, what: str, off_image: str):
    """Cut ``arrays`` around the row's RA/Dec; None for an object wholly off the
    image when ``off_image`` is 'mask' (it stays fully masked), else a clear error."""
    try:
        return _cutting.cut_arrays(arrays, wcs, float(row["ra"]), float(row["dec"]), size,
                                   what=what)
    except _cutting.OffImageError as exc:
        if off_image != "mask":
            raise LocalDataError(str(exc)) from None
        log.warning("%s; kept fully masked", exc)
        return None

def cutouts(rows: pd.DataFrame, config: Mapping) -> CutoutBatch:
    """Cutouts of ``rows`` in every ``local.bands`` band (see the module docstring)."""
    section = settings(config, "local")
    bands = list(section["bands"])
    size = int(section["cutout_size"])
    psf_size = int(section["psf_stamp_size"])
    off_image = settings(config, "archive")["off_image"]
    images_spec = section["images"]
    kind = images_spec["kind"]
    noise_spec = section["noise"]
    noise_kind = noise_spec.get("kind", "sigma")  # filled only when noise maps are given
    rows = rows.sort_values("object_id").reset_index(drop=True)
    if rows.empty:
        raise EmptyResultError("local cutouts: no rows given")
    n, nb = len(rows), len(bands)
    image = np.full((n, nb, size, size), np.nan, dtype=np.float32)
    sigma = np.full_like(image, np.nan)
    mask = np.ones(image.shape, dtype=bool)
    partial: list[str] = []
    estimated: list[str] = []
    configured_scale = section["pixel_scale"]
    scale = configured_scale
    if kind == "mosaic":
        imgs = _Images(images_spec, bands, "local.images")
        noises = _Images(noise_spec, bands, "local.noise") if (
            noise_spec.get("files") or noise_spec.get("cube")) else None
        for b in bands:  # every band present before any cutting: a missing one is named first
            imgs.band(b)
            if noises is not None:
                noises.band(b)
        for j, b in enumerate(bands):
            data, header = imgs.band(b)
            wcs = _wcs(header)
            where = (images_spec.get("files") or {}).get(b) or images_spec.get("cube")
            if wcs is None:
                raise LocalDataError(f"local.images ({b}): {where!r} has no celestial WCS; a "
                                     "mosaic must have one to cut objects by RA/Dec")
            bscale = float(scale) if scale else _cutting.pixel_scale_arcsec(wcs)
            scale = scale or bscale
            factor = _factor(section, header, bscale, f"local.images ({b})")
            noise = _noise(noises.band(b)[0], noise_kind) if noises else None
            if noise is not None and noise.shape != data.shape:
                raise LocalDataError(f"local.noise ({b}): shape {noise.shape} differs from the "
                                     f"image {data.shape}")
            arrays = [data] + ([noise] if noise is not None else [])
            for i, row in rows.iterrows():
                what = f"local object {int(row['object_id'])} ({b} band, {where})"
                cut = _cut_or_none(arrays, wcs, row, size, what, off_image)
                if cut is None:
                    continue
                if cut.partial:
                    partial.append(f"{int(row['object_id'])} ({b})")
                _store(i, j, cut.arrays[0] * factor,
                       cut.arrays[1] * factor if noise is not None else None,
                       cut.mask, image, sigma, mask, estimated, what)
    elif kind == "cutouts":
        pattern = images_spec.get("pattern")
        if not pattern or "{object_id}" not in pattern:
            raise LocalDataError("local.images.pattern must contain {object_id}")
        scale = None  # the cutouts' own: from each WCS, or local.pixel_scale without one
        for i, row in rows.iterrows():
            oid = int(row["object_id"])
            sid = str(row.get("source_id", oid))
            for j, b in enumerate(bands):
                what = f"local object {oid} ({b} band)"
                data, header = _cutout_file(pattern, oid, sid, b, bands, images_spec.get("hdu"),
                                            what)
                noise = None
                if noise_spec.get("pattern"):
                    noise, _ = _cutout_file(noise_spec["pattern"], oid, sid, b, bands,
                                            noise_spec.get("hdu"), f"{what} noise")
                    noise = _noise(noise, noise_kind)
                wcs = _wcs(header)
                if wcs is not None:
                    bscale = _cutting.pixel_scale_arcsec(wcs)
                    scale = _one_scale(scale, bscale, what)
                    arrays = [data] + ([noise] if noise is not None else [])
                    cut = _cut_or_none(arrays, wcs, row, size, what, off_image)
                    if cut is None:
                        continue
                    if cut.partial:
                        partial.append(f"{oid} ({b})")
                    img, nz, m = cut.arrays[0], cut.arrays[1] if noise is not None else None, \
                        cut.mask
                else:
                    # never another cutout's scale: only the one the user set
                    if not configured_scale:
                        raise LocalDataError(
                            f"{what}: the cutout has no WCS and local.pixel_scale is not set"
                        )
                    bscale = float(configured_scale)
                    scale = _one_scale(scale, bscale, what)
                    img = _centre(data, size)
                    nz = _centre(noise, size) if noise is not None else None
                    m = ~np.isfinite(img) | (~np.isfinite(nz) if nz is not None else False)
                factor = _factor(section, header, bscale, what)
                _store(i, j, img * factor, nz * factor if nz is not None else None, m,
                       image, sigma, mask, estimated, what)
    else:
        raise LocalDataError(f"local.images.kind must be mosaic or cutouts, not {kind!r}")
    if not scale:
        raise LocalDataError("local: no pixel scale (no WCS and no local.pixel_scale)")
    warn_partial("local", partial)
    if estimated:
        warnings.warn(
            f"local: no noise map; the noise of {len(estimated)} cutout(s) is estimated from "
            "the pixels' median absolute deviation (background only)", stacklevel=2)
    psf = _psfs(section, bands, float(scale), psf_size)
    return CutoutBatch(
        object_id=rows["object_id"].to_numpy(np.int64), image=image, sigma=sigma, mask=mask,
        psf=psf, bands=bands, pixel_scale=float(scale), zeropoints=[_cutting.ZEROPOINT] * nb,
        flux_unit="nanomaggy", survey="local",
    )


def _one_scale(scale: float | None, this: float, what: str) -> float:
    """The shard's pixel scale: every cutout of a shard must share one (arcsec/pixel)."""
    if scale is not None and not math.isclose(this, float(scale), rel_tol=1e-3):
        raise LocalDataError(f"{what}: pixel scale {this:.5g} arcsec differs from the "
                             f"{float(scale):.5g} arcsec of the other cutouts; resample the "
                             "cutouts to one scale (a shard has one pixel scale)")
    return float(this if scale is None else scale)


def _store(i, j, img, noise, m, image, sigma, mask, estimated, what) -> None:
    if noise is None:
        good = img[np.isfinite(img) & ~m]
        if good.size < 10:
            raise LocalDataError(f"{what}: too few valid pixels to estimate the noise")
        scatter = nmad(good)
        noise = np.full(img.shape, scatter if scatter > 0 else np.nan)
        estimated.append(what)
    image[i, j] = img
    sigma[i, j] = noise
    mask[i, j] = m | ~np.isfinite(img) | ~(noise > 0)


def _cutout_file(pattern: str, oid: int, sid: str, band: str, bands: list[str], hdu,
                 what: str) -> tuple[np.ndarray, fits.Header]:
    name = pattern.format(object_id=oid, source_id=sid, band=band)
    path = _path(name, what)
    data, header = _open_image(path, hdu, what)
    if data.ndim == 3 and "{band}" not in pattern:
        idx = bands.index(band)
        if idx >= data.shape[0]:
            raise LocalDataError(f"{what}: band {band!r} is plane {idx} but {name!r} has only "
                                 f"{data.shape[0]} planes")
        data = data[idx]
    if data.ndim != 2:
        raise LocalDataError(f"{what}: {name!r} has shape {data.shape}, not an image")
    return data, header


def _centre(data: np.ndarray, size: int) -> np.ndarray:
    """Crop or NaN-pad ``data`` to ``size`` x ``size`` around its centre."""
    out = np.full((size, size), np.nan)
    ny, nx = data.shape
    sy, sx = (ny - size) // 2, (nx - size) // 2
    ys, xs = slice(max(0, sy), max(0, sy) + min(size, ny)), slice(max(0, sx), max(0, sx) + min(size, nx))
    oy, ox = max(0, -sy), max(0, -sx)
    block = data[ys, xs]
    out[oy:oy + block.shape[0], ox:ox + block.shape[1]] = block
    return out
