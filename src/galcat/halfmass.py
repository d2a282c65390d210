"""The traditional half-mass radius: colour profile → M/L → mass profile.

This is the baseline the ``r50`` network must beat. It follows the route of
Szomoru et al. (2013, ApJ 763, 73): measure a colour profile, turn each colour
into a stellar mass-to-light ratio with a published colour–M/L relation, weight
the light profile by it, and find the radius that holds half of the mass.

Steps (each a small function below):

1. Masked pixels (neighbours, bad pixels, non-finite values) are filled with the
   mean of the unmasked pixels of the same elliptical ring, so that profiles
   stay azimuthal averages (`elliptical_radius`, rings of ≤ 1 pixel).
2. The aperture is ``extent`` Petrosian radii (η = 0.2, `petrosian_radius`) of
   the luminosity band, cut at the cutout border.
3. PSF correction (Szomoru et al. 2010, 2013): a Sérsic profile convolved with
   the PSF is fitted to the luminosity band (`fit_sersic`; centre and ellipse
   of the annuli held), and the intrinsic image is the model without PSF plus
   the residual (data − model ⊗ PSF).
4. Colour profile. Rings are merged outwards into bins until both bands are
   *expected* to reach ``min_snr`` (`colour_bins`; expected from the Sérsic
   model, since cutting where the data reach it would close bins on upward
   fluctuations of the fainter band and bias the colours). ``gradient``
   (default): a colour going from ``c_in`` at the centre to ``c_out`` outside a
   transition radius (`fit_colour_gradient`), fitted to the flux ratios of the
   bins through the PSFs of both bands; three parameters keep it stable at low
   S/N and it never runs away beyond the data. ``binned``: both bands
   PSF-corrected as in 3, the colour of each bin, interpolated
   (`colour_profile`). Colours are clipped to the calibrated range of the
   relation.
5. M/L of the colour at every radius (`mass_to_light`) times the luminosity-band
   light in fine rings gives the cumulative mass inside the aperture; the
   half-mass radius is interpolated on it (profiles are sampled on 5×5
   sub-pixels) and returned circularised, √(ab), in arcsec (the radius itself
   for circular annuli). ``extrapolate`` (off by default) adds the Sérsic
   model's mass beyond the aperture; a single Sérsic fitted to a bulge + disc
   over-extrapolates (on 60 synthetic galaxies it turned a median ratio to the
   truth of 0.94 into 1.14, with outliers at 2–3).

Limits worth knowing (GalSim bulge + disc galaxies, tests/test_halfmass.py):
the colour of a mixture of populations gives a lower M/L contrast than the
populations themselves, and the aperture misses the outermost mass; both make
the radius small: noiseless, B/T = 0.3, −3 to −6 % with Bell et al. (2003),
−5 to −10 % with Zibetti et al. (2009), the PSF correction adding 1–3 %
(more, ~−10 %, for a bulge as large as the PSF core). Noise: the outer colour
drives the radius; at a total S/N of 50 the scatter is 11–20 %, at 200 3–5 %.
On the synthetic survey (60 galaxies through `galcat.morphology`) r50_mass /
truth_r50_mass has median 0.93, 16–84 % range 0.78–1.09.

`psf_corrected_light_radius` is the same route with a constant M/L: the
PSF-corrected *light* r50 in circles (Sérsic model + residual, the model carrying
the curve of growth beyond the aperture and the cutout).

Luminosities are left in flux units: distance, solar magnitude and
k-corrections multiply every annulus by one constant and cancel in a radius
that holds a fraction of the total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.optimize as opt
import scipy.signal
import scipy.sparse

from galcat import relations as _relations
from galcat import sersic as _sersic
from galcat.flags import HalfMassFlag

__all__ = [
    "COLOUR_LIMITS",
    "HALFMASS_FATAL",
    "LUMINOSITY_BAND",
    "MASS_TO_LIGHT_RELATIONS",
    "colour_bins",
    "colour_profile",
    "elliptical_radius",
    "fit_colour_gradient",
    "fit_sersic",
    "half_mass_radius",
    "mass_to_light",
    "petrosian_radius",
    "psf_corrected_light_radius",
]

#: name → ((blue, red) bands of the colour, a, b, reference) for
#: log10(M/L) = a + b × (m_blue − m_red), M/L in solar units in the band of
#: `LUMINOSITY_BAND`. Built from `galcat.relations.MASS_TO_LIGHT`, the registry the
#: synthetic survey draws its mass maps from, so that truth and measurement
#: share one relation.
MASS_TO_LIGHT_RELATIONS: dict[str, tuple[tuple[str, str], float, float, str]] = {
    name: (rel.colour_bands, rel.a, rel.b, rel.reference)
    for name, rel in _relations.MASS_TO_LIGHT.items()
}
#: name → band of the luminosity that the M/L of each relation multiplies.
LUMINOSITY_BAND: dict[str, str] = {
    name: rel.band for name, rel in _relations.MASS_TO_LIGHT.items()
}

#: Colour range (mag) over which each relation is calibrated; colours outside are clipped.
COLOUR_LIMITS: dict[str, tuple[float, float]] = {
    "bell2003_gr": (-0.1, 1.1),
    "zibetti2009_gi": (-0.1, 1.6),
    "bell2003_gi": (-0.1, 1.6),
    "into2013_gi": (-0.1, 1.6),
    # Taylor et al. 2011 (their Fig. 10): GAMA galaxies span 0.2 < g - i < 1.4
    "taylor2011_gi": (0.2, 1.4),
}

#: Flags for which the radius is NaN.
HALFMASS_FATAL = (HalfMassFlag.MISSING_BAND | HalfMassFlag.NO_FLUX | HalfMassFlag.NO_CROSSING
                  | HalfMassFlag.BAD_INPUT)

_SUBPIXELS = 5  # sub-pixel sampling of cumulative profiles
_MODEL_OVERSAMPLE = 3  # sub-pixel sampling of the Sersic model
_FINE = 10  # steps per ring of the cumulative mass profile
_N_BOUNDS = (0.3, 6.0)


def mass_to_light(colour, relation: str):
    """Stellar mass-to-light ratio (solar units, in the luminosity band) of a colour.

    Parameters
    ----------
    colour : float or array
        ``m_blue − m_red`` in AB magnitudes, bands as in
        ``MASS_TO_LIGHT_RELATIONS[relation][0]``.
    relation : str
        A key of `MASS_TO_LIGHT_RELATIONS`.

    Returns
    -------
    float or ndarray
        ``10 ** (a + b × colour)``, M/L in the band ``LUMINOSITY_BAND[relation]``.
    """
    try:
        _, a, b, _ = MASS_TO_LIGHT_RELATIONS[relation]
    except KeyError:
        raise ValueError(
            f"unknown mass-to-light relation {relation!r}; "
            f"known: {sorted(MASS_TO_LIGHT_RELATIONS)}"
        ) from None
    return 10.0 ** (a + b * np.asarray(colour, dtype=float))


def elliptical_radius(
    shape: tuple[int, int],
    centre: tuple[float, float],
    q: float = 1.0,
    theta: float = 0.0,
    *,
    oversample: int = 1,
) -> np.ndarray:
    """Semi-major-axis radius (pixels) of every (sub-)pixel centre.

    ``centre`` is ``(x, y)`` in pixel coordinates (pixel centres on integers);
    ``theta`` is the angle of the major axis from +x, counter-clockwise, in
    radians (statmorph's and astropy's convention); ``q = b/a``. With
    ``oversample = s`` the result has shape ``(ny*s, nx*s)``.
    """
    ny, nx = shape
    s = int(oversample)
    offsets = (np.arange(s) + 0.5) / s - 0.5
    x = (np.arange(nx)[:, None] + offsets[None, :]).ravel()
    y = (np.arange(ny)[:, None] + offsets[None, :]).ravel()
    dx = x[None, :] - centre[0]
    dy = y[:, None] - centre[1]
    c, sn = math.cos(theta), math.sin(theta)
    xp = dx * c + dy * sn
    yp = -dx * sn + dy * c
    return np.hypot(xp, yp / max(q, 1e-3))


def _ring_index(radius: np.ndarray, width: float = 1.0) -> np.ndarray:
    return np.floor(radius / width).astype(np.int64)


def _fill_masked(image: np.ndarray, valid: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Masked pixels replaced by the mean of the valid pixels of their ring."""
    out = np.where(valid, image, 0.0)
    if valid.all():
        return out
    n = int(ring.max()) + 1
    sums = np.bincount(ring[valid], weights=image[valid], minlength=n)
    counts = np.bincount(ring[valid], minlength=n)
    have = counts > 0
    if not have.any():
        return out
    means = np.zeros(n)
    means[have] = sums[have] / counts[have]
    # rings without any valid pixel take the value of the nearest rings
    idx = np.arange(n)
    means = np.interp(idx, idx[have], means[have])
    out[~valid] = means[ring[~valid]]
    return out


