"""The one owner of galcat's on-disk cutout and segmentation layout.

Every stage reads and writes cutouts and segmentation maps through this module;
nothing else opens the Zarr groups directly.

Cutout group (Zarr v3, one per shard, ``cutouts/{shard}.zarr``)::

    image        float32 (n, band, y, x)   flux in ``attrs['flux_unit']`` per pixel
    sigma        float32 (n, band, y, x)   1-sigma noise of ``image``, same unit
    mask         bool    (n, band, y, x)   True where a pixel must not be used
    psf          float32 (band, py, px)    PSF image, unit sum, same pixel scale
    object_id    int64   (n,)              stable object key, ascending
    cut_size     int32   (n,)              side of each object's own cut (<= the stamp
                                           side, same parity), centred in the stamp;
                                           pixels outside it are masked
    cut_origin   float64 (n, 2)            (x, y) on the image it was cut from of stamp
                                           pixel (0, 0), 0-based; NaN if not cut from one
    cut_wcs      float64 (n, 6)            RA, Dec (deg) of the stamp centre and the
                                           CD matrix (deg/pixel: dRA cos(Dec)/dx,
                                           dRA cos(Dec)/dy, dDec/dx, dDec/dy); NaN if
                                           the cutout has no celestial WCS
    <extra>      any     (n, ...)          optional per-object arrays, e.g. the synthetic
                                           survey's ``truth_class`` map (its codes:
                                           `galcat.surveys.synthetic.TRUTH_CLASSES`)

    attrs: bands, pixel_scale_arcsec, zeropoints_mag, flux_unit, survey, shard,
           galcat_version, layout_version, n_objects, extras (names of the extra arrays)

Objects of a shard may be cut at different sizes (a large galaxy is not clipped to
fit a run-wide side): the stamp side is the shard's largest ``cut_size`` and each
object sits at the stamp centre, ``((side - 1) / 2, (side - 1) / 2)``, inside its own
``cut_size`` box. `CutoutBatch.box` gives that box and `CutoutBatch.crop` the object
alone at its own size, which is what segmentation and measurement work on. Layout 1
groups (before per-object sizes) are read with every object at the stamp side.

Segmentation group (``segmaps/{shard}.zarr``)::

    segmap       int32 (n, y, x)   0 background, 1 the central object, >1 neighbours
    object_id    int64 (n,)
    attrs: method, shard, galcat_version, layout_version

Pixel-map group (``pixelmaps/{model}/{shard}.zarr``, a per-pixel network's output)::

    classes      uint8 (n, y, x)   class code of every pixel of the cutout
    object_id    int64 (n,)
    attrs: model, shard, codes ({code: name}), galcat_version, layout_version

Chunks hold whole objects, so a reader of one galaxy touches one chunk.
Writes go to a temporary sibling directory that is renamed into place only
when complete (`galcat.atomic`): a killed job never leaves a half-written group behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from numcodecs import Blosc

from galcat.atomic import replacing_directory
from galcat.provenance import code_version

__all__ = [
    "CUT_WCS_COLUMNS",
    "LAYOUT_VERSION",
    "CutoutBatch",
    "CutoutReader",
    "LayoutError",
    "ResidualMapReader",
    "read_cutouts",
    "read_pixelmaps",
    "read_residual_maps",
    "read_segmaps",
    "write_cutouts",
    "write_pixelmaps",
    "write_residual_maps",
    "write_segmaps",
]

LAYOUT_VERSION = 2
#: Layouts this galcat reads (1: no per-object size or geometry arrays).
READABLE_LAYOUTS = (1, 2)
OBJECTS_PER_CHUNK = 16
#: Compression of the arrays that compress: Blosc LZ4 with byte shuffle, which
#: decodes 1.5x faster than Zarr's default Zstandard (a training epoch decodes every
#: chunk it reads) and halves ``sigma`` and the masks.
PIXEL_CODEC = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
#: An array is compressed only if `PIXEL_CODEC` saves at least this fraction of its
#: first chunk. Sky noise leaves images nearly incompressible (3% here), and their
#: raw chunks read 1.5x faster; an image with wide empty borders still compresses.
#: Readers follow each array's own metadata, so stores written either way (or with
#: the Zstandard of earlier versions) read alike.
MIN_COMPRESSION_SAVING = 0.10
#: Columns of ``cut_wcs``.
CUT_WCS_COLUMNS = ("ra", "dec", "cd1_1", "cd1_2", "cd2_1", "cd2_2")


class LayoutError(ValueError):
    """A cutout or segmentation group does not follow galcat's layout."""


