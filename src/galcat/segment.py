"""Background, detection, deblending and the central-object mask of every cutout.

One shard of cutouts goes in (`galcat.store.CutoutBatch`), one segmentation map
per object and a small table of per-object quantities come out
(`SegmentationResult`). The science is in `segment_image`, a pure function of one
2-D image; `segment_shard` maps it over the objects of a shard with Dask
(`galcat.parallel.map_blocks_of_objects`), so serial and parallel runs give
identical results.

The steps for one cutout, all in the detection band:

1. **Bad pixels.** A pixel is bad when it is masked, its flux is not finite, or
   its noise is infinite (zero inverse variance). Bad pixels never belong to a
   segment.
2. **Background.** A constant sky level and its RMS from sigma-clipped statistics
   (3 sigma) of the valid pixels, re-estimated with the sources masked (pixels
   of the smoothed image 3 sigma above the sky, dilated by 4 pixels) until the
   mask stops changing. Cutouts are
   only ~64x64 pixels, too small for a mesh (`photutils.background.Background2D`).
   When too few sky pixels remain (a galaxy that fills the cutout), the outer
   4-pixel frame is used instead and the object is flagged
   ``BACKGROUND_UNRELIABLE``. The background is subtracted before detection.
3. **Detection.** The background-subtracted image is convolved with a normalised
   Gaussian kernel of the PSF's FWHM (bad pixels are left out of the convolution
   and the kernel renormalised). Pixels of the smoothed image above
   ``nsigma`` x the per-pixel noise are candidate source pixels, where the noise
   is the ``sigma`` map where it is valid and the background RMS elsewhere (the
   SExtractor/photutils convention: the smoothed image is compared with the noise
   of the unsmoothed one). Groups of at least ``n_pixels`` 8-connected candidate
   pixels are sources; this is exactly `photutils.segmentation.detect_sources`,
   done in NumPy/SciPy so that an empty cutout raises no warning.
4. **Deblending** (``method``) splits each detected source into objects. It
   works on the *deblending image*: the background-subtracted image smoothed
   with a kernel ``deblend_smoothing`` times the detection kernel's FWHM
   (default half), floored at the threshold inside the sources. Smoothing with
   the full PSF-sized kernel erases the saddle between galaxies a few PSF
   widths apart: on 200 synthetic cutouts (36 with a companion), a half-width
   kernel leaves 7 instead of 13 companions merged into the central object, for
   3 more isolated galaxies split. Below (``smoothed`` is that image):

   ``multithreshold``
       `photutils.segmentation.deblend_sources` (multi-thresholding with
       ``deblend_nlevels`` exponentially spaced levels and a ``deblend_contrast``
       flux fraction, followed by a watershed), as SExtractor does. The default
       contrast 0.01 (photutils: 0.001, SExtractor: 0.005) avoids splitting
       noise peaks off the outskirts of the less smoothed deblending image.
   ``watershed``
       Markers are the regional maxima of the smoothed image that rise at least
       ``nsigma`` x the background RMS above their surroundings (h-maxima), at
       least ``watershed_min_distance`` pixels apart (the brighter wins); a
       marker-controlled watershed of the negative smoothed image
       (`skimage.segmentation.watershed`) restricted to the detection mask
       assigns every detected pixel to a marker.
   ``dbscan``
       `sklearn.cluster.DBSCAN` over the detected pixels with features
       ``(x, y, dbscan_flux_scale * log10(smoothed / threshold))`` (pixels,
       pixels, and dex scaled to pixels), ``eps = dbscan_eps`` and
       ``min_samples = dbscan_min_samples``. DBSCAN separates sources that are
       disjoint, joined only by a bridge too thin to hold core points, or
       separated by a steep flux step; it does not split a smooth saddle (use
       ``multithreshold`` or ``watershed`` for close pairs). Pixels DBSCAN calls
       noise are **attached to the cluster they drain to** in the same detected
       source (a watershed of the negative smoothed image seeded by the
       clusters); a detected source with no cluster is kept whole as one object.

   With every method, objects smaller than ``n_pixels`` are merged into the
   neighbour they touch (re-flooded) so that no object is smaller than a source.
5. **Central object.** The object that covers the cutout centre (the central
   pixel, or for an even side the 2x2 central pixels, the object covering most
   of them) is relabelled 1. If no object covers the centre, the nearest one is
   used and ``CENTRE_NOT_DETECTED`` is set. The other objects (neighbours) are
   relabelled 2, 3, ... by increasing distance of their nearest pixel from the
   centre.

A bad cutout (all NaN, all zero, a band with no data, a galaxy cut by the edge,
one that fills the cutout) gives flags and an empty or best-effort map, never an
exception that stops the shard; `segment_shard` logs each flagged object by id.

Flags are a bit word, see `galcat.flags.SegmentFlag`.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from galcat.bands import detection_planes, resolve_detect_band
from galcat.config import ConfigError, check_section, defaults, setting, settings
from galcat.flags import SegmentFlag, describe
from galcat.parallel import dask_options, map_blocks_of_objects
from galcat.store import CutoutBatch

__all__ = [
    "DEFAULTS",
    "METHODS",
    "SEGMENT_COLUMNS",
    "SEGMENT_COLUMN_DESCRIPTIONS",
    "SEGMENT_COLUMN_UNITS",
    "SegmentOptionError",
    "SegmentationResult",
    "detect_sources",
    "estimate_sky",
    "mesh_background",
    "psf_fwhm_pixels",
    "segment_column_units",
    "segment_image",
    "segment_options",
    "segment_shard",
]

log = logging.getLogger("galcat.segment")

#: Deblending methods `segment_image` accepts.
METHODS = ("multithreshold", "watershed", "dbscan")
#: What each method's blocks import on their first object: imported once by the job
#: before its Dask workers start, so that they inherit it (`map_blocks_of_objects`).
_WORKER_MODULES = {
    "multithreshold": ("photutils.segmentation", "skimage.segmentation"),
    "watershed": ("skimage.morphology", "skimage.segmentation"),
    "dbscan": ("sklearn.cluster", "skimage.segmentation"),
}

#: Defaults of the ``segment`` config section, read from the config schema (their one home).
DEFAULTS: dict[str, Any] = defaults("segment")

#: Fewest sky pixels for the source-masked background estimate.
MIN_SKY_PIXELS = 64
#: Source-masking passes of the background estimate, and the mask's dilation (pixels).
SKY_PASSES = 6
SKY_DILATION = 4
#: Fewest sky pixels, as a fraction of the valid pixels, for a reliable background.
MIN_SKY_FRACTION = 0.1
#: Width in pixels of the frame used when the sky is not reachable otherwise.
FRAME_WIDTH = 4
#: Kernel FWHM in pixels when the PSF stamp is unusable.
FALLBACK_KERNEL_FWHM = 3.0


#: Flags logged as warnings by `segment_shard`: the object has no usable segmap.
SEVERE_FLAGS = SegmentFlag.NO_DETECTION | SegmentFlag.ALL_NAN_OR_ZERO | SegmentFlag.FAILED

#: Columns of `SegmentationResult.table`: name -> (unit, description). ``{flux}`` is
#: the flux unit of the cutouts.
SEGMENT_COLUMNS: dict[str, tuple[str, str]] = {
    "object_id": ("", "stable object key"),
    "seg_flag": ("", "bit word of segmentation flags (galcat.flags.SegmentFlag)"),
    "seg_n_sources": ("", "objects in the segmap (central + neighbours); 0 if none"),
    "seg_background": ("{flux}/pixel", "sky level subtracted before detection"),
    "seg_background_rms": ("{flux}/pixel", "sigma-clipped RMS of the sky pixels"),
    "seg_central_area": ("pixel", "pixels of the central object (label 1)"),
    "seg_central_flux": ("{flux}", "background-subtracted detection-band flux in label 1"),
    "seg_bad_fraction": ("", "fraction of bad pixels in the detection band"),
}


def segment_column_units(flux_unit: str) -> dict[str, str]:
    """Unit of every column of the segmentation table for cutouts in ``flux_unit``."""
    return {name: unit.format(flux=flux_unit) for name, (unit, _) in SEGMENT_COLUMNS.items()}


#: Units of the table columns for cutouts in nanomaggy (the synthetic and SDSS
#: surveys); `SegmentationResult.units` holds those of the shard's own flux unit.
SEGMENT_COLUMN_UNITS: dict[str, str] = segment_column_units("nanomaggy")
#: Description of every column of the segmentation table.
SEGMENT_COLUMN_DESCRIPTIONS: dict[str, str] = {
    name: desc for name, (_, desc) in SEGMENT_COLUMNS.items()
}


class SegmentOptionError(ConfigError):
    """A segmentation option is out of range or of the wrong type."""


# --------------------------------------------------------------------------- options


def _check_real(
    name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise SegmentOptionError(f"segment option {name}={value!r} must be a finite number")
    if value < low or (low_open and value == low) or value > high:
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise SegmentOptionError(f"segment option {name}={value!r} is outside {bounds}")
    return float(value)


def _validate(
    *, kernel_fwhm: Any, max_bad_fraction: Any, huge_fraction: Any, **options: Any
) -> dict[str, Any]:
    """Keyword options of `segment_image`: the config's by the schema, the rest here."""
    checked = check_section("segment", options, error=SegmentOptionError)
    checked["kernel_fwhm"] = _check_real("kernel_fwhm", kernel_fwhm, low=0.0, high=100.0)
    checked["max_bad_fraction"] = _check_real(
        "max_bad_fraction", max_bad_fraction, low=0.0, high=1.0
    )
    checked["huge_fraction"] = _check_real(
        "huge_fraction", huge_fraction, low=0.0, high=1.0, low_open=True
    )
    return checked


