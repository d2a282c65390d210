"""``survey: local``: your own FITS images, with a table of objects or none.

Objects (``local.objects``)
    A table (CSV, Parquet or FITS) giving each object's position as ``ra``/``dec``
    (degrees) or as ``x``/``y`` pixels on the mosaic (``local.x_column``/
    ``local.y_column``, origin ``local.pixel_origin``), optionally an id, a redshift, a
    radius that sets the cutout size (``local.radius_column``) and extra columns to
    carry along; or ``detect``: no table, the objects are detected on the mosaics
    (`galcat.detection`, the ``detect`` rule) and `query` reads its table
    (`DETECTION_COLUMNS`).

Images (``local.images``)
    ``kind: mosaic``: large images, one FITS file per band (``files: {band: path}``) or
    one cube (``cube: path``, bands along the first axis in the order of ``bands``). A
    mosaic with a celestial WCS is cut around each object's RA/Dec (each band through
    its own WCS); one without works in pixels (**pixel-only mode**: set
    ``local.pixel_scale``; objects by pixel columns or by detection; RA/Dec are NaN and
    every band must share one pixel grid). Pixels are read lazily (``hdu.section``),
    so a job holds its cutouts, never whole mosaics.
    ``kind: cutouts``: ready-made cutouts, one file per object and band or one cube per
    object, named by ``pattern`` with ``{object_id}`` (and ``{band}``) placeholders. A
    cutout with a WCS is re-cut around the object; one without is used as delivered,
    centred, and padded or cropped to the object's size.

Units (`galcat.surveys._cutting.pixel_unit`)
    Pixel values become nanomaggies with ``local.zeropoint`` (one number or one per
    band) or, if it is null, from each image's header: a physical BUNIT (nanomaggy, Jy
    and its multiples, MJy/sr) or a detector one (electrons, counts, DN, per exposure
    or per second) with the header's zero point (PHOTFLAM/PHOTPLAM, PHOTMJSR, FLUXMAG0,
    MAGZERO, MAGZPT, PHOTZPT). A header that says neither is an error naming what to set.

Noise, masks and sky
    Optional noise maps (``local.noise``: sigma, variance or ivar, same layout). Without
    them the noise is the sky's scatter in each cutout (`galcat.segment.estimate_sky`)
    plus, for images in electrons (or counts with GAIN; per second with EXPTIME), the
    sources' Poisson noise. Optional masks (``local.mask``: bad-pixel maps, good-pixel
    maps or weight maps where weight 0 is bad; one file for every band or one per
    band). ``local.sky: cutout`` (default) subtracts from each cutout its own
    source-masked, sigma-clipped sky; ``none`` takes the images as sky-subtracted.

Cutout sizes
    An object with a radius (``local.radius_column``, or the detection's Kron radius)
    is cut at ``local.cutout_radii`` radii (an even side within
    ``local.cutout_bounds``), the others at ``local.cutout_size``; a shard's stamps
    take its largest side and each object keeps its own (`galcat.store`).

PSFs (``local.psf``)
    A file per band or a cube, or a Gaussian of ``fwhm_arcsec``.

Errors name what is wrong and what to set: a missing file, a band missing from the
files or cube, a mosaic without a WCS and without ``pixel_scale``, a unit without a
zero point, an object off the image.

Bad objects
    A fault of one object (its cutout file unreadable, truncated, with a broken header
    or without a WCS; too few valid pixels for its sky) loses neither the object nor
    the shard: with ``local.bad_object: mask`` (default) the object stays, fully masked
    in that band, and a warning names it and the file (`_Shard.skip`). A band in which
    every object of a shard fails stops the shard: that is the configuration's fault.
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
from galcat.segment import estimate_sky, mesh_background, psf_fwhm_pixels
from galcat.sharding import assign_shards
from galcat.store import CutoutBatch
from galcat.surveys import _cutting
from galcat.surveys._http import EmptyResultError, warn_partial
from galcat.tables import read_table

__all__ = [
    "COLUMN_DESCRIPTIONS",
    "mosaic_config",
    "COLUMN_UNITS",
    "DETECT",
    "DETECTION_COLUMNS",
    "LocalDataError",
    "OffImageObjectError",
    "LocalImages",
    "cutout_sides",
    "cutouts",
    "query",
]

log = logging.getLogger("galcat.surveys.local")

#: ``local.objects`` value that detects the objects on the mosaics.
DETECT = "detect"

#: Columns of the detection table (`galcat.detection`): name -> (unit, description).
#: ``{band}`` columns come once per band of the survey.
DETECTION_COLUMNS: dict[str, tuple[str, str]] = {
    "object_id": ("", "stable id from the position: a hash of RA/Dec rounded to 1e-6 deg "
                      "(of x/y rounded to 0.01 pixel without a WCS)"),
    "source_id": ("", "the position as a name: JHHMMSS.ss+DDMMSS.s, or Xxxxx.xxYyyyy.yy "
                      "without a WCS"),
    "ra": ("deg", "right ascension of the detection-image centroid; NaN without a WCS"),
    "dec": ("deg", "declination of the detection-image centroid; NaN without a WCS"),
    "x": ("pix", "0-based x pixel of the centroid on the mosaic of detect_band"),
    "y": ("pix", "0-based y pixel of the centroid on the mosaic of detect_band"),
    "z": ("", "redshift: NaN (detection gives none)"),
    "kron_radius": ("pix", "Kron (first-moment) radius, circularised, in mosaic pixels; the "
                           "Kron aperture is 2.5 times it (photutils SourceCatalog)"),
    "radius_pix": ("pix", "the radius that sets the cutout size (the Kron radius)"),
    "r50_detect": ("pix", "radius holding half the Kron flux in the detection image"),
    "point_source": ("", "True when r50_detect is below local.detection.point_source_ratio "
                         "times the PSF's half-light radius measured alike: a star or "
                         "an unresolved galaxy"),
    "size_ratio": ("", "r50_detect over the PSF's half-light radius measured alike"),
    "area_detect": ("pix2", "pixels of the deblended segment in the detection image"),
    "ellipticity_detect": ("", "1 - b/a from the segment's second moments in the detection image"),
    "flux_detect": ("nanomaggy", "Kron flux in the detection image (detect_band)"),
    "flux_err_detect": ("nanomaggy", "1-sigma error of flux_detect"),
    "snr_detect": ("", "flux_detect / flux_err_detect"),
    "flux_{band}": ("nanomaggy", "Kron flux in band {band}, in the detection image's "
                                 "aperture"),
    "flux_err_{band}": ("nanomaggy", "1-sigma error of flux_{band}"),
    "det_flag": ("", "bit word of galcat.flags.DetectFlag"),
}

COLUMN_UNITS = {"object_id": "", "shard": "", "ra": "deg", "dec": "deg", "z": "",
                "source_id": "", "x": "pix", "y": "pix", "radius_pix": "pix"}
COLUMN_DESCRIPTIONS = {
    "object_id": "galcat object id: local.id_column if integer, else a stable hash of it, "
                 "else the row number + 1 (detection: a hash of the position)",
    "shard": "shard holding the object (rank of its id in ascending order)",
    "ra": "right ascension; NaN in pixel-only mode (no celestial WCS)",
    "dec": "declination; NaN in pixel-only mode (no celestial WCS)",
    "z": "redshift from local.z_column (NaN without one)",
    "source_id": "the id of the input table, as a string",
    "x": "0-based x pixel of the object on the mosaic",
    "y": "0-based y pixel of the object on the mosaic",
    "radius_pix": "radius setting the cutout size (local.radius_column or the detection's "
                  "Kron radius), mosaic pixels",
}
for _name, (_unit, _text) in DETECTION_COLUMNS.items():
    if "{band}" not in _name:
        COLUMN_UNITS.setdefault(_name, _unit)
        COLUMN_DESCRIPTIONS.setdefault(_name, _text)


class LocalDataError(ValueError):
    """The local table or images are not what the config says."""


class OffImageObjectError(LocalDataError):
    """An object wholly off its image under ``archive.off_image: error``: that policy,
    not ``local.bad_object``, decides."""


# --------------------------------------------------------------------------- files
def _path(value: str, what: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise LocalDataError(f"{what}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise LocalDataError(f"{what}: {str(path)!r} is not a file")
    return path


def _read_objects(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        return pd.read_csv(path)
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return pd.read_parquet(path)
    if suffix.endswith((".fits", ".fit", ".fits.gz")):
        table = Table.read(path)
        names = [n for n in table.colnames if len(table[n].shape) <= 1]
        return table[names].to_pandas()
    raise LocalDataError(f"local.objects: {str(path)!r} is not .csv, .parquet or .fits "
                         f"(or set local.objects: {DETECT} to detect the objects)")


def stable_id(value: str) -> int:
    """A 62-bit id >= 1 from a string (the same string, the same id, in any run)."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2 or 1