@dataclass
class CutoutBatch:
    """Cutouts of the objects of one shard, in memory.

    Attributes
    ----------
    object_id : ndarray of int64, shape (n,)
    image, sigma : ndarray of float32, shape (n, band, y, x)
        Flux per pixel in ``flux_unit`` and its 1-sigma noise.
    mask : ndarray of bool, shape (n, band, y, x)
        True where a pixel is bad (off the detector, saturated, NaN).
    psf : ndarray of float32, shape (band, py, px)
        PSF per band, normalised to unit sum.
    bands : list of str
    pixel_scale : float
        Arcseconds per pixel.
    zeropoints : list of float
        AB magnitude of one ``flux_unit``, per band.
    flux_unit : str
    survey : str
    extras : dict of str to ndarray
        Optional per-object arrays whose first axis is n (the synthetic survey's
        ``truth_class``); written and read back as they are.
    cut_size : ndarray of int32, shape (n,), optional
        Side of each object's own cut, centred in the stamp (default: the stamp side).
    cut_origin : ndarray of float64, shape (n, 2), optional
        (x, y) on the source image of stamp pixel (0, 0) (default NaN: unknown).
    cut_wcs : ndarray of float64, shape (n, 6), optional
        RA, Dec of the stamp centre and the CD matrix, `CUT_WCS_COLUMNS` (default NaN).
    """

    object_id: np.ndarray
    image: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    bands: list[str]
    pixel_scale: float
    zeropoints: list[float]
    flux_unit: str = "nanomaggy"
    survey: str = "synthetic"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    cut_size: np.ndarray | None = None
    cut_origin: np.ndarray | None = None
    cut_wcs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.object_id = np.asarray(self.object_id, dtype=np.int64)
        self.image = np.asarray(self.image, dtype=np.float32)
        self.sigma = np.asarray(self.sigma, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.psf = np.asarray(self.psf, dtype=np.float32)
        n = self.object_id.shape[0]
        side = self.image.shape[-1] if self.image.ndim == 4 else 0
        self.cut_size = (np.full(n, side, np.int32) if self.cut_size is None
                         else np.asarray(self.cut_size, dtype=np.int32))
        self.cut_origin = (np.full((n, 2), np.nan) if self.cut_origin is None
                           else np.asarray(self.cut_origin, dtype=np.float64))
        self.cut_wcs = (np.full((n, len(CUT_WCS_COLUMNS)), np.nan) if self.cut_wcs is None
                        else np.asarray(self.cut_wcs, dtype=np.float64))
        self.validate()

    @property
    def n_objects(self) -> int:
        return int(self.object_id.shape[0])

    def band_index(self, band: str) -> int:
        """Position of ``band`` on the band axis; a clear error if absent."""
        try:
            return self.bands.index(band)
        except ValueError:
            raise LayoutError(
                f"band {band!r} is not in this shard; it has {self.bands}"
            ) from None

    def validate(self) -> None:
        n = self.n_objects
        if self.image.ndim != 4:
            raise LayoutError(f"image must be (n, band, y, x); got shape {self.image.shape}")
        if self.image.shape[0] != n:
            raise LayoutError(
                f"image holds {self.image.shape[0]} objects but object_id holds {n}"
            )
        if self.image.shape[1] != len(self.bands):
            raise LayoutError(
                f"image has {self.image.shape[1]} bands but bands lists {len(self.bands)}: "
                f"{self.bands}"
            )
        for name in ("sigma", "mask"):
            arr = getattr(self, name)
            if arr.shape != self.image.shape:
                raise LayoutError(f"{name} shape {arr.shape} differs from image {self.image.shape}")
        if self.psf.ndim != 3 or self.psf.shape[0] != len(self.bands):
            raise LayoutError(f"psf must be (band, py, px); got shape {self.psf.shape}")
        if len(self.zeropoints) != len(self.bands):
            raise LayoutError("zeropoints must give one value per band")
        if n and np.any(np.diff(self.object_id) <= 0):
            raise LayoutError("object_id must be unique and ascending within a shard")
        for key, arr in self.extras.items():
            if arr.shape[0] != n:
                raise LayoutError(f"extra array {key!r} has {arr.shape[0]} rows, expected {n}")
        ny, nx = self.image.shape[2:]
        if ny != nx:
            raise LayoutError(f"stamps must be square; got {ny} x {nx}")
        for name, shape in (("cut_size", (n,)), ("cut_origin", (n, 2)),
                            ("cut_wcs", (n, len(CUT_WCS_COLUMNS)))):
            if getattr(self, name).shape != shape:
                raise LayoutError(f"{name} must have shape {shape}; got "
                                  f"{getattr(self, name).shape}")
        if n and (np.any(self.cut_size < 1) or np.any(self.cut_size > nx)
                  or np.any((nx - self.cut_size) % 2)):
            raise LayoutError(f"cut_size must lie in [1, {nx}] with the parity of the stamp "
                              f"side {nx}; got {sorted(set(self.cut_size.tolist()))}")

    def padded(self, side: int) -> CutoutBatch:
        """The batch on stamps of ``side`` pixels (same parity, not smaller): every stamp
        centred in the larger one, the new pixels NaN and masked; itself if it fits."""
        now = self.image.shape[-1]
        if side == now:
            return self
        if side < now or (side - now) % 2:
            raise LayoutError(f"cannot pad {now}-pixel stamps to {side} pixels (the side must "
                              "grow by an even number of pixels)")
        lo = (side - now) // 2
        inner = (slice(None), slice(None), slice(lo, lo + now), slice(lo, lo + now))

        def grow(arr, fill):
            out = np.full((*arr.shape[:2], side, side), fill, dtype=arr.dtype)
            out[inner] = arr
            return out

        extras = {}
        for key, arr in self.extras.items():
            if arr.ndim == 3 and arr.shape[1:] == (now, now):
                out = np.zeros((arr.shape[0], side, side), dtype=arr.dtype)
                out[:, lo:lo + now, lo:lo + now] = arr
                arr = out
            extras[key] = arr
        return CutoutBatch(
            object_id=self.object_id, image=grow(self.image, np.nan),
            sigma=grow(self.sigma, np.nan), mask=grow(self.mask, True), psf=self.psf,
            bands=self.bands, pixel_scale=self.pixel_scale, zeropoints=self.zeropoints,
            flux_unit=self.flux_unit, survey=self.survey, extras=extras,
            cut_size=self.cut_size, cut_origin=self.cut_origin - lo, cut_wcs=self.cut_wcs,
        )

    def box(self, index: int) -> tuple[slice, slice]:
        """Slices (y, x) of object ``index``'s own cut in the stamp, centred on it."""
        side = self.image.shape[-1]
        lo = (side - int(self.cut_size[index])) // 2
        return slice(lo, side - lo), slice(lo, side - lo)

    def crop(self, index: int) -> CutoutBatch:
        """Object ``index`` alone, cut to its own size (`box`); the batch itself when the
        shard holds that one object at the stamp side."""
        if self.n_objects == 1 and int(self.cut_size[0]) == self.image.shape[-1]:
            return self
        ys, xs = self.box(index)
        sel = slice(index, index + 1)
        origin = self.cut_origin[sel] + np.array([xs.start, ys.start], dtype=np.float64)
        return CutoutBatch(
            object_id=self.object_id[sel], image=self.image[sel, :, ys, xs],
            sigma=self.sigma[sel, :, ys, xs], mask=self.mask[sel, :, ys, xs], psf=self.psf,
            bands=self.bands, pixel_scale=self.pixel_scale, zeropoints=self.zeropoints,
            flux_unit=self.flux_unit, survey=self.survey,
            extras={k: v[sel, ys, xs] if v.ndim == 3 and v.shape[1:] == self.image.shape[2:]
                    else v[sel] for k, v in self.extras.items()},
            cut_size=self.cut_size[sel], cut_origin=origin, cut_wcs=self.cut_wcs[sel],
        )


def _compresses(sample: np.ndarray) -> bool:
    """Whether `PIXEL_CODEC` saves `MIN_COMPRESSION_SAVING` of ``sample``."""
    sample = np.ascontiguousarray(sample)
    if sample.nbytes == 0:
        return True
    packed = Blosc(cname=PIXEL_CODEC.cname.value, clevel=PIXEL_CODEC.clevel,
                   shuffle=Blosc.SHUFFLE).encode(sample)
    return len(packed) <= (1 - MIN_COMPRESSION_SAVING) * sample.nbytes


def _write_array(group: zarr.Group, name: str, data: np.ndarray) -> None:
    chunks = (min(OBJECTS_PER_CHUNK, max(1, data.shape[0])),) + data.shape[1:]
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                             compressors=PIXEL_CODEC if _compresses(data[: chunks[0]]) else None)
    if data.size:
        arr[...] = data


