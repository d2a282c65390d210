"""statmorph's measurements with the repeated work taken out: the same numbers, faster.

`SourceMorphology` is `statmorph.SourceMorphology` (Rodriguez-Gomez et al. 2019) with
the hot paths of its calculation replaced by equivalents that give statmorph's values:

* **The asymmetry centre.** statmorph minimises the CAS asymmetry with Nelder–Mead,
  rotating image and mask by 180° with ``skimage.transform.rotate`` (bilinear, zeros
  outside) for every trial centre, ~130 times a galaxy. A rotation by 180° about
  ``(xc, yc)`` maps pixel ``(x, y)`` to ``(2 xc − x, 2 yc − y)``: the image flipped on
  both axes and shifted by a sub-pixel amount, the same for every pixel. Here the
  image and the mask are zero-padded once per galaxy, and each trial centre costs
  four flipped views of the image with the bilinear weights skimage uses, in skimage's
  order of operations (values agree to ~1e-14; the minimiser takes the same path),
  and one flipped view of the mask (skimage rotates a bool mask with order 0, a
  whole-pixel shift).
* **Apertures.** photutils builds an aperture object, its bounding box and its
  exact-overlap mask for every ``area_overlap`` and every ``do_photometry``, so
  statmorph's mean flux in an aperture computes the same exact-overlap grid twice.
  `ApertureWeights` computes each grid once (the photutils geometry function on the
  bounding box photutils uses, so the weights are bitwise photutils') and gives the
  masked area and the sums photutils would. The Petrosian radii (circular about the
  centroid and the asymmetry centre, elliptical), the radii holding a fraction of the
  light (r20, r50, r80, the half-light radii) and the asymmetries use it.

Everything else (Gini, M20, MID, smoothness, the Sérsic fit, every flag and warning)
is statmorph's own code. `galcat.morphology.run_statmorph` measures with this class;
``tests/test_fastmorph.py`` checks every statistic against ``statmorph.SourceMorphology``
on statmorph's reference image and on synthetic galaxies.

Cost: ~45% of statmorph's CPU time on a 64 × 64 synthetic galaxy with a PSF (see
``bench/measure_throughput.py``).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings

import numpy as np
import scipy.fft
import scipy.optimize as opt
import scipy.signal
import statmorph
from astropy.modeling import fitting, models
from astropy.utils import lazyproperty
from astropy.utils.exceptions import AstropyUserWarning
from photutils.aperture import EllipticalAnnulus
from photutils.geometry import circular_overlap_grid, elliptical_overlap_grid
from scipy import ndimage
from statmorph.statmorph import (
    _aperture_mean,
    _doublesersic_quantity_names,
    _postfitting_fix,
    _quantile,
    _quantity_names,
)

__all__ = [
    "ApertureWeights",
    "ConvolvedSersic2D",
    "SourceMorphology",
    "rotate_180",
    "rotate_180_mask",
]


def _warn(message: str) -> None:
    """statmorph's warnings, in statmorph's words and class."""
    warnings.warn(message, AstropyUserWarning, stacklevel=3)


class ApertureWeights:
    """Exact-overlap weights of one photutils aperture on an image grid.

    The weights are those of ``aperture.to_mask(method='exact')`` (the photutils
    geometry functions on the bounding box photutils computes), cut to the image.
    Build with `circle`, `circular_annulus`, `ellipse` or `elliptical_annulus`.

    Attributes
    ----------
    large : tuple of slices or None
        Where the weights lie in the image; None when the aperture misses it.
    weights : 2-D float array or None
        The overlap fraction (0–1) of every pixel of ``large``.
    """

    __slots__ = ("large", "weights")

    def __init__(self, shape, bbox, grid) -> None:
        ixmin, ixmax, iymin, iymax = bbox
        ny, nx = shape
        if ixmin >= nx or iymin >= ny or ixmax <= 0 or iymax <= 0:
            self.large = self.weights = None
            return
        self.large = (slice(max(iymin, 0), min(iymax, ny)), slice(max(ixmin, 0), min(ixmax, nx)))
        small = (slice(max(iymin, 0) - iymin, min(iymax, ny) - iymin),
                 slice(max(ixmin, 0) - ixmin, min(ixmax, nx) - ixmin))
        self.weights = grid()[small]

    # ------------------------------------------------------------------ builders
    @staticmethod
    def _box(centre, dx, dy):
        """photutils' bounding box (``BoundingBox.from_float``) and centred pixel edges."""
        x, y = float(centre[0]), float(centre[1])
        ixmin, ixmax = math.floor(x - dx + 0.5), math.ceil(x + dx + 0.5)
        iymin, iymax = math.floor(y - dy + 0.5), math.ceil(y + dy + 0.5)
        edges = (ixmin - 0.5 - x, ixmax - 0.5 - x, iymin - 0.5 - y, iymax - 0.5 - y)
        return (ixmin, ixmax, iymin, iymax), edges, ixmax - ixmin, iymax - iymin

    @classmethod
    def circle(cls, shape, centre, r: float) -> ApertureWeights:
        """``CircularAperture(centre, r)``; ``centre`` is (x, y), pixels."""
        bbox, e, nx, ny = cls._box(centre, r, r)
        return cls(shape, bbox, lambda: circular_overlap_grid(*e, nx, ny, r, 1, 5))

    @classmethod
    def circular_annulus(cls, shape, centre, r_in: float, r_out: float) -> ApertureWeights:
        """``CircularAnnulus(centre, r_in, r_out)``."""
        bbox, e, nx, ny = cls._box(centre, r_out, r_out)

        def grid():
            out = circular_overlap_grid(*e, nx, ny, r_out, 1, 5)
            out -= circular_overlap_grid(*e, nx, ny, r_in, 1, 5)
            return out

        return cls(shape, bbox, grid)

    @staticmethod
    def _ellipse_extents(a, b, theta):
        c, s = np.cos(theta), np.sin(theta)
        return (float(np.sqrt((a * c) ** 2 + (b * -s) ** 2)),
                float(np.sqrt((a * s) ** 2 + (b * c) ** 2)))

    @classmethod
    def ellipse(cls, shape, centre, a: float, b: float, theta: float) -> ApertureWeights:
        """``EllipticalAperture(centre, a, b, theta=theta)``; ``theta`` in radians."""
        bbox, e, nx, ny = cls._box(centre, *cls._ellipse_extents(a, b, theta))
        return cls(shape, bbox, lambda: elliptical_overlap_grid(*e, nx, ny, a, b, theta, 1, 5))

    @classmethod
    def elliptical_annulus(cls, shape, centre, a_in: float, a_out: float, b_out: float,
                           theta: float) -> ApertureWeights:
        """``EllipticalAnnulus(centre, a_in, a_out, b_out, theta=theta)``."""
        b_in = b_out * a_in / a_out
        bbox, e, nx, ny = cls._box(centre, *cls._ellipse_extents(a_out, b_out, theta))

        def grid():
            out = elliptical_overlap_grid(*e, nx, ny, a_out, b_out, theta, 1, 5)
            out -= elliptical_overlap_grid(*e, nx, ny, a_in, b_in, theta, 1, 5)
            return out

        return cls(shape, bbox, grid)

    # ------------------------------------------------------------------ what photutils gives
    def sum(self, data: np.ndarray, *, cut: bool = False) -> np.float64:
        """``aperture.do_photometry(data, method='exact')[0][0]`` (NaN without overlap).

        ``cut``: ``data`` is already ``image[large]``. A NumPy scalar, as photutils
        returns: with a Python float, NumPy 2 would compute ``sum - area * sky`` in
        the float32 of statmorph's sky statistics."""
        if self.large is None:
            return np.float64(np.nan)
        with np.errstate(invalid="ignore"):
            return ((data if cut else data[self.large]) * self.weights)[self.weights > 0].sum()

    def area(self, mask: np.ndarray | None = None, *, cut: bool = False) -> np.float64:
        """``aperture.area_overlap(data, mask=mask)`` (NaN without overlap); ``cut``:
        ``mask`` is already ``mask[large]``."""
        if self.large is None:
            return np.float64(np.nan)
        if mask is None:
            return np.sum(self.weights)
        w = self.weights.copy()
        w[mask if cut else mask[self.large]] = 0.0
        return np.sum(w)

    def mean(self, data: np.ndarray, mask: np.ndarray) -> float:
        """statmorph's ``_aperture_mean``: the sum over the unmasked overlap area."""
        area = self.area(mask)
        return self.sum(data) / area if area else 0.0


