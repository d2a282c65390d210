"""The traditional half-mass radius: colour profile → M/L → mass profile.

This is the baseline the ``r50`` network must beat. It follows the route of
Szomoru et al. (2013, ApJ 763, 73): measure a colour profile, turn each colour
into a stellar mass-to-light ratio with a published colour–M/L relation, weight
the light profile by it, and find the radius that holds half of the mass.

Steps (each a small function below):

1. Pixels that are masked (neighbours, bad pixels, non-finite values) are filled
   with the mean of the unmasked pixels of the same elliptical ring, so that the
   profiles stay azimuthal averages.
2. The two images of the colour are brought to a common PSF by cross-convolution
   (band 1 convolved with the PSF of band 2 and the other way round), so that the
   colour profile has no spurious PSF gradient.
3. One-pixel-wide elliptical rings are merged outwards into colour bins until
   both bands reach ``min_snr`` in the bin; rings beyond the last complete bin
   keep the colour of that bin. Colours are clipped to the calibrated range of
   the relation.
4. log(M/L) is interpolated in radius between bins and multiplied with the
   luminosity-band image: a mass map.
5. The total is taken within ``extent`` Petrosian radii (η = 0.2) of the
   luminosity band. With ``psf_correction`` (default), a Sérsic profile
   convolved with the PSF is fitted to the mass map, and the intrinsic
   cumulative mass is the analytic Sérsic profile plus the cumulative residual
   (data − model ⊗ PSF), as Szomoru et al. (2010, 2013) do for light; the
   model also extrapolates the total beyond the aperture.
6. The half-mass radius is interpolated on the cumulative profile, sampled on
   sub-pixels, and returned circularised (√(ab)) in arcsec.

Luminosities are left in flux units: distance, solar magnitude and
k-corrections multiply every annulus by one constant and cancel in a radius
that holds a fraction of the total.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.optimize as opt
import scipy.signal
import scipy.special as sp

__all__ = [
    "COLOUR_LIMITS",
    "HALFMASS_FATAL",
    "HALFMASS_FLAGS",
    "MASS_TO_LIGHT_RELATIONS",
    "colour_bins",
    "elliptical_radius",
    "half_mass_radius",
    "mass_to_light",
    "petrosian_radius",
    "sersic_enclosed_fraction",
]

#: name → ((band of the colour's blue side, luminosity band), a, b, reference) for
#: log10(M/L)_band2 = a + b × (m_band1 − m_band2), M/L in solar units.
MASS_TO_LIGHT_RELATIONS: dict[str, tuple[tuple[str, str], float, float, str]] = {
    "bell2003_gr": (
        ("g", "r"),
        -0.306,
        1.097,
        "Bell, McIntosh, Katz & Weinberg 2003, ApJS 149, 289, Table 7: "
        "log(M/L)_r = -0.306 + 1.097 (g - r)",
    ),
    "zibetti2009_gi": (
        ("g", "i"),
        -0.963,
        1.032,
        "Zibetti, Charlot & Rix 2009, MNRAS 400, 1181, Table B1: "
        "log(M/L)_i = -0.963 + 1.032 (g - i)",
    ),
}

#: Colour range (mag) over which each relation is calibrated; colours outside are clipped.
COLOUR_LIMITS: dict[str, tuple[float, float]] = {
    "bell2003_gr": (-0.1, 1.1),
    "zibetti2009_gi": (-0.1, 1.6),
}

#: Bits of the ``r50_mass_flag`` word: bit → (name, meaning).
HALFMASS_FLAGS: dict[int, tuple[str, str]] = {
    1: ("MISSING_BAND", "a band of the colour is absent or has no valid pixel; radius NaN"),
    2: ("NO_FLUX", "the luminosity-band flux within the aperture is not positive; radius NaN"),
    4: ("LOW_SNR", "no ring bin reached min_snr: one integrated colour used for the galaxy"),
    8: ("COLOUR_CLIPPED", "a bin colour was outside the calibrated range and clipped"),
    16: ("NO_PETROSIAN", "no Petrosian radius found; the aperture is the largest inside the cutout"),
    32: ("TRUNCATED", "the extent x Petrosian aperture leaves the cutout; it is cut at the border"),
    64: ("PSF_FIT_FAILED", "the Sersic model + residual correction failed; uncorrected radius given"),
    128: ("NO_CROSSING", "the cumulative mass never reaches half its total; radius NaN"),
    256: ("MASKED", "more than half of the pixels inside the aperture are masked"),
    512: ("EXTRAPOLATED", "the half-mass radius lies beyond the aperture, set by the model alone"),
    1024: ("BAD_INPUT", "centre outside the cutout or shapes that disagree; radius NaN"),
}
_BIT = {name: bit for bit, (name, _) in HALFMASS_FLAGS.items()}
#: Flags for which the radius is NaN.
HALFMASS_FATAL = _BIT["MISSING_BAND"] | _BIT["NO_FLUX"] | _BIT["NO_CROSSING"] | _BIT["BAD_INPUT"]

_SUBPIXELS = 5  # sub-pixel sampling of cumulative profiles
_MODEL_OVERSAMPLE = 3  # sub-pixel sampling of the Sersic model
_N_BOUNDS = (0.3, 6.0)


def mass_to_light(colour, relation: str):
    """Stellar mass-to-light ratio (solar units, in the luminosity band) of a colour.

    Parameters
    ----------
    colour : float or array
        ``m_band1 − m_band2`` in AB magnitudes, bands as in
        ``MASS_TO_LIGHT_RELATIONS[relation][0]``.
    relation : {'bell2003_gr', 'zibetti2009_gi'}

    Returns
    -------
    float or ndarray
        ``10 ** (a + b × colour)``.
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
    flux1: np.ndarray, flux2: np.ndarray, var1: np.ndarray, var2: np.ndarray, min_snr: float
) -> list[slice]:
    """Merge consecutive rings outwards until both bands reach ``min_snr``.

    Returns slices of ring indices; rings after the last complete bin are left
    out (they take its colour).
    """
    bins: list[slice] = []
    start = 0
    f1 = f2 = v1 = v2 = 0.0
    for k in range(flux1.size):
        f1 += flux1[k]
        f2 += flux2[k]
        v1 += var1[k]
        v2 += var2[k]
        snr1 = f1 / math.sqrt(v1) if v1 > 0 else (math.inf if f1 > 0 else 0.0)
        snr2 = f2 / math.sqrt(v2) if v2 > 0 else (math.inf if f2 > 0 else 0.0)
        if f1 > 0 and f2 > 0 and snr1 >= min_snr and snr2 >= min_snr:
            bins.append(slice(start, k + 1))
            start = k + 1
            f1 = f2 = v1 = v2 = 0.0
    return bins