def write_cutouts(path: os.PathLike | str, batch: CutoutBatch, *, shard: str) -> Path:
    """Write one shard of cutouts atomically as a Zarr v3 group.

    Parameters
    ----------
    path : path-like
        Destination ``.zarr`` directory; replaced whole if it exists.
    batch : CutoutBatch
    shard : str
        Shard name, recorded in the attributes.

    Returns
    -------
    Path of the written group.
    """
    batch.validate()
    final = Path(path)
    with replacing_directory(final) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        _write_array(group, "object_id", batch.object_id)
        for name in ("image", "sigma", "mask"):
            _write_array(group, name, getattr(batch, name))
        psf = group.create_array("psf", shape=batch.psf.shape, dtype="float32")
        psf[...] = batch.psf
        for key, arr in batch.extras.items():
            _write_array(group, key, np.asarray(arr))
        for name in ("cut_size", "cut_origin", "cut_wcs"):
            _write_array(group, name, getattr(batch, name))
        group.attrs.update(
            {
                "bands": list(batch.bands),
                "pixel_scale_arcsec": float(batch.pixel_scale),
                "zeropoints_mag": [float(z) for z in batch.zeropoints],
                "flux_unit": batch.flux_unit,
                "survey": batch.survey,
                "shard": shard,
                "n_objects": batch.n_objects,
                "extras": sorted(batch.extras),
                "galcat_version": code_version(),
                "layout_version": LAYOUT_VERSION,
            }
        )
    return final