def _wcs(header: fits.Header) -> WCS | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception:  # a broken WCS is no WCS
            return None
    return wcs.celestial if wcs.has_celestial else None


class _Plane:
    """One 2-D image of a FITS file, read lazily: indexing with two slices reads
    only those pixels (``hdu.section``), as float64."""

    def __init__(self, hdu, path: Path, what: str, index: int | None = None):
        self._hdu, self.path, self.what, self._index = hdu, path, what, index
        self.shape = tuple(int(n) for n in (hdu.shape if index is None else hdu.shape[1:]))
        self.ndim = 2

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        try:
            data = self._hdu.section[key if self._index is None else (self._index, *key)]
        except (OSError, ValueError, TypeError, IndexError) as exc:
            # a file cut short fails only when its pixels are read
            raise LocalDataError(f"{self.what}: {str(self.path)!r} cannot be read; truncated "
                                 f"or damaged? ({exc})") from exc
        return np.asarray(data, dtype=np.float64)

    def read(self) -> np.ndarray:
        """The whole plane."""
        return self[:, :]


def _open_hdu(path: Path, hdu, what: str):
    """``(hdulist, hdu)`` of the image HDU of ``path`` (memory-mapped, headers only)."""
    try:
        # memory-mapped where astropy can (memmap left to its default): an explicit
        # memmap=True makes it refuse the integer images scaled by BSCALE/BZERO that
        # HST and ground-based pipelines write
        hdul = fits.open(path, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError) as exc:
        raise LocalDataError(f"{what}: {str(path)!r} is not a readable FITS file; truncated "
                             f"or damaged? ({exc})") from exc
    if hdu is None:
        found = next((h for h in hdul if getattr(h, "shape", ()) and len(h.shape) >= 2
                      and h.is_image), None)
        if found is None:
            hdul.close()
            raise LocalDataError(f"{what}: {str(path)!r} has no image HDU")
        return hdul, found
    try:
        found = hdul[hdu]
    except (KeyError, IndexError):
        hdul.close()
        raise LocalDataError(f"{what}: {str(path)!r} has no HDU {hdu!r}") from None
    if not getattr(found, "shape", ()):
        hdul.close()
        raise LocalDataError(f"{what}: HDU {hdu!r} of {str(path)!r} holds no data")
    return hdul, found


