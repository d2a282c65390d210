"""Detection on whole mosaics: the object table of ``survey: local`` without a catalogue.

`detect_mosaic` finds the sources of the ``local`` mosaics (``local.objects: detect``)
in the run's ``detect_band`` (`galcat.bands`; ``sum`` adds every band) and writes one
row per object (`galcat.surveys.local.DETECTION_COLUMNS`): a stable id from its
position, RA/Dec and pixel centroid, Kron fluxes in every band, radii, a point-source
indicator and flags. The rest of the workflow takes the table as it takes a user's.

The mosaic is processed in **tiles** of ``tile_size`` pixels, each read with
``tile_overlap`` pixels more on every side (lazily: `galcat.surveys.local.LocalImages`
reads only those pixels), one Dask task per tile
(`galcat.parallel.map_blocks_of_objects`): a task holds at most
``(tile_size + 2 tile_overlap)^2`` pixels of each map, whatever the mosaic's size.
An object belongs to the tile whose own area (without the overlap) holds its
centroid, so an object that crosses a tile border is measured whole by that tile
and kept once; detections of one object by two tiles that land within a pixel of
each other across the border are merged as well.

For one tile, in the detection image (pixel values in nanomaggies, `pixel_unit`):

1. **Background**: `photutils.background.Background2D` on a mesh of
   ``background_box`` pixels, median-filtered over ``background_filter`` meshes,
   SExtractor's estimator on 3-sigma-clipped pixels, then again with the sources of
   a first detection (grown by 5 PSF FWHM) masked: `galcat.segment.mesh_background`. Its RMS map is the noise where no
   noise map is given.
2. **Detection and deblending**: `galcat.segment.detect_sources`, the code that
   segments every cutout: the image smoothed with a Gaussian of the PSF's FWHM,
   pixels above ``nsigma`` times the per-pixel noise, groups of ``n_pixels``, then
   photutils' multi-threshold deblending (``deblend_nlevels``,
   ``deblend_contrast``; SExtractor's scheme) on an image smoothed
   ``deblend_smoothing`` times less.
3. **Measurement**: `photutils.segmentation.SourceCatalog` with neighbours masked:
   the windowed centroid (SExtractor's XWIN/YWIN), the Kron flux and radius
   (SExtractor's FLUX_AUTO: 2.5 first-moment radii, at least 1.4), the radius
   holding half the Kron flux; in every other band on the same pixel grid the Kron
   flux in the detection image's aperture (forced photometry, after that band's own
   background).

The point-source indicator compares the half-light radius with the PSF's measured
the same way (`psf_half_light_radius`): below ``point_source_ratio`` times it, the
object is as compact as the PSF (a star, or a galaxy too small to resolve).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from galcat.bands import SUM, resolve_detect_band
from galcat.config import setting, settings
from galcat.flags import DetectFlag
from galcat.parallel import dask_options, map_blocks_of_objects
from galcat.segment import detect_sources, mesh_background, psf_fwhm_pixels
from galcat.surveys import _cutting
from galcat.surveys import local as _local

__all__ = [
    "Tile",
    "detect_mosaic",
    "detection_columns",
    "detection_units",
    "psf_half_light_radius",
    "tiles",
]

log = logging.getLogger("galcat.detection")

#: Kron parameters (factor, smallest unscaled radius), SExtractor's PHOT_AUTOPARAMS.
KRON_PARAMS = (2.5, 1.4)
#: Detections closer than this (pixels) from two tiles are one object.
DUPLICATE_PIXELS = 1.0


@dataclass(frozen=True)
class Tile:
    """A tile: its own area (``core``) and the area it reads (``read``), as
    ``(y0, y1, x0, x1)`` pixel bounds on the mosaic."""

    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    @property
    def pixels(self) -> int:
        y0, y1, x0, x1 = self.read
        return (y1 - y0) * (x1 - x0)


def tiles(shape: tuple[int, int], tile_size: int, overlap: int) -> list[Tile]:
    """The tiles of a mosaic of ``shape`` (ny, nx): cores of ``tile_size`` pixels that
    cover it once, each read with ``overlap`` more pixels on every side (clipped)."""
    ny, nx = shape
    out = []
    for y0 in range(0, ny, tile_size):
        for x0 in range(0, nx, tile_size):
            y1, x1 = min(y0 + tile_size, ny), min(x0 + tile_size, nx)
            out.append(Tile((y0, y1, x0, x1),
                            (max(0, y0 - overlap), min(ny, y1 + overlap),
                             max(0, x0 - overlap), min(nx, x1 + overlap))))
    return out


def _tile_grid(opts: Mapping) -> tuple[int, int]:
    """Tile side and overlap in whole background meshes: tiles then share their mesh
    grid, so an object in the overlap of two tiles sees the same sky in both."""
    box = int(opts["background_box"])
    size = box * max(1, round(int(opts["tile_size"]) / box))
    overlap = box * math.ceil(int(opts["tile_overlap"]) / box)
    return size, overlap


def detection_columns(bands: list[str]) -> list[str]:
    """Columns of the detection table, in order, for a survey with ``bands``."""
    names = []
    for name in _local.DETECTION_COLUMNS:
        if "{band}" in name:
            names += [name.format(band=b) for b in bands]
        else:
            names.append(name)
    return names


def detection_units(bands: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(units, descriptions)`` of the detection table's columns."""
    units, descriptions = {}, {}
    for name, (unit, text) in _local.DETECTION_COLUMNS.items():
        for b in (bands if "{band}" in name else [None]):
            key = name.format(band=b) if b else name
            units[key] = unit
            descriptions[key] = text.format(band=b) if b else text
    return units, descriptions