def _open(path: os.PathLike | str, kind: str) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} group {str(path)!r} does not exist")
    group = zarr.open_group(str(path), mode="r")
    version = group.attrs.get("layout_version")
    if version not in READABLE_LAYOUTS:
        raise LayoutError(
            f"{kind} group {str(path)!r} has layout_version {version!r}; "
            f"this galcat reads {', '.join(map(str, READABLE_LAYOUTS))}"
        )
    return group


class CutoutReader:
    """Lazy, read-only access to one shard's cutout arrays, a chunk of objects at a time.

    Opening reads only the attributes and ``object_id``; pixels are read when asked
    for. Readers that stream a shard (the networks' data loaders) ask for whole
    storage chunks (`chunks`), so every chunk is decompressed once. The reader
    holds no open file handles and can be pickled into worker processes.

    Parameters
    ----------
    path : path-like
        A cutout group written by `write_cutouts`.

    Attributes
    ----------
    path : Path
    object_id : ndarray of int64, shape (n,)
    bands : list of str
    shape : tuple of int
        ``(n, band, y, x)`` of ``image``.
    chunk_objects : int
        Objects per storage chunk of ``image``.
    """

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        group = _open(self.path, "cutout")
        self.object_id = np.asarray(group["object_id"][...], dtype=np.int64)
        self.bands = list(group.attrs["bands"])
        image = group["image"]
        self.shape = tuple(int(s) for s in image.shape)
        self.chunk_objects = int(image.chunks[0])
        self._arrays: dict[str, zarr.Array] = {}

    def __getstate__(self) -> dict:
        # zarr arrays hold store handles; a worker process reopens its own.
        return {**self.__dict__, "_arrays": {}}

    @property
    def n_objects(self) -> int:
        return int(self.object_id.shape[0])

    def chunks(self) -> list[slice]:
        """Object slices aligned with the storage chunks, in order."""
        step = self.chunk_objects
        return [slice(i, min(i + step, self.n_objects)) for i in range(0, self.n_objects, step)]

    def band_indices(self, bands: list[str] | None) -> list[int]:
        """Positions of ``bands`` on the band axis (all bands for None)."""
        if bands is None:
            return list(range(len(self.bands)))
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise LayoutError(
                f"cutout group {str(self.path)!r} has no band(s) {missing}; it has {self.bands}"
            )
        return [self.bands.index(b) for b in bands]

    def read(self, name: str, objects: slice, *, bands: list[str] | None = None) -> np.ndarray:
        """Array ``name`` (``image``, ``sigma``, ``mask`` or an extra) of ``objects``.

        ``bands`` selects bands of a per-band array, in the order given.
        """
        if name not in self._arrays:
            group = _open(self.path, "cutout")
            if name not in group:
                raise LayoutError(f"cutout group {str(self.path)!r} has no array {name!r}")
            self._arrays[name] = group[name]
        data = np.asarray(self._arrays[name][objects])
        if bands is not None:
            data = data[:, self.band_indices(bands)]
        return data


