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

import functools
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
        # sub-pixel PSFs, the PSF shifted to every sub-pixel offset (flattened): both
        # depend on the PSF and the grid only, so galaxies of one shard share them
        # (`_psf_products`); and where each core pixel's stamp lands in the flattened
        # image (``ny * nx``, one past the image, where it falls outside)
        self.transforms, self.shifted, self.targets = [], [], []
        self._scatter: dict[tuple[int, int], np.ndarray] = {}
        self._kernels: dict[int, np.ndarray] = {}
        for p in self.psfs:
            if p is None:
                self.transforms.append(None)
                self.shifted.append(None)
                self.targets.append(None)
                continue
            transform, shifted = _psf_products(p.tobytes(), p.shape, self.shape, k,
                                               self.subpixel_psf)
            self.transforms.append(transform)
            self.shifted.append(shifted)
            if shifted is None:
                self.targets.append(None)
                continue
            py, px = p.shape
            oy, ox = np.mgrid[0:py, 0:px]
            rows = self.core[:, 0, None] - py // 2 + oy.ravel()[None, :]
            cols = self.core[:, 1, None] - px // 2 + ox.ravel()[None, :]
            inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
            self.targets.append(np.where(inside, rows * nx + cols, ny * nx))

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

    def _gradient(self, amp, r_eff, n, q, trunc, bn, dbn, dln_amp):
        """Samples and their derivatives (`sample_flux_gradient`); ``dln_amp`` holds the
        derivatives of ln(amplitude) with respect to ln r_eff, n and q (``dbn`` None:
        no ``d_n``)."""
        dln_amp_r, dln_amp_n, dln_amp_q = dln_amp

        def parts(xm, ym):
            minor = (ym / q) ** 2
            r2 = xm**2 + minor
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
        `convolved` gives. Cheaper than one call per image: the sample images are
        transformed once, in one batched FFT, for all bands whose padded FFT shape is
        the same (every band, for PSFs of one size), and the core stamps of a band are
        one matrix product for all sample sets.
        """
        ny, nx = self.shape
        m = len(samples)
        out = np.empty((len(bands), m, ny, nx))
        intrinsic = None
        if not self.subpixel_psf or any(self.psfs[band] is None for band in bands):
            intrinsic = np.stack([self.intrinsic(s) for s in samples])
        images = (intrinsic if not self.subpixel_psf
                  else np.stack([np.asarray(s[0], dtype=np.float64) for s in samples]))
        forward: dict[tuple[int, int], np.ndarray] = {}
        for i, band in enumerate(bands):
            if not self.psfs or self.psfs[band] is None:
                out[i] = intrinsic
                continue
            transform, fshape, (py, px) = self.transforms[band]
            if fshape not in forward:
                forward[fshape] = scipy.fft.rfft2(images, s=fshape)
            full = scipy.fft.irfft2(forward[fshape] * transform, s=fshape)
            out[i] = full[:, (py - 1) // 2:(py - 1) // 2 + ny, (px - 1) // 2:(px - 1) // 2 + nx]
            if self.subpixel_psf and self.core.size:
                self._add_core(out[i], samples, band)
        return out

    def _core_kernel(self, band: int) -> np.ndarray:
        """The shifted PSFs of ``band`` with the negated PSF as a last row."""
        kernel = self._kernels.get(band)
        if kernel is None:
            kernel = np.vstack([self.shifted[band], -self.psfs[band].ravel()])
            self._kernels[band] = kernel
        return kernel

    def _add_core(self, models: np.ndarray, samples, band: int) -> None:
        """Each core pixel of each model: its sub-pixel samples through the shifted PSFs in
        place of its centre sample through the PSF (``models`` is changed in place). One
        matrix product and one scatter-add for all the sample sets."""
        ny, nx = self.shape
        n_pix = ny * nx
        m = len(samples)
        rows, cols = self.core.T
        k2 = samples[0][1].shape[1]
        # [sub-pixel samples / k², centre sample] @ [shifted PSFs; −PSF]: the stamps
        # (m, n_core, psf pixels) in one product
        weights = np.empty((m, len(rows), k2 + 1))
        for j, (image, core) in enumerate(samples):
            np.divide(core, k2, out=weights[j, :, :k2])
            weights[j, :, k2] = image[rows, cols]
        stamps = weights @ self._core_kernel(band)
        where = self._scatter.get((band, m))
        if where is None:  # sample set j scatters into [j (n_pix + 1), (j + 1)(n_pix + 1))
            where = (self.targets[band][None] + (n_pix + 1) * np.arange(m)[:, None, None])
            where = self._scatter.setdefault((band, m), where.ravel())
        added = np.bincount(where, weights=stamps.ravel(), minlength=m * (n_pix + 1))
        models += added.reshape(m, n_pix + 1)[:, :n_pix].reshape(m, ny, nx)


@functools.lru_cache(maxsize=32)
def _psf_products(psf: bytes, psf_shape: tuple[int, int], shape: tuple[int, int],
                  subsamples: int, subpixel_psf: bool):
    """The transform ``(rfft2 of the PSF, FFT shape, PSF shape)`` of a unit-sum PSF (given
    as its float64 bytes) for cutouts of ``shape``, and, with ``subpixel_psf``, the PSF
    shifted (cubic spline, renormalised) to each of ``subsamples``² sub-pixel offsets,
    flattened ``(subsamples², psf pixels)``; else None. Read-only: every `SersicImage`
    with this PSF and grid shares them.

    The spline coefficients are computed once and shifted without a second prefilter:
    the values ``ndimage.shift(p, offset, order=3, mode='constant')`` gives.
    """
    p = np.frombuffer(psf, dtype=np.float64).reshape(psf_shape)
    (ny, nx), (py, px) = shape, psf_shape
    # the cyclic convolution is exact on the kept window [(p-1)//2, (p-1)//2 + n) once
    # the FFT is that long and the wrapped tail of the full convolution (length
    # n + p - 1) stays before it: shorter than the full length (80 for 64 + 25 - 1 = 88)
    fshape = tuple(scipy.fft.next_fast_len(max((p - 1) // 2 + n, n + p - 1 - (p - 1) // 2),
                                           real=True) for n, p in ((ny, py), (nx, px)))
    transform = scipy.fft.rfft2(p, s=fshape)
    transform.setflags(write=False)
    if not subpixel_psf:
        return (transform, fshape, psf_shape), None
    off = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    coefficients = ndimage.spline_filter(p, order=3, mode="constant")
    stack = [ndimage.shift(coefficients, (oy, ox), order=3, mode="constant", prefilter=False)
             for oy, ox in zip(dy, dx, strict=True)]
    shifted = np.array([a.ravel() / a.sum() for a in stack])
    shifted.setflags(write=False)
    return (transform, fshape, psf_shape), shifted


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