def _open_image(path: Path, hdu, what: str) -> tuple[np.ndarray, fits.Header]:
    """The whole image of a small file (a cutout, a PSF) and its header."""
    hdul, found = _open_hdu(path, hdu, what)
    with hdul:
        try:
            data = np.asarray(found.data, dtype=np.float64)
        except (OSError, ValueError, TypeError) as exc:
            raise LocalDataError(f"{what}: {str(path)!r} is not a readable FITS file; "
                                 f"truncated or damaged? ({exc})") from exc
        return data, found.header.copy()


class LocalImages:
    """The band planes of one ``local`` layout (files per band, one file, or a cube),
    read lazily.

    Parameters
    ----------
    spec : mapping
        ``local.images``, ``local.noise`` or ``local.mask``.
    bands : list of str
    what : str
        Names the layout in errors (``local.images``).
    """

    def __init__(self, spec: Mapping, bands: list[str], what: str):
        self.spec = spec
        self.bands = bands
        self.what = what
        self._files: list = []
        self._cache: dict[str, tuple[_Plane, fits.Header]] = {}

    @property
    def given(self) -> bool:
        return bool(self.spec.get("files") or self.spec.get("cube") or self.spec.get("file"))

    def path(self, band: str) -> str:
        files = self.spec.get("files") or {}
        return files.get(band) or self.spec.get("file") or self.spec.get("cube")

    def band(self, band: str) -> tuple[_Plane, fits.Header]:
        """``(plane, header)`` of ``band``; a clear error when it has none."""
        if band in self._cache:
            return self._cache[band]
        what = f"{self.what} ({band})"
        files = self.spec.get("files") or {}
        hdu = self.spec.get("hdu")
        if files or self.spec.get("file"):
            if files and band not in files:
                raise LocalDataError(f"{self.what}: band {band!r} has no file; files are "
                                     f"given for {sorted(files)}")
            path = _path(files.get(band) or self.spec["file"], what)
            hdul, found = _open_hdu(path, hdu, what)
            if len(found.shape) != 2:
                hdul.close()
                raise LocalDataError(f"{what}: expected a 2-D image, got shape {found.shape}")
            plane = _Plane(found, path, what)
        elif self.spec.get("cube"):
            path = _path(self.spec["cube"], self.what)
            hdul, found = _open_hdu(path, hdu, self.what)
            if len(found.shape) != 3:
                hdul.close()
                raise LocalDataError(f"{self.what}: {str(path)!r} is not a cube (band, y, x); "
                                     f"shape {found.shape}")
            idx = self.bands.index(band)
            if idx >= found.shape[0]:
                hdul.close()
                raise LocalDataError(
                    f"{self.what}: band {band!r} is plane {idx} but {str(path)!r} has only "
                    f"{found.shape[0]} planes")
            plane = _Plane(found, path, what, idx)
        else:
            raise LocalDataError(f"{self.what}: give files (one per band) or a cube")
        self._files.append(hdul)
        self._cache[band] = (plane, found.header)
        return self._cache[band]

    def close(self) -> None:
        for hdul in self._files:
            hdul.close()
        self._files.clear()
        self._cache.clear()

    def __enter__(self) -> LocalImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- values
def band_zeropoint(section: Mapping, band: str) -> float | None:
    """``local.zeropoint`` of ``band`` (one number for all bands, or one per band)."""
    zp = section["zeropoint"]
    if isinstance(zp, Mapping):
        if band not in zp:
            raise LocalDataError(f"local.zeropoint: no value for band {band!r}; give one per "
                                 f"band ({sorted(zp)} given) or one number")
        return float(zp[band])
    return None if zp is None else float(zp)


def pixel_unit(section: Mapping, header, band: str, scale: float, what: str
               ) -> _cutting.PixelUnit:
    """`galcat.surveys._cutting.pixel_unit` of one image, as a `LocalDataError`."""
    try:
        return _cutting.pixel_unit(header, pixel_scale=scale,
                                   zeropoint=band_zeropoint(section, band), what=what)
    except ValueError as exc:
        raise LocalDataError(str(exc)) from None


def image_scale(section: Mapping, wcs: WCS | None, what: str) -> float:
    """Arcsec per pixel: the WCS's, else ``local.pixel_scale`` (images without one)."""
    if wcs is not None:
        return _cutting.pixel_scale_arcsec(wcs)
    if section["pixel_scale"]:
        return float(section["pixel_scale"])
    raise LocalDataError(f"{what} has no celestial WCS: set local.pixel_scale (arcsec per "
                         "pixel) to work in pixels (RA/Dec are then NaN), or add a WCS")