def read_cutouts(path: os.PathLike | str, *, objects: slice | None = None) -> CutoutBatch:
    """Read a shard of cutouts (or a slice of its objects) into memory."""
    group = _open(path, "cutout")
    sel = objects if objects is not None else slice(None)
    attrs: Mapping = group.attrs
    extras = {key: np.asarray(group[key][sel]) for key in attrs.get("extras", [])}
    geometry = {name: np.asarray(group[name][sel]) for name in ("cut_size", "cut_origin",
                                                               "cut_wcs") if name in group}
    return CutoutBatch(
        object_id=np.asarray(group["object_id"][sel]),
        image=np.asarray(group["image"][sel]),
        sigma=np.asarray(group["sigma"][sel]),
        mask=np.asarray(group["mask"][sel]),
        psf=np.asarray(group["psf"][...]),
        bands=list(attrs["bands"]),
        pixel_scale=float(attrs["pixel_scale_arcsec"]),
        zeropoints=list(attrs["zeropoints_mag"]),
        flux_unit=str(attrs["flux_unit"]),
        survey=str(attrs["survey"]),
        extras=extras,
        **geometry,
    )


def _write_maps(path: os.PathLike | str, name: str, maps: np.ndarray,
                object_id: np.ndarray, attrs: Mapping) -> Path:
    """One shard's per-object ``(n, y, x)`` array ``name`` beside ``object_id``, written
    atomically with ``attrs`` (segmentation, pixel and residual maps)."""
    final = Path(path)
    with replacing_directory(final) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        _write_array(group, "object_id", object_id)
        _write_array(group, name, maps)
        group.attrs.update({**attrs, "galcat_version": code_version(),
                            "layout_version": LAYOUT_VERSION})
    return final


def write_segmaps(
    path: os.PathLike | str,
    segmap: np.ndarray,
    object_id: np.ndarray,
    *,
    shard: str,
    method: str,
) -> Path:
    """Write the segmentation maps of one shard atomically.

    ``segmap`` is int32 (n, y, x): 0 is background, 1 the central object and
    larger labels its neighbours.
    """
    segmap = np.asarray(segmap, dtype=np.int32)
    object_id = np.asarray(object_id, dtype=np.int64)
    if segmap.ndim != 3 or segmap.shape[0] != object_id.shape[0]:
        raise LayoutError(
            f"segmap must be (n, y, x) with n = {object_id.shape[0]}; got {segmap.shape}"
        )
    return _write_maps(path, "segmap", segmap, object_id, {"method": method, "shard": shard})


