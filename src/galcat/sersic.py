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
sub-pixels, each convolved with the PSF shifted to its sub-pixel position. The PSF
is taken as its cubic-spline interpolant (the PSF at its pixels), so that a shift is a
spread of the sub-pixel's light over the spline's taps and the whole model is one FFT
convolution with the spline's coefficients. A cuspy (n ≈ 4) centre needs the core:
sampled at pixel centres, an n = 4 galaxy of 2.5 px half-light radius fits n ≈ 7, and with a 1.5 px core its bulge flux came out
2.4% high (docs/implementation_notes.md). Callers choose the core: the single-Sérsic
fit of `galcat.morphology` and the bulge + disc fit of `galcat.bulgedisc` 3 px and 7²,
the ring-colour route of `galcat.halfmass` every pixel at 3² through the
unshifted PSF (``subpixel_psf=False``: pixel averages convolved with the PSF, the model
its calibration was measured with).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.special as sp

__all__ = [
    "SersicError",
    "SersicImage",
    "amplitude",
    "b_n",
    "circular_fraction",
    "enclosed_fraction",
    "normalised_psf",
    "spline_coefficients",
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
        if np.ndim(a) and not np.ndim(n):  # beyond the cut the fraction is 1: skip it
            a = np.asarray(a, dtype=np.float64)
            out = np.ones_like(a)
            inner = a < cut
            out[inner] = enclosed_fraction(a[inner], r_eff, n) / enclosed_fraction(cut, r_eff, n)
            return out
        return enclosed_fraction(np.minimum(a, cut), r_eff, n) / enclosed_fraction(cut, r_eff, n)
    return _fraction(np.asarray(a, dtype=float) / r_eff, n, b_n(n))


def _fraction(ratio, n, bn):
    """``P(2n, b_n ratio^(1/n))``: the light inside ``ratio`` r_eff.

    Far out the fraction is 1.0 to double precision; for a scalar ``n`` those points
    (``x`` beyond `_saturation`) are set to 1.0 without an incomplete gamma function
    each, which is most of the cost of a curve of growth out to 200 r_eff.
    """
    x = bn * np.asarray(ratio, dtype=np.float64) ** (1.0 / n)
    if np.ndim(n) or x.size < 64:
        return sp.gammainc(2.0 * n, x)
    x_sat = _saturation(2.0 * float(n))
    out = np.ones_like(x)
    inside = x < x_sat
    out[inside] = sp.gammainc(2.0 * n, x[inside])
    return out


@functools.lru_cache(maxsize=256)
def _saturation(a: float) -> float:
    """An ``x`` from which ``gammainc(a, x)`` returns exactly 1.0 (its complement is below
    half an ulp of 1), checked; infinity when none is found."""
    x = float(sp.gammainccinv(a, 1e-18))
    if not (np.isfinite(x) and sp.gammainc(a, x) == 1.0 and sp.gammainc(a, 2 * x) == 1.0):
        return math.inf
    return x


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
    softening : float
        Radius (pixels) below which the cusp is softened: the profile is evaluated at
        ``sqrt(r² + softening²)``. Default 0 (none). A fit that moves the centre wants
        about half a core sub-pixel: a point sample of a cusp (n > 1) peaks sharply
        where a sample meets the centre, and the fit's centre is drawn onto a sample.

    Raises
    ------
    SersicError
        A PSF that is not 2-D or has no positive finite sum, or fewer than one sub-sample.

    Notes
    -----
    With ``subpixel_psf`` the PSF is its cubic-spline interpolant
    (`spline_coefficients`): the PSF at its pixels, and at a shifted position the
    spline's value there, so a core needs no PSF stamp per sub-pixel. Each pixel-centre
    sample is spread over the B-spline's 3 × 3 taps (1/6, 4/6, 1/6 per axis), each
    core sub-pixel over the 5 × 5 taps about its position, and that one image is
    convolved with the spline's coefficients.

    Cost: the PSF transforms are made once per PSF and grid (shared between
    instances); each `convolved` call is one real FFT pair of the cutout (extended by
    2 px) plus one small matrix product for the core pixels.
    """

    def __init__(self, shape: tuple[int, int], centre: tuple[float, float],
                 theta: float = 0.0, psfs: Sequence[np.ndarray | None] = (), *,
                 core_radius: float = 3.0, core_subsamples: int = 7,
                 subpixel_psf: bool = True, softening: float = 0.0) -> None:
        ny, nx = (int(v) for v in shape)
        k = int(core_subsamples)
        if k < 1:
            raise SersicError(f"core_subsamples must be >= 1; got {core_subsamples!r}")
        self.shape = (ny, nx)
        self.subpixel_psf = bool(subpixel_psf)
        self.softening2 = float(softening) ** 2
        x0, y0 = centre
        y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
        c, s = math.cos(theta), math.sin(theta)
        self.cos_sin = (c, s)
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
        # per band, the transform of the PSF (or, for the sub-pixel PSF, of its cubic-spline
        # coefficients): it depends on the PSF and the grid only, so galaxies of one shard
        # share it (`_psf_products`)
        self.transforms = [None if p is None else _psf_products(
            p.tobytes(), p.shape, self.shape, self.subpixel_psf) for p in self.psfs]
        # where the B-spline taps of each core pixel's sub-pixels land in the grid
        # extended by _SPLINE_PAD (band independent), and their weights per sub-pixel
        taps = np.arange(-_SPLINE_PAD, _SPLINE_PAD + 1)
        width = nx + 2 * _SPLINE_PAD
        self._tap_targets = ((self.core[:, 0, None, None] + _SPLINE_PAD + taps[:, None]) * width
                             + self.core[:, 1, None, None] + _SPLINE_PAD + taps).reshape(
                                 len(self.core), taps.size**2)
        self._tap_weights = _spline_tap_weights(k)

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
            z = np.sqrt(xm**2 + (ym / q) ** 2 + self.softening2) / r_eff
            out = amplitude * np.exp(-bn * (z ** (1.0 / n) - 1.0))
            return np.where(z <= trunc, out, 0.0) if math.isfinite(trunc) else out

        return profile(self.xm, self.ym), profile(self.core_xm, self.core_ym)

    def intrinsic(self, samples: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """PSF-free pixel values: centre samples, core pixels their sub-pixel mean."""
        image, core = samples
        out = image.copy()
        out[tuple(self.core.T)] = core.mean(axis=1)
        return out

    def sample_flux_gradient(self, flux: float, r_eff: float, n: float, q: float, *,
                             trunc: float = math.inf, dn: float | None = 1e-5):
        """`sample_flux` and its derivatives with respect to ``ln r_eff``, ``n`` and ``q``.

        Analytic for the profile, ``I = A exp(-b_n (z^(1/n) − 1))`` with ``z`` the
        elliptical radius over ``r_eff``: ``∂ ln I/∂ ln r_eff = −2 + (b_n/n) z^(1/n)``,
        ``∂ ln I/∂q = −1/q + (b_n/n) z^(1/n) (y'/q)² / (q r²)`` (``r`` the elliptical
        radius, ``y'`` the minor-axis offset), ``∂ ln I/∂n = ∂ ln A/∂n − b_n'(z^(1/n) − 1)
        + (b_n/n²) z^(1/n) ln z``, where the scalars ``b_n'`` and ``∂ ln A/∂n`` (the
        normalisation to ``flux`` inside ``trunc``) are central differences of step
        ``dn`` (None: ``n`` is held, no ``d_n``). The edge of a truncated profile moves
        with ``r_eff`` but contributes no derivative (a set of pixels of measure zero).

        Returns
        -------
        samples, d_ln_r, d_n, d_q : tuples ``(image, core)``
            As `sample`; each derivative is itself a sample set, so it goes through
            `convolved` and `convolved_many` (both linear in the samples). ``d_n`` is
            None when ``dn`` is.

        Cost: about two `sample_flux` calls.
        """
        bn = b_n(n)
        amp = _amplitude(flux, r_eff, n, q, trunc, bn)
        dbn = dln_amp = None
        if dn is not None:
            lo, hi = max(n - dn, 1e-3), n + dn
            bn_lo, bn_hi = b_n(lo), b_n(hi)
            dbn = (bn_hi - bn_lo) / (hi - lo)
            dln_amp = (math.log(_amplitude(flux, r_eff, hi, q, trunc, bn_hi))
                       - math.log(_amplitude(flux, r_eff, lo, q, trunc, bn_lo))) / (hi - lo)
        return self._gradient(amp, r_eff, n, q, trunc, bn, dbn, (-2.0, dln_amp, -1.0 / q))

    def sample_gradient(self, amplitude: float, r_eff: float, n: float, q: float, *,
                        trunc: float = math.inf, dn: float = 1e-5):
        """`sample` and its derivatives with respect to ``ln r_eff``, ``n`` and ``q`` at
        fixed ``amplitude`` (``I(r_eff)``): `sample_flux_gradient` without the terms of
        the flux normalisation (``∂ ln I/∂ ln r_eff = (b_n/n) z^(1/n)``, ...)."""
        lo, hi = max(n - dn, 1e-3), n + dn
        dbn = (b_n(hi) - b_n(lo)) / (hi - lo)
        return self._gradient(amplitude, r_eff, n, q, trunc, b_n(n), dbn, (0.0, 0.0, 0.0))

    def sample_geometry_gradient(self, amplitude: float, r_eff: float, n: float, q: float,
                                 *, trunc: float = math.inf):
        """Derivatives of `sample` with respect to the centre ``x0``, ``y0`` (pixels) and
        the angle ``theta`` (radians), at this renderer's centre and angle.

        With ``r² = xm² + (ym/q)² + softening²`` and ``ln I = ln amplitude − b_n ((r/r_eff)^(1/n) − 1)``,
        ``∂I/∂p = −I (b_n/n) (r/r_eff)^(1/n) (xm ∂xm/∂p + ym/q² ∂ym/∂p) / r²``, where
        ``∂(xm, ym)/∂x0 = (−cos, sin)``, ``∂/∂y0 = (−sin, −cos)``, ``∂/∂theta = (ym, −xm)``.
        Zero on a sample at the centre itself without softening (the cusp of n > 1 has
        no derivative there).
        Returns ``(d_x0, d_y0, d_theta)``, each ``(image, core)`` as `sample` gives.
        """
        bn = b_n(n)
        c, s = self.cos_sin

        def parts(xm, ym):
            r2 = xm**2 + (ym / q) ** 2 + self.softening2
            centre = r2 > 0
            safe_r2 = np.where(centre, r2, 1.0)
            z = np.sqrt(safe_r2) / r_eff
            value = amplitude * np.exp(-bn * (z ** (1.0 / n) - 1.0))
            if math.isfinite(trunc):
                value = np.where(z <= trunc, value, 0.0)
            # -I (b_n/n) z^(1/n) / r², zero at the centre
            scale = np.where(centre, -value * (bn / n) * z ** (1.0 / n) / safe_r2, 0.0)
            minor = ym / q**2
            return (scale * (-c * xm + s * minor), scale * (-s * xm - c * minor),
                    scale * (ym * xm - xm * minor))

        pixels, core = parts(self.xm, self.ym), parts(self.core_xm, self.core_ym)
        return tuple((pixels[k], core[k]) for k in range(3))

    def _gradient(self, amp, r_eff, n, q, trunc, bn, dbn, dln_amp):
        """Samples and their derivatives (`sample_flux_gradient`); ``dln_amp`` holds the
        derivatives of ln(amplitude) with respect to ln r_eff, n and q (``dbn`` None:
        no ``d_n``)."""
        dln_amp_r, dln_amp_n, dln_amp_q = dln_amp

        def parts(xm, ym):
            minor = (ym / q) ** 2
            r2 = xm**2 + minor + self.softening2
            z = np.sqrt(r2) / r_eff
            zn = z ** (1.0 / n)
            value = amp * np.exp(-bn * (zn - 1.0))
            if math.isfinite(trunc):
                value = np.where(z <= trunc, value, 0.0)
            centre = z > 0
            safe_r2 = np.where(centre, r2, 1.0)
            minor_share = np.where(centre, minor / safe_r2, 0.0)
            slope = bn / n * zn
            d_n = None
            if dbn is not None:
                ln_z = np.where(centre, 0.5 * np.log(safe_r2) - math.log(r_eff), 0.0)
                d_n = value * (dln_amp_n - dbn * (zn - 1.0) + slope / n * ln_z)
            return (value, value * (slope + dln_amp_r), d_n,
                    value * (dln_amp_q + slope * minor_share / q))

        pixels, core = parts(self.xm, self.ym), parts(self.core_xm, self.core_ym)
        return tuple(None if pixels[k] is None else (pixels[k], core[k]) for k in range(4))

    def convolved(self, samples: tuple[np.ndarray, np.ndarray], band: int = 0) -> np.ndarray:
        """``samples`` through the PSF of ``band`` (the `intrinsic` image if it has none)."""
        return self.convolved_many([samples], [band])[0, 0]

    def convolved_many(self, samples: Sequence[tuple[np.ndarray, np.ndarray]],
                       bands: Sequence[int]) -> np.ndarray:
        """Every sample set of ``samples`` through the PSF of every band of ``bands``.

        Returns an array ``(len(bands), len(samples), ny, nx)``, each image what
        `convolved` gives. Cheaper than one call per image: the sample images (and the
        core's spline images) are transformed once, in one batched FFT, for all bands
        whose padded FFT shape is the same (every band, for PSFs of one size); each band
        then costs one product and one inverse FFT.
        """
        ny, nx = self.shape
        out = np.empty((len(bands), len(samples), ny, nx))
        intrinsic = None
        if not self.subpixel_psf or any(self.psfs[band] is None for band in bands):
            intrinsic = np.stack([self.intrinsic(s) for s in samples])
        if self.subpixel_psf:
            images, pad = self._spline_images(samples), _SPLINE_PAD
        else:
            images, pad = intrinsic, 0
        forward: dict[tuple[int, int], np.ndarray] = {}
        for i, band in enumerate(bands):
            if not self.psfs or self.psfs[band] is None:
                out[i] = intrinsic
                continue
            transform, fshape, (py, px) = self.transforms[band]
            if fshape not in forward:
                forward[fshape] = scipy.fft.rfft2(images, s=fshape)
            full = scipy.fft.irfft2(forward[fshape] * transform, s=fshape)
            y0, x0 = (py - 1) // 2 + pad, (px - 1) // 2 + pad
            out[i] = full[:, y0:y0 + ny, x0:x0 + nx]
        return out

    def _spline_images(self, samples) -> np.ndarray:
        """The sample sets as images to convolve with the PSF's cubic-spline coefficients,
        ``(m, ny + 4, nx + 4)`` on the grid extended by `_SPLINE_PAD`: each pixel-centre
        sample spread over the B-spline's taps at −1, 0, 1 pixels (1/6, 4/6, 1/6 per
        axis: through the coefficients, the PSF itself), and each core pixel's
        sub-pixels, in place of its centre sample, over the taps about their positions
        (through the coefficients, the PSF shifted to each sub-pixel)."""
        ny, nx = self.shape
        m, pad = len(samples), _SPLINE_PAD
        images = np.zeros((m, ny + 2 * pad, nx + 2 * pad))
        for j, (image, _) in enumerate(samples):
            images[j, pad:pad + ny, pad:pad + nx] = image
        if self.core.size:
            images[:, self.core[:, 0] + pad, self.core[:, 1] + pad] = 0.0
        images[:, 1:-1] = (images[:, :-2] + 4.0 * images[:, 1:-1] + images[:, 2:]) / 6.0
        images[:, :, 1:-1] = (images[:, :, :-2] + 4.0 * images[:, :, 1:-1]
                              + images[:, :, 2:]) / 6.0
        if self.core.size:
            spread = np.stack([core for _, core in samples]) @ self._tap_weights
            size = images[0].size
            where = (self._tap_targets[None] + size * np.arange(m)[:, None, None]).ravel()
            images += np.bincount(where, weights=spread.ravel(),
                                  minlength=m * size).reshape(images.shape)
        return images


#: Pixels by which the grid of the core's spline images extends the cutout on each
#: side: a sub-pixel at offset |δ| < 1/2 from its pixel's centre reaches the cubic
#: B-spline coefficients at −2..2 pixels.
_SPLINE_PAD = 2


def _bspline3(t: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline β³(t) (support |t| < 2, unit integral)."""
    t = np.abs(t)
    return np.where(t < 1, 2.0 / 3.0 - t**2 + t**3 / 2.0,
                    np.where(t < 2, (2.0 - t) ** 3 / 6.0, 0.0))


@functools.lru_cache(maxsize=8)
def _spline_tap_weights(subsamples: int) -> np.ndarray:
    """``(subsamples², 25)``: sub-pixel ``s`` (row-major offsets, as `SersicImage`'s core)
    times this row gives its share, 1/``subsamples²`` of its pixel, spread over the
    5 × 5 B-spline taps ``β³(a − δy) β³(b − δx)`` about its pixel (a, b = −2..2)."""
    off = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    taps = np.arange(-_SPLINE_PAD, _SPLINE_PAD + 1)
    wy, wx = _bspline3(taps[None, :] - dy[:, None]), _bspline3(taps[None, :] - dx[:, None])
    weights = (wy[:, :, None] * wx[:, None, :]).reshape(dy.size, taps.size**2)
    weights /= subsamples**2
    weights.setflags(write=False)
    return weights


def spline_coefficients(psf: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients ``c`` of an image, zero beyond it: ``Σ_j c_j β³(i − j)``
    equals the image at every pixel ``i`` of it (one tridiagonal solve per axis, the
    interpolation condition with ``c = 0`` outside). The PSF shifted by ``δ`` is then
    ``Σ_j c_j β³(i − δ − j)``: smooth in ``δ``, and of the same sum ``Σ c`` for every
    ``δ`` (the B-splines sum to one)."""
    p = np.asarray(psf, dtype=np.float64)

    def solve(a: np.ndarray) -> np.ndarray:  # along axis 0
        size = a.shape[0]
        banded = np.zeros((3, size))
        banded[0, 1:], banded[1], banded[2, :-1] = 1.0 / 6.0, 4.0 / 6.0, 1.0 / 6.0
        return scipy.linalg.solve_banded((1, 1), banded, a)

    return solve(solve(p).T).T


@functools.lru_cache(maxsize=32)
def _psf_products(psf: bytes, psf_shape: tuple[int, int], shape: tuple[int, int],
                  subpixel_psf: bool):
    """``(transform, FFT shape, PSF shape)`` of a unit-sum PSF (given as its float64
    bytes) for cutouts of ``shape``: the rfft2 of the PSF, or with ``subpixel_psf`` of
    its cubic-spline coefficients (`spline_coefficients`) scaled to unit sum, for
    images extended by `_SPLINE_PAD` on each side (`SersicImage._spline_images`).
    Read-only: every `SersicImage` with this PSF and grid shares it.
    """
    p = np.frombuffer(psf, dtype=np.float64).reshape(psf_shape)
    pad = _SPLINE_PAD if subpixel_psf else 0
    # the cyclic convolution is exact on the kept window [(p-1)//2 + pad, ... + n) of the
    # full convolution (length n + 2 pad + p - 1) once the FFT reaches the window's end
    # and the wrapped tail stays before its start: shorter than the full length (80
    # for a 64-px cutout, pad 2 and a 25-px PSF, against 92)
    fshape = tuple(scipy.fft.next_fast_len(
        max((q - 1) // 2 + pad + n, n + pad + q - 1 - (q - 1) // 2), real=True)
        for n, q in ((shape[0], psf_shape[0]), (shape[1], psf_shape[1])))
    if subpixel_psf:
        p = spline_coefficients(p)
        p = p / p.sum()
    transform = scipy.fft.rfft2(p, s=fshape)
    transform.setflags(write=False)
    return transform, fshape, psf_shape


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