def _colour(f1: float, f2: float, zp1: float, zp2: float) -> float:
    return (zp1 - zp2) - 2.5 * math.log10(f1 / f2)


def sersic_bn(n: float) -> float:
    """b_n such that the Sérsic effective radius holds half of the light."""
    return float(sp.gammaincinv(2.0 * n, 0.5))


def sersic_enclosed_fraction(a, r_eff: float, n: float):
    """Fraction of a Sérsic profile's light inside semi-major axis ``a``
    (ellipse of the profile's own axis ratio): P(2n, b_n (a/r_eff)^(1/n))."""
    bn = sersic_bn(n)
    x = bn * (np.asarray(a, dtype=float) / r_eff) ** (1.0 / n)
    return sp.gammainc(2.0 * n, x)


def _sersic_image(
    total: float, r_eff: float, n: float, a_sub: np.ndarray, q: float, s: int, shape
) -> np.ndarray:
    """Pixel-averaged elliptical Sérsic image with ``total`` flux (a_sub oversampled by s)."""
    bn = sersic_bn(n)
    norm = 2.0 * math.pi * q * r_eff**2 * n * math.exp(bn) * math.gamma(2 * n) / bn ** (2 * n)
    ie = total / norm
    sub = ie * np.exp(-bn * ((a_sub / r_eff) ** (1.0 / n) - 1.0))
    ny, nx = shape
    return sub.reshape(ny, s, nx, s).mean(axis=(1, 3))


def _convolve(image: np.ndarray, psf: np.ndarray | None) -> np.ndarray:
    if psf is None:
        return image
    return scipy.signal.fftconvolve(image, psf, mode="same")


