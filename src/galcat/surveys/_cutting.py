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
import re
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
    "PixelUnit",
    "cut_arrays",
    "cut_pixels",
    "gaussian_psf",
    "nanomaggy_factor",
    "pixel_scale_arcsec",
    "pixel_unit",
    "sky_geometry",
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
    #: (x, y) on the source image of cutout pixel (0, 0) (`galcat.store`'s ``cut_origin``).
    origin: tuple[float, float] = (math.nan, math.nan)
    #: RA, Dec of the cutout centre and the local CD matrix (``cut_wcs``); NaN without a WCS.
    sky: tuple[float, ...] = (math.nan,) * 6
    #: True where the cutout lies off the image (None: not recorded).
    off: np.ndarray | None = None

    def centre(self, size: int) -> Cut:
        """The central ``size`` pixels of this cut (same parity as its side): the cut
        of the same object at that size, as `cut_pixels` would make it."""
        side = self.mask.shape[0]
        if size == side:
            return self
        lo = (side - size) // 2
        box = (slice(lo, lo + size), slice(lo, lo + size))
        off = self.off[box] if self.off is not None else None
        return Cut([a[box] for a in self.arrays], self.mask[box], None,
                   bool(off.any()) if off is not None else self.partial,
                   (self.position[0] - lo, self.position[1] - lo),
                   (self.origin[0] + lo, self.origin[1] + lo), self.sky, off)


def sky_geometry(wcs: WCS | None, x: float, y: float) -> tuple[float, ...]:
    """RA, Dec (deg) at pixel (x, y) of ``wcs`` and the local CD matrix there
    (deg/pixel: dRA cos(Dec)/dx, dRA cos(Dec)/dy, dDec/dx, dDec/dy), by one-pixel
    differences (distortions included); NaN without a celestial WCS."""
    if wcs is None:
        return (math.nan,) * 6
    ra, dec = (np.asarray(v, dtype=np.float64) for v in wcs.celestial.pixel_to_world_values(
        np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0])))
    cos_dec = math.cos(math.radians(float(dec[0])))
    dra = (ra[1:] - ra[0] + 180.0) % 360.0 - 180.0
    return (float(ra[0]), float(dec[0]), float(dra[0] * cos_dec), float(dra[1] * cos_dec),
            float(dec[1] - dec[0]), float(dec[2] - dec[0]))


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
    mask = _window_mask(out, large, small, size, extra_mask)
    partial = any((s.stop - s.start) != size for s in small)
    pos = cut.wcs.celestial.world_to_pixel(coord)
    origin = (float(large[1].start - small[1].start), float(large[0].start - small[0].start))
    centre = (size - 1) / 2.0
    return Cut(out, mask, cut.wcs, partial, (float(pos[0]), float(pos[1])), origin,
               sky_geometry(wcs, origin[0] + centre, origin[1] + centre))


def _window_mask(out, large, small, size: int, extra_mask) -> np.ndarray:
    """Bad pixels of a pasted window: off the image, not finite in any array, or in
    ``extra_mask`` (on the image's grid, read at ``large``)."""
    mask = np.ones((size, size), dtype=bool)
    mask[small] = False
    for arr in out:
        mask |= ~np.isfinite(arr)
    if extra_mask is not None:
        em = np.zeros((size, size), dtype=bool)
        em[small] = np.asarray(extra_mask)[large]
        mask |= em
    return mask


def cut_pixels(arrays: Sequence[np.ndarray], x: float, y: float, size: int, *, what: str,
               extra_mask: np.ndarray | None = None) -> Cut:
    """`cut_arrays` by pixel position (x, y) on the arrays' grid, for images without a
    celestial WCS: the same window (`window`), no sky geometry."""
    # arrays may be lazily read planes: index them, never convert them whole
    large, small, partial = window(tuple(arrays[0].shape), x, y, size, what=what)
    out = [paste(np.asarray(arr[large], dtype=np.float64), small, size) for arr in arrays]
    off = np.ones((size, size), dtype=bool)
    off[small] = False
    mask = _window_mask(out, large, small, size, extra_mask)
    origin = (float(large[1].start - small[1].start), float(large[0].start - small[0].start))
    return Cut(out, mask, None, partial, (x - origin[0], y - origin[1]), origin, off=off)


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


#: BUNIT spellings of detector units: electrons, counts, DN, ADU, per exposure or per second.
_DETECTOR_UNIT = re.compile(
    r"^(?P<what>electrons?|e-?|counts?|cts|dn|adu|data ?numbers?)"
    r"(?P<rate>\s*(/|per)\s*(s|sec|second)|\s*s\^?-1|/s)?$")
#: Zero-point keywords read as the AB magnitude of one pixel unit, in this order.
_MAG_KEYS = ("MAGZERO", "MAGZPT")


@dataclass(frozen=True)
class PixelUnit:
    """What one pixel unit of an image is.

    Attributes
    ----------
    factor : float
        Multiplier taking pixel values to nanomaggies per pixel.
    electrons : float or None
        Electrons per pixel unit (for the Poisson noise of the sources), when the unit
        and header say it (electrons, or counts with GAIN; per second with EXPTIME).
    source : str
        Where the conversion came from, for the log (``"BUNIT 'nJy'"``,
        ``"PHOTFLAM/PHOTPLAM"``, ``"local.zeropoint"``).
    """

    factor: float
    electrons: float | None
    source: str