def _ring_sums(values: np.ndarray, ring: np.ndarray, n_rings: int) -> np.ndarray:
    inside = ring < n_rings
    return np.bincount(ring[inside], weights=values[inside], minlength=n_rings)


def petrosian_radius(
    ring_flux: np.ndarray, ring_area: np.ndarray, *, eta: float = 0.2, width: float = 1.0
) -> float:
    """Radius (pixels) where ring surface brightness / mean inside falls to ``eta``.

    ``ring_flux[k]`` and ``ring_area[k]`` cover ``[k, k+1) × width``; the ratio is
    evaluated at ring mid-radii and linearly interpolated. NaN when not reached.
    """
    area_in = np.cumsum(ring_area)
    flux_in = np.cumsum(ring_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        local = ring_flux / ring_area
        mean_in = flux_in / area_in
        ratio = local / mean_in
    r_mid = (np.arange(ring_flux.size) + 0.5) * width
    ok = np.isfinite(ratio) & (mean_in > 0)
    for k in range(1, ring_flux.size):
        if ok[k] and ok[k - 1] and ratio[k] < eta <= ratio[k - 1]:
            t = (ratio[k - 1] - eta) / (ratio[k - 1] - ratio[k])
            return float(r_mid[k - 1] + t * (r_mid[k] - r_mid[k - 1]))
        if ok[k] and ratio[k] < eta and not ok[k - 1]:
            return float(r_mid[k])
    return float("nan")


def colour_bins(
    flux1: np.ndarray,
    flux2: np.ndarray,
    var1: np.ndarray,
    var2: np.ndarray,
    min_snr: float,
    *,
    remainder_snr: float | None = None,
) -> list[slice]:
    """Merge consecutive rings outwards until both bands reach ``min_snr``.

    Returns slices of ring indices. The rings after the last complete bin form
    one more bin when both bands reach ``remainder_snr`` there (``0`` keeps it
    whatever its S/N, ``None`` never); otherwise they take the colour of the
    last bin.
    """
    def snr(f, v):
        return f / math.sqrt(v) if v > 0 else (math.inf if f > 0 else 0.0)

    bins: list[slice] = []
    start = 0
    f1 = f2 = v1 = v2 = 0.0
    for k in range(flux1.size):
        f1 += flux1[k]
        f2 += flux2[k]
        v1 += var1[k]
        v2 += var2[k]
        if f1 > 0 and f2 > 0 and snr(f1, v1) >= min_snr and snr(f2, v2) >= min_snr:
            bins.append(slice(start, k + 1))
            start = k + 1
            f1 = f2 = v1 = v2 = 0.0
    if remainder_snr is not None and start < flux1.size:
        if remainder_snr <= 0 or (f1 > 0 and f2 > 0 and snr(f1, v1) >= remainder_snr
                                  and snr(f2, v2) >= remainder_snr):
            bins.append(slice(start, flux1.size))
    return bins


def colour_profile(
    radius: np.ndarray,
    bin_radius: np.ndarray,
    bin_colour: np.ndarray,
    *,
    limits: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[np.ndarray, int]:
    """Colour at ``radius`` interpolated between bins (constant outside them),
    clipped to ``limits``; returns ``(colour, flag)`` with COLOUR_CLIPPED set
    when a bin was outside the limits."""
    lo, hi = limits
    flag = HalfMassFlag.COLOUR_CLIPPED if np.any((bin_colour < lo) | (bin_colour > hi)) else 0
    return np.interp(radius, bin_radius, np.clip(bin_colour, lo, hi)), flag


def _convolve(image: np.ndarray, psf: np.ndarray | None) -> np.ndarray:
    if psf is None:
        return image
    return scipy.signal.fftconvolve(image, psf, mode="same")


class _CumulativeProfile:
    """Cumulative sum of an image inside ellipses, sampled on sub-pixels.

    ``profile(image, a)[k]`` is the sum of ``image / s²`` over the sub-pixels whose
    radius (``a_sub``, shape ``(ny s, nx s)``) is at most ``a[k]`` (``a`` non-decreasing).
    For each radius grid the sub-pixels are binned once into a sparse matrix (grid
    point × pixel: the share of the pixel's sub-pixels first inside at that point), so
    each image costs one sparse product and a cumulative sum over the grid.
    """

    def __init__(self, a_sub: np.ndarray, s: int) -> None:
        self._a_sub = np.asarray(a_sub, dtype=np.float64)
        self._s = s
        self._bins: dict[bytes, scipy.sparse.csr_matrix] = {}

    def _binning(self, a: np.ndarray):
        key = a.tobytes()
        if key not in self._bins:
            s = self._s
            ny, nx = self._a_sub.shape[0] // s, self._a_sub.shape[1] // s
            first = np.searchsorted(a, self._a_sub.ravel(), side="left")  # first a >= radius
            pixel = ((np.arange(ny * s) // s)[:, None] * nx
                     + (np.arange(nx * s) // s)[None, :]).ravel()
            inside = first < a.size
            self._bins[key] = scipy.sparse.csr_matrix(
                (np.full(int(inside.sum()), 1.0 / (s * s)), (first[inside], pixel[inside])),
                shape=(a.size, ny * nx))
        return self._bins[key]

    def __call__(self, image: np.ndarray, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        return np.cumsum(self._binning(a) @ np.asarray(image, dtype=np.float64).ravel())


def _first_crossing(a: np.ndarray, cum: np.ndarray, level: float) -> float:
    above = np.nonzero(cum >= level)[0]
    if above.size == 0:
        return float("nan")
    k = int(above[0])
    if k == 0:
        return float(a[0])
    c0, c1 = cum[k - 1], cum[k]
    t = (level - c0) / (c1 - c0) if c1 != c0 else 0.0
    return float(a[k - 1] + t * (a[k] - a[k - 1]))


def _weights(image: np.ndarray, sigma: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """1/sigma on valid pixels, with a floor for noiseless (sigma = 0) inputs."""
    positive = sigma[valid & (sigma > 0)]
    floor = 1e-3 * float(np.median(positive)) if positive.size else 0.0
    floor = max(floor, 1e-6 * float(np.max(np.abs(image))), 1e-300)
    return np.where(valid, 1.0 / np.maximum(sigma, floor), 0.0)


def _check_fit(res) -> None:
    if not res.success or not np.all(np.isfinite(res.x)):
        raise RuntimeError(f"fit did not converge: {res.message}")


def _sersic_renderer(shape, centre, theta: float, psf) -> _sersic.SersicImage:
    """This route's Sérsic model: every pixel averaged over `_MODEL_OVERSAMPLE`² sub-pixels
    and the averages convolved with the PSF (the model of the calibration above)."""
    return _sersic.SersicImage(shape, centre, theta, [psf], core_radius=math.inf,
                              core_subsamples=_MODEL_OVERSAMPLE, subpixel_psf=False)


def _sersic_samples(render: _sersic.SersicImage, fit, q: float):
    total, r_eff, n = fit
    return render.sample_flux(total, r_eff, n, q)


def _sersic_intrinsic(shape, centre, q: float, theta: float, fit) -> np.ndarray:
    """PSF-free pixel image of the Sérsic ``fit = (total, r_eff, n)``."""
    render = _sersic_renderer(shape, centre, theta, None)
    return render.intrinsic(_sersic_samples(render, fit, q))


def fit_sersic(
    image: np.ndarray,
    weight: np.ndarray,
    psf: np.ndarray | None,
    centre: tuple[float, float],
    q: float,
    theta: float,
    total0: float,
    r0: float,
) -> tuple[float, float, float]:
    """Least-squares ``(total, r_eff, n)`` of a PSF-convolved elliptical Sérsic.

    Centre ``(x, y)``, axis ratio ``q`` and angle ``theta`` (radians) are held; ``r_eff``
    is a semi-major axis in pixels; ``psf`` None fits the image as PSF-free. Cost: up to
    200 model images (each pixel on 3 × 3 sub-pixels, one FFT convolution).
    """
    use = weight > 0
    data, w = image[use], weight[use]
    r_hi = 5.0 * max(image.shape)
    render = _sersic_renderer(image.shape, centre, theta, psf)

    def residual(p):
        samples = _sersic_samples(render, (10.0 ** p[0], 10.0 ** p[1], p[2]), q)
        return (data - render.convolved(samples)[use]) * w

    x0 = [math.log10(max(total0, 1e-30)), math.log10(min(max(r0, 0.5), r_hi / 2)), 2.0]
    lo = [x0[0] - 3.0, math.log10(0.2), _N_BOUNDS[0]]
    hi = [x0[0] + 3.0, math.log10(r_hi), _N_BOUNDS[1]]
    res = opt.least_squares(residual, x0, bounds=(lo, hi), x_scale=[0.1, 0.1, 0.5], max_nfev=200)
    _check_fit(res)
    return 10.0 ** res.x[0], 10.0 ** res.x[1], float(res.x[2])


def _gradient_colour(a, c_in: float, c_out: float, r_t: float):
    """Colour that moves from ``c_in`` at the centre to ``c_out`` outside ``r_t``:
    c_out + (c_in − c_out) / (1 + (a / r_t)²)."""
    return c_out + (c_in - c_out) / (1.0 + (np.asarray(a) / r_t) ** 2)


def fit_colour_gradient(
    model2: np.ndarray,
    psf1: np.ndarray | None,
    psf2: np.ndarray | None,
    a_pix: np.ndarray,
    bin_index: np.ndarray,
    bin_flux1: np.ndarray,
    bin_flux2: np.ndarray,
    bin_err1: np.ndarray,
    bin_err2: np.ndarray,
    *,
    colour0: float,
    dzp: float,
    r0: float,
    r_out: float,
    colour_limits: tuple[float, float] = (-1.0, 3.0),
) -> dict:
    """Fit the intrinsic colour profile to the flux ratio of S/N-limited ring bins.

    The colour goes from ``c_in`` at the centre to ``c_out`` outside ``r_t``
    (`_gradient_colour`: what a red bulge inside a bluer disc gives, within
    ~0.01 mag; flat for a one-colour galaxy). For a trial colour profile the
    band-1/band-2 flux ratio of every bin is predicted from a smooth intrinsic
    model of band 2 (``model2``, a Sérsic fit): ``bins(model2 × 10**(-0.4
    (colour − dzp)) ⊗ PSF1) / bins(model2 ⊗ PSF2)``. Being a ratio of two
    predictions from the same model, a misfit of the light profile cancels,
    while the PSFs of the two bands are taken into account, so the colour is
    intrinsic. The residual of bin k is ``(F1 − R F2) / sqrt(σ1² + R² σ2²)``,
    the chi of a ratio with errors in both bands. Three parameters keep it
    stable at low S/N, and it never runs away beyond the data.
    ``bin_index`` maps pixels to bins (−1 outside); ``dzp = zp1 − zp2``;
    ``r_t`` is bounded by ``[0.5, r_out]`` pixels and both colours by
    ``colour_limits``.
    """
    use = bin_index >= 0
    idx = bin_index[use]
    n_bins = bin_flux1.size
    r_out = max(r_out, 1.0)
    pred2 = np.bincount(idx, weights=_convolve(model2, psf2)[use], minlength=n_bins)
    pred2 = np.where(pred2 > 0, pred2, np.nan)

    def residual(p):
        colour = _gradient_colour(a_pix, p[0], p[1], 10.0 ** p[2])
        band1 = _convolve(model2 * 10.0 ** (-0.4 * (colour - dzp)), psf1)
        ratio = np.bincount(idx, weights=band1[use], minlength=n_bins) / pred2
        chi = (bin_flux1 - ratio * bin_flux2) / np.sqrt(bin_err1**2 + (ratio * bin_err2) ** 2)
        return np.nan_to_num(chi)

    c_lo, c_hi = colour_limits
    x0 = [min(max(colour0, c_lo), c_hi)] * 2 + [math.log10(min(max(r0, 0.5), r_out))]
    lo = [c_lo - 1e-9, c_lo - 1e-9, math.log10(0.5)]
    hi = [c_hi + 1e-9, c_hi + 1e-9, math.log10(r_out) + 1e-9]
    res = opt.least_squares(residual, x0, bounds=(lo, hi), x_scale=[0.1, 0.1, 0.2],
                            max_nfev=300)
    _check_fit(res)
    return {"c_in": float(res.x[0]), "c_out": float(res.x[1]), "r_t": 10.0 ** res.x[2]}


def _corrected(image: np.ndarray, model: np.ndarray, psf: np.ndarray | None) -> np.ndarray:
    """Szomoru et al. (2010): intrinsic model plus the residual image − model ⊗ PSF.

    The residual keeps what the model misses (a disc under a bulge, asymmetries)
    at the resolution of the data. Both model images are averaged over pixels
    the same way, so that their sampling error cancels.
    """
    out = image + model - _convolve(model, psf)
    if not np.all(np.isfinite(out)):
        raise ValueError("model image is not finite")
    return out


def _half_light_guess(image: np.ndarray, a_pix: np.ndarray, r_max: float) -> tuple[float, float]:
    inside = a_pix <= r_max
    total = float(np.sum(image[inside]))
    if not np.isfinite(total) or total <= 0:
        raise ValueError("no positive flux to fit")
    order = np.argsort(a_pix[inside])
    cum = np.cumsum(image[inside][order])
    k = min(int(np.searchsorted(cum, 0.5 * total)), order.size - 1)
    return total, max(float(a_pix[inside][order][k]), 0.5)


def _geometry(centre, shape, q, theta) -> tuple[float, float, float, float] | None:
    """Centre inside the image (else None), axis ratio in (0, 1] (else 1), angle (else 0)."""
    xc, yc = float(centre[0]), float(centre[1])
    if not (np.isfinite(xc) and np.isfinite(yc)
            and 0 <= xc <= shape[1] - 1 and 0 <= yc <= shape[0] - 1):
        return None
    q = float(q) if np.isfinite(q) and 0 < q <= 1 else 1.0
    theta = float(theta) if np.isfinite(theta) else 0.0
    return xc, yc, q, theta


def _petrosian_aperture(
    radius: np.ndarray, ring: np.ndarray, image: np.ndarray, valid: np.ndarray, extent: float
) -> tuple[float, float, int]:
    """The aperture: ``extent`` Petrosian radii of ``image`` cut at the cutout border
    (pixels), the Petrosian radius itself (NaN if none) and the flags raised."""
    flag = 0
    border = np.concatenate([radius[0], radius[-1], radius[:, 0], radius[:, -1]])
    a_edge = float(border.min())
    n_edge = max(1, int(math.floor(a_edge)))
    area = np.bincount(ring[ring < n_edge], minlength=n_edge).astype(float)
    rp = petrosian_radius(_ring_sums(image, ring, n_edge), np.maximum(area, 1e-9))
    if np.isfinite(rp):
        r_ap = extent * rp
        if r_ap > a_edge:
            flag |= HalfMassFlag.TRUNCATED
            r_ap = a_edge
    else:
        flag |= HalfMassFlag.NO_PETROSIAN
        r_ap = a_edge
    r_ap = max(r_ap, 1.0)
    inside = radius <= r_ap
    if np.count_nonzero(valid & inside) < 0.5 * np.count_nonzero(inside):
        flag |= HalfMassFlag.MASKED
    return r_ap, rp, flag


def half_mass_radius(
    images_by_band: Mapping[str, np.ndarray],
    sigma_by_band: Mapping[str, np.ndarray],
    mask: np.ndarray | None,
    centre: tuple[float, float],
    *,
    bands: Sequence[str],
    zeropoints: Sequence[float],
    pixel_scale: float,
    relation: str = "bell2003_gr",
    psf_by_band: Mapping[str, np.ndarray] | None = None,
    q: float = 1.0,
    theta: float = 0.0,
    min_snr: float = 10.0,
    extent: float = 2.0,
    psf_correction: bool = True,
    colour_model: str = "gradient",
    extrapolate: bool = False,
    return_profile: bool = False,
):
    """Half-stellar-mass radius of one galaxy by the colour → M/L route.

    Parameters
    ----------
    images_by_band, sigma_by_band : mapping of band to 2-D array
        Background-subtracted images and their 1-sigma noise, same flux unit.
    mask : 2-D bool array or None
        True where a pixel must not be used (neighbours, bad pixels).
    centre : (x, y)
        Centre of the annuli in pixels.
    bands, zeropoints : sequences
        All bands of the survey and the AB magnitude of one flux unit in each.
    pixel_scale : float
        Arcsec per pixel.
    relation : str
        A key of `MASS_TO_LIGHT_RELATIONS`.
    psf_by_band : mapping of band to 2-D array, optional
        PSFs of the two bands of the colour. Without them the images are taken
        as PSF-free.
    q, theta : float
        Axis ratio b/a and major-axis angle (radians from +x, counter-clockwise)
        of the annuli; ``q = 1`` gives circular annuli.
    min_snr : float
        Signal-to-noise each band must reach in a colour bin.
    extent : float
        Aperture semi-major axis in Petrosian radii (η = 0.2) of the luminosity band.
    psf_correction : bool
        The light profile is Sérsic model + residual (Szomoru et al. 2010,
        2013), i.e. corrected for the PSF; otherwise the observed one. The
        ``gradient`` colour is fitted through the PSFs either way; ``binned``
        colours come from the corrected images, or else from the two images
        brought to a common PSF by cross-convolution. Ignored without PSFs.
    colour_model : {'gradient', 'binned'}
        ``gradient``: a colour going from a central to an outer value, fitted
        to the ring bins (`fit_colour_gradient`; robust to noise). ``binned``:
        the colour of each bin, interpolated (`colour_profile`; follows any
        shape, noisier).
    extrapolate : bool
        Add the mass beyond the aperture: the Sérsic model of the luminosity
        band outside it, at the outermost M/L (the light a cutout or a noisy
        outskirt hides; Szomoru et al. 2010 integrate their model to infinity).
    return_profile : bool
        Also return a dict with the aperture, colour bins, colours and fits.

    Returns
    -------
    radius_arcsec : float
        Circularised half-mass radius √(ab) in arcsec (the radius itself for
        circular annuli); NaN on failure.
    flag : int
        Bits of `galcat.flags.HalfMassFlag`.
    profile : dict, only with ``return_profile``
    """
    profile: dict = {}

    def done(radius: float, flag: int):
        if flag & HALFMASS_FATAL:
            radius = float("nan")
        return (radius, flag, profile) if return_profile else (radius, flag)

    if relation not in MASS_TO_LIGHT_RELATIONS:
        raise ValueError(
            f"unknown mass-to-light relation {relation!r}; "
            f"known: {sorted(MASS_TO_LIGHT_RELATIONS)}"
        )
    (band1, band2), a_coef, b_coef, _ = MASS_TO_LIGHT_RELATIONS[relation]
    lum = LUMINOSITY_BAND[relation]
    used = tuple(dict.fromkeys((band1, band2, lum)))
    flag = 0
    images, sigmas = {}, {}
    for band in used:
        if band not in images_by_band or band not in sigma_by_band or band not in bands:
            return done(float("nan"), HalfMassFlag.MISSING_BAND)
        images[band] = np.asarray(images_by_band[band], dtype=float)
        sigmas[band] = np.asarray(sigma_by_band[band], dtype=float)
    shape = images[lum].shape
    if any(arr.shape != shape for arr in (*images.values(), *sigmas.values())):
        return done(float("nan"), HalfMassFlag.BAD_INPUT)
    if mask is not None and np.shape(mask) != shape:
        return done(float("nan"), HalfMassFlag.BAD_INPUT)
    geometry = _geometry(centre, shape, q, theta)
    if geometry is None:
        return done(float("nan"), HalfMassFlag.BAD_INPUT)
    xc, yc, q, theta = geometry
    zp = {band: float(zeropoints[list(bands).index(band)]) for band in used}

    base = np.ones(shape, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool)
    for band in used:
        if not np.any(base & np.isfinite(images[band]) & np.isfinite(sigmas[band])):
            return done(float("nan"), HalfMassFlag.MISSING_BAND)
    valid = base.copy()
    for band in used:
        valid &= np.isfinite(images[band]) & np.isfinite(sigmas[band]) & (sigmas[band] >= 0)

    # 1. rings and masked-pixel filling
    a_pix = elliptical_radius(shape, (xc, yc), q, theta)
    ring = _ring_index(a_pix)
    filled = {band: _fill_masked(images[band], valid, ring) for band in used}
    var = {band: np.where(valid, sigmas[band], 0.0) ** 2 for band in used}

    # 2. aperture: extent x Petrosian radius of the luminosity band, inside the cutout
    r_max, rp, aperture_flag = _petrosian_aperture(a_pix, ring, filled[lum], valid, extent)
    flag |= aperture_flag

    # 3. light and colour profiles on a fine grid: coarse rings of width <= 1 px
    #    (colour bins are built from them) split into _FINE steps (mass profile)
    n_rings = int(math.ceil(r_max))
    width = r_max / n_rings
    grid = np.linspace(0.0, r_max, n_rings * _FINE + 1)
    fine_mid = 0.5 * (grid[1:] + grid[:-1])
    cumulative = _CumulativeProfile(
        elliptical_radius(shape, (xc, yc), q, theta, oversample=_SUBPIXELS), _SUBPIXELS)
    psfs = {band: _sersic.normalised_psf(None if psf_by_band is None
                                         else psf_by_band.get(band))
            for band in used}
    have_psf = all(psf is not None for psf in psfs.values())
    if not have_psf:
        psfs = dict.fromkeys(used)
    if colour_model not in ("gradient", "binned"):
        raise ValueError(f"unknown colour model {colour_model!r}; use 'gradient' or 'binned'")
    dzp = zp[band1] - zp[band2]
    args = (filled, sigmas, valid, var, psfs, (band1, band2, lum), (xc, yc), q, theta, r_max,
            width, n_rings, grid, cumulative, dzp, colour_model, min_snr,
            COLOUR_LIMITS[relation])
    light = colour = None
    if psf_correction and have_psf:
        try:
            light, colour, fits = _profiles(*args, correct=True)
            profile["fits"] = fits
        except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
            # no warning here (warnings are not thread-safe to capture); the flag says it
            flag |= HalfMassFlag.PSF_FIT_FAILED
            profile["psf_correction_error"] = f"{type(exc).__name__}: {exc}"
    if light is None:
        try:
            light, colour, fits = _profiles(*args, correct=False)
            profile["fits"] = fits
        except (RuntimeError, ValueError, FloatingPointError, OverflowError):
            return done(float("nan"), flag | HalfMassFlag.NO_FLUX)
    if not np.all(np.isfinite(light)) or light[-1] <= 0:
        return done(float("nan"), flag | HalfMassFlag.NO_FLUX)
    if isinstance(colour, tuple):  # ring colours: (bin_r, bin_colour, bin_err, flag)
        bin_r, bin_colour, bin_err, bin_flag = colour
        flag |= bin_flag
        if bin_r.size == 0:
            return done(float("nan"), flag | HalfMassFlag.NO_FLUX)
        profile.update(bin_radius_pix=bin_r, bin_colour=bin_colour, bin_colour_err=bin_err)
        colour, model_flag = colour_profile(fine_mid, bin_r, bin_colour,
                                            limits=COLOUR_LIMITS[relation])
        flag |= model_flag
    else:
        lo, hi = COLOUR_LIMITS[relation]
        if np.any(colour < lo) or np.any(colour > hi):
            flag |= HalfMassFlag.COLOUR_CLIPPED
        colour = np.clip(colour, lo, hi)

    # 4. mass profile: luminosity-band light of each fine ring times its M/L
    ml = 10.0 ** (a_coef + b_coef * colour)
    cum_mass = np.concatenate([[0.0], np.cumsum(np.diff(light) * ml)])
    total = float(cum_mass[-1])
    profile.update(petrosian_radius_pix=rp, aperture_pix=r_max, grid_pix=grid,
                   colour=colour, cumulative_light=light, cumulative_mass=cum_mass)
    if not np.isfinite(total) or total <= 0:
        return done(float("nan"), flag | HalfMassFlag.NO_FLUX)
    sersic = profile.get("fits", {}).get(lum) if extrapolate else None
    if sersic is not None:
        # the mass beyond the aperture: the Sersic model of the luminosity band
        # outside r_max, at the outermost M/L
        l_tot, r_eff, n = sersic
        a_out = np.geomspace(r_max, max(r_max, 50.0 * r_eff), 400)[1:]
        outside = l_tot * (_sersic.enclosed_fraction(a_out, r_eff, n)
                           - _sersic.enclosed_fraction(r_max, r_eff, n)) * ml[-1]
        if np.all(np.isfinite(outside)) and outside[-1] >= 0:
            grid = np.concatenate([grid, a_out])
            cum_mass = np.concatenate([cum_mass, cum_mass[-1] + outside])
            total = float(cum_mass[-1])
            profile["extrapolated_mass_fraction"] = float(outside[-1] / total)
    a_half = _first_crossing(grid, cum_mass, 0.5 * total)
    if not np.isfinite(a_half):
        return done(float("nan"), flag | HalfMassFlag.NO_CROSSING)
    if a_half > r_max:
        flag |= HalfMassFlag.EXTRAPOLATED
    profile["half_mass_semimajor_pix"] = a_half
    return done(float(a_half * math.sqrt(q) * pixel_scale), flag)


def _ring_colours(cum, var, bands, a_pix, width, n_rings, min_snr, dzp, expected):
    """Colours of S/N-limited bins of rings, from cumulative profiles on the grid.

    The bins are cut where the *expected* fluxes (``expected``: ring fluxes of a
    smooth model, or None for the data themselves) reach ``min_snr``: cutting
    where the data do would close bins on upward fluctuations of the fainter
    band and bias the colours.
    """
    band1, band2 = bands
    flag = 0
    coarse = np.arange(0, n_rings * _FINE + 1, _FINE)
    ring_flux = {band: np.diff(cum[band][coarse]) for band in bands}
    ring_w = _ring_index(a_pix, width)
    ring_var = {band: _ring_sums(var[band], ring_w, n_rings) for band in bands}
    guide = expected if expected is not None else (ring_flux[band1], ring_flux[band2])
    bins = colour_bins(guide[0], guide[1], ring_var[band1], ring_var[band2],
                       min_snr, remainder_snr=min(3.0, min_snr))
    if not bins:
        flag |= HalfMassFlag.LOW_SNR
        bins = [slice(0, n_rings)]
    mid = (np.arange(n_rings) + 0.5) * width
    bin_r, bin_colour, bin_err = [], [], []
    for b in bins:
        s1, s2 = ring_flux[band1][b].sum(), ring_flux[band2][b].sum()
        if s1 <= 0 or s2 <= 0:
            continue
        bin_colour.append(dzp - 2.5 * math.log10(s1 / s2))
        err2 = ring_var[band1][b].sum() / s1**2 + ring_var[band2][b].sum() / s2**2
        bin_err.append(max(2.5 / math.log(10) * math.sqrt(err2), 1e-3))
        w2 = np.clip(ring_flux[band2][b], 0.0, None)
        bin_r.append(float(np.sum(w2 * mid[b]) / w2.sum()))
    return np.asarray(bin_r), np.asarray(bin_colour), np.asarray(bin_err), flag


def _profiles(filled, sigmas, valid, var, psfs, bands, centre, q, theta, r_max, width, n_rings,
              grid, cumulative, dzp, colour_model, min_snr, colour_limits, *, correct):
    """Cumulative luminosity-band light on ``grid`` and the colour profile.

    ``bands`` is ``(blue, red, luminosity)``. With ``correct`` the profiles are
    PSF-corrected (model + residual, see `_corrected`); otherwise the light is
    the observed luminosity-band image and the colour is measured on the two
    colour images brought to a common PSF by cross-convolution. Returns
    ``(light, colour, fits)`` where ``colour`` is an array on the fine grid
    (``gradient``) or the ring bins of `_ring_colours` (``binned``).
    """
    band1, band2, lum = bands
    colour_bands = (band1, band2)
    shape = filled[lum].shape
    a_pix = elliptical_radius(shape, centre, q, theta)
    fits: dict = {}

    def fit(band, total0, r0):
        weight = _weights(filled[band], sigmas[band], valid)
        return fit_sersic(filled[band], weight, psfs[band], centre, q, theta, total0, r0)

    def model(band):
        return _sersic_intrinsic(shape, centre, q, theta, fits[band])

    if correct:
        _, r0 = _half_light_guess(filled[lum], a_pix, r_max)
        todo = [band2, lum] + ([band1] if colour_model == "binned" else [])
        intrinsic = dict(filled)
        for band in dict.fromkeys(todo):
            total0, _ = _half_light_guess(filled[band], a_pix, r_max)
            fits[band] = fit(band, total0, r0)
            intrinsic[band] = _corrected(filled[band], model(band), psfs[band])
        light = cumulative(intrinsic[lum], grid)
        colour_images = intrinsic
    else:
        light = cumulative(filled[lum], grid)
        colour_images = dict(filled)
        if psfs[band1] is not None and psfs[band2] is not None:
            colour_images = {band1: _convolve(filled[band1], psfs[band2]),
                             band2: _convolve(filled[band2], psfs[band1])}
    if lum not in fits:  # the luminosity band's Sersic model (for the extrapolation)
        try:
            fits[lum] = fit(lum, *_half_light_guess(filled[lum], a_pix, r_max))
        except (RuntimeError, ValueError, FloatingPointError, OverflowError):
            pass
    # expected ring fluxes of a smooth model of band 2 (and band 1 at the mean colour),
    # used only to decide where the S/N-limited colour bins end
    ring_w = _ring_index(a_pix, width)
    expected = None
    try:
        if band2 not in fits:
            fits[band2] = fit(band2, *_half_light_guess(filled[band2], a_pix, r_max))
        model2 = _convolve(model(band2), psfs[band2])
        exp2 = _ring_sums(model2, ring_w, n_rings)
        total1, _ = _half_light_guess(filled[band1], a_pix, r_max)
        total2, _ = _half_light_guess(filled[band2], a_pix, r_max)
        expected = (exp2 * total1 / total2, exp2)
    except (RuntimeError, ValueError, FloatingPointError, OverflowError):
        if colour_model == "gradient":
            raise
        expected = None  # binned: fall back to the data themselves

    if colour_model == "binned":
        cum = {band: cumulative(colour_images[band], grid) for band in colour_bands}
        colours = _ring_colours(cum, var, colour_bands, a_pix, width, n_rings, min_snr, dzp,
                                expected)
        return light, colours, fits

    # gradient: the colour profile fitted to the observed flux ratio of the bins
    total1, _ = _half_light_guess(filled[band1], a_pix, r_max)
    total2, r0 = _half_light_guess(filled[band2], a_pix, r_max)
    colour0 = dzp - 2.5 * math.log10(total1 / total2)
    if band2 not in fits:
        raise RuntimeError("no Sersic model of the colour's red band")
    model2 = model(band2)
    ring_flux = {band: _ring_sums(filled[band], ring_w, n_rings) for band in colour_bands}
    ring_var = {band: _ring_sums(var[band], ring_w, n_rings) for band in colour_bands}
    # the rings beyond the last S/N bin form one more bin: they anchor the outer colour
    bins = colour_bins(*expected, ring_var[band1], ring_var[band2], min_snr,
                       remainder_snr=0.0) or [slice(0, n_rings)]
    ring_to_bin = np.full(n_rings + 1, -1)
    for k, b in enumerate(bins):
        ring_to_bin[b] = k
    bin_index = ring_to_bin[np.minimum(ring_w, n_rings)]
    flux = {band: np.array([ring_flux[band][b].sum() for b in bins]) for band in colour_bands}
    err = {band: np.sqrt([ring_var[band][b].sum() for b in bins]) for band in colour_bands}
    floor = 1e-6 * np.abs(flux[band1]).max() + 1e-300
    gradient = fit_colour_gradient(
        model2, psfs[band1], psfs[band2], a_pix, bin_index, flux[band1], flux[band2],
        np.maximum(err[band1], floor), err[band2],
        colour0=colour0, dzp=dzp, r0=r0, r_out=bins[-1].stop * width,
        colour_limits=colour_limits,
    )
    fits.update(gradient, n_colour_bins=len(bins))
    fine_mid = 0.5 * (grid[1:] + grid[:-1])
    return light, _gradient_colour(fine_mid, gradient["c_in"], gradient["c_out"],
                                   gradient["r_t"]), fits


def psf_corrected_light_radius(
    image: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray | None,
    centre: tuple[float, float],
    *,
    pixel_scale: float,
    psf: np.ndarray | None = None,
    q: float = 1.0,
    theta: float = 0.0,
    sersic: tuple[float, float, float] | None = None,
    convolved_model: np.ndarray | None = None,
    extent: float = 3.0,
    model_extent: float = 8.0,
    fraction: float = 0.5,
    return_profile: bool = False,
):
    """PSF-corrected circular light radius (Szomoru et al. 2010, 2013): `half_mass_radius`
    with a constant M/L.

    The intrinsic image is the PSF-free elliptical Sérsic model plus the residual
    (data − model ⊗ PSF). Its curve of growth in circles about ``centre`` is the
    model's (`galcat.sersic.circular_fraction`, analytic, the profile cut at ``model_extent``
    r_eff as SDSS cuts its de Vaucouleurs model at 8 r_e) plus the cumulative residual
    inside ``extent`` circular Petrosian radii (η = 0.2) of the data, cut at the cutout
    border; beyond that aperture only the model counts, so neither the cutout nor the
    noise of the outskirts truncates the total. Masked pixels carry no residual (the
    model fills them). A single Sérsic fitted to a bulge + disc has n ≈ 4–6 and
    over-extrapolates when its wings run to infinity: on 60 synthetic galaxies
    (isolated, S/N > 20) the median |Δr50|/r50 was 9% untruncated, 5.7% cut at 8 r_eff
    with a 2 r_P residual aperture, 4.9% cut at 8 r_eff with 3 r_P (the default), 4.0%
    cut at 4 r_eff but −6% biased for 1–2 PSF FWHM.

    Parameters
    ----------
    image, sigma : 2-D arrays
        Background-subtracted image and its 1-sigma noise.
    mask : 2-D bool array or None
        True where a pixel must not be used.
    centre : (x, y)
        Centre of the model and of the circles, pixels (pixel centres on integers).
    pixel_scale : float
        Arcsec per pixel.
    psf : 2-D array or None
        The PSF (normalised here); None takes the image as PSF-free.
    q, theta : float
        Axis ratio and major-axis angle (radians from +x, counter-clockwise) of the
        Sérsic model.
    sersic : (total, r_eff, n), optional
        A Sérsic fit to use (total flux, semi-major r_eff in pixels, n), e.g. the one
        of `galcat.morphology`; otherwise it is fitted here (`fit_sersic`).
    convolved_model : 2-D array, optional
        The PSF-convolved image of ``sersic`` as its fit rendered it (e.g.
        `galcat.morphology.sersic_model`, which samples an effective PSF
        correctly); otherwise rendered here (sub-pixel average ⊗ PSF). The residual is
        taken against it, so that it holds only what the fit's model misses.
    extent : float
        Residual aperture in circular Petrosian radii.
    model_extent : float
        The model is cut at this many r_eff (semi-major) and renormalised; ≤ 0: not cut.
    fraction : float
        Fraction of the light (0.5: the half-light radius).

    Returns
    -------
    radius_arcsec : float
        NaN on failure.
    flag : int
        Bits of `galcat.flags.HalfMassFlag` (BAD_INPUT, PSF_FIT_FAILED, NO_FLUX, NO_CROSSING are
        fatal; TRUNCATED, NO_PETROSIAN, MASKED informative).
    profile : dict, only with ``return_profile``
    """
    profile: dict = {}

    def done(radius: float, flag: int):
        if flag & (HALFMASS_FATAL | HalfMassFlag.PSF_FIT_FAILED):
            radius = float("nan")
        return (radius, flag, profile) if return_profile else (radius, flag)

    image = np.asarray(image, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    shape = image.shape
    if image.ndim != 2 or sigma.shape != shape or (mask is not None
                                                    and np.shape(mask) != shape):
        return done(float("nan"), HalfMassFlag.BAD_INPUT)
    geometry = _geometry(centre, shape, q, theta)
    if geometry is None:
        return done(float("nan"), HalfMassFlag.BAD_INPUT)
    xc, yc, q, theta = geometry
    valid = np.isfinite(image) & np.isfinite(sigma) & (sigma >= 0)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    if not valid.any():
        return done(float("nan"), HalfMassFlag.NO_FLUX)
    psf = _sersic.normalised_psf(psf)
    flag = 0
    try:
        if sersic is None:
            a_ell = elliptical_radius(shape, (xc, yc), q, theta)
            border = np.concatenate([a_ell[0], a_ell[-1], a_ell[:, 0], a_ell[:, -1]])
            filled0 = np.where(valid, image, 0.0)
            total0, r0 = _half_light_guess(filled0, a_ell, float(border.min()))
            sersic = fit_sersic(filled0, _weights(filled0, sigma, valid), psf, (xc, yc), q,
                                theta, total0, r0)
        total, r_eff, n = (float(x) for x in sersic)
        if not (np.isfinite(total) and total > 0 and np.isfinite(r_eff) and r_eff > 0
                and np.isfinite(n) and n > 0):
            raise ValueError(f"unusable Sersic model {sersic}")
        if convolved_model is not None:
            model_psf = np.asarray(convolved_model, dtype=float)
            if model_psf.shape != shape:
                raise ValueError("convolved_model has the wrong shape")
        else:
            model_psf = _convolve(_sersic_intrinsic(shape, (xc, yc), q, theta,
                                                    (total, r_eff, n)), psf)
        if not np.all(np.isfinite(model_psf)):
            raise ValueError("model image is not finite")
    except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
        profile["psf_correction_error"] = f"{type(exc).__name__}: {exc}"
        return done(float("nan"), HalfMassFlag.PSF_FIT_FAILED)
    profile["sersic"] = (total, r_eff, n)
    residual = np.where(valid, image - model_psf, 0.0)
    filled = np.where(valid, image, model_psf)

    # residual aperture: extent x circular Petrosian radius of the data, inside the cutout
    r_pix = elliptical_radius(shape, (xc, yc))
    ring = _ring_index(r_pix)
    r_ap, rp, aperture_flag = _petrosian_aperture(r_pix, ring, filled, valid, extent)
    flag |= aperture_flag

    n_in = int(math.ceil(r_ap)) * _FINE
    grid = np.concatenate([np.linspace(0.0, r_ap, n_in + 1),
                           np.geomspace(r_ap, max(r_ap, 1e3 * r_eff), 301)[1:]])
    cumulative = _CumulativeProfile(
        elliptical_radius(shape, (xc, yc), oversample=_MODEL_OVERSAMPLE), _MODEL_OVERSAMPLE)
    resid = cumulative(residual, np.minimum(grid, r_ap))
    trunc = model_extent if model_extent > 0 else math.inf
    light = total * _sersic.circular_fraction(grid, r_eff, n, q, trunc=trunc) + resid
    level = fraction * float(total + resid[-1])
    profile.update(petrosian_radius_pix=rp, aperture_pix=r_ap, grid_pix=grid,
                   cumulative_light=light, residual_fraction=float(resid[-1] / total))
    if not np.all(np.isfinite(light)) or level <= 0:
        return done(float("nan"), flag | HalfMassFlag.NO_FLUX)
    r_half = _first_crossing(grid, light, level)
    if not np.isfinite(r_half):
        return done(float("nan"), flag | HalfMassFlag.NO_CROSSING)
    if r_half > r_ap:
        flag |= HalfMassFlag.EXTRAPOLATED
    return done(float(r_half * pixel_scale), flag)