def _normalised_psf(psf) -> np.ndarray | None:
    if psf is None:
        return None
    psf = np.asarray(psf, dtype=float)
    total = psf.sum()
    if psf.ndim != 2 or not np.isfinite(total) or total <= 0:
        return None
    return psf / total


class _CumulativeProfile:
    """Cumulative sum of an image inside ellipses, sampled on sub-pixels."""

    def __init__(self, a_sub: np.ndarray, s: int) -> None:
        self._order = np.argsort(a_sub, axis=None, kind="stable")
        self._a_sorted = a_sub.ravel()[self._order]
        self._s = s

    def __call__(self, image: np.ndarray, a: np.ndarray) -> np.ndarray:
        s = self._s
        sub = np.repeat(np.repeat(image, s, axis=0), s, axis=1).ravel() / (s * s)
        cum = np.concatenate([[0.0], np.cumsum(sub[self._order])])
        idx = np.searchsorted(self._a_sorted, a, side="right")
        return cum[idx]


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


def _fit_sersic_psf(
    mass: np.ndarray,
    weight: np.ndarray,
    psf: np.ndarray | None,
    a_sub: np.ndarray,
    q: float,
    s: int,
    total0: float,
    r0: float,
) -> tuple[float, float, float]:
    """Least-squares fit of total, r_eff, n of a PSF-convolved Sérsic to ``mass``."""
    shape = mass.shape
    use = weight > 0
    data = mass[use]
    w = weight[use]
    r_hi = 5.0 * max(shape)

    def residual(p):
        total, r_eff, n = 10.0 ** p[0], 10.0 ** p[1], p[2]
        model = _convolve(_sersic_image(total, r_eff, n, a_sub, q, s, shape), psf)
        return (data - model[use]) * w

    x0 = [math.log10(max(total0, 1e-30)), math.log10(min(max(r0, 0.5), r_hi / 2)), 2.0]
    lo = [x0[0] - 3.0, math.log10(0.2), _N_BOUNDS[0]]
    hi = [x0[0] + 3.0, math.log10(r_hi), _N_BOUNDS[1]]
    res = opt.least_squares(residual, x0, bounds=(lo, hi), x_scale=[0.1, 0.1, 0.5], max_nfev=200)
    if not res.success or not np.all(np.isfinite(res.x)):
        raise RuntimeError(f"Sersic fit did not converge: {res.message}")
    return 10.0 ** res.x[0], 10.0 ** res.x[1], float(res.x[2])


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
        PSFs; used to bring the colour to a common PSF and for the Sérsic
        model + residual correction. Without them the images are taken as
        PSF-free.
    q, theta : float
        Axis ratio b/a and major-axis angle (radians from +x) of the annuli;
        ``q = 1`` gives circular annuli.
    min_snr : float
        Signal-to-noise each band must reach in a colour bin.
    extent : float
        Aperture semi-major axis in Petrosian radii of the luminosity band.
    psf_correction : bool
        Use the Sérsic model + residual (Szomoru et al. 2010, 2013) for the
        intrinsic profile; otherwise the observed mass profile inside the aperture.
    return_profile : bool
        Also return a dict with the colour bins, M/L and cumulative profile.

    Returns
    -------
    radius_arcsec : float
        Circularised half-mass radius √(ab) in arcsec; NaN on failure.
    flag : int
        Bits of `HALFMASS_FLAGS`.
    profile : dict, only with ``return_profile``
    """
    profile: dict = {}

    def done(radius: float, flag: int):
        if flag & HALFMASS_FATAL:
            radius = float("nan")
        return (radius, flag, profile) if return_profile else (radius, flag)

    (band1, band2), _, _, _ = MASS_TO_LIGHT_RELATIONS[relation]
    flag = 0
    arrays = {}
    for band in (band1, band2):
        if band not in images_by_band or band not in sigma_by_band or band not in bands:
            return done(float("nan"), _BIT["MISSING_BAND"])
        arrays[band] = (
            np.asarray(images_by_band[band], dtype=float),
            np.asarray(sigma_by_band[band], dtype=float),
        )
    img1, sig1 = arrays[band1]
    img2, sig2 = arrays[band2]
    shape = img2.shape
    if img1.shape != shape or sig1.shape != shape or sig2.shape != shape:
        return done(float("nan"), _BIT["BAD_INPUT"])
    if mask is not None and np.shape(mask) != shape:
        return done(float("nan"), _BIT["BAD_INPUT"])
    xc, yc = float(centre[0]), float(centre[1])
    if not (np.isfinite(xc) and np.isfinite(yc) and 0 <= xc <= shape[1] - 1 and 0 <= yc <= shape[0] - 1):
        return done(float("nan"), _BIT["BAD_INPUT"])
    if not (np.isfinite(q) and 0 < q <= 1):
        q = 1.0
    if not np.isfinite(theta):
        theta = 0.0
    zp1 = float(zeropoints[list(bands).index(band1)])
    zp2 = float(zeropoints[list(bands).index(band2)])

    valid = np.ones(shape, dtype=bool) if mask is None else ~np.asarray(mask, dtype=bool)
    for img, sig in ((img1, sig1), (img2, sig2)):
        valid &= np.isfinite(img) & np.isfinite(sig) & (sig >= 0)
    for img in (img1, img2):
        if not np.any(valid & np.isfinite(img)):
            return done(float("nan"), _BIT["MISSING_BAND"])

    # 1. radii, rings and masked-pixel filling
    a_pix = elliptical_radius(shape, (xc, yc), q, theta)
    ring = _ring_index(a_pix)
    f1 = _fill_masked(img1, valid, ring)
    f2 = _fill_masked(img2, valid, ring)
    var1 = np.where(valid, sig1, 0.0) ** 2
    var2 = np.where(valid, sig2, 0.0) ** 2

    # 2. aperture: extent x Petrosian radius of the luminosity band, inside the cutout
    border = np.concatenate([a_pix[0], a_pix[-1], a_pix[:, 0], a_pix[:, -1]])
    a_edge = float(border.min())
    n_edge = max(1, int(math.floor(a_edge)))
    area = np.bincount(ring[ring < n_edge], minlength=n_edge).astype(float)
    rp = petrosian_radius(_ring_sums(f2, ring, n_edge), np.maximum(area, 1e-9))
    if np.isfinite(rp):
        r_max = extent * rp
        if r_max > a_edge:
            flag |= _BIT["TRUNCATED"]
            r_max = a_edge
    else:
        flag |= _BIT["NO_PETROSIAN"]
        r_max = a_edge
    r_max = max(r_max, 1.0)
    inside = a_pix <= r_max
    if np.count_nonzero(valid & inside) < 0.5 * np.count_nonzero(inside):
        flag |= _BIT["MASKED"]
    profile.update(petrosian_radius_pix=rp, aperture_pix=r_max)

    # 3. colour on a common PSF
    psf1 = _normalised_psf(None if psf_by_band is None else psf_by_band.get(band1))
    psf2 = _normalised_psf(None if psf_by_band is None else psf_by_band.get(band2))
    if psf1 is not None and psf2 is not None:
        m1, m2 = _convolve(f1, psf2), _convolve(f2, psf1)
    else:
        m1, m2 = f1, f2

    n_rings = int(math.ceil(r_max))
    rf1 = _ring_sums(m1, ring, n_rings)
    rf2 = _ring_sums(m2, ring, n_rings)
    rv1 = _ring_sums(var1, ring, n_rings)
    rv2 = _ring_sums(var2, ring, n_rings)
    total2 = float(rf2.sum())
    if not np.isfinite(total2) or total2 <= 0 or float(rf1.sum()) <= 0:
        return done(float("nan"), flag | _BIT["NO_FLUX"])

    lo, hi = COLOUR_LIMITS[relation]
    bins = colour_bins(rf1, rf2, rv1, rv2, min_snr)
    ring_mid = _ring_sums(a_pix * m2, ring, n_rings)
    if len(bins) == 0:
        flag |= _BIT["LOW_SNR"]
        bins = [slice(0, n_rings)]
    bin_r, bin_colour = [], []
    for b in bins:
        s1, s2 = rf1[b].sum(), rf2[b].sum()
        colour = _colour(s1, s2, zp1, zp2)
        if colour < lo or colour > hi:
            flag |= _BIT["COLOUR_CLIPPED"]
        bin_colour.append(min(max(colour, lo), hi))
        bin_r.append(ring_mid[b].sum() / s2)
    bin_r = np.asarray(bin_r)
    bin_colour = np.asarray(bin_colour)
    _, a_coef, b_coef, _ = MASS_TO_LIGHT_RELATIONS[relation]
    log_ml = a_coef + b_coef * bin_colour
    profile.update(bin_radius_pix=bin_r, bin_colour=bin_colour, bin_log_ml=log_ml)

    # 4. mass map
    ml_map = 10.0 ** np.interp(a_pix, bin_r, log_ml)
    mass = f2 * ml_map
    mass_sigma = np.sqrt(var2) * ml_map

    # 5. cumulative mass profile
    s = _SUBPIXELS
    a_sub = elliptical_radius(shape, (xc, yc), q, theta, oversample=s)
    cumulative = _CumulativeProfile(a_sub, s)
    total_obs = float(cumulative(mass, np.array([r_max]))[0])
    if not np.isfinite(total_obs) or total_obs <= 0:
        return done(float("nan"), flag | _BIT["NO_FLUX"])
    a_grid = np.linspace(0.0, r_max, 801)
    cum_obs = cumulative(mass, a_grid)
    a_half_obs = _first_crossing(a_grid, cum_obs, 0.5 * total_obs)

    a_half = a_half_obs
    if psf_correction:
        try:
            a_half, corr_flag = _intrinsic_half_radius(
                mass, mass_sigma, valid, psf2, (xc, yc), q, theta, r_max,
                total_obs, a_half_obs, cumulative,
            )
            flag |= corr_flag
            profile["model"] = "sersic+residual"
        except (RuntimeError, ValueError, FloatingPointError, OverflowError) as exc:
            warnings.warn(f"half-mass Sersic correction failed: {exc}", RuntimeWarning, stacklevel=2)
            flag |= _BIT["PSF_FIT_FAILED"]
    if not np.isfinite(a_half):
        return done(float("nan"), flag | _BIT["NO_CROSSING"])
    profile.update(half_mass_semimajor_pix=a_half, half_mass_observed_semimajor_pix=a_half_obs)
    return done(float(a_half * math.sqrt(q) * pixel_scale), flag)


def _intrinsic_half_radius(
    mass, mass_sigma, valid, psf, centre, q, theta, r_max, total_obs, a_half_obs, cumulative
) -> tuple[float, int]:
    """Szomoru et al. (2010) model + residual half radius of the mass map (pixels)."""
    flag = 0
    shape = mass.shape
    s = _MODEL_OVERSAMPLE
    a_model = elliptical_radius(shape, centre, q, theta, oversample=s)
    positive = mass_sigma[valid & (mass_sigma > 0)]
    floor = 1e-3 * float(np.median(positive)) if positive.size else 0.0
    floor = max(floor, 1e-6 * float(np.max(np.abs(mass))), 1e-300)
    weight = np.where(valid, 1.0 / np.maximum(mass_sigma, floor), 0.0)
    r0 = a_half_obs if np.isfinite(a_half_obs) else r_max / 2
    total, r_eff, n = _fit_sersic_psf(mass, weight, psf, a_model, q, s, total_obs, r0)
    model_obs = _convolve(_sersic_image(total, r_eff, n, a_model, q, s, shape), psf)
    if not np.all(np.isfinite(model_obs)):
        raise ValueError("Sersic model is not finite")
    residual = mass - model_obs
    # cumulative = analytic intrinsic model + residual inside the aperture
    a_hi = max(r_max, 50.0 * r_eff)
    a_grid = np.concatenate([np.linspace(0.0, r_max, 801), np.geomspace(r_max, a_hi, 400)[1:]])
    cum_res = cumulative(residual, np.minimum(a_grid, r_max))
    cum = total * sersic_enclosed_fraction(a_grid, r_eff, n) + cum_res
    grand = total + cum_res[-1]
    if not np.isfinite(grand) or grand <= 0:
        raise ValueError("model + residual total is not positive")
    a_half = _first_crossing(a_grid, cum, 0.5 * grand)
    if np.isfinite(a_half) and a_half > r_max:
        flag |= _BIT["EXTRAPOLATED"]
    return a_half, flag