def mask_of(values: np.ndarray, kind: str) -> np.ndarray:
    """Bad pixels (True) of a mask map of ``kind`` (bad, good or weight)."""
    with np.errstate(invalid="ignore"):
        if kind == "good":
            return ~(np.isfinite(values) & (values != 0))
        if kind == "weight":
            return ~(np.isfinite(values) & (values > 0))
        return ~np.isfinite(values) | (values != 0)


def noise_of(values: np.ndarray | None, kind: str) -> np.ndarray | None:
    """1-sigma noise from a noise map of ``kind`` (sigma, variance or ivar)."""
    if values is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(values > 0, 1.0 / np.sqrt(values), np.nan)
        if kind == "variance":
            return np.where(values >= 0, np.sqrt(values), np.nan)
    return values


def _psfs(section: Mapping, bands: list[str], scale: float, size: int) -> np.ndarray:
    spec = section["psf"]
    if spec.get("files") or spec.get("cube"):
        with LocalImages(spec, bands, "local.psf") as imgs:
            return np.stack([_cutting.stamp(imgs.band(b)[0].read(), size, centre="peak")
                             for b in bands])
    fwhm = spec.get("fwhm_arcsec")
    if fwhm is None:
        raise LocalDataError("local.psf: give files, a cube, or fwhm_arcsec")
    if isinstance(fwhm, Mapping):
        missing = [b for b in bands if b not in fwhm]
        if missing:
            raise LocalDataError(f"local.psf.fwhm_arcsec: no value for band(s) {missing}")
        return np.stack([_cutting.gaussian_psf(float(fwhm[b]), scale, size) for b in bands])
    return np.stack([_cutting.gaussian_psf(float(fwhm), scale, size) for _ in bands])


def psf_stamps(section: Mapping, bands: list[str], scale: float) -> np.ndarray:
    """The PSF stamp of every band, (band, py, px), unit sum, at ``scale`` arcsec/pixel."""
    return _psfs(section, bands, scale, int(section["psf_stamp_size"]))


def cutout_sides(section: Mapping, radius: np.ndarray | None) -> np.ndarray:
    """Cutout side of each object: ``cutout_radii`` x its radius (pixels), rounded up to
    an even number within ``cutout_bounds``; ``cutout_size`` for all when there are no
    radii or ``cutout_radii`` is 0, and for an object whose radius is not finite
    (rounded up to even when the others are sized)."""
    fixed = int(section["cutout_size"])
    factor = float(section["cutout_radii"])
    if radius is None or factor <= 0:
        return np.full(0 if radius is None else len(radius), fixed, dtype=np.int32)
    radius = np.asarray(radius, dtype=np.float64)
    low, high = (int(section["cutout_bounds"][k]) for k in ("min", "max"))
    even = lambda v: v + (v % 2)  # noqa: E731
    with np.errstate(invalid="ignore"):
        side = np.ceil(factor * radius)
    side = np.where(np.isfinite(side), side, fixed)
    side = np.clip(side, even(low), high - (high % 2)).astype(np.int64)
    return np.asarray([even(int(v)) for v in side], dtype=np.int32)


# --------------------------------------------------------------------------- query
def query(config: Mapping, *, detections: str | Path | None = None) -> pd.DataFrame:
    """The object table of ``survey: local`` (see the module docstring).

    ``detections`` is the detection table (`galcat.detection.detect_mosaic`'s), read
    when ``local.objects`` is ``detect``.
    """
    section = settings(config, "local")
    if section["objects"] == DETECT:
        out = _detected_objects(section, detections)
    else:
        out = _table_objects(section)
    bad = ~((np.isfinite(out["ra"]) & np.isfinite(out["dec"]))
            | (np.isfinite(out.get("x", np.nan)) & np.isfinite(out.get("y", np.nan))))
    if bad.any():
        raise LocalDataError(f"local.objects: {int(bad.sum())} row(s) without a finite position "
                             f"(object ids {out.loc[bad, 'object_id'].head(5).tolist()})")
    out = assign_shards(out.reset_index(drop=True),
                        settings(config, "sharding")["objects_per_shard"])
    first = ["object_id", "ra", "dec", "z", "shard"]
    return out[first + [c for c in out.columns if c not in first]]


def _detected_objects(section: Mapping, detections) -> pd.DataFrame:
    if detections is None:
        raise LocalDataError(
            f"local.objects: {DETECT} reads the table of the detect rule; run the workflow "
            "(snakemake) or `galcat detect` first and pass its output")
    table = read_table(detections)
    if table.empty:
        raise EmptyResultError(f"local detection: {str(detections)!r} has no objects; lower "
                               "local.detection.nsigma or check the images")
    return table


def _table_objects(section: Mapping) -> pd.DataFrame:
    path = _path(section["objects"], "local.objects")
    table = _read_objects(path)
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
        out["object_id"] = [stable_id(str(v)) for v in ids]
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
            image_scale(section, None, what)  # pixel-only mode needs local.pixel_scale
            out["ra"], out["dec"] = np.nan, np.nan
        else:
            ra, dec = wcs.pixel_to_world_values(out["x"].to_numpy(), out["y"].to_numpy())
            out["ra"], out["dec"] = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    else:
        out["ra"] = column(section["ra_column"], "ra_column").astype(float)
        out["dec"] = column(section["dec_column"], "dec_column").astype(float)
    zc = column(section["z_column"], "z_column")
    out["z"] = zc.astype(float) if zc is not None else np.nan
    radius = column(section["radius_column"], "radius_column")
    if radius is not None:
        out["radius_pix"] = radius.astype(float)
    for name in section["columns"]:
        out[name] = column(name, "columns").to_numpy()
    return out