def read_segmaps(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(object_id, segmap)`` of one shard."""
    group = _open(path, "segmentation")
    return np.asarray(group["object_id"][...]), np.asarray(group["segmap"][...])


def write_pixelmaps(
    path: os.PathLike | str,
    classes: np.ndarray,
    object_id: np.ndarray,
    *,
    shard: str,
    model: str,
    codes: Mapping[int, str],
) -> Path:
    """Write the per-pixel class maps of one shard atomically (beside the segmaps).

    ``classes`` is ``(n, y, x)`` with values among the keys of ``codes`` (the class
    names, e.g. `galcat.surveys.synthetic.TRUTH_CLASSES`); stored as uint8.
    """
    classes = np.asarray(classes)
    object_id = np.asarray(object_id, dtype=np.int64)
    if classes.ndim != 3 or classes.shape[0] != object_id.shape[0]:
        raise LayoutError(f"pixel maps of {model!r} must be (n, y, x) with n = "
                          f"{object_id.shape[0]}; got {classes.shape}")
    bad = np.setdiff1d(np.unique(classes), np.array(sorted(codes)))
    if bad.size:
        raise LayoutError(f"pixel maps of {model!r} hold codes {bad.tolist()} outside "
                          f"{dict(codes)}")
    return _write_maps(path, "classes", classes.astype(np.uint8), object_id, {
        "model": model, "shard": shard,
        "codes": {str(k): str(v) for k, v in sorted(codes.items())}})


def read_pixelmaps(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(object_id, classes)`` of one shard's pixel maps."""
    group = _open(path, "pixel-map")
    return np.asarray(group["object_id"][...]), np.asarray(group["classes"][...])


def write_residual_maps(
    path: os.PathLike | str,
    maps: np.ndarray,
    object_id: np.ndarray,
    *,
    shard: str,
    attrs: Mapping | None = None,
) -> Path:
    """Write the residual significance maps of one shard atomically (beside the features).

    ``maps`` is float32 ``(n, y, x)`` on the cutouts' stamp grid, in the objects' order
    (`galcat.morphology.residual_significance`; NaN where an object has no model or
    pixel). Mostly zeros, so it compresses to little. ``attrs`` records how they were
    made (threshold, kernel, bands).
    """
    maps = np.asarray(maps, dtype=np.float32)
    object_id = np.asarray(object_id, dtype=np.int64)
    if maps.ndim != 3 or maps.shape[0] != object_id.shape[0]:
        raise LayoutError(f"residual maps must be (n, y, x) with n = {object_id.shape[0]}; "
                          f"got {maps.shape}")
    return _write_maps(path, "residual_snr", maps, object_id, {**dict(attrs or {}),
                                                                "shard": shard})


def read_residual_maps(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(object_id, residual_snr)`` of one shard's residual maps."""
    group = _open(path, "residual-map")
    return np.asarray(group["object_id"][...]), np.asarray(group["residual_snr"][...])


class ResidualMapReader:
    """Lazy access to one shard's residual maps, for the networks' data loaders.

    Opening reads ``object_id`` only; `read` reads a slice of objects. Picklable
    into worker processes (no open handles).
    """

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)
        group = _open(self.path, "residual-map")
        self.object_id = np.asarray(group["object_id"][...], dtype=np.int64)
        self.shape = tuple(int(v) for v in group["residual_snr"].shape)
        self._array: zarr.Array | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def check_matches(self, cutouts: CutoutReader) -> None:
        """A clear error unless these maps are of the objects (and grid) of ``cutouts``."""
        if (not np.array_equal(self.object_id, cutouts.object_id)
                or self.shape[1:] != tuple(cutouts.shape[-2:])):
            raise LayoutError(f"residual maps {str(self.path)!r} are not of the objects and "
                              f"pixels of the cutouts {str(cutouts.path)!r}")

    def read(self, objects: slice) -> np.ndarray:
        """The maps ``(n, y, x)`` of ``objects``, NaN (no model, no pixel) read as 0."""
        if self._array is None:
            self._array = _open(self.path, "residual-map")["residual_snr"]
        return np.nan_to_num(np.asarray(self._array[objects]), nan=0.0)