def segment_options(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``segment`` section of a galcat config, validated, defaults filled in.

    Parameters
    ----------
    config : mapping
        The whole galcat config; ``config['segment']`` is read (a missing section
        or key takes the schema default).

    Returns
    -------
    dict
        Every key of `DEFAULTS`.

    Raises
    ------
    SegmentOptionError
        For an unknown key or a value of the wrong type or out of the schema's
        bounds, naming it.
    """
    return settings(config, "segment", error=SegmentOptionError)


# --------------------------------------------------------------------------- helpers


def psf_fwhm_pixels(psf: np.ndarray) -> float:
    """FWHM in pixels of a PSF stamp, from the area above half its maximum.

    ``FWHM = 2 sqrt(A / pi)`` with ``A`` the number of pixels above half the peak:
    exact for a well-sampled circular profile and insensitive to extended wings
    (which inflate second moments of Moffat PSFs). Returns `FALLBACK_KERNEL_FWHM`
    for an empty or non-finite stamp.
    """
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or not np.all(np.isfinite(psf)) or not np.any(psf > 0):
        return FALLBACK_KERNEL_FWHM
    area = np.count_nonzero(psf > 0.5 * psf.max())
    return float(max(1.0, 2.0 * math.sqrt(area / math.pi)))


@functools.lru_cache(maxsize=32)
def _kernel(fwhm: float) -> np.ndarray | None:
    """1-D factor of a normalised 2-D Gaussian kernel of ``fwhm`` pixels, or None.

    The 2-D kernel is ``outer(k, k)`` (odd side >= 3, sum 1); convolving with the
    separable factors costs a small fraction of the full 2-D kernel.
    """
    if fwhm <= 0:
        return None
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    half = max(1, int(math.ceil(1.5 * fwhm)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    kern = np.exp(-0.5 * (x / sigma) ** 2)
    kern /= kern.sum()
    kern.setflags(write=False)
    return kern


@functools.lru_cache(maxsize=8)
def _centre_geometry(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each pixel from the cutout centre, and the central pixel mask."""
    ny, nx = shape
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    y, x = np.mgrid[0:ny, 0:nx]
    dist = np.hypot(y - cy, x - cx)
    central = dist <= dist.min() + 1e-9
    dist.setflags(write=False)
    central.setflags(write=False)
    return dist, central


def _clipped_stats(values: np.ndarray, sigma: float = 3.0, maxiters: int = 10):
    """Median and standard deviation after iterative sigma clipping about the median.

    As `astropy.stats.sigma_clipped_stats` (cumulative clipping, ``sigma`` about the
    median, standard deviation of the kept values), on one sorted copy with running
    sums: a kept set is always a contiguous range of the sorted values.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return math.nan, math.nan
    offset = float(v[v.size // 2])
    v -= offset  # against cancellation in the running sums
    c1 = np.concatenate(([0.0], np.cumsum(v)))
    c2 = np.concatenate(([0.0], np.cumsum(v * v)))

    def stats(lo: int, hi: int) -> tuple[float, float]:
        n = hi - lo
        med = 0.5 * (v[lo + (n - 1) // 2] + v[lo + n // 2])
        mean = (c1[hi] - c1[lo]) / n
        return med, math.sqrt(max((c2[hi] - c2[lo]) / n - mean * mean, 0.0))

    lo, hi = 0, v.size
    med, std = stats(lo, hi)
    for _ in range(maxiters):
        if not std > 0:
            break
        new_lo = max(lo, int(np.searchsorted(v, med - sigma * std, side="left")))
        new_hi = min(hi, int(np.searchsorted(v, med + sigma * std, side="right")))
        if (new_lo, new_hi) == (lo, hi) or new_hi - new_lo < 3:
            break
        lo, hi = new_lo, new_hi
        med, std = stats(lo, hi)
    return float(med + offset), float(std)


def _convolve(data: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = ndimage.correlate1d(data, kernel, axis=0, mode="constant", cval=0.0)
    return ndimage.correlate1d(out, kernel, axis=1, mode="constant", cval=0.0)


def _smooth(data: np.ndarray, valid: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """Normalised convolution: bad pixels are left out and the kernel renormalised.

    Zero on bad pixels. Linear in ``data`` on valid pixels, so a constant
    background can be subtracted before or after smoothing alike.
    """
    if kernel is None:
        return np.where(valid, data, 0.0)
    num = _convolve(np.where(valid, data, 0.0), kernel)
    den = _convolve(valid.astype(np.float64), kernel)
    out = np.zeros_like(num)
    good = valid & (den > 1e-6)
    out[good] = num[good] / den[good]
    return out


def _background(
    image: np.ndarray,
    valid: np.ndarray,
    smoothed: np.ndarray,
    kernel: np.ndarray | None,
    sigma: np.ndarray | None,
    sig_ok: np.ndarray,
) -> tuple[float, float, int]:
    """Sky level, sky RMS and flags of one cutout (see the module docstring).

    ``smoothed`` is `_smooth` of the raw image. Sources are the pixels whose
    smoothed flux exceeds the previous sky estimate by 3 sigma of the *smoothed*
    noise, dilated by `SKY_DILATION` pixels, until the sky mask changes by at most
    1% (at most `SKY_PASSES` passes). The background is flagged unreliable when fewer
    than `MIN_SKY_PIXELS` or `MIN_SKY_FRACTION` of the valid pixels remain as sky,
    when the mask has not converged, or when the sky RMS exceeds 1.5 times the
    median of the sigma map over the sky (galaxy light in the "sky").
    """
    flags = 0
    bkg, rms = _clipped_stats(image[valid])
    sky = valid
    smooth_factor = float(np.sum(kernel**2)) if kernel is not None else 1.0
    min_sky = max(MIN_SKY_PIXELS, MIN_SKY_FRACTION * np.count_nonzero(valid))
    previous = None
    for _ in range(SKY_PASSES):
        if not rms > 0:
            break
        sources = valid & (smoothed - bkg > 3.0 * smooth_factor * rms)
        sources = ndimage.binary_dilation(sources, structure=_EIGHT, iterations=SKY_DILATION)
        sky = valid & ~sources
        if previous is not None and (
            np.count_nonzero(sky != previous) <= 0.01 * np.count_nonzero(previous)
        ):
            break  # converged: the mask changes by at most 1% (it can flip-flop)
        if np.count_nonzero(sky) < min_sky:
            flags |= SegmentFlag.BACKGROUND_UNRELIABLE
            frame = np.zeros_like(valid)
            w = min(FRAME_WIDTH, max(1, min(image.shape) // 4))
            frame[:w, :] = frame[-w:, :] = frame[:, :w] = frame[:, -w:] = True
            frame &= valid
            if np.count_nonzero(frame) >= 3:
                bkg, rms = _clipped_stats(image[frame])
                sky = frame
            break
        bkg, rms = _clipped_stats(image[sky])
        previous = sky
    else:
        if rms > 0:  # the source mask was still growing: galaxy light in the "sky"
            flags |= SegmentFlag.BACKGROUND_UNRELIABLE
    ref = sky & sig_ok
    if sigma is not None and np.count_nonzero(ref) >= 3 and rms > 1.5 * np.median(sigma[ref]):
        flags |= SegmentFlag.BACKGROUND_UNRELIABLE
    return bkg, rms, flags


def _remove_small(labels: np.ndarray, n_pixels: int) -> np.ndarray:
    """Labels with fewer than ``n_pixels`` pixels set to 0, the rest renumbered 1..k."""
    if labels.max() == 0:
        return labels
    areas = np.bincount(labels.ravel())
    keep = areas >= n_pixels
    keep[0] = False
    lut = np.zeros(areas.size, dtype=np.int32)
    lut[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    return lut[labels]


_EIGHT = np.ones((3, 3), dtype=bool)


def _detect(smoothed: np.ndarray, threshold: np.ndarray, valid: np.ndarray, n_pixels: int):
    """8-connected groups of >= n_pixels pixels above threshold (as detect_sources)."""
    above = valid & (smoothed > threshold)
    labels, _ = ndimage.label(above, structure=_EIGHT)
    return _remove_small(labels.astype(np.int32, copy=False), n_pixels)


def _reflood(
    objects: np.ndarray, detection: np.ndarray, smoothed: np.ndarray, n_pixels: int
) -> np.ndarray:
    """Enforce a minimum object area and give every detected pixel an object.

    Objects smaller than ``n_pixels`` are dropped and their pixels (and any
    unassigned detected pixel) re-flooded from the touching objects along the
    negative smoothed image; a detected source left without any object is kept
    whole as one object.
    """
    from skimage.segmentation import watershed

    markers = _remove_small(objects, n_pixels)
    mask = detection > 0
    if markers.max() > 0 and np.any(mask & (markers == 0)):
        markers = watershed(-smoothed, markers=markers, mask=mask, connectivity=2)
    orphan = mask & (markers == 0)
    if np.any(orphan):
        # whole detected sources without a marker become one object each
        orphan_labels = np.unique(detection[orphan])
        lut = np.zeros(detection.max() + 1, dtype=np.int32)
        lut[orphan_labels] = markers.max() + np.arange(1, orphan_labels.size + 1)
        markers = np.where(orphan, lut[detection], markers)
    return markers.astype(np.int32, copy=False)


# --------------------------------------------------------------------------- methods


def _deblend_multithreshold(smoothed, detection, *, n_pixels, nlevels, contrast):
    from photutils.segmentation import SegmentationImage, deblend_sources

    segm = SegmentationImage(detection)
    deblended = deblend_sources(
        smoothed,
        segm,
        n_pixels,
        n_levels=nlevels,
        contrast=contrast,
        mode="exponential",
        connectivity=8,
        relabel=True,
        progress_bar=False,
    )
    return np.asarray(deblended.data, dtype=np.int32)


def _deblend_watershed(smoothed, detection, *, h, min_distance):
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    # work in the bounding box of the sources (plus a margin of 1 pixel)
    rows = np.flatnonzero(detection.any(axis=1))
    cols = np.flatnonzero(detection.any(axis=0))
    box = (
        slice(max(rows[0] - 1, 0), rows[-1] + 2),
        slice(max(cols[0] - 1, 0), cols[-1] + 2),
    )
    mask = detection[box] > 0
    # pixels outside the sources sit well below every source, so that the
    # maximum of a faint source is always a regional maximum of height >= h
    floor = float(smoothed[box][mask].min()) - 2.0 * h - 1.0
    landscape = np.where(mask, smoothed[box], floor)
    peaks = h_maxima(landscape, h).astype(bool) & mask
    regions, n_regions = ndimage.label(peaks, structure=_EIGHT)
    if n_regions == 0:
        return detection.copy()
    out = np.zeros(detection.shape, dtype=np.int32)
    index = np.arange(1, n_regions + 1)
    heights = ndimage.maximum(landscape, regions, index)
    positions = ndimage.maximum_position(landscape, regions, index)
    # brightest first; a marker closer than min_distance to a brighter one is dropped
    order = sorted(range(n_regions), key=lambda i: (-heights[i], positions[i]))
    kept: list[int] = []
    kept_pos: list[tuple[int, int]] = []
    for i in order:
        py, px = positions[i]
        if all((py - qy) ** 2 + (px - qx) ** 2 >= min_distance**2 for qy, qx in kept_pos):
            kept.append(i + 1)
            kept_pos.append((py, px))
    lut = np.zeros(n_regions + 1, dtype=np.int32)
    lut[np.asarray(kept)] = np.arange(1, len(kept) + 1, dtype=np.int32)
    markers = lut[regions]
    out[box] = watershed(-landscape, markers=markers, mask=mask, connectivity=2)
    return out


def _deblend_dbscan(smoothed, detection, threshold, *, eps, min_samples, flux_scale):
    from sklearn.cluster import DBSCAN

    ys, xs = np.nonzero(detection)
    ratio = np.maximum(smoothed[ys, xs] / threshold[ys, xs], 1.0)
    features = np.column_stack([xs, ys, flux_scale * np.log10(ratio)]).astype(np.float64)
    cluster = DBSCAN(eps=eps, min_samples=min_samples).fit(features).labels_
    objects = np.zeros(detection.shape, dtype=np.int32)
    objects[ys, xs] = cluster + 1  # DBSCAN noise (-1) -> 0, re-flooded by _reflood
    return objects


def _split(image, valid, bkg, smoothed, threshold, detection, opts, fill) -> np.ndarray:
    """Step 4: the detected sources split into objects by ``opts['method']``.

    On an image smoothed less than the detection image (a PSF-sized kernel erases
    the saddle between close pairs), floored at the threshold inside the detected
    sources so that every source pixel is positive; then `_reflood`.
    """
    deblend_fwhm = opts["kernel_fwhm"] * opts["deblend_smoothing"]
    if deblend_fwhm == opts["kernel_fwhm"]:
        sharp = smoothed
    else:
        sharp = _smooth(image, valid, _kernel(round(deblend_fwhm, 3))) - bkg
    sharp = np.where(detection > 0, np.maximum(sharp, threshold), 0.0)
    if opts["method"] == "multithreshold":
        objects = _deblend_multithreshold(
            sharp,
            detection,
            n_pixels=opts["n_pixels"],
            nlevels=opts["deblend_nlevels"],
            contrast=opts["deblend_contrast"],
        )
    elif opts["method"] == "watershed":
        objects = _deblend_watershed(
            sharp,
            detection,
            h=opts["nsigma"] * fill,
            min_distance=opts["watershed_min_distance"],
        )
    else:
        objects = _deblend_dbscan(
            sharp,
            detection,
            threshold,
            eps=opts["dbscan_eps"],
            min_samples=opts["dbscan_min_samples"],
            flux_scale=opts["dbscan_flux_scale"],
        )
    return _reflood(objects, detection, sharp, opts["n_pixels"])


def _sky(image, valid, sigma, kernel_fwhm):
    """Step 2: ``(sky, rms, flags, smoothed raw image, valid sigma pixels)``."""
    kernel = _kernel(round(kernel_fwhm, 3))
    raw_smoothed = _smooth(image, valid, kernel)
    flags = 0
    if sigma is not None:
        sig_ok = valid & np.isfinite(sigma) & (sigma > 0)
        if np.count_nonzero(sig_ok) < 0.5 * np.count_nonzero(valid):
            flags |= SegmentFlag.SIGMA_MAP_INVALID
    else:
        sig_ok = np.zeros(image.shape, dtype=bool)
    bkg, rms, bflags = _background(image, valid, raw_smoothed, kernel, sigma, sig_ok)
    return bkg, rms, flags | bflags, raw_smoothed, sig_ok


def estimate_sky(
    image: np.ndarray,
    sigma: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    kernel_fwhm: float = FALLBACK_KERNEL_FWHM,
) -> tuple[float, float, int]:
    """Sky level and RMS of one cutout, the estimate `segment_image` subtracts (step 2).

    Sigma-clipped statistics of the pixels left when the sources (the image smoothed
    with a Gaussian of ``kernel_fwhm`` pixels, 3 sigma above the sky, grown by 4
    pixels) are masked, iterated until the mask settles.

    Parameters
    ----------
    image : 2D array_like
        Flux per pixel, any unit; NaN and inf pixels are bad.
    sigma : 2D array_like, optional
        1-sigma noise per pixel (same unit); an infinite value is a bad pixel.
    mask : 2D bool array_like, optional
        True where a pixel is bad.
    kernel_fwhm : float, optional
        FWHM in pixels of the smoothing kernel (the PSF's, `psf_fwhm_pixels`).
        Default 3.

    Returns
    -------
    sky, rms : float
        Flux per pixel; NaN when no pixel is valid.
    flags : int
        `galcat.flags.SegmentFlag` bits (``BACKGROUND_UNRELIABLE`` when too few sky
        pixels remain, ``SIGMA_MAP_INVALID``).

    Notes
    -----
    Cost: a few ms for a 64 x 64 cutout, ~0.1 s for 512 x 512.
    """
    image = np.asarray(image, dtype=np.float64)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        bad |= np.isinf(sigma)
    if bad.all():
        return math.nan, math.nan, int(SegmentFlag.ALL_NAN_OR_ZERO)
    bkg, rms, flags, _, _ = _sky(image, ~bad, sigma, float(kernel_fwhm))
    return float(bkg), float(rms), int(flags)


#: Sources of the first pass of `mesh_background` are grown by this many kernel FWHM
#: before the second: their faint wings otherwise pass for sky (on the synthetic mosaic
#: of bench/detect_vs_sextractor.py, growing by 2 pixels left galaxy fluxes 22% low, by
#: 5 FWHM 15%; SExtractor's 22%).
SOURCE_GROWTH_FWHM = 5.0


def _mesh(data, valid, box, filter_size):
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, SExtractorBackground

    ny, nx = data.shape
    box = (min(box, ny), min(box, nx))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bkg = Background2D(np.where(valid, data, 0.0), box, mask=~valid,
                           filter_size=(filter_size, filter_size),
                           sigma_clip=SigmaClip(sigma=3.0), bkg_estimator=SExtractorBackground(),
                           exclude_percentile=50.0)
    return np.asarray(bkg.background), np.asarray(bkg.background_rms)


def mesh_background(
    image: np.ndarray,
    valid: np.ndarray,
    *,
    box: int,
    filter_size: int = 3,
    kernel_fwhm: float = FALLBACK_KERNEL_FWHM,
    noise: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sky and sky-RMS maps of a large image: a background mesh with the sources masked.

    `photutils.background.Background2D` on meshes of ``box`` pixels, median-filtered over
    ``filter_size`` meshes, with SExtractor's estimator on 3-sigma-clipped pixels; then
    again with the sources of a first detection (2 sigma, 5 pixels) grown by
    `SOURCE_GROWTH_FWHM` kernel FWHM masked, so that galaxy wings do not pass for sky.
    Unlike `estimate_sky` it follows gradients: for mosaics and the boxes around an
    object that `galcat.surveys.local` stages.

    Parameters
    ----------
    image : 2D ndarray
        Flux per pixel (bad pixels anything).
    valid : 2D bool ndarray
        Pixels that may be used.
    box : int
        Mesh side in pixels (clipped to the image).
    filter_size : int, optional
        Median filter in meshes (odd). Default 3.
    kernel_fwhm : float, optional
        Detection kernel FWHM in pixels (the PSF's). Default 3.
    noise : 2D ndarray, optional
        1-sigma noise per pixel for the first detection (default: the first mesh's RMS).

    Returns
    -------
    background, rms : 2D ndarray
        Same shape as ``image``.

    Notes
    -----
    Cost: ~0.3 s per million pixels (two meshes and one detection pass).
    """
    data = np.where(valid, image, 0.0)
    bkg, rms = _mesh(data, valid, box, filter_size)
    # detection only (step 3 of segment_image): the mask needs no deblending
    smoothed = np.where(valid, _smooth(np.where(valid, data - bkg, 0.0), valid,
                                       _kernel(round(kernel_fwhm, 3))), 0.0)
    threshold = 2.0 * np.where(valid, noise if noise is not None else rms, np.inf)
    first = _detect(smoothed, threshold, valid, 5)
    grow = max(1, int(round(SOURCE_GROWTH_FWHM * kernel_fwhm)))
    sources = ndimage.binary_dilation(first > 0, iterations=grow)
    if np.count_nonzero(valid & ~sources) > 0.1 * np.count_nonzero(valid):
        bkg, rms = _mesh(data, valid & ~sources, box, filter_size)
    return bkg, rms


def detect_sources(
    image: np.ndarray,
    valid: np.ndarray,
    noise: np.ndarray,
    *,
    kernel_fwhm: float,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Detection and deblending of a background-subtracted image (steps 3 and 4 of
    `segment_image`, without a central object): for whole mosaics (`galcat.detection`).

    Parameters
    ----------
    image : 2D ndarray
        Background-subtracted flux per pixel; bad pixels are ignored.
    valid : 2D bool ndarray
        True where a pixel may belong to a source.
    noise : 2D ndarray
        1-sigma noise of ``image`` per pixel (finite where valid).
    kernel_fwhm : float
        FWHM in pixels of the Gaussian detection kernel (the PSF's).
    **options
        The keys of the ``segment`` section (``method``, ``nsigma``, ``n_pixels``,
        ``deblend_*``, ...), checked against the schema; missing ones take its defaults.

    Returns
    -------
    objects : 2D ndarray of int32
        0 background, 1.. the deblended objects (no particular order).
    smoothed : 2D ndarray
        The detection image (``image`` smoothed with the kernel, 0 on bad pixels).

    Notes
    -----
    Cost: ~0.1 s per million pixels for the smoothing and labelling, plus the
    deblending, which grows with the number and size of the sources.
    """
    opts = check_section("segment", options, error=SegmentOptionError)
    opts["kernel_fwhm"] = _check_real("kernel_fwhm", kernel_fwhm, low=0.0, high=100.0)
    data = np.where(valid, image, 0.0)
    smoothed = np.where(valid, _smooth(data, valid, _kernel(round(kernel_fwhm, 3))), 0.0)
    threshold = opts["nsigma"] * np.where(valid, noise, np.inf)
    detection = _detect(smoothed, threshold, valid, opts["n_pixels"])
    if detection.max() == 0:
        return detection, smoothed
    fill = float(np.median(noise[valid]))
    threshold = np.where(valid, threshold, 0.0)
    return _split(data, valid, 0.0, smoothed, threshold, detection, opts, fill), smoothed


# --------------------------------------------------------------------------- one image


def _empty_info() -> dict[str, Any]:
    return {
        "background": math.nan,
        "background_rms": math.nan,
        "n_detected": 0,
        "n_sources": 0,
        "central_area": 0,
        "central_flux": math.nan,
        "central_distance": math.nan,
        "bad_fraction": math.nan,
        "threshold": math.nan,
        "kernel_fwhm": math.nan,
    }


def segment_image(
    image: np.ndarray,
    sigma: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    method: str = DEFAULTS["method"],
    nsigma: float = DEFAULTS["nsigma"],
    n_pixels: int = DEFAULTS["n_pixels"],
    kernel_fwhm: float = FALLBACK_KERNEL_FWHM,
    deblend_smoothing: float = DEFAULTS["deblend_smoothing"],
    deblend_nlevels: int = DEFAULTS["deblend_nlevels"],
    deblend_contrast: float = DEFAULTS["deblend_contrast"],
    watershed_min_distance: int = DEFAULTS["watershed_min_distance"],
    dbscan_eps: float = DEFAULTS["dbscan_eps"],
    dbscan_min_samples: int = DEFAULTS["dbscan_min_samples"],
    dbscan_flux_scale: float = DEFAULTS["dbscan_flux_scale"],
    max_bad_fraction: float = 0.1,
    huge_fraction: float = 0.5,
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Segment one cutout: background, detection, deblending, central object.

    Parameters
    ----------
    image : 2D array_like
        The cutout in one band, flux per pixel in any unit (the background need
        not be subtracted). NaN and inf pixels are treated as bad.
    sigma : 2D array_like or `None`, optional
        1-sigma noise of ``image`` per pixel, same unit. Used for the detection
        threshold where finite and positive; the measured background RMS is used
        elsewhere and when `None`. An infinite sigma (zero weight) marks a bad
        pixel.
    mask : 2D bool array_like or `None`, optional
        True where a pixel is bad. Bad pixels never belong to an object.
    method : {'multithreshold', 'watershed', 'dbscan'}, optional
        Deblending method (see the module docstring). Every option that is also
        a key of the config's ``segment`` section defaults to its schema default
        (`DEFAULTS`, ``galcat defaults``) and is checked against its bounds.
    nsigma : float, optional
        Detection threshold in units of the per-pixel noise, applied to the
        smoothed image.
    n_pixels : int, optional
        Minimum number of 8-connected pixels of a source and of a deblended
        object.
    kernel_fwhm : float, optional
        FWHM in pixels of the Gaussian detection kernel (use the PSF's,
        `psf_fwhm_pixels`); 0 disables smoothing. Default 3.
    deblend_smoothing : float, optional
        FWHM of the deblending kernel as a fraction of ``kernel_fwhm``, in
        [0, 1]: the detected sources are split on an image smoothed this much
        (1: the detection image; 0: unsmoothed). A PSF-sized kernel erases the
        saddle between galaxies a few PSF widths apart.
    deblend_nlevels : int, optional
        Multi-thresholding levels (``multithreshold``).
    deblend_contrast : float, optional
        Fraction of a source's flux a branch needs to become a separate object
        (``multithreshold``), in [0, 1]; 1 disables deblending.
    watershed_min_distance : int, optional
        Minimum distance in pixels between watershed markers (``watershed``).
    dbscan_eps : float, optional
        DBSCAN neighbourhood radius in the scaled feature space, in pixels
        (``dbscan``); 1.5 takes the 8 neighbours of a pixel of equal flux.
    dbscan_min_samples : int, optional
        DBSCAN points within ``dbscan_eps`` (itself included) that make a core
        point (``dbscan``).
    dbscan_flux_scale : float, optional
        Pixels per dex of smoothed flux in the DBSCAN features (``dbscan``); 0
        clusters on position alone.
    max_bad_fraction : float, optional
        Fraction of bad pixels above which ``BAD_PIXELS`` is set. Default 0.1.
    huge_fraction : float, optional
        Fraction of the cutout above which the central object is
        ``CENTRAL_HUGE``. Default 0.5.

    Returns
    -------
    segmap : 2D ndarray of int32
        0 background, 1 the central object, 2.. neighbours by increasing distance
        from the centre.
    flags : int
        Bit word, see `galcat.flags.SegmentFlag`.
    info : dict
        ``background`` and ``background_rms`` (flux/pixel), ``threshold`` (median
        detection threshold, flux/pixel), ``n_detected`` (sources before
        deblending), ``n_sources`` (objects after), ``central_area`` (pixels),
        ``central_flux`` (background-subtracted flux in label 1, flux unit),
        ``central_distance`` (pixels from the centre to label 1, 0 if it covers
        it), ``bad_fraction``, ``kernel_fwhm`` (pixels).

    Raises
    ------
    SegmentOptionError
        An option is out of range or of the wrong type (a `ValueError`).
    ValueError
        ``image``, ``sigma`` and ``mask`` are not 2-D arrays of one shape.

    Notes
    -----
    Cost (CPU time on one core, 64x64 cutouts of the synthetic survey and of
    GalSim discs and spheroids with neighbours): about 3.5 ms for ``watershed``,
    5.5 ms for ``dbscan`` and 6.5 ms for ``multithreshold`` (32 levels;
    deblending costs per source and per level), i.e. 150-300 galaxies/s. Much of
    it holds the GIL, so the ``threads`` scheduler gains little; ``processes``
    scales with cores.
    """
    opts = _validate(
        method=method,
        nsigma=nsigma,
        n_pixels=n_pixels,
        kernel_fwhm=kernel_fwhm,
        deblend_smoothing=deblend_smoothing,
        deblend_nlevels=deblend_nlevels,
        deblend_contrast=deblend_contrast,
        watershed_min_distance=watershed_min_distance,
        dbscan_eps=dbscan_eps,
        dbscan_min_samples=dbscan_min_samples,
        dbscan_flux_scale=dbscan_flux_scale,
        max_bad_fraction=max_bad_fraction,
        huge_fraction=huge_fraction,
    )
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"image must be a non-empty 2-D array; got shape {image.shape}")
    shape = image.shape
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != shape:
            raise ValueError(f"sigma shape {sigma.shape} differs from image {shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from image {shape}")

    info = _empty_info()
    empty = np.zeros(shape, dtype=np.int32)
    flags = 0

    # 1. bad pixels
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= mask
    if sigma is not None:
        bad |= np.isinf(sigma)
    valid = ~bad
    n_valid = int(np.count_nonzero(valid))
    info["bad_fraction"] = 1.0 - n_valid / image.size
    if info["bad_fraction"] > opts["max_bad_fraction"]:
        flags |= SegmentFlag.BAD_PIXELS
    if n_valid == 0 or not np.any(image[valid] != 0):
        return empty, flags | SegmentFlag.ALL_NAN_OR_ZERO | SegmentFlag.NO_DETECTION, info

    # 2. background (on the raw image, smoothed once: smoothing is linear)
    info["kernel_fwhm"] = opts["kernel_fwhm"]
    bkg, rms, bflags, raw_smoothed, sig_ok = _sky(image, valid, sigma, opts["kernel_fwhm"])
    flags |= bflags
    info["background"], info["background_rms"] = bkg, rms

    # 3. noise map and detection
    if not rms > 0 and not np.any(sig_ok):
        # a constant image and no noise map: nothing can be detected
        return empty, flags | SegmentFlag.NO_DETECTION, info
    fill = rms if rms > 0 else float(np.median(sigma[sig_ok]))
    noise = np.where(sig_ok, sigma, fill) if sigma is not None else np.full(shape, fill)
    threshold = opts["nsigma"] * noise
    info["threshold"] = float(np.median(threshold[valid]))

    data = np.where(valid, image - bkg, 0.0)
    smoothed = np.where(valid, raw_smoothed - bkg, 0.0)
    detection = _detect(smoothed, threshold, valid, opts["n_pixels"])
    n_detected = int(detection.max())
    info["n_detected"] = n_detected
    if n_detected == 0:
        return empty, flags | SegmentFlag.NO_DETECTION, info

    # 4. deblending
    objects = _split(image, valid, bkg, smoothed, threshold, detection, opts, fill)

    # 5. central object and relabelling
    segmap, cflags, centre_distance = _relabel_central(objects, smoothed)
    flags |= cflags
    central = segmap == 1
    n_sources = int(segmap.max())
    info["n_sources"] = n_sources
    info["central_area"] = int(np.count_nonzero(central))
    info["central_flux"] = float(data[central].sum())
    info["central_distance"] = centre_distance

    if central[0, :].any() or central[-1, :].any() or central[:, 0].any() or central[:, -1].any():
        flags |= SegmentFlag.CENTRAL_TOUCHES_EDGE
    if info["central_area"] > opts["huge_fraction"] * image.size:
        flags |= SegmentFlag.CENTRAL_HUGE
    grown = ndimage.binary_dilation(central, structure=_EIGHT)
    if np.any(grown & bad):
        flags |= SegmentFlag.BAD_PIXELS
    if n_sources > 1 and np.any(grown & (segmap > 1)):
        flags |= SegmentFlag.BLENDED
    return segmap, int(flags), info


def _relabel_central(objects: np.ndarray, smoothed: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Relabel the central object 1 and neighbours 2.. by distance from the centre."""
    dist, central_pixels = _centre_geometry(objects.shape)
    n = int(objects.max())
    index = np.arange(1, n + 1)
    # nearest distance of each object to the centre, and its smoothed flux
    nearest = np.asarray(ndimage.minimum(dist, objects, index), dtype=np.float64)
    flux = np.asarray(ndimage.sum(smoothed, objects, index), dtype=np.float64)
    at_centre = objects[central_pixels]
    at_centre = at_centre[at_centre > 0]
    flags = 0
    if at_centre.size:
        counts = np.bincount(at_centre, minlength=n + 1)
        # most central pixels; ties go to the brighter object, then the lower label
        best = max(range(1, n + 1), key=lambda lab: (counts[lab], flux[lab - 1], -lab))
        distance = 0.0
    else:
        flags |= SegmentFlag.CENTRE_NOT_DETECTED
        best = min(range(1, n + 1), key=lambda lab: (nearest[lab - 1], -flux[lab - 1], lab))
        distance = float(nearest[best - 1])
    others = sorted(
        (lab for lab in range(1, n + 1) if lab != best),
        key=lambda lab: (nearest[lab - 1], -flux[lab - 1], lab),
    )
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[best] = 1
    for new, lab in enumerate(others, start=2):
        lut[lab] = new
    return lut[objects], flags, distance


# --------------------------------------------------------------------------- a shard


@dataclass
class SegmentationResult:
    """Segmentation of the objects of one shard.

    Attributes
    ----------
    object_id : ndarray of int64, shape (n,)
    segmap : ndarray of int32, shape (n, y, x)
        0 background, 1 the central object, 2.. neighbours.
    table : pandas.DataFrame
        One row per object in ``object_id`` order, keyed by the ``object_id``
        column; columns `SEGMENT_COLUMNS` (units also in ``table.attrs['units']``).
    method : str
    detect_band : str
    kernel_fwhm : float
        FWHM in pixels of the detection kernel (from the detect band's PSF).
    options : dict
        The validated ``segment`` options used.
    flux_unit : str
        Flux unit of the cutouts (and of the flux columns).
    """

    object_id: np.ndarray
    segmap: np.ndarray
    table: pd.DataFrame
    method: str
    detect_band: str
    kernel_fwhm: float
    options: dict[str, Any] = field(default_factory=dict)
    flux_unit: str = "nanomaggy"

    @property
    def units(self) -> dict[str, str]:
        """Unit of every table column (for `galcat.tables.write_table`)."""
        return segment_column_units(self.flux_unit)

    def __post_init__(self) -> None:
        n = len(self.object_id)
        if self.segmap.ndim != 3 or self.segmap.shape[0] != n or len(self.table) != n:
            raise ValueError(
                f"segmap {self.segmap.shape} and table ({len(self.table)} rows) must hold "
                f"{n} objects"
            )


def _segment_one(
    image: np.ndarray, sigma: np.ndarray, mask: np.ndarray, opts: dict[str, Any]
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """`segment_image` that turns an unexpected error into the FAILED flag."""
    try:
        return segment_image(image, sigma, mask, **opts)
    except SegmentOptionError:
        raise
    except Exception as exc:  # one bad object never stops the shard
        info = _empty_info()
        info["error"] = f"{type(exc).__name__}: {exc}"
        return (
            np.zeros(image.shape, dtype=np.int32),
            SegmentFlag.FAILED | SegmentFlag.NO_DETECTION,
            info,
        )


def segment_shard(
    batch: CutoutBatch, *, config: Mapping[str, Any], label: str | None = None
) -> SegmentationResult:
    """Segment every object of a shard in the run's ``detect_band`` (`galcat.bands`).

    Parameters
    ----------
    batch : galcat.store.CutoutBatch
        The cutouts of one shard.
    config : mapping
        The whole validated galcat config; ``segment``, ``detect_band`` and
        ``dask`` (``scheduler``, ``workers``, ``objects_per_task``) are read, with
        the schema defaults for missing keys.
    label : str, optional
        Name in the progress lines of the log (default ``segment[<method>]``).

    Returns
    -------
    SegmentationResult

    Raises
    ------
    SegmentOptionError
        A ``segment`` option is invalid (before any object is processed).
    galcat.store.LayoutError
        The shard has no ``detect_band`` band (or, for ``sum``, bands of different
        zero points). Problems of single objects never raise: they are flagged and
        logged with the object id.

    Notes
    -----
    The detection kernel's FWHM is measured once on the detect band's PSF
    (`psf_fwhm_pixels`). Objects are processed in blocks of
    ``dask.objects_per_task`` by `galcat.parallel.map_blocks_of_objects`; the
    result does not depend on the scheduler or the number of workers.
    """
    opts = segment_options(config)
    band_name = resolve_detect_band(
        setting(config, "detect_band", error=SegmentOptionError), batch.bands)
    planes = detection_planes(batch, band_name)
    psf = np.asarray(planes[3], dtype=np.float64)
    fwhm = psf_fwhm_pixels(psf)
    if not (np.all(np.isfinite(psf)) and np.any(psf > 0)):
        log.warning(
            "segment: the %s-band PSF is unusable; using a %.1f-pixel kernel", band_name, fwhm
        )
    opts["kernel_fwhm"] = fwhm

    image, sigma, mask = (np.ascontiguousarray(a) for a in planes[:3])
    ids = batch.object_id

    def run_block(block: slice) -> list[tuple[np.ndarray, int, dict[str, Any]]]:
        # each object at its own cut size (the stamp may be larger: galcat.store)
        return [
            _segment_one(image[i][batch.box(i)], sigma[i][batch.box(i)],
                         mask[i][batch.box(i)], opts)
            for i in range(block.start, block.stop)
        ]

    blocks = map_blocks_of_objects(
        run_block,
        batch.n_objects,
        label=label or f"segment[{opts['method']}]",
        preload=_WORKER_MODULES[opts["method"]],
        **dask_options(config),
    )
    results = [item for block in blocks for item in block]

    ny, nx = batch.image.shape[2:]
    segmap = np.zeros((batch.n_objects, ny, nx), dtype=np.int32)
    rows = []
    for i, (seg, flag, info) in enumerate(results):
        segmap[i][batch.box(i)] = seg
        rows.append(
            {
                "object_id": int(ids[i]),
                "seg_flag": int(flag),
                "seg_n_sources": int(info["n_sources"]),
                "seg_background": float(info["background"]),
                "seg_background_rms": float(info["background_rms"]),
                "seg_central_area": int(info["central_area"]),
                "seg_central_flux": float(info["central_flux"]),
                "seg_bad_fraction": float(info["bad_fraction"]),
            }
        )
        if flag & SEVERE_FLAGS:
            extra = f" ({info['error']})" if "error" in info else ""
            log.warning(
                "segment: object %d flagged %s%s", int(ids[i]), "|".join(describe(flag, SegmentFlag)), extra
            )
        elif flag & ~SegmentFlag.BLENDED:
            log.info("segment: object %d flagged %s", int(ids[i]),
                     "|".join(describe(flag, SegmentFlag)))
    table = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    table = table.astype(
        {
            "object_id": "int64",
            "seg_flag": "int32",
            "seg_n_sources": "int32",
            "seg_central_area": "int32",
        }
    )
    table.attrs["units"] = segment_column_units(batch.flux_unit)
    table.attrs["descriptions"] = dict(SEGMENT_COLUMN_DESCRIPTIONS)
    n_flagged = int(np.count_nonzero(table["seg_flag"].to_numpy() & SEVERE_FLAGS))
    if n_flagged:
        log.warning("segment: %d of %d objects have no usable segmap", n_flagged, batch.n_objects)
    return SegmentationResult(
        object_id=ids.copy(),
        segmap=segmap,
        table=table,
        method=opts["method"],
        detect_band=band_name,
        kernel_fwhm=fwhm,
        options={"detect_band": band_name, **opts},
        flux_unit=batch.flux_unit,
    )