def _mosaic_wcs(section: Mapping) -> tuple[WCS | None, str]:
    images = section["images"]
    if images.get("kind", "mosaic") != "mosaic":
        raise LocalDataError("local: x_column/y_column need images.kind: mosaic")
    bands = list(section["bands"])
    with LocalImages(images, bands, "local.images") as imgs:
        _, header = imgs.band(bands[0])
        return _wcs(header), f"local.images ({bands[0]}, {imgs.path(bands[0])})"


# --------------------------------------------------------------------------- cutouts
class _Shard:
    """The arrays of one batch of cutouts, filled object by object and band by band."""

    def __init__(self, ids: np.ndarray, bands: list[str], sides: np.ndarray,
                 section: Mapping):
        n = len(ids)
        self.box = int(section["detection"]["background_box"])
        self.filter_size = int(section["detection"]["background_filter"])
        self.ids, self.bands = ids, bands
        self.side = int(sides.max())
        self.sides = sides
        shape = (n, len(bands), self.side, self.side)
        self.image = np.full(shape, np.nan, dtype=np.float32)
        self.sigma = np.full_like(self.image, np.nan)
        self.mask = np.ones(shape, dtype=bool)
        self.origin = np.full((n, 2), np.nan)
        self.sky = np.full((n, 6), np.nan)
        self.partial: list[str] = []
        self.estimated: list[str] = []
        self.policy = section["bad_object"]
        self.failed: dict[str, list[str]] = {b: [] for b in bands}

    def skip(self, j: int, exc: LocalDataError) -> None:
        """One object's band that could not be cut (``exc`` names it): kept fully masked
        under ``local.bad_object: mask``, else raised."""
        if self.policy == "error" or isinstance(exc, OffImageObjectError):
            raise exc
        self.failed[self.bands[j]].append(str(exc))
        log.warning("%s; kept fully masked in this band (local.bad_object: mask)", exc)

    def check_failures(self) -> None:
        """Stop when every object failed in a band: the configuration, not an object,
        is wrong (a file pattern, a missing local.pixel_scale, ...)."""
        for band, messages in self.failed.items():
            if messages and len(messages) == len(self.ids):
                raise LocalDataError(f"local: every object of this shard failed in band "
                                     f"{band!r}; the first: {messages[0]}")

    def put(self, i: int, j: int, region: _cutting.Cut, size: int, noise_given: bool, unit,
            sky_mode: str, kernel_fwhm: float, what: str) -> None:
        """One object's cut in one band, the centre of ``region`` (the box of its local
        sky): sky, noise, units; centred in the stamp."""
        cut = region.centre(size)
        if cut.partial:
            self.partial.append(f"{int(self.ids[i])} ({self.bands[j]})")
        img = cut.arrays[0]
        noise = cut.arrays[1] if noise_given else None
        if sky_mode == "local" or noise is None:
            level, rms = self.sky_maps(region, noise_given, kernel_fwhm, what)
            inner = _centre_box(region.mask.shape[0], size)
            if sky_mode == "local":
                img = img - level[inner]
            rms = rms[inner]
        if noise is None:
            variance = rms * rms
            if unit.electrons:  # the sources' Poisson noise, in the image's unit
                variance += np.clip(np.nan_to_num(img), 0.0, None) / unit.electrons
            noise = np.sqrt(variance)
            self.estimated.append(what)
        lo = (self.side - img.shape[0]) // 2
        box = (i, j, slice(lo, lo + img.shape[0]), slice(lo, lo + img.shape[1]))
        self.image[box] = img * unit.factor
        self.sigma[box] = noise * unit.factor
        self.mask[box] = cut.mask | ~np.isfinite(img) | ~(noise > 0)
        if j == 0:  # the geometry of the first band (bands of a mosaic share a grid)
            self.origin[i] = np.asarray(cut.origin) - lo
            self.sky[i] = cut.sky

    def sky_maps(self, region: _cutting.Cut, noise_given: bool, kernel_fwhm: float,
                 what: str):
        """Sky and sky-RMS maps of the box around an object: a background mesh
        (`galcat.segment.mesh_background`, ``local.detection.background_box``) when the
        box holds a few meshes, else `galcat.segment.estimate_sky`'s constant."""
        valid = ~region.mask
        if np.count_nonzero(valid) < 16:
            raise LocalDataError(f"{what}: too few valid pixels to estimate the sky and noise")
        side = region.mask.shape[0]
        noise = region.arrays[1] if noise_given else None
        if side >= 2 * self.box:
            filt = self.filter_size if side >= self.filter_size * self.box else 1
            return mesh_background(region.arrays[0], valid, box=self.box, filter_size=filt,
                                   kernel_fwhm=kernel_fwhm, noise=noise)
        level, rms, _ = estimate_sky(region.arrays[0], noise, region.mask,
                                     kernel_fwhm=kernel_fwhm)
        if not rms > 0:
            raise LocalDataError(f"{what}: too few valid pixels to estimate the sky and noise")
        return np.full((side, side), level), np.full((side, side), rms)

    def batch(self, rows: pd.DataFrame, bands: list[str], psf: np.ndarray,
              scale: float) -> CutoutBatch:
        warn_partial("local", self.partial)
        if self.estimated:
            warnings.warn(
                f"local: no noise map; the noise of {len(self.estimated)} cutout(s) is the "
                "sky's scatter in the cutout (plus the sources' Poisson noise where the "
                "unit is electrons)", stacklevel=3)
        return CutoutBatch(
            object_id=rows["object_id"].to_numpy(np.int64), image=self.image,
            sigma=self.sigma, mask=self.mask, psf=psf, bands=bands, pixel_scale=float(scale),
            zeropoints=[_cutting.ZEROPOINT] * len(bands), flux_unit="nanomaggy",
            survey="local", cut_size=self.sides, cut_origin=self.origin, cut_wcs=self.sky,
        )


