"""WCS cutting, unit conversion and PSF stamps shared by every survey module.

Conventions
-----------
- Cutouts are cut with :class:`astropy.nddata.Cutout2D` (``mode='partial'``)
  around the object's sky position through the image's own WCS, or for
  range-read mosaics with :func:`astropy.nddata.utils.overlap_slices`, which is
  what Cutout2D uses, so both routes give the same window. The object lies
  within half a pixel of the cutout centre ``((size - 1) / 2, (size - 1) / 2)``;
  bands are *not* resampled onto a common grid (each band is cut from its own
  frame, so bands agree to within half a pixel).
- Pixels off the image are NaN with ``mask = True``; an object partly off its
  image is kept (one warning lists them); an object wholly off raises
  :class:`OffImageError` naming it, or is kept fully masked when the config
  says ``archive.off_image: mask``.
- Fluxes are converted to nanomaggies per pixel (AB zero point 22.5:
  1 nanomaggy = 3.631 µJy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.nddata.utils import overlap_slices
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy.special import erf

__all__ = [
    "NANOMAGGY_JY",
    "ZEROPOINT",
    "Cut",
    "OffImageError",
    "cut_arrays",
    "gaussian_psf",
    "nanomaggy_factor",
    "pixel_scale_arcsec",
    "stamp",
    "window",
]

#: AB magnitude of one nanomaggy.
ZEROPOINT = 22.5
#: One nanomaggy in Jansky.
NANOMAGGY_JY = 3.631e-6
ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


class OffImageError(ValueError):
    """An object lies wholly off the image it should be cut from."""


@dataclass
class Cut:
    """Aligned cutouts of one object from one image (and its noise, ...)."""

    arrays: list[np.ndarray]
    mask: np.ndarray
    wcs: WCS | None
    partial: bool
    #: Position of the object in the cutout, 0-based (x, y) pixels.
    position: tuple[float, float]


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale of a celestial WCS in arcsec."""
    scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    return float(np.mean(scales))


def window(shape: Sequence[int], x: float, y: float, size: int, *, what: str) -> tuple:
    """``(slices_large, slices_small, partial)`` of a ``size``-square cutout at (x, y).

    The same window as ``Cutout2D(..., mode='partial')``. Raises
    :class:`OffImageError` when the cutout does not overlap the image.
    """
    try:
        large, small = overlap_slices(tuple(shape), (size, size), (y, x), mode="partial")
    except NoOverlapError:
        raise OffImageError(
            f"{what} lies wholly off its image (pixel x={x:.1f}, y={y:.1f}; image "
            f"{shape[1]}x{shape[0]})"
        ) from None
    partial = any((s.stop - s.start) != size for s in small)
    return large, small, partial


def paste(block: np.ndarray, small: tuple, size: int) -> np.ndarray:
    """A ``size``-square NaN array with ``block`` in the ``small`` slices."""
    out = np.full((size, size), np.nan, dtype=np.float64)
    out[small] = block
    return out


def cut_arrays(arrays: Sequence[np.ndarray], wcs: WCS, ra: float, dec: float, size: int,
               *, what: str, extra_mask: np.ndarray | None = None) -> Cut:
    """Cut every array of ``arrays`` (same grid as ``wcs``) around (ra, dec).

    ``arrays[0]`` is the image; the others (noise, weights) are cut with the
    same window. ``mask`` is True off the image, where any array is not finite,
    and where ``extra_mask`` (same grid) is True.
    """
    image = np.asarray(arrays[0])
    coord = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    try:
        cut = Cutout2D(image, coord, (size, size), wcs=wcs, mode="partial",
                       fill_value=np.nan, copy=True)
    except NoOverlapError:
        x, y = wcs.celestial.world_to_pixel(coord)
        raise OffImageError(
            f"{what} lies wholly off its image (RA={ra:.6f}, Dec={dec:.6f} -> pixel "
            f"x={float(x):.1f}, y={float(y):.1f}; image {image.shape[1]}x{image.shape[0]})"
        ) from None
    large, small = cut.slices_original, cut.slices_cutout
    out = [np.asarray(cut.data, dtype=np.float64)]
    for arr in arrays[1:]:
        out.append(paste(np.asarray(arr)[large], small, size))
    mask = np.ones((size, size), dtype=bool)
    mask[small] = False
    for arr in out:
        mask |= ~np.isfinite(arr)
    if extra_mask is not None:
        em = np.zeros((size, size), dtype=bool)
        em[small] = np.asarray(extra_mask)[large]
        mask |= em
    partial = any((s.stop - s.start) != size for s in small)
    pos = cut.wcs.celestial.world_to_pixel(coord)
    return Cut(out, mask, cut.wcs, partial, (float(pos[0]), float(pos[1])))