def _window(shape, window):
    """``(first row, rows, first column, columns)`` of a window of the image (all of it
    when None)."""
    if window is None:
        return 0, shape[0], 0, shape[1]
    rows, cols = window
    return rows.start, rows.stop - rows.start, cols.start, cols.stop - cols.start


def rotate_180(padded: np.ndarray, shape: tuple[int, int], centre, pad: int,
               window: tuple[slice, slice] | None = None) -> np.ndarray:
    """``skimage.transform.rotate(image, 180, center=centre)`` of a float image (bilinear,
    zeros outside), or its ``window`` (slices with explicit bounds inside the image).

    ``padded`` is the image with ``pad`` zeros on every side (``pad`` > the image's
    larger side); ``centre`` is (x, y) inside the image. The output pixel ``(y, x)``
    takes the bilinear interpolation of the input at ``(2 yc − y, 2 xc − x)``: the
    flipped image shifted by the same fraction everywhere, weighted in the order of
    skimage's ``bilinear_interpolation``.
    """
    y0, ny, x0, nx = _window(shape, window)
    sx, sy = 2.0 * float(centre[0]), 2.0 * float(centre[1])
    kx, ky = math.floor(sx), math.floor(sy)
    dc, dr = sx - kx, sy - ky
    r0, c0 = ky + pad - y0, kx + pad - x0
    rows0, rows1 = slice(r0, r0 - ny, -1), slice(r0 + 1, r0 + 1 - ny, -1)
    cols0, cols1 = slice(c0, c0 - nx, -1), slice(c0 + 1, c0 + 1 - nx, -1)
    top = (1 - dc) * padded[rows0, cols0] + dc * padded[rows0, cols1]
    bottom = (1 - dc) * padded[rows1, cols0] + dc * padded[rows1, cols1]
    return (1 - dr) * top + dr * bottom