def _centre_box(side: int, size: int) -> tuple[slice, slice]:
    lo = (side - size) // 2
    return slice(lo, lo + size), slice(lo, lo + size)


def _sky_side(section: Mapping, size: int, noise_given: bool) -> int:
    """Side of the box read around an object: its cutout grown to ``local.sky_region``
    cutout sides (by whole pixels on each side, so that the cutout is its centre) when
    the sky or the noise is estimated locally."""
    if section["sky"] == "none" and noise_given:
        return size
    return size + 2 * int(round((float(section["sky_region"]) - 1.0) * size / 2.0))


def _cut_or_none(arrays, wcs, row, size: int, what: str, off_image: str, extra_mask=None,
                 grid: tuple[int, int] | None = None):
    """Cut ``arrays`` around the row: by RA/Dec through ``wcs``, else by its pixel x/y
    (pixel-only mode). None for an object wholly off the image when ``off_image`` is
    'mask' (it stays fully masked), else a clear error."""
    ra, dec = float(row["ra"]), float(row["dec"])
    try:
        if wcs is not None and np.isfinite(ra) and np.isfinite(dec):
            x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
            cut = _cutting.cut_pixels(arrays, x, y, size, what=what, extra_mask=extra_mask)
            centre = (size - 1) / 2.0
            cut.sky = _cutting.sky_geometry(wcs, cut.origin[0] + centre,
                                            cut.origin[1] + centre)
            return cut
        x, y = float(row.get("x", np.nan)), float(row.get("y", np.nan))
        if not (np.isfinite(x) and np.isfinite(y)):
            raise LocalDataError(f"{what}: the image has no celestial WCS and the object no "
                                 "pixel position (local.x_column/y_column, or detection)")
        if grid is not None and tuple(arrays[0].shape) != grid:
            raise LocalDataError(f"{what}: without a celestial WCS every band must share one "
                                 f"pixel grid; this image is {arrays[0].shape}, the first "
                                 f"band's {grid}")
        return _cutting.cut_pixels(arrays, x, y, size, what=what, extra_mask=extra_mask)
    except _cutting.OffImageError as exc:
        if off_image != "mask":
            raise OffImageObjectError(str(exc)) from None
        log.warning("%s; kept fully masked", exc)
        return None


def cutouts(rows: pd.DataFrame, config: Mapping) -> CutoutBatch:
    """Cutouts of ``rows`` in every ``local.bands`` band (see the module docstring)."""
    section = settings(config, "local")
    off_image = settings(config, "archive")["off_image"]
    rows = rows.sort_values("object_id").reset_index(drop=True)
    if rows.empty:
        raise EmptyResultError("local cutouts: no rows given")
    radius = rows["radius_pix"].to_numpy() if "radius_pix" in rows else None
    sides = cutout_sides(section, radius) if radius is not None else np.full(
        len(rows), int(section["cutout_size"]), np.int32)
    kind = section["images"]["kind"]
    if kind == "mosaic":
        return _mosaic_cutouts(rows, section, sides, off_image)
    if kind == "cutouts":
        return _file_cutouts(rows, section, sides, off_image)
    raise LocalDataError(f"local.images.kind must be mosaic or cutouts, not {kind!r}")


