"""The Sérsic mathematics (galcat.sersic): b_n, enclosed light, flux and the rendered model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from scipy import integrate, ndimage
from scipy.special import gammainc

from galcat import sersic

SRC = Path(__file__).resolve().parents[1] / "src" / "galcat"


def test_b_n_matches_published_values():
    # b_0.5 = ln 2 (a Gaussian); b_1 and b_4 to 10 digits (Ciotti & Bertin 1999, Table 1
    # quotes b_4 = 7.669249442); large n follows their asymptotic series
    assert sersic.b_n(0.5) == pytest.approx(math.log(2.0), rel=1e-12)
    assert sersic.b_n(1.0) == pytest.approx(1.678346990, rel=1e-9)
    assert sersic.b_n(4.0) == pytest.approx(7.669249443, rel=1e-9)
    n = 10.0
    series = 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2)
    assert sersic.b_n(n) == pytest.approx(series, rel=1e-6)
    # vectorised, and a float for a scalar
    assert isinstance(sersic.b_n(2.0), float)
    np.testing.assert_allclose(sersic.b_n(np.array([1.0, 4.0])), [1.678346990, 7.669249443],
                               rtol=1e-9)
    # other fractions: an exponential holds 1 - (1 + b) e^-b inside b / b_1 r_e
    b80 = sersic.b_n(1.0, 0.8)
    assert 1 - (1 + b80) * math.exp(-b80) == pytest.approx(0.8, rel=1e-12)


def _numerical_flux(amplitude, r_eff, n, q, a_max):
    bn = sersic.b_n(n)

    def ring(a):
        return 2 * math.pi * q * a * amplitude * math.exp(-bn * ((a / r_eff) ** (1 / n) - 1))

    value, _ = integrate.quad(ring, 0.0, a_max, limit=400, epsabs=0.0, epsrel=1e-11)
    return value


@pytest.mark.parametrize("n", [0.7, 1.0, 2.5, 4.0, 6.0])
def test_total_flux_and_enclosed_fraction_match_numerical_integration(n):
    r_eff, q, amp = 3.0, 0.6, 2.5
    total = sersic.total_flux(amp, r_eff, n, q)
    assert total == pytest.approx(_numerical_flux(amp, r_eff, n, q, 1e4 * r_eff), rel=1e-8)
    for a in (0.3, 1.0, 3.0, 7.5, 30.0):
        expected = _numerical_flux(amp, r_eff, n, q, a) / total
        assert sersic.enclosed_fraction(a, r_eff, n) == pytest.approx(expected, rel=1e-8)
    assert sersic.enclosed_fraction(r_eff, r_eff, n) == pytest.approx(0.5, rel=1e-12)
    # amplitude is the inverse of total_flux
    assert sersic.amplitude(total, r_eff, n, q) == pytest.approx(amp, rel=1e-12)


def test_truncation_renormalises_the_light_inside_the_cut():
    n, r_eff, trunc = 4.0, 2.0, 8.0
    inside = _numerical_flux(1.0, r_eff, n, 1.0, trunc * r_eff)
    for a in (1.0, 5.0, 12.0):
        expected = _numerical_flux(1.0, r_eff, n, 1.0, a) / inside
        assert sersic.enclosed_fraction(a, r_eff, n, trunc=trunc) == pytest.approx(
            expected, rel=1e-8)
    assert sersic.enclosed_fraction(np.array([16.0, 50.0]), r_eff, n, trunc=trunc) == \
        pytest.approx([1.0, 1.0])
    # a truncated profile of unit flux inside the cut has a larger I_e than an untruncated one
    cut = sersic.amplitude(1.0, r_eff, n, trunc=trunc)
    assert cut * sersic.total_flux(1.0, r_eff, n) == pytest.approx(
        1.0 / sersic.enclosed_fraction(trunc, 1.0, n), rel=1e-12)


def test_circular_fraction_matches_a_brute_force_sum():
    n, r_eff, q, theta = 2.0, 6.0, 0.5, 0.4
    size = 801
    y, x = (np.mgrid[0:size, 0:size] - size // 2) * 0.1  # fine grid, units of pixels
    c, s = math.cos(theta), math.sin(theta)
    a = np.hypot(x * c + y * s, (-x * s + y * c) / q)
    img = np.exp(-sersic.b_n(n) * (a / r_eff) ** (1 / n))
    total = img[a <= 35.0].sum() / sersic.enclosed_fraction(35.0, r_eff, n)
    r = np.hypot(x, y)
    for radius in (2.0, 6.0, 15.0):
        brute = img[r <= radius].sum() / total
        assert sersic.circular_fraction(radius, r_eff, n, q) == pytest.approx(brute, rel=5e-3)
    # cut at 2 r_eff: the whole profile lies inside a circle of 2 r_eff, and less of it
    # lies outside 8 px than without the cut
    cut = sersic.circular_fraction(np.array([8.0, 1e4]), r_eff, n, q, trunc=2.0)
    assert cut[1] == pytest.approx(1.0)
    assert cut[0] > sersic.circular_fraction(8.0, r_eff, n, q)
    assert sersic.circular_fraction(2.0 * r_eff, r_eff, n, 1.0, trunc=2.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("core_radius", "subsamples", "subpixel_psf"),
                         [(1.0, 5, True), (3.0, 7, True), (math.inf, 3, False)])
def test_model_conserves_flux(core_radius, subsamples, subpixel_psf):
    """Unit flux in: the PSF-free image holds it (to the sampling error of a resolved
    profile, 2%: the 1-px core of the refit misses 1.5% of an
    n = 2.5 profile of 3 px) and the convolution with a normalised PSF, core stamps included,
    moves light but keeps all of it."""
    rng = np.random.default_rng(1)
    psf = rng.random((9, 9)) + 1.0
    render = sersic.SersicImage((161, 161), (80.2, 79.7), 0.3, [psf, None],
                                core_radius=core_radius, core_subsamples=subsamples,
                                subpixel_psf=subpixel_psf)
    for n, r_eff, trunc in ((1.0, 4.0, math.inf), (4.0, 6.0, 8.0), (2.5, 3.0, 8.0),
                            (4.0, 1.2, 8.0)):
        q = 0.7
        samples = render.sample(sersic.amplitude(1.0, r_eff, n, q, trunc=trunc), r_eff, n, q,
                                trunc=trunc)
        intrinsic = render.intrinsic(samples)
        if r_eff > 2:
            assert intrinsic.sum() == pytest.approx(1.0, rel=0.02), (n, r_eff)
        assert render.convolved(samples, 0).sum() == pytest.approx(intrinsic.sum(), rel=1e-9)
        np.testing.assert_array_equal(render.convolved(samples, 1), intrinsic)  # no PSF


def test_core_integration_recovers_the_light_of_a_cusp():
    """An n = 4 profile of 1.5 px: a pixel-centre sample misses the cusp's light in the
    central pixel (14%), the integrated core not (2%), and the total follows."""
    n, r_eff, q, (x0, y0) = 4.0, 1.5, 1.0, (40.23, 39.71)
    amp = sersic.amplitude(1.0, r_eff, n, q)
    bn = sersic.b_n(n)
    pixel, _ = integrate.dblquad(
        lambda y, x: amp * math.exp(-bn * ((math.hypot(x - x0, y - y0) / r_eff) ** 0.25 - 1)),
        39.5, 40.5, 39.5, 40.5, epsrel=1e-8)
    centres = sersic.SersicImage((81, 81), (x0, y0), core_radius=0.0)
    cored = sersic.SersicImage((81, 81), (x0, y0), core_radius=3.0, core_subsamples=7)
    bad = centres.intrinsic(centres.sample(amp, r_eff, n, q))
    good = cored.intrinsic(cored.sample(amp, r_eff, n, q))
    assert bad[40, 40] < 0.9 * pixel
    assert good[40, 40] == pytest.approx(pixel, rel=0.02)
    assert abs(good.sum() - 1) < 0.2 * abs(bad.sum() - 1)


def test_vectorised_core_equals_the_per_pixel_definition():
    """The PSF of the model is the PSF's cubic-spline interpolant (coefficients zero
    beyond the stamp; the PSF at its pixels, with a faint ring beyond them), scaled to
    unit sum: the convolved model is fftconvolve of the centre samples with it, every
    core pixel's centre sample replaced by its sub-pixel samples, each through the
    interpolant shifted to its position. Written out pixel by pixel, with scipy's spline
    evaluation (``ndimage.shift`` without prefilter) as the reference."""
    rng = np.random.default_rng(5)
    psfs = [rng.random((9, 9)), rng.random((7, 7))]
    render = sersic.SersicImage((30, 28), (3.2, 14.6), 0.3, psfs)  # core near the border
    samples = render.sample(0.02, 4.0, 3.0, 0.7, trunc=8.0)
    image, core = samples
    assert len(render.core) > 20
    k, pad = 7, 2
    off = (np.arange(k) + 0.5) / k - 0.5
    dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    for band, psf in enumerate(render.psfs):
        coefficients = np.pad(sersic.spline_coefficients(psf), pad)
        # the interpolation condition: the spline is the PSF at its pixels
        at_nodes = _spline_psf(psf, pad)
        np.testing.assert_allclose(at_nodes[pad:-pad, pad:-pad], psf, rtol=0, atol=1e-12)
        unshifted = at_nodes / at_nodes.sum()
        expected = scipy.signal.fftconvolve(image, unshifted, mode="same")
        py, px = coefficients.shape
        shifted = np.array([ndimage.shift(coefficients, (oy, ox), order=3,
                                          mode="grid-constant", prefilter=False)
                            for oy, ox in zip(dy, dx, strict=True)])
        shifted /= shifted.sum(axis=(1, 2), keepdims=True)
        for (j, i), sub in zip(render.core, core, strict=True):
            stamp = np.tensordot(sub / sub.size, shifted, axes=1) - image[j, i] * unshifted
            for oy in range(py):
                for ox in range(px):
                    y, x = j - py // 2 + oy, i - px // 2 + ox
                    if 0 <= y < 30 and 0 <= x < 28:
                        expected[y, x] += stamp[oy, ox]
        np.testing.assert_allclose(render.convolved(samples, band), expected,
                                   rtol=1e-9, atol=1e-12 * expected.max())


def test_the_sub_pixel_psf_is_the_old_shifted_stamp_for_a_smooth_psf():
    """For a PSF that falls to ~0 at its edges (a survey's), the spline-coefficient core
    gives the model of shifting the PSF stamp itself (``ndimage.shift``, renormalised),
    to 1e-5 of the peak: the change of method did not change the model."""
    y, x = np.mgrid[-12:13, -12:13]
    psf = (1.0 + (x**2 + y**2) / 2.5**2) ** -4.5  # Moffat, beta 4.5: edge 1e-5 of peak
    psf /= psf.sum()
    render = sersic.SersicImage((64, 64), (31.7, 32.2), 0.3, [psf])
    samples = render.sample(1.0, 1.5, 4.0, 0.7)
    image, core = samples
    k = 7
    off = (np.arange(k) + 0.5) / k - 0.5
    dy, dx = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    shifted = np.array([ndimage.shift(psf, (oy, ox), order=3, mode="constant")
                        for oy, ox in zip(dy, dx, strict=True)])
    shifted /= shifted.sum(axis=(1, 2), keepdims=True)
    expected = scipy.signal.fftconvolve(image, psf, mode="same")
    for (j, i), sub in zip(render.core, core, strict=True):
        stamp = np.tensordot(sub / sub.size, shifted, axes=1) - image[j, i] * psf
        expected[j - 12:j + 13, i - 12:i + 13] += stamp
    got = render.convolved(samples)
    assert np.abs(got - expected).max() < 1e-5 * expected.max()
    assert np.abs(got - expected).max() > 0  # a different method, not the same code


def test_pixel_average_mode_is_the_average_through_the_psf():
    """``subpixel_psf=False`` with every pixel in the core: each pixel the mean of its
    sub-pixel samples, that image convolved with the PSF (the half-mass route's model)."""
    rng = np.random.default_rng(2)
    psf = rng.random((7, 7))
    psf /= psf.sum()
    s, (ny, nx), (x0, y0), theta, q = 3, (20, 24), (11.3, 9.6), 0.5, 0.6
    render = sersic.SersicImage((ny, nx), (x0, y0), theta, [psf], core_radius=math.inf,
                                core_subsamples=s, subpixel_psf=False)
    samples = render.sample(1.0, 3.0, 2.0, q)
    off = (np.arange(s) + 0.5) / s - 0.5
    yy = (np.arange(ny)[:, None] + off[None, :]).ravel()[:, None] - y0
    xx = (np.arange(nx)[:, None] + off[None, :]).ravel()[None, :] - x0
    c, sn = math.cos(theta), math.sin(theta)
    a = np.hypot(xx * c + yy * sn, (-xx * sn + yy * c) / q)
    sub = np.exp(-sersic.b_n(2.0) * ((a / 3.0) ** 0.5 - 1.0))
    average = sub.reshape(ny, s, nx, s).mean(axis=(1, 3))
    np.testing.assert_allclose(render.intrinsic(samples), average, rtol=1e-12)
    np.testing.assert_allclose(render.convolved(samples),
                               scipy.signal.fftconvolve(average, psf, mode="same"),
                               rtol=1e-10, atol=1e-14)


def test_bad_inputs_are_named():
    with pytest.raises(sersic.SersicError, match="PSF 1 has no positive finite sum"):
        sersic.SersicImage((10, 10), (5, 5), 0.0, [np.ones((3, 3)), np.zeros((3, 3))])
    with pytest.raises(sersic.SersicError, match="PSF 0 .*shape \\(3,\\)"):
        sersic.SersicImage((10, 10), (5, 5), 0.0, [np.ones(3)])
    with pytest.raises(sersic.SersicError, match="core_subsamples must be >= 1; got 0"):
        sersic.SersicImage((10, 10), (5, 5), core_subsamples=0)


def test_sersic_mathematics_has_one_home():
    """b_n (an inverse incomplete gamma) and the enclosed fraction (an incomplete gamma)
    are computed in galcat.sersic only; nothing else renders a Sérsic on a pixel grid."""
    for path in SRC.rglob("*.py"):
        if path.name == "sersic.py":
            continue
        text = path.read_text()
        for needle in ("gammaincinv", "gammainc(", "gammainc,", "fftconvolve(g,"):
            assert needle not in text, f"{path.relative_to(SRC)} uses {needle}"


@pytest.mark.parametrize("psf_side", [25, 24, 9])
def test_convolution_is_fftconvolve_same_with_the_shorter_fft(psf_side):
    """The cyclic convolution runs on an FFT shorter than the full linear one (80 rather
    than 90 for a 64-pixel cutout and a 25-pixel PSF): the kept window must still be
    scipy's ``fftconvolve(mode='same')`` for odd and even PSFs, with the PSF itself
    (``subpixel_psf=False``) and with its cubic-spline interpolant (the sub-pixel PSF's
    model, on a grid 2 px wider)."""
    rng = np.random.default_rng(psf_side)
    psf = rng.random((psf_side, psf_side))
    image = rng.random((64, 64))
    for subpixel_psf, kernel in ((False, psf), (True, _spline_psf(psf))):
        render = sersic.SersicImage((64, 64), (31.2, 30.7), 0.0, [psf], core_radius=0.0,
                                    subpixel_psf=subpixel_psf)
        transform, fshape, _ = render.transforms[0]
        assert fshape[0] < 64 + kernel.shape[0] - 1 or psf_side < 12
        expected = scipy.signal.fftconvolve(image, kernel / kernel.sum(), mode="same")
        got = render.convolved((image, np.zeros((0, 49))), 0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * expected.max())


def _spline_psf(psf: np.ndarray, pad: int = 2) -> np.ndarray:
    """The cubic-spline interpolant of ``psf`` (coefficients zero beyond it) at the
    pixels of the stamp extended by ``pad``: ``psf`` inside, a faint ring beyond."""
    coefficients = np.pad(sersic.spline_coefficients(psf), pad)
    return ndimage.shift(coefficients, (0.0, 0.0), order=3, mode="grid-constant",
                         prefilter=False)


def test_convolved_many_is_each_convolved():
    rng = np.random.default_rng(3)
    render = sersic.SersicImage((40, 38), (19.4, 20.1), 0.4, [rng.random((9, 9)), None,
                                                               rng.random((11, 11))])
    sets = [render.sample_flux(1.0, r, n, 0.6, trunc=8.0) for r, n in ((2.0, 4.0), (5.0, 1.0))]
    many = render.convolved_many(sets, [0, 1, 2])
    for i in range(3):
        for j, samples in enumerate(sets):
            np.testing.assert_allclose(many[i, j], render.convolved(samples, i),
                                       rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("trunc", "amplitude_form"), [(math.inf, False), (8.0, False),
                                                       (math.inf, True)])
def test_analytic_profile_gradient_matches_finite_differences(trunc, amplitude_form):
    """d(samples)/d(ln r_eff, n, q), pixel centres and core sub-pixels, of the profile
    normalised to a flux (the bulge + disc fit) or to I(r_eff) (the Sérsic refit)."""
    render = sersic.SersicImage((48, 48), (23.3, 24.1), 0.6, [np.ones((5, 5))])
    base = (1.0, 3.1, 2.7, 0.6)
    if amplitude_form:
        grad, sample = render.sample_gradient(*base), render.sample
    else:
        grad = render.sample_flux_gradient(*base, trunc=trunc)
        sample = lambda *a: render.sample_flux(*a, trunc=trunc)  # noqa: E731
    h = 1e-6
    for k, step in enumerate([(h, 0, 0), (0, h, 0), (0, 0, h)]):
        a, r, n, q = base
        plus = sample(a, r * math.exp(step[0]), n + step[1], q + step[2])
        minus = sample(a, r * math.exp(-step[0]), n - step[1], q - step[2])
        for part in (0, 1):  # pixel-centre samples, core sub-pixel samples
            fd = (plus[part] - minus[part]) / (2 * h)
            np.testing.assert_allclose(grad[k + 1][part], fd, rtol=0,
                                       atol=1e-7 * np.abs(fd).max())


def test_fractions_skipped_beyond_the_cut_and_far_out_are_exact():
    """`enclosed_fraction` skips the incomplete gamma function beyond a truncation and
    where it is 1 to double precision: the values are those of the direct formula."""
    a = np.concatenate([np.linspace(0, 30, 301), np.geomspace(30, 5000, 400)])
    for n, trunc in ((1.0, math.inf), (4.0, 8.0), (0.8, 3.0), (6.0, math.inf)):
        bn = sersic.b_n(n)
        direct = gammainc(2 * n, bn * (np.minimum(a, trunc * 3.0) / 3.0) ** (1 / n))
        if math.isfinite(trunc):
            direct = direct / gammainc(2 * n, bn * trunc ** (1 / n))
        np.testing.assert_allclose(sersic.enclosed_fraction(a, 3.0, n, trunc=trunc), direct,
                                   rtol=1e-15, atol=1e-15)