def rotate_180_mask(padded: np.ndarray, shape: tuple[int, int], centre, pad: int,
                    window: tuple[slice, slice] | None = None) -> np.ndarray:
    """``skimage.transform.rotate(mask, 180, center=centre)`` of a bool mask (or its
    ``window``): skimage rotates bool images with order 0
    (``scipy.ndimage.map_coordinates``: the pixel ``floor(coordinate + 0.5)``, False
    outside), so this is a flip and a whole-pixel shift of the padded mask (see
    `rotate_180`)."""
    y0, ny, x0, nx = _window(shape, window)
    kx = math.floor(2.0 * float(centre[0]) + 0.5) + pad - x0
    ky = math.floor(2.0 * float(centre[1]) + 0.5) + pad - y0
    return padded[ky:ky - ny:-1, kx:kx - nx:-1]


def _radius_at_fraction(image, aperture, r_total, fraction, tag):
    """statmorph's ``_radius_at_fraction_of_total_{circ,ellip}`` with `ApertureWeights`:
    ``aperture(r)`` is the aperture of size ``r``; ``tag`` names it in the warnings."""
    flag = 0
    total_sum = aperture(r_total).sum(image)
    if total_sum == 0:
        _warn(f"[{tag}] Total flux sum is zero.")
        return r_total, 2
    if total_sum < 0:
        _warn(f"[{tag}] Total flux sum is negative.")
        flag = 2
        total_sum = np.abs(total_sum)

    def func(r):
        assert (r >= 0) & (fraction >= 0) & (fraction <= 1) & (total_sum > 0)
        if r == 0:
            return 0.0 - fraction
        return np.abs(aperture(r).sum(image)) / total_sum - fraction

    return _bracket_and_solve(func, r_total), flag


def _radius_at_fraction_circ(image, center, r_total, fraction):
    """statmorph's ``_radius_at_fraction_of_total_circ``."""
    return _radius_at_fraction(
        image, lambda r: ApertureWeights.circle(image.shape, center, r), r_total, fraction,
        "r_circ")


def _radius_at_fraction_ellip(image, center, elongation, theta, a_total, fraction):
    """statmorph's ``_radius_at_fraction_of_total_ellip``."""
    return _radius_at_fraction(
        image, lambda a: ApertureWeights.ellipse(image.shape, center, a, a / elongation, theta),
        a_total, fraction, "r_ellip")