def psf_half_light_radius(psf: np.ndarray) -> float:
    """Half-light radius (pixels) of a PSF stamp measured as `detect_mosaic` measures
    objects: the circle holding half the Kron flux about the windowed centroid."""
    from photutils.segmentation import SegmentationImage, SourceCatalog

    psf = np.asarray(psf, dtype=np.float64)
    psf = psf / psf.sum()
    pad = max(psf.shape)  # room for the Kron aperture
    image = np.pad(psf, pad)
    segm = SegmentationImage((image > 1e-3 * image.max()).astype(np.int32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = SourceCatalog(image, segm, kron_params=KRON_PARAMS)
        return float(_values(cat.flux_radius(0.5)).ravel()[0])


# --------------------------------------------------------------------------- one tile
def _sky(data, valid, noise, opts, fwhm):
    """Background map and noise of a tile (`galcat.segment.mesh_background`)."""
    bkg, rms = mesh_background(data, valid, box=opts["background_box"],
                               filter_size=opts["background_filter"], kernel_fwhm=fwhm,
                               noise=noise)
    return bkg, (noise if noise is not None else rms)


class _Reader:
    """The detection layout of one run: images, noise and masks of every band, opened
    lazily in the task that reads them, and their unit factors."""

    def __init__(self, section: Mapping):
        self.section = section
        self.bands = list(section["bands"])

    def open(self):
        s = self.section
        return (_local.LocalImages(s["images"], self.bands, "local.images"),
                _local.LocalImages(s["noise"], self.bands, "local.noise"),
                _local.LocalImages(s["mask"], self.bands, "local.mask"))

    def plane(self, maps, band: str, box) -> tuple[np.ndarray, np.ndarray | None,
                                                    np.ndarray]:
        """(image, noise, valid) of ``band`` in ``box``, pixel values in nanomaggies."""
        imgs, noises, masks = maps
        y0, y1, x0, x1 = box
        data, header = imgs.band(band)
        unit = self.units[band]
        image = data[y0:y1, x0:x1] * unit.factor
        valid = np.isfinite(image)
        noise = None
        if noises.given:
            noise = _local.noise_of(noises.band(band)[0][y0:y1, x0:x1],
                                    self.section["noise"].get("kind", "sigma")) * unit.factor
            valid &= np.isfinite(noise) & (noise > 0)
        if masks.given:
            valid &= ~_local.mask_of(masks.band(band)[0][y0:y1, x0:x1],
                                     self.section["mask"]["kind"])
        return image, noise, valid


def _detection_image(reader, maps, bands, box):
    """(image, noise or None, valid) of the detection band(s) in ``box``; ``sum`` adds
    the bands (noise in quadrature when every band has a noise map)."""
    planes = [reader.plane(maps, b, box) for b in bands]
    if len(planes) == 1:
        return planes[0]
    valid = np.logical_and.reduce([p[2] for p in planes])
    image = sum(np.where(valid, p[0], 0.0) for p in planes)
    noise = None
    if all(p[1] is not None for p in planes):
        noise = np.sqrt(sum(np.where(valid, p[1], 0.0) ** 2 for p in planes))
    return image, noise, valid


def _values(quantity) -> np.ndarray:
    """A photutils column as a float64 array (without its unit)."""
    return np.asarray(getattr(quantity, "value", quantity), dtype=np.float64)


def _catalogue(image, segm, noise, valid, convolved, detection=None):
    from photutils.segmentation import SourceCatalog

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SourceCatalog(image, segm, convolved_data=convolved, error=noise,
                             mask=~valid, kron_params=KRON_PARAMS,
                             detection_catalog=detection)


def _measure_tile(reader, opts, fwhm, det_bands, tile: Tile) -> pd.DataFrame:
    """The objects whose centroid lies in the tile's own area (module docstring)."""
    from photutils.segmentation import SegmentationImage

    maps = reader.open()
    try:
        box = tile.read
        image, noise, valid = _detection_image(reader, maps, det_bands, box)
        if not valid.any():
            return pd.DataFrame()
        bkg, noise = _sky(image, valid, noise, opts, fwhm)
        data = np.where(valid, image - bkg, 0.0)
        objects, smoothed = detect_sources(
            data, valid, noise, kernel_fwhm=fwhm, method="multithreshold",
            nsigma=opts["nsigma"], n_pixels=opts["n_pixels"],
            deblend_nlevels=opts["deblend_nlevels"], deblend_contrast=opts["deblend_contrast"],
            deblend_smoothing=opts["deblend_smoothing"])
        if objects.max() == 0:
            return pd.DataFrame()
        segm = SegmentationImage(objects)
        cat = _catalogue(data, segm, noise, valid, smoothed)
        y0, _, x0, _ = box
        x = np.asarray(cat.x_centroid_win, dtype=np.float64)
        y = np.asarray(cat.y_centroid_win, dtype=np.float64)
        bad = ~(np.isfinite(x) & np.isfinite(y))
        x[bad] = np.asarray(cat.x_centroid)[bad]
        y[bad] = np.asarray(cat.y_centroid)[bad]
        cy0, cy1, cx0, cx1 = tile.core
        own = ((x + x0 >= cx0) & (x + x0 < cx1) & (y + y0 >= cy0) & (y + y0 < cy1))
        if not own.any():
            return pd.DataFrame()
        a, b = _values(cat.semimajor_axis), _values(cat.semiminor_axis)
        table = pd.DataFrame({
            "x": x + x0, "y": y + y0,
            "kron_radius": _values(cat.kron_radius) * np.sqrt(a * b),
            "r50_detect": _values(cat.flux_radius(0.5)),
            "area_detect": _values(cat.area),
            "ellipticity_detect": _values(cat.ellipticity),
            "flux_detect": _values(cat.kron_flux), "flux_err_detect": _values(cat.kron_flux_err),
            "det_flag": _flags(objects, segm.labels, valid, box, tile, reader.shape),
        })
        for band in reader.bands:
            table[f"flux_{band}"], table[f"flux_err_{band}"] = _forced(
                reader, maps, band, box, segm, cat, opts, fwhm, det_bands, data, noise)
        return table[own].reset_index(drop=True)
    finally:
        for m in maps:
            m.close()


def _forced(reader, maps, band, box, segm, det_cat, opts, fwhm, det_bands, data, noise):
    """Kron flux of ``band`` in the detection apertures (NaN on another pixel grid)."""
    n = det_cat.n_labels
    if reader.grids[band] != reader.shape:
        return np.full(n, np.nan), np.full(n, np.nan)
    if det_bands == [band]:
        return _values(det_cat.kron_flux), _values(det_cat.kron_flux_err)
    image, band_noise, valid = reader.plane(maps, band, box)
    bkg, band_noise = _sky(image, valid, band_noise, opts, fwhm)
    cat = _catalogue(np.where(valid, image - bkg, 0.0), segm, band_noise, valid, None,
                     detection=det_cat)
    return _values(cat.kron_flux), _values(cat.kron_flux_err)


def _flags(objects, labels, valid, box, tile: Tile, shape) -> np.ndarray:
    """`DetectFlag` bits of every label (in ``labels`` order)."""
    n = int(objects.max())
    flags = np.zeros(n + 1, dtype=np.int64)
    # deblended: several objects in one connected source (every pixel of an object has
    # the same parent, so any one of them names it)
    parents, _ = ndimage.label(objects > 0, structure=np.ones((3, 3), bool))
    parent_of = np.zeros(n + 1, dtype=np.int64)
    parent_of[objects.ravel()] = parents.ravel()
    siblings = np.bincount(parent_of[1:])
    flags[1:][siblings[parent_of[1:]] > 1] |= DetectFlag.BLENDED
    # touching bad pixels
    grown_bad = ndimage.binary_dilation(~valid)
    flags[np.unique(objects[grown_bad & (objects > 0)])] |= DetectFlag.MASKED
    # touching the border of the tile (inside the mosaic) or of the mosaic
    ny, nx = shape
    y0, y1, x0, x1 = box
    edges = {"top": objects[0], "bottom": objects[-1], "left": objects[:, 0],
             "right": objects[:, -1]}
    at_mosaic = {"top": y0 == 0, "bottom": y1 == ny, "left": x0 == 0, "right": x1 == nx}
    for side, pixels in edges.items():
        bit = DetectFlag.IMAGE_EDGE if at_mosaic[side] else DetectFlag.TILE_EDGE
        flags[np.unique(pixels[pixels > 0])] |= bit
    return flags[np.asarray(labels)]


# --------------------------------------------------------------------------- a mosaic
def _ids(table: pd.DataFrame, has_wcs: bool) -> tuple[list[int], list[str]]:
    if has_wcs:
        names = []
        for ra, dec in zip(table["ra"], table["dec"], strict=True):
            h, rem = divmod(ra / 15.0 * 3600.0, 3600.0)
            m, sec = divmod(rem, 60.0)
            sign = "+" if dec >= 0 else "-"
            d, drem = divmod(abs(dec) * 3600.0, 3600.0)
            dm, ds = divmod(drem, 60.0)
            names.append(f"J{int(h):02d}{int(m):02d}{sec:05.2f}{sign}{int(d):02d}{int(dm):02d}"
                         f"{ds:04.1f}")
        keys = [f"{ra:.6f}{dec:+.6f}" for ra, dec in zip(table["ra"], table["dec"],
                                                         strict=True)]
    else:
        names = [f"X{x:.2f}Y{y:.2f}" for x, y in zip(table["x"], table["y"], strict=True)]
        keys = [f"x{x:.2f}y{y:.2f}" for x, y in zip(table["x"], table["y"], strict=True)]
    return [_local.stable_id(k) for k in keys], names


def _merge_duplicates(table: pd.DataFrame) -> pd.DataFrame:
    """One row for detections of one object by two tiles (within `DUPLICATE_PIXELS`)."""
    if len(table) < 2:
        return table
    from scipy.spatial import cKDTree

    pairs = cKDTree(table[["x", "y"]].to_numpy()).query_pairs(DUPLICATE_PIXELS)
    drop = set()
    for i, j in sorted(pairs):
        if i in drop or j in drop:
            continue
        # keep the one whose segment the tile border did not cut, else the brighter
        key = lambda k: (bool(table["det_flag"].iat[k] & DetectFlag.TILE_EDGE),  # noqa: E731
                         -np.nan_to_num(table["flux_detect"].iat[k]))
        drop.add(max((i, j), key=key))
    if drop:
        log.info("detect: %d detection(s) of objects on tile borders merged", len(drop))
    return table.drop(index=sorted(drop)).reset_index(drop=True)


def detect_mosaic(config: Mapping, *, label: str = "detect") -> pd.DataFrame:
    """Detect the objects of the ``local`` mosaics (module docstring).

    Parameters
    ----------
    config : mapping
        A galcat config (or a rule's params): ``local`` (images, noise, mask, psf,
        bands, zeropoint, pixel_scale, detection, psf_stamp_size), ``detect_band`` and
        ``dask`` are read.
    label : str
        Name of the progress lines in the log.

    Returns
    -------
    pandas.DataFrame
        `detection_columns` of the survey's bands, one row per object, ascending
        ``object_id``.

    Raises
    ------
    galcat.surveys.local.LocalDataError
        Images that are not mosaics, a missing file or band, a unit without a zero
        point, bands of another pixel grid under ``detect_band: sum``.

    Notes
    -----
    Cost (2 cores here): about 2 s per million pixels and band for the background,
    detection, deblending and measurement, most of it photutils'; the tiles run in
    parallel on the job's Dask workers.
    """
    section = settings(config, "local")
    opts = dict(section["detection"])
    if section["images"]["kind"] != "mosaic":
        raise _local.LocalDataError("local.objects: detect needs mosaics (local.images.kind: "
                                    "mosaic)")
    reader = _Reader(section)
    band = resolve_detect_band(setting(config, "detect_band"), reader.bands)
    det_bands = reader.bands if band == SUM else [band]
    imgs, _, _ = maps = reader.open()
    try:
        first, header = imgs.band(det_bands[0])
        reader.shape = first.shape
        wcs = _local._wcs(header)
        scale = _local.image_scale(section, wcs, f"local.images ({det_bands[0]}, "
                                                  f"{imgs.path(det_bands[0])})")
        reader.grids, reader.units = {}, {}
        for b in reader.bands:
            plane, head = imgs.band(b)
            reader.grids[b] = plane.shape
            bscale = scale if _local._wcs(head) is None else _cutting.pixel_scale_arcsec(
                _local._wcs(head))
            reader.units[b] = _local.pixel_unit(section, head, b, bscale,
                                                f"local.images ({b}, {imgs.path(b)})")
            for name in ("noise", "mask"):
                if maps[("images", "noise", "mask").index(name)].given:
                    maps[("images", "noise", "mask").index(name)].band(b)
        off_grid = [b for b in det_bands if reader.grids[b] != reader.shape]
        if off_grid:
            raise _local.LocalDataError(
                f"detect_band sum adds the bands pixel by pixel, but {off_grid} are not on "
                f"the {reader.shape} grid of {det_bands[0]}; set detect_band to one band")
        psf = _local.psf_stamps(section, reader.bands, scale)
    finally:
        for m in maps:
            m.close()
    det_psf = (psf.mean(axis=0) if band == SUM else psf[reader.bands.index(band)])
    fwhm = psf_fwhm_pixels(det_psf)
    parts = tiles(reader.shape, *_tile_grid(opts))
    log.info("%s: %s mosaic %d x %d in %d tile(s) of at most %d pixels, detect_band %s",
             label, "WCS" if wcs is not None else "pixel-only", reader.shape[1],
             reader.shape[0], len(parts), max(t.pixels for t in parts), band)
    parallel = {**dask_options(config), "objects_per_task": 1}
    blocks = map_blocks_of_objects(
        lambda sl: [_measure_tile(reader, opts, fwhm, det_bands, t) for t in parts[sl]],
        len(parts), label=f"{label} tiles", **parallel)
    frames = [t for block in blocks for t in block if len(t)]
    columns = detection_columns(reader.bands)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    table = _merge_duplicates(pd.concat(frames, ignore_index=True))
    return _finish(table, wcs, det_psf, opts, columns)


def _finish(table, wcs, det_psf, opts, columns) -> pd.DataFrame:
    if wcs is not None:
        ra, dec = wcs.pixel_to_world_values(table["x"].to_numpy(), table["y"].to_numpy())
        table["ra"], table["dec"] = np.asarray(ra) % 360.0, np.asarray(dec)
    else:
        table["ra"], table["dec"] = np.nan, np.nan
    table["object_id"], table["source_id"] = _ids(table, wcs is not None)
    dup = table["object_id"].duplicated()
    if dup.any():
        log.warning("detect: %d detection(s) at the position of another dropped", int(dup.sum()))
        table = table[~dup]
    table["z"] = np.nan
    table["radius_pix"] = table["kron_radius"]
    psf_r50 = psf_half_light_radius(det_psf)
    table["size_ratio"] = table["r50_detect"] / psf_r50
    table["point_source"] = table["size_ratio"] < float(opts["point_source_ratio"])
    with np.errstate(divide="ignore", invalid="ignore"):
        table["snr_detect"] = table["flux_detect"] / table["flux_err_detect"]
    table["det_flag"] = table["det_flag"].astype(np.int64)
    table["area_detect"] = table["area_detect"].astype(np.float64)
    return table[columns].sort_values("object_id").reset_index(drop=True)


def detection_summary(table: pd.DataFrame) -> dict[str, Any]:
    """A few numbers of a detection table for the log."""
    return {"objects": len(table),
            "point_sources": int(table["point_source"].sum()) if len(table) else 0,
            "median_snr": float(np.nanmedian(table["snr_detect"])) if len(table) else math.nan}
