"""Sérsic profile mathematics: the one home of b_n, enclosed light and the PSF-convolved model.

An elliptical Sérsic profile (Sérsic 1963; Graham & Driver 2005, PASA 22, 118) has
surface brightness

    I(a) = I_e exp(-b_n [(a / r_e)^(1/n) - 1]),

where ``a`` is the elliptical radius (the semi-major axis of the isophote through the
point, axis ratio ``q = b/a``), ``r_e`` the semi-major axis holding half of the light
and ``b_n`` the solution of ``P(2n, b_n) = 1/2`` (``P`` the regularised lower incomplete
gamma function). Its total flux is ``2 pi q r_e² n e^{b_n} Γ(2n) / b_n^{2n} I_e``, and
the fraction inside ``a`` is ``P(2n, b_n (a / r_e)^(1/n))``. A profile *truncated* at
``trunc`` r_e is zero beyond that semi-major axis and renormalised to the flux inside it
(SDSS cuts its de Vaucouleurs model at 8 r_e, the synthetic survey its bulges).

Everything here is used by `galcat.morphology` (the refined single Sérsic),
`galcat.bulgedisc` (bulge + disc), `galcat.halfmass` (ring colours and the
PSF-corrected r50) and `galcat.surveys.synthetic` (truth radii, GalSim fluxes).
Lengths are in pixels wherever an image is involved, otherwise in any one unit;
``trunc`` is always in units of ``r_eff``.

`SersicImage` renders the profile on a cutout grid, PSF-free and convolved with an
*effective* PSF image (one that includes the pixel response, as statmorph assumes):
samples at pixel centres convolved with the PSF, except the pixels within
``core_radius`` of the centre, whose light is integrated over ``core_subsamples``²
sub-pixels, each convolved with the PSF shifted (cubic spline) to its sub-pixel
position. A cuspy (n ≈ 4) centre needs that: sampled at pixel centres, an n = 4 galaxy
of 2.5 px half-light radius fits n ≈ 7, and with a 1.5 px core its bulge flux came out
2.4% high (docs/implementation_notes.md). Callers choose the core: the single-Sérsic
refit of `galcat.morphology` 1 px and 5², the bulge + disc fit of `galcat.bulgedisc` 3 px
and 7², the ring-colour route of `galcat.halfmass` every pixel at 3² through the
unshifted PSF (``subpixel_psf=False``: pixel averages convolved with the PSF, the model
its calibration was measured with).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.special as sp
from scipy import ndimage

__all__ = [
    "SersicError",
    "SersicImage",
    "amplitude",
    "b_n",
    "circular_fraction",
    "enclosed_fraction",
    "normalised_psf",
    "total_flux",
]


class SersicError(ValueError):
    """A Sérsic model cannot be built from its inputs; the message says which and why."""


def b_n(n, fraction: float = 0.5):
    """The constant ``b`` with ``P(2n, b) = fraction``.

    Parameters
    ----------
    n : float or array
        Sérsic index (> 0).
    fraction : float
        Fraction of the light inside ``r_e`` for the usual ``b_n`` (default 0.5);
        other values give ``b`` of the radius holding that fraction
        (``r_f / r_e = (b(f) / b_n)^n``).

    Returns
    -------
    float or ndarray
        A float for a scalar ``n``. Cost: one ``scipy.special.gammaincinv`` call.
    """
    out = sp.gammaincinv(2.0 * np.asarray(n, dtype=np.float64), fraction)
    return float(out) if np.ndim(out) == 0 else out


def total_flux(amplitude: float, r_eff: float, n: float, q: float = 1.0) -> float:
    """Total flux of an untruncated elliptical Sérsic with ``I(r_eff) = amplitude``.

    ``2 pi q r_eff² n e^{b_n} Γ(2n) / b_n^{2n} × amplitude``; ``r_eff`` in the length
    unit of the amplitude's area (pixels for a flux per pixel).
    """
    return amplitude * _unit_flux(r_eff, n, q, b_n(n))


def amplitude(flux: float, r_eff: float, n: float, q: float = 1.0, *,
              trunc: float = math.inf) -> float:
    """``I(r_eff)`` of an elliptical Sérsic holding ``flux`` inside ``trunc`` r_eff.

    The inverse of `total_flux`, for a profile cut at ``trunc`` r_eff (default not cut)
    whose light inside the cut is ``flux``.
    """
    return _amplitude(flux, r_eff, n, q, trunc, b_n(n))


def enclosed_fraction(a, r_eff: float, n, *, trunc: float = math.inf):
    """Fraction of a Sérsic profile's light inside the semi-major axis ``a``.

    ``P(2n, b_n (a / r_eff)^(1/n))`` (the ellipse of the profile's own axis ratio). With
    ``trunc`` (units of ``r_eff``) the profile is cut there and renormalised: the
    fraction reaches 1 at ``a = trunc r_eff``. ``a`` and ``n`` broadcast.
    """
    n = np.asarray(n, dtype=np.float64) if np.ndim(n) else n
    if math.isfinite(trunc):
        cut = trunc * r_eff
        return enclosed_fraction(np.minimum(a, cut), r_eff, n) / enclosed_fraction(cut, r_eff, n)
    return _fraction(np.asarray(a, dtype=float) / r_eff, n, b_n(n))


def _fraction(ratio, n, bn):
    """``P(2n, b_n ratio^(1/n))``: the light inside ``ratio`` r_eff."""
    return sp.gammainc(2.0 * n, bn * ratio ** (1.0 / n))


def _unit_flux(r_eff: float, n: float, q: float, bn: float) -> float:
    """Total flux of an untruncated profile of unit amplitude."""
    return (2.0 * math.pi * q * r_eff**2 * n * math.exp(bn) * math.gamma(2.0 * n)
            / bn ** (2.0 * n))


def _amplitude(flux: float, r_eff: float, n: float, q: float, trunc: float,
               bn: float) -> float:
    inside = float(_fraction(float(trunc), n, bn)) if math.isfinite(trunc) else 1.0
    return flux / (_unit_flux(r_eff, n, q, bn) * inside)


def circular_fraction(radius, r_eff: float, n: float, q: float = 1.0, *,
                      trunc: float = math.inf, n_angles: int = 128):
    """Fraction of an elliptical Sérsic's light inside circles of ``radius`` about its centre.

    ``r_eff`` is the semi-major half-light axis, ``q = b/a``. Along a ray at angle φ
    from the major axis the elliptical radius is ``a = r s(φ)``, ``s = √(cos²φ +
    sin²φ / q²)``, so the light of the wedge inside ``r`` is ``P(2n, b_n (r s /
    r_eff)^(1/n)) / s²`` up to a constant: the fraction is the ``1/s²``-weighted mean
    over φ of `enclosed_fraction` at ``a = r s`` (midpoint rule with ``n_angles``
    angles in a quadrant, exact to ~1e-6 for q ≥ 0.1). ``trunc``: the profile is cut at
    that many ``r_eff`` (semi-major) and renormalised. Cost: ``n_angles`` incomplete
    gamma evaluations per radius.
    """
    q = min(max(float(q), 1e-3), 1.0)
    phi = (np.arange(n_angles) + 0.5) * (0.5 * math.pi / n_angles)
    s = np.sqrt(np.cos(phi) ** 2 + (np.sin(phi) / q) ** 2)
    w = 1.0 / s**2
    w /= w.sum()
    r = np.asarray(radius, dtype=float)
    cut = trunc * r_eff
    a = np.minimum(r[..., None] * s, cut)
    norm = enclosed_fraction(cut, r_eff, n) if math.isfinite(trunc) else 1.0
    return np.sum(enclosed_fraction(a, r_eff, n) * w, axis=-1) / norm


class SersicImage:
    """Elliptical Sérsic profiles on one cutout grid, PSF-free and through each PSF.

    The grid, centre and orientation are fixed at construction (the fits that use it
    hold them); `sample` evaluates one profile, `intrinsic` gives its PSF-free pixel
    values and `convolved` the image through a PSF (see the module docstring for the
    core integration).

    Parameters
    ----------
    shape : (ny, nx)
        Cutout shape, pixels.
    centre : (x, y)
        Profile centre, pixels (pixel centres on integers).
    theta : float
        Angle of the major axis from +x, counter-clockwise, radians. Default 0.
    psfs : sequence of 2-D arrays or None
        One effective PSF image per band (normalised here; odd or even sides); None for
        a band without PSF, whose `convolved` image is the `intrinsic` one. Default none.
    core_radius : float
        Pixels whose centre lies closer than this (pixels) to the profile centre are
        integrated over sub-pixels (default 3; ``math.inf``: every pixel).
    core_subsamples : int
        Sub-samples per axis of a core pixel (default 7).
    subpixel_psf : bool
        True (default): each sub-pixel goes through the PSF shifted to its position,
        right for an effective PSF. False: the pixel average goes through the PSF.

    Raises
    ------
    SersicError
        A PSF that is not 2-D or has no positive finite sum, or fewer than one sub-sample.

    Notes
    -----
    Cost: the PSF transforms and the shifted PSFs (``core_subsamples``² cubic-spline
    shifts per band) are made once here; each `convolved` call is one real FFT pair of
    the padded cutout plus one small matrix product for the core pixels.
    """

    def __init__(self, shape: tuple[int, int], centre: tuple[float, float],
                 theta: float = 0.0, psfs: Sequence[np.ndarray | None] = (), *,
                 core_radius: float = 3.0, core_subsamples: int = 7,
                 subpixel_psf: bool = True) -> None:
        ny, nx = (int(v) for v in shape)
        k = int(core_subsamples)
        if k < 1:
            raise SersicError(f"core_subsamples must be >= 1; got {core_subsamples!r}")
        self.shape = (ny, nx)
        self.subpixel_psf = bool(subpixel_psf)
        x0, y0 = centre
        y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
        c, s = math.cos(theta), math.sin(theta)
        self.xm = (x - x0) * c + (y - y0) * s
        self.ym = -(x - x0) * s + (y - y0) * c
        off = (np.arange(k) + 0.5) / k - 0.5
        dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
        self.core = np.argwhere(np.hypot(x - x0, y - y0) < core_radius)  # (row, col)
        sx = x[tuple(self.core.T)][:, None] + dx[None, :] - x0
        sy = y[tuple(self.core.T)][:, None] + dy[None, :] - y0
        self.core_xm = sx * c + sy * s
        self.core_ym = -sx * s + sy * c
        self.psfs = [None if p is None else _unit_psf(p, band) for band, p in enumerate(psfs)]
        # per band: the PSF's transform (it is convolved with many models) and, for the
        # sub-pixel PSFs, the PSF shifted to every sub-pixel offset (flattened) and where
        # each core pixel's stamp lands in the flattened image (-1 outside)
        self.transforms, self.shifted, self.targets = [], [], []
        for p in self.psfs:
            if p is None:
                self.transforms.append(None)
                self.shifted.append(None)
                self.targets.append(None)
                continue
            py, px = p.shape
            fy, fx = (scipy.fft.next_fast_len(ny + py - 1, real=True),
                      scipy.fft.next_fast_len(nx + px - 1, real=True))
            self.transforms.append((scipy.fft.rfft2(p, s=(fy, fx)), (fy, fx), (py, px)))
            if not self.subpixel_psf:
                self.shifted.append(None)
                self.targets.append(None)
                continue
            stack = [ndimage.shift(p, (oy, ox), order=3, mode="constant")
                     for oy, ox in zip(dy, dx, strict=True)]
            self.shifted.append(np.array([a.ravel() / a.sum() for a in stack]))
            oy, ox = np.mgrid[0:py, 0:px]
            rows = self.core[:, 0, None] - py // 2 + oy.ravel()[None, :]
            cols = self.core[:, 1, None] - px // 2 + ox.ravel()[None, :]
            inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
            self.targets.append((np.where(inside, rows * nx + cols, -1), inside))

    def sample(self, amplitude: float, r_eff: float, n: float, q: float, *,
               trunc: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre samples and the sub-pixel samples of the core pixels.

        ``amplitude`` is ``I(r_eff)`` per pixel, ``r_eff`` the semi-major half-light axis
        in pixels, ``q = b/a``; the profile is zero beyond ``trunc`` r_eff. Returns
        ``(image (ny, nx), core (n_core, k²))``, the argument of `intrinsic` and
        `convolved`.
        """
        return self._sample(amplitude, r_eff, n, q, trunc, b_n(n))

    def sample_flux(self, flux: float, r_eff: float, n: float, q: float, *,
                    trunc: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """`sample` of the profile holding ``flux`` inside ``trunc`` r_eff (`amplitude`)."""
        bn = b_n(n)
        return self._sample(_amplitude(flux, r_eff, n, q, trunc, bn), r_eff, n, q, trunc, bn)

    def _sample(self, amplitude, r_eff, n, q, trunc, bn):
        def profile(xm, ym):
            z = np.sqrt(xm**2 + (ym / q) ** 2) / r_eff
            out = amplitude * np.exp(-bn * (z ** (1.0 / n) - 1.0))
            return np.where(z <= trunc, out, 0.0) if math.isfinite(trunc) else out

        return profile(self.xm, self.ym), profile(self.core_xm, self.core_ym)

    def intrinsic(self, samples: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """PSF-free pixel values: centre samples, core pixels their sub-pixel mean."""
        image, core = samples
        out = image.copy()
        out[tuple(self.core.T)] = core.mean(axis=1)
        return out

    def convolved(self, samples: tuple[np.ndarray, np.ndarray], band: int = 0) -> np.ndarray:
        """``samples`` through the PSF of ``band`` (the `intrinsic` image if it has none)."""
        if not self.psfs or self.psfs[band] is None:
            return self.intrinsic(samples)
        if not self.subpixel_psf:
            return self._fft_convolve(self.intrinsic(samples), band)
        image, core = samples
        model = self._fft_convolve(image, band)
        if core.size:
            # each core pixel: its sub-pixel samples through the shifted PSFs, in place of
            # its centre sample through the PSF
            ny, nx = self.shape
            stamps = (core / core.shape[1]) @ self.shifted[band]
            stamps -= image[tuple(self.core.T)][:, None] * self.psfs[band].ravel()[None, :]
            targets, inside = self.targets[band]
            model += np.bincount(targets[inside], weights=stamps[inside],
                                 minlength=ny * nx).reshape(ny, nx)
        return model

    def _fft_convolve(self, image: np.ndarray, band: int) -> np.ndarray:
        """``scipy.signal.fftconvolve(image, psf, mode='same')`` with the PSF's transform
        computed once."""
        ny, nx = self.shape
        transform, fshape, (py, px) = self.transforms[band]
        full = scipy.fft.irfft2(scipy.fft.rfft2(image, s=fshape) * transform, s=fshape)
        return full[(py - 1) // 2:(py - 1) // 2 + ny, (px - 1) // 2:(px - 1) // 2 + nx].copy()


def normalised_psf(psf) -> np.ndarray | None:
    """``psf`` as float64 with unit sum, or None when there is none to use (None, not
    2-D, or without a positive finite sum)."""
    if psf is None:
        return None
    p = np.asarray(psf, dtype=np.float64)
    total = p.sum()
    if p.ndim != 2 or not (np.isfinite(total) and total > 0):
        return None
    return p / total


def _unit_psf(psf, band: int) -> np.ndarray:
    unit = normalised_psf(psf)
    if unit is None:
        raise SersicError(f"PSF {band} has no positive finite sum (shape {np.shape(psf)})")
    return unit