def _bracket_and_solve(func, r_total):
    """statmorph's search: the first of 100 radii in [0, r_total] past the fraction,
    then Brent's method between it and the one before (xtol 1e-6)."""
    r_min = None
    for r in np.linspace(0.0, r_total, num=100):
        value = func(r)
        if value <= 0:
            r_min = r
        elif value > 0:
            return opt.brentq(func, r_min, r, xtol=1e-6)
    raise AssertionError("Root not found within range.")


class ConvolvedSersic2D(statmorph.ConvolvedSersic2D):
    """statmorph's PSF-convolved Sérsic model with the PSF's transform computed once.

    ``scipy.signal.fftconvolve(z, psf, mode='same')`` transforms the PSF at every call
    (about 100 calls a fit); here its ``rfftn`` is kept per image shape and the rest
    is fftconvolve's own sequence (``rfftn`` of the model at the same FFT shape,
    product, ``irfftn``, the centred slice), so the values are fftconvolve's.
    """

    _transforms = None

    def set_psf(self, psf):
        super().set_psf(psf)
        self._transforms = {}

    def evaluate(self, x, y, amplitude, r_eff, n, x_0, y_0, ellip, theta):
        z = models.Sersic2D.evaluate(x, y, amplitude, r_eff, n, x_0, y_0, ellip, theta)
        if self.psf is None:
            raise AssertionError("Must specify PSF using set_psf method.")
        if z.ndim != 2 or self.psf.ndim != 2 or 1 in z.shape or 1 in self.psf.shape:
            return scipy.signal.fftconvolve(z, self.psf, mode="same")
        full = tuple(a + b - 1 for a, b in zip(z.shape, self.psf.shape, strict=True))
        if self._transforms is None:
            self._transforms = {}
        if z.shape not in self._transforms:
            fshape = [scipy.fft.next_fast_len(size, True) for size in full]
            self._transforms[z.shape] = (fshape, scipy.fft.rfftn(self.psf, fshape, axes=[0, 1]))
        fshape, transform = self._transforms[z.shape]
        out = scipy.fft.irfftn(scipy.fft.rfftn(z, fshape, axes=[0, 1]) * transform, fshape,
                               axes=[0, 1])[:full[0], :full[1]]
        (sy, sx), (ny, nx) = ((f - s) // 2 for f, s in zip(full, z.shape, strict=True)), z.shape
        return out[sy:sy + ny, sx:sx + nx]


#: The residuals below are astropy 7's (its objective takes ``fit_param_indices``);
#: with an older astropy the fitter is astropy's own, unchanged.
_ASTROPY_7_OBJECTIVE = "fit_param_indices" in inspect.signature(
    fitting.LevMarLSQFitter.objective_function).parameters


class _LevMarLSQFitter(fitting.LevMarLSQFitter):
    """astropy's Levenberg–Marquardt fitter with the parameter bookkeeping of its
    objective done once: bounds and which parameters carry them are read at the first
    call (astropy re-derives them at each of ~100 calls); the residuals are astropy's,
    ``ravel(weights × (model − data))`` with bounded parameters clipped by ``fmax`` /
    ``fmin``. For models without fixed or tied parameters (else astropy's own)."""

    _clips = None

    def objective_function(self, fps, *args, **kwargs):
        model = args[0]
        if not _ASTROPY_7_OBJECTIVE or any(model.fixed.values()) or any(model.tied.values()):
            return super().objective_function(fps, *args, **kwargs)
        if self._clips is None:
            self._clips = [(k, model.bounds[name]) for k, name in enumerate(model.param_names)
                           if model.bounds[name] != (None, None)]
        params = np.array(fps, dtype=float)
        for k, (low, high) in self._clips:
            if low is not None:
                params[k] = np.fmax(params[k], low)
            if high is not None:
                params[k] = np.fmin(params[k], high)
        weights, inputs, meas = args[1], args[2:-1], args[-1]
        value = model.evaluate(*inputs, *params) - meas
        return np.ravel(value if weights is None else weights * value)


class SourceMorphology(statmorph.SourceMorphology):
    """`statmorph.SourceMorphology` with the faster asymmetry and apertures (module
    docstring); the same arguments, attributes and results.

    One more keyword: ``skip_sersic=True`` leaves the Sérsic fit out of the quantities
    statmorph computes at construction (its ``sersic_*`` attributes are then fitted
    only if read): for a caller that fits its own Sérsic model, so that the light
    profile is not fitted twice (~20% of statmorph's time on a 64 × 64 galaxy).
    """

    def __init__(self, *args, skip_sersic: bool = False, **kwargs):
        self._skip_sersic = bool(skip_sersic)
        super().__init__(*args, **kwargs)

    def _calculate_morphology(self):
        """statmorph's eager computation of every quantity, less the Sérsic ones with
        ``skip_sersic``."""
        if not self._skip_sersic:
            return super()._calculate_morphology()
        for name in _quantity_names:
            if not name.startswith("sersic_"):
                _ = self[name]
        if self._include_doublesersic:
            for name in _doublesersic_quantity_names:
                _ = self[name]
        return None

    # ------------------------------------------------------------------ sky box
    @lazyproperty
    def _slice_skybox(self):
        """statmorph's sky box: the first square (row-major) of ``skybox_size`` pixels,
        halved until one is found, without source or masked pixels. statmorph tests
        every position with two ``np.all`` calls; here one summed-area table of the
        bad pixels gives every square's count at once."""
        segmap = self._segmap.data[self._slice_stamp]
        bad = segmap != 0
        if self._mask is not None:
            bad = bad | self._mask[self._slice_stamp]
        ny, nx = bad.shape
        table = np.zeros((ny + 1, nx + 1), dtype=np.int64)
        table[1:, 1:] = bad.cumsum(axis=0).cumsum(axis=1)
        assert self._skybox_size >= 2
        size = self._skybox_size
        while True:
            # statmorph tries the corners range(0, n - size): the last one is left out
            if ny - size > 0 and nx - size > 0:
                counts = (table[size:ny, size:nx] - table[:ny - size, size:nx]
                          - table[size:ny, :nx - size] + table[:ny - size, :nx - size])
                free = np.argwhere(counts == 0)
                if free.size:
                    i, j = (int(v) for v in free[0])
                    return slice(i, i + size), slice(j, j + size)
            if size <= 2:
                _warn("[skybox] Skybox not found.")
                self.flag = 2
                return slice(0, 0), slice(0, 0)
            size //= 2
            if self._verbose:
                _warn(f"[skybox] Reducing skybox size to {size}.")

    # ------------------------------------------------------------------ asymmetry
    @lazyproperty
    def _padded_stamp(self):
        """The masked-zeroed stamp and its mask, float64, zero-padded for `rotate_180`."""
        image = np.float64(self._cutout_stamp_maskzeroed)
        pad = max(image.shape) + 2
        return pad, np.pad(image, pad), np.pad(self._mask_stamp, pad)

    def _asymmetry_function(self, center, image, kind):
        if kind not in ("cas", "rms") or image is not self._cutout_stamp_maskzeroed:
            return super()._asymmetry_function(center, image, kind)
        ny, nx = image.shape
        xc, yc = center
        if xc < 0 or xc >= nx or yc < 0 or yc >= ny:
            _warn("[asym_center] Minimizer tried to exit bounds.")
            self.flag = max(self.flag, 1)
            return 100.0
        ap = ApertureWeights.circle(image.shape, center,
                                    self._petro_extent_cas * self._rpetro_circ_centroid)
        if ap.large is None:  # the aperture misses the stamp: statmorph's NaN
            return super()._asymmetry_function(center, image, kind)
        # only the aperture's pixels count: rotate and mask just its bounding box
        window = ap.large
        pad, padded, padded_mask = self._padded_stamp
        image_180 = rotate_180(padded, image.shape, center, pad, window)
        mask_symmetric = self._mask_stamp[window] | rotate_180_mask(
            padded_mask, image.shape, center, pad, window)
        rows, cols = window
        image = np.where(~mask_symmetric, padded[pad + rows.start:pad + rows.stop,
                                                 pad + cols.start:pad + cols.stop], 0.0)
        image_180 = np.where(~mask_symmetric, image_180, 0.0)
        ap_area = ap.area(mask_symmetric, cut=True)
        ap_abs_sum = ap.sum(np.abs(image), cut=True)
        ap_abs_diff = ap.sum(np.abs(image_180 - image), cut=True)
        if ap_abs_sum == 0.0:
            _warn("[asymmetry_function] Zero flux sum.")
            self.flag = max(self.flag, 1)
            return 100.0
        if kind == "rms":
            ap_sqr_sum = ap.sum(image**2, cut=True)
            ap_sqr_diff = ap.sum((image_180 - image) ** 2, cut=True)
            if self.sky_sigma == -99.0:
                return ap_sqr_diff / ap_sqr_sum
            return ((ap_sqr_diff - 2 * ap_area * self.sky_sigma**2)
                    / (ap_sqr_sum - ap_area * self.sky_sigma**2))
        if self._sky_asymmetry == -99.0:
            return ap_abs_diff / ap_abs_sum
        return (ap_abs_diff - ap_area * self._sky_asymmetry) / ap_abs_sum

    # ------------------------------------------------------------------ Petrosian radii
    def _petrosian_function_circ(self, r, center):
        image, mask = self._cutout_stamp_maskzeroed, self._mask_stamp
        half = 0.5 * self._annulus_width
        annulus = ApertureWeights.circular_annulus(image.shape, center, r - half, r + half)
        aperture = ApertureWeights.circle(image.shape, center, r)
        return self._petrosian_ratio(abs(annulus.mean(image, mask)),
                                     abs(aperture.mean(image, mask)), "rpetro_circ")

    def _petrosian_function_ellip(self, a, center, elongation, theta):
        image, mask = self._cutout_stamp_maskzeroed, self._mask_stamp
        half = 0.5 * self._annulus_width
        a_out = a + half
        annulus = ApertureWeights.elliptical_annulus(image.shape, center, a - half, a_out,
                                                     a_out / elongation, theta)
        aperture = ApertureWeights.ellipse(image.shape, center, a, a / elongation, theta)
        return self._petrosian_ratio(abs(annulus.mean(image, mask)),
                                     abs(aperture.mean(image, mask)), "rpetro_ellip")

    def _petrosian_ratio(self, annulus_mean, aperture_mean, name):
        if aperture_mean == 0:
            _warn(f"[{name}] Mean flux is zero.")
            self.flag = 2
            return float(annulus_mean != 0) - self._eta
        return annulus_mean / aperture_mean - self._eta

    # ------------------------------------------------------------------ radii at a fraction
    def _radius_at_fraction_of_total_cas(self, fraction):
        r, flag = _radius_at_fraction_circ(
            self._cutout_stamp_maskzeroed, self._asymmetry_center,
            self._petro_extent_cas * self.rpetro_circ, fraction)
        self.flag = max(self.flag, flag)
        if np.isnan(r) or (r <= 0.0):
            _warn("[CAS] Invalid radius_at_fraction_of_total.")
            self.flag = 2
            r = -99.0
        return r

    @lazyproperty
    def rhalf_circ(self):
        if self.rmax_circ == 0:
            return 0.0
        r, flag = _radius_at_fraction_circ(self._cutout_stamp_maskzeroed,
                                           self._asymmetry_center, self.rmax_circ, 0.5)
        self.flag = max(self.flag, flag)
        return r

    @lazyproperty
    def rhalf_ellip(self):
        if self.rmax_ellip == 0:
            return 0.0
        r, flag = _radius_at_fraction_ellip(
            self._cutout_stamp_maskzeroed, self._asymmetry_center, self.elongation_asymmetry,
            self.orientation_asymmetry, self.rmax_ellip, 0.5)
        self.flag = max(self.flag, flag)
        return r

    # ------------------------------------------------------------------ multimode
    @lazyproperty
    def _clump_areas(self) -> dict:
        """Sorted clump areas by threshold: the M statistic's search (a grid of quantiles,
        then basin-hopping with Nelder–Mead) asks ~200 times for quantiles that map to
        far fewer distinct thresholds (a quantile is a pixel value)."""
        return {}

    def _multimode_function(self, q):
        threshold = _quantile(self._sorted_pixelvals_mid, q)
        areas = self._clump_areas.get(threshold)
        if areas is None:
            labels, _ = ndimage.label(self._cutout_mid >= threshold,
                                      structure=ndimage.generate_binary_structure(2, 2))
            # every label 1..N has pixels: its count is its area (np.unique's counts)
            areas = np.sort(np.bincount(labels.ravel())[1:])[::-1]
            self._clump_areas[threshold] = areas
        return areas

    # ------------------------------------------------------------------ Sérsic fit
    @lazyproperty
    def _sersic_model(self):
        """statmorph's Sérsic fit (its start, bounds, fitter, flags and warnings) with
        `ConvolvedSersic2D`; statmorph's own code where the caller set Sérsic options
        or gave no PSF."""
        if (self._psf is None or self._sersic_fitting_args is not None
                or self._sersic_model_args is not None or self._sersic_maxiter is not None):
            return statmorph.SourceMorphology.__dict__["_sersic_model"].fget(self)
        image, mask = self._cutout_stamp_maskzeroed, self._mask_stamp
        ny, nx = image.shape
        start = time.time()
        self._sersic_fitting_args = {"maxiter": 500, "acc": 1e-5}
        # statmorph's start: n from the concentration, the rest from the asymmetry
        # centre's moments and the elliptical half-light radius
        args = self._sersic_model_args = {
            "bounds": {"n": (0.01, None)},
            "r_eff": self.rhalf_ellip,
            "n": min(max(10.0**(-1.5) * self.concentration**3.5, 1.0), 3.5),
            "x_0": self.xc_asymmetry - self.xmin_stamp,
            "y_0": self.yc_asymmetry - self.ymin_stamp,
            "ellip": self.ellipticity_asymmetry,
            "theta": self.orientation_asymmetry,
        }
        a_in = args["r_eff"] - 0.5 * self._annulus_width
        a_out = args["r_eff"] + 0.5 * self._annulus_width
        if a_in < 0:
            _warn("[sersic] guess_r_eff < annulus_width.")
            self.flag_sersic = 2
            a_in = args["r_eff"]
        annulus = EllipticalAnnulus(np.array([args["x_0"], args["y_0"]]), a_in, a_out,
                                    (1 - args["ellip"]) * a_out, theta=args["theta"])
        mean_flux = _aperture_mean(annulus, image, mask, method="exact")
        if mean_flux <= 0.0:
            _warn("[sersic] Nonpositive flux at r_e.")
            self.flag_sersic = 2
            mean_flux = np.abs(mean_flux)
        args["amplitude"] = mean_flux
        model = ConvolvedSersic2D(**args)
        model.set_psf(self._psf)
        self._sersic_chi2 = -99.0
        y, x = np.mgrid[0:ny, 0:nx].astype(image.dtype)
        weightmap = self._weightmap_stamp
        fit_weights = np.zeros_like(image)
        used = (image != 0) & (weightmap != 0)  # the sky noise is in the weight map
        fit_weights[used] = 1.0 / weightmap[used]
        self._sersic_num_validpixels = np.sum(used)
        self._sersic_num_freeparam = model.parameters.size
        self._sersic_num_dof = self._sersic_num_validpixels - self._sersic_num_freeparam
        if self._sersic_num_dof <= 0:
            _warn("[sersic] Not enough data for fit.")
            self.flag_sersic = 2
            return model
        fitter = _LevMarLSQFitter()
        fitted = fitter(model, x, y, z=image, weights=fit_weights, **self._sersic_fitting_args)
        if fitter.fit_info["ierr"] not in [1, 2, 3, 4]:
            _warn("[sersic] fit_info['message']: " + fitter.fit_info["message"])
            self.flag_sersic = 2
        for param, bounds in args["bounds"].items():
            if getattr(fitted, param).value in bounds:  # stuck at a bound: suspect
                self.flag_sersic = max(self.flag_sersic, 1)
        fitted.r_eff.value, fitted.ellip.value, fitted.theta.value = _postfitting_fix(
            fitted.r_eff.value, fitted.ellip.value, fitted.theta.value)
        self._sersic_chi2 = np.sum((fit_weights * (image - fitted(x, y))) ** 2)
        self.sersic_runtime = time.time() - start
        return fitted