def nanomaggy_factor(bunit: str | None, pixel_scale: float, *, what: str) -> float:
    """Multiplier taking pixel values in ``bunit`` to nanomaggies per pixel.

    Understands nanomaggies, flux densities (Jy, µJy, nJy, per pixel) and
    surface brightness (MJy/sr and the like, times the pixel solid angle).
    """
    if not bunit:
        raise ValueError(f"{what}: the image has no BUNIT; set its flux unit in the config")
    text = bunit.strip().replace("nanomaggies", "nanomaggy").replace("/pixel", "")
    text = text.replace(" per pixel", "").replace("/pix", "")
    if text.lower() in {"nanomaggy", "nmgy", "nanomaggy/pixel"}:
        return 1.0
    try:
        unit = u.Unit(text, parse_strict="raise")
    except ValueError as exc:
        raise ValueError(f"{what}: flux unit {bunit!r} is not understood ({exc})") from exc
    if unit.is_equivalent(u.Jy):
        return float((1 * unit).to_value(u.Jy) / NANOMAGGY_JY)
    if unit.is_equivalent(u.Jy / u.sr):
        omega = (pixel_scale / ARCSEC_PER_RAD) ** 2  # sr per pixel
        return float((1 * unit).to_value(u.Jy / u.sr) * omega / NANOMAGGY_JY)
    raise ValueError(
        f"{what}: flux unit {bunit!r} is neither a flux density nor a surface brightness"
    )


def gaussian_psf(fwhm_arcsec: float, pixel_scale: float, size: int) -> np.ndarray:
    """A circular Gaussian integrated over square pixels, unit sum, odd ``size``."""
    if size % 2 == 0:
        size += 1
    sigma = max(float(fwhm_arcsec), 1e-6) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    sigma_pix = sigma / pixel_scale
    edges = (np.arange(size + 1) - size / 2.0) / (math.sqrt(2.0) * sigma_pix)
    one_d = np.diff(0.5 * erf(edges))
    psf = np.outer(one_d, one_d)
    return (psf / psf.sum()).astype(np.float32)


def stamp(psf: np.ndarray, size: int, *, centre: str = "peak") -> np.ndarray:
    """Crop or pad a PSF image to an odd ``size`` around its peak (or centre), unit sum."""
    psf = np.nan_to_num(np.asarray(psf, dtype=np.float64))
    if size % 2 == 0:
        size += 1
    if centre == "peak":
        cy, cx = np.unravel_index(int(np.argmax(psf)), psf.shape)
    else:
        cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    half = size // 2
    out = np.zeros((size, size))
    y0, x0 = cy - half, cx - half
    ys = slice(max(0, y0), min(psf.shape[0], y0 + size))
    xs = slice(max(0, x0), min(psf.shape[1], x0 + size))
    out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = psf[ys, xs]
    total = out.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the PSF image has no positive flux")
    return (out / total).astype(np.float32)


def mean_psf(psfs: Sequence[np.ndarray]) -> np.ndarray:
    """The shard PSF of a band: the mean of the objects' unit-sum PSF stamps."""
    stack = np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in psfs]), axis=0)
    return (stack / stack.sum()).astype(np.float32)