def _mosaic_cutouts(rows, section, sides, off_image) -> CutoutBatch:
    bands = list(section["bands"])
    shard = _Shard(rows["object_id"].to_numpy(), bands, sides, section)
    with (LocalImages(section["images"], bands, "local.images") as imgs,
          LocalImages(section["noise"], bands, "local.noise") as noises,
          LocalImages(section["mask"], bands, "local.mask") as masks):
        for b in bands:  # every band present before any cutting: a missing one is named first
            imgs.band(b)
            if noises.given:
                noises.band(b)
            if masks.given:
                masks.band(b)
        first, header0 = imgs.band(bands[0])
        scale = image_scale(section, _wcs(header0),
                            f"local.images ({bands[0]}, {imgs.path(bands[0])})")
        psf = psf_stamps(section, bands, scale)
        noise_kind, mask_kind = section["noise"].get("kind", "sigma"), section["mask"]["kind"]
        for j, b in enumerate(bands):
            data, header = imgs.band(b)
            wcs = _wcs(header)
            where = imgs.path(b)
            unit = pixel_unit(section, header, b, scale if wcs is None else
                              _cutting.pixel_scale_arcsec(wcs), f"local.images ({b}, {where})")
            log.info("local.images (%s): pixel unit from %s (x %.6g to nanomaggies)", b,
                     unit.source, unit.factor)
            arrays = [data]
            for maps, name in ((noises, "noise"), (masks, "mask")):
                if maps.given:
                    plane = maps.band(b)[0]
                    if plane.shape != data.shape:
                        raise LocalDataError(f"local.{name} ({b}): shape {plane.shape} differs "
                                             f"from the image {data.shape}")
                    arrays.append(plane)
            fwhm = psf_fwhm_pixels(psf[j])
            for i, row in rows.iterrows():
                what = f"local object {int(row['object_id'])} ({b} band, {where})"
                size = int(sides[i])
                try:
                    region = _cut_or_none(arrays, wcs, row,
                                          _sky_side(section, size, noises.given), what,
                                          off_image, grid=first.shape)
                    if region is None:
                        continue
                    if masks.given:
                        region.mask |= mask_of(region.arrays.pop(), mask_kind)
                    if noises.given:
                        region.arrays[1] = noise_of(region.arrays[1], noise_kind)
                    shard.put(i, j, region, size, noises.given, unit, section["sky"], fwhm,
                              what)
                except LocalDataError as exc:
                    shard.skip(j, exc)
    shard.check_failures()
    return shard.batch(rows, bands, psf, scale)


def _file_cutouts(rows, section, sides, off_image) -> CutoutBatch:
    bands = list(section["bands"])
    pattern = section["images"].get("pattern")
    if not pattern or "{object_id}" not in pattern and "{source_id}" not in pattern:
        raise LocalDataError("local.images.pattern must contain {object_id} or {source_id}")
    shard = _Shard(rows["object_id"].to_numpy(), bands, sides, section)
    scale = None  # the cutouts' own: from each WCS, or local.pixel_scale without one
    psf = None
    for i, row in rows.iterrows():
        oid = int(row["object_id"])
        sid = str(row.get("source_id", oid))
        size = int(sides[i])
        for j, b in enumerate(bands):
            name = pattern.format(object_id=oid, source_id=sid, band=b)
            what = f"local object {oid} ({b} band, {name})"
            try:
                scale, psf = _put_file_cutout(shard, i, j, row, pattern, sid, size, scale, psf,
                                              section, off_image, what)
            except LocalDataError as exc:
                shard.skip(j, exc)
    shard.check_failures()
    return shard.batch(rows, bands, psf, scale)


def _put_file_cutout(shard, i, j, row, pattern, sid, size, scale, psf, section, off_image,
                     what):
    """Read one object's cutout file in band ``j`` into ``shard``; returns the shard's
    (scale, psf), set by the first readable cutout."""
    bands, b, oid = shard.bands, shard.bands[j], int(row["object_id"])
    spec, noise_spec, mask_spec = section["images"], section["noise"], section["mask"]
    data, header = _cutout_file(pattern, oid, sid, b, bands, spec.get("hdu"), what)
    wcs = _wcs(header)
    if wcs is None and not section["pixel_scale"]:
        # never another cutout's scale: only the one the user set
        raise LocalDataError(f"{what}: the cutout has no WCS and local.pixel_scale is "
                             "not set")
    scale = _one_scale(scale, image_scale(section, wcs, what), what)
    if psf is None:
        psf = psf_stamps(section, bands, scale)
    arrays = [data]
    if noise_spec.get("pattern"):
        noise, _ = _cutout_file(noise_spec["pattern"], oid, sid, b, bands,
                                noise_spec.get("hdu"), f"{what} noise")
        arrays.append(noise_of(noise, noise_spec.get("kind", "sigma")))
    bad = None
    if mask_spec.get("pattern"):
        values, _ = _cutout_file(mask_spec["pattern"], oid, sid, b, bands,
                                 mask_spec.get("hdu"), f"{what} mask")
        bad = mask_of(values, mask_spec["kind"])
    if wcs is not None:
        cut = _cut_or_none(arrays, wcs, row, size, what, off_image, extra_mask=bad)
        if cut is None:
            return scale, psf
    else:
        cut = _centred(arrays, bad, size)
    unit = pixel_unit(section, header, b, scale, what)
    shard.put(i, j, cut, size, len(arrays) > 1, unit, section["sky"],
              psf_fwhm_pixels(psf[j]), what)
    return scale, psf


def _one_scale(scale: float | None, this: float, what: str) -> float:
    """The shard's pixel scale: every cutout of a shard must share one (arcsec/pixel)."""
    if scale is not None and not math.isclose(this, float(scale), rel_tol=1e-3):
        raise LocalDataError(f"{what}: pixel scale {this:.5g} arcsec differs from the "
                             f"{float(scale):.5g} arcsec of the other cutouts; resample the "
                             "cutouts to one scale (a shard has one pixel scale)")
    return float(this if scale is None else scale)


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
    ys = slice(max(0, sy), max(0, sy) + min(size, ny))
    xs = slice(max(0, sx), max(0, sx) + min(size, nx))
    oy, ox = max(0, -sy), max(0, -sx)
    block = data[ys, xs]
    out[oy:oy + block.shape[0], ox:ox + block.shape[1]] = block
    return out