def _header_float(header, key: str) -> float | None:
    try:
        value = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _detector_unit(bunit: str) -> tuple[str, bool] | None:
    """``(kind, per_second)`` of a detector BUNIT (kind 'electron' or 'count'), else None."""
    text = " ".join(bunit.strip().lower().split())
    if text in {"cps", "counts/s", "count/s"}:
        return "count", True
    m = _DETECTOR_UNIT.match(text)
    if m is None:
        return None
    kind = "electron" if m["what"].startswith("e") else "count"
    return kind, m["rate"] is not None


def _electrons(header, kind: str, per_second: bool) -> float | None:
    """Electrons per pixel unit of a detector unit, if the header says enough."""
    gain = 1.0 if kind == "electron" else (_header_float(header, "GAIN")
                                          or _header_float(header, "CCDGAIN"))
    if gain is None or gain <= 0:
        return None
    if not per_second:
        return gain
    exptime = _header_float(header, "EXPTIME")
    return gain * exptime if exptime and exptime > 0 else None


def _header_zeropoint(header, per_second: bool | None, what: str) -> tuple[float, str] | None:
    """AB magnitude of one pixel unit from the header's photometric keywords, or None.

    PHOTFLAM (erg/s/cm2/A per unit rate) with PHOTPLAM (pivot wavelength, A): HST's,
    for images per second; an image in counts or electrons per exposure is divided by
    EXPTIME first. FLUXMAG0 (units of a magnitude-0 source), MAGZERO or MAGZPT, and
    PHOTZPT without PHOTFLAM (as some pipelines write it) are taken as the magnitude of
    one pixel unit as stored.
    """
    photflam = _header_float(header, "PHOTFLAM")
    if photflam is not None and photflam > 0:
        pivot = _header_float(header, "PHOTPLAM")
        if pivot is None or pivot <= 0:
            raise ValueError(f"{what}: the header has PHOTFLAM but no PHOTPLAM (the pivot "
                             "wavelength in Angstrom), which AB magnitudes need: add PHOTPLAM "
                             "or set local.zeropoint")
        zp = -2.5 * math.log10(photflam) - 5.0 * math.log10(pivot) - 2.408
        if per_second is False:
            exptime = _header_float(header, "EXPTIME")
            if not exptime or exptime <= 0:
                raise ValueError(f"{what}: PHOTFLAM is per second but the image is in counts "
                                 "per exposure and the header has no EXPTIME: add EXPTIME or "
                                 "set local.zeropoint")
            zp += 2.5 * math.log10(exptime)
        return zp, "PHOTFLAM/PHOTPLAM"
    fluxmag0 = _header_float(header, "FLUXMAG0")
    if fluxmag0 is not None and fluxmag0 > 0:
        return 2.5 * math.log10(fluxmag0), "FLUXMAG0"
    for key in _MAG_KEYS:
        value = _header_float(header, key)
        if value is not None:
            return value, key
    value = _header_float(header, "PHOTZPT")
    if value is not None and value > 0:
        return value, "PHOTZPT"
    return None


def pixel_unit(header, *, pixel_scale: float, zeropoint: float | None = None,
               what: str) -> PixelUnit:
    """How to turn an image's pixel values into nanomaggies, from its header.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
    pixel_scale : float
        Arcsec per pixel (surface-brightness units times the pixel solid angle).
    zeropoint : float, optional
        The AB magnitude of one pixel unit (``local.zeropoint``); it wins over the header.
    what : str
        Names the image in error messages.

    Returns
    -------
    PixelUnit

    Raises
    ------
    ValueError
        The header says neither the unit nor a zero point, or the unit needs one it
        lacks; the message says what to set (``local.zeropoint``) or to add to the
        header.

    Notes
    -----
    Order: ``zeropoint``; a physical BUNIT (nanomaggy, Jy and its multiples, MJy/sr and
    other surface brightnesses); a detector BUNIT (electrons, counts, DN, ADU, per
    exposure or per second) or none, with the header's zero point
    (PHOTFLAM/PHOTPLAM, FLUXMAG0, MAGZERO, MAGZPT, PHOTZPT). JWST images in DN/s with
    PHOTMJSR are converted through MJy/sr.
    """
    bunit = str(header.get("BUNIT") or "").strip()
    detector = _detector_unit(bunit) if bunit else None
    electrons = _electrons(header, *detector) if detector else None
    if zeropoint is not None:
        return PixelUnit(10 ** (-0.4 * (float(zeropoint) - ZEROPOINT)), electrons,
                         "local.zeropoint")
    if bunit and detector is None:
        try:
            return PixelUnit(nanomaggy_factor(bunit, pixel_scale, what=what), None,
                             f"BUNIT {bunit!r}")
        except ValueError as exc:
            raise ValueError(f"{exc}; set local.zeropoint (the AB magnitude of one pixel "
                             "unit) to override BUNIT") from None
    photmjsr = _header_float(header, "PHOTMJSR")
    if detector and detector[1] and photmjsr:
        return PixelUnit(photmjsr * nanomaggy_factor("MJy/sr", pixel_scale, what=what),
                         electrons, "PHOTMJSR")
    found = _header_zeropoint(header, detector[1] if detector else None, what)
    if found is None:
        unit = f"flux unit {bunit!r}" if bunit else "no BUNIT"
        raise ValueError(
            f"{what}: {unit} and no zero point in the header: set local.zeropoint (the AB "
            f"magnitude of one pixel unit) or add PHOTFLAM and PHOTPLAM (or MAGZERO) to the "
            "header")
    zp, source = found
    return PixelUnit(10 ** (-0.4 * (zp - ZEROPOINT)), electrons, source)


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