def _centred(arrays, bad, size: int) -> _cutting.Cut:
    """A WCS-less cutout used as delivered: centred, cropped or padded to ``size``."""
    out = [_centre(np.asarray(a, dtype=np.float64), size) for a in arrays]
    mask = np.zeros((size, size), dtype=bool)
    for arr in out:
        mask |= ~np.isfinite(arr)
    if bad is not None:
        mask |= _centre(bad.astype(np.float64), size) != 0
    return _cutting.Cut(out, mask, None, False, ((size - 1) / 2.0, (size - 1) / 2.0))


# --------------------------------------------------------------------------- a config
def _per_band(values: Mapping[str, float] | float | None, bands: list[str], what: str):
    if values is None or not isinstance(values, Mapping):
        return values
    missing = [b for b in bands if b not in values]
    if missing:
        raise LocalDataError(f"{what}: no value for band(s) {missing}")
    return {b: float(values[b]) for b in bands}


def mosaic_config(
    images: Mapping[str, str],
    *,
    psf_fwhm: Mapping[str, float] | float | None = None,
    psf: Mapping[str, str] | None = None,
    pixel_scale: float | None = None,
    zeropoint: Mapping[str, float] | float | None = None,
    noise: Mapping[str, str] | None = None,
    noise_kind: str = "sigma",
    mask: str | None = None,
    mask_kind: str = "bad",
    detect_band: str = "auto",
    results: str = "results",
) -> dict:
    """A galcat config that detects and measures the objects of FITS mosaics.

    Every file is opened and checked as the run will read it: a 2-D image, a celestial
    WCS or ``pixel_scale`` (pixel-only mode), a pixel unit with a zero point (from the
    header or ``zeropoint``), and a PSF per band. What is missing is one error that
    says what to give.

    Parameters
    ----------
    images : mapping of band -> path
        One mosaic per band, in band order (blue to red: ``detect_band: auto`` takes the
        middle one when there is no r).
    psf_fwhm : float or mapping of band -> float, optional
        Gaussian PSF FWHM in arcsec (one for all bands, or one per band).
    psf : mapping of band -> path, optional
        PSF images instead (same pixel scale as the mosaics).
    pixel_scale : float, optional
        Arcsec per pixel, for mosaics without a celestial WCS.
    zeropoint : float or mapping of band -> float, optional
        AB magnitude of one pixel unit, where the header does not say it.
    noise, noise_kind : optional
        Noise maps per band and what they hold (sigma, variance, ivar).
    mask, mask_kind : optional
        One mask for every band and what it holds (bad, good, weight).
    detect_band, results : str
        As the config keys.

    Returns
    -------
    dict
        ``survey``, ``results``, ``detect_band`` and the ``local`` section.

    Raises
    ------
    LocalDataError
        A file that is missing or not an image, a mosaic without a WCS and no
        ``pixel_scale``, a unit without a zero point, no PSF.
    """
    bands = list(images)
    if not bands:
        raise LocalDataError("give at least one mosaic (band=path)")
    if psf_fwhm is None and not psf:
        raise LocalDataError("give the PSF: its FWHM in arcsec (--psf-fwhm 0.08, or one per "
                             "band: --psf-fwhm F200W=0.07 F444W=0.15) or PSF images (--psf)")
    def absolute(paths: Mapping[str, str]) -> dict[str, str]:
        # the run may start in another directory than this command
        return {b: str(Path(p).expanduser().resolve()) for b, p in paths.items()}

    section: dict = {
        "objects": DETECT, "bands": bands,
        "images": {"kind": "mosaic", "files": absolute(images)},
        "psf": ({"files": absolute(psf)} if psf else
                {"fwhm_arcsec": _per_band(psf_fwhm, bands, "--psf-fwhm")}),
        "zeropoint": _per_band(zeropoint, bands, "--zeropoint"),
        "pixel_scale": pixel_scale,
    }
    if noise:
        section["noise"] = {"kind": noise_kind, "files": absolute(noise)}
    if mask:
        section["mask"] = {"kind": mask_kind, "file": absolute({"": mask})[""]}
    checked = settings({"local": section}, "local")
    with LocalImages(checked["images"], bands, "local.images") as imgs:
        for b in bands:
            plane, header = imgs.band(b)
            wcs = _wcs(header)
            what = f"mosaic {imgs.path(b)} ({b})"
            try:
                scale = image_scale(checked, wcs, what)
            except LocalDataError:
                raise LocalDataError(f"{what} has no celestial WCS: give --pixel-scale (arcsec "
                                     "per pixel) to work in pixels") from None
            try:
                unit = _cutting.pixel_unit(header, pixel_scale=scale,
                                           zeropoint=band_zeropoint(checked, b), what=what)
            except ValueError as exc:
                raise LocalDataError(str(exc).replace("set local.zeropoint",
                                                      "give --zeropoint")) from None
            log.info("%s: %d x %d pixels, %s, %.4g arcsec/pixel, unit from %s", what,
                     plane.shape[1], plane.shape[0], "WCS" if wcs is not None else "no WCS",
                     scale, unit.source)
    for name, maps in (("noise", section.get("noise")), ("mask", section.get("mask"))):
        if maps:
            with LocalImages(settings({"local": section}, "local")[name], bands,
                             f"local.{name}") as planes:
                for b in bands:
                    planes.band(b)
    return {"survey": "local", "results": results, "detect_band": detect_band,
            "local": {k: v for k, v in section.items() if v is not None}}
