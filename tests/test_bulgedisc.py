"""Bulge + disc decomposition (galcat.bulgedisc) on galaxies of the synthetic survey.

The synthetic survey draws every galaxy as a Sérsic bulge + exponential disc with
GalSim, so a noiseless render has a known decomposition: structure, per-band fluxes,
the circular half-light radius ``truth_r50_r`` and the half-mass radius
``truth_r50_mass`` (each component's light times the M/L of its own colour).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from galcat import bulgedisc, halfmass
from galcat.config import load_config
from galcat.surveys import synthetic

BANDS = ("r", "g")


@pytest.fixture(scope="module")
def survey():
    cfg = load_config(overrides={"synthetic": {"n_objects": 120}})
    rows = synthetic.query(cfg)
    iso = rows[~(rows["truth_merger"] | rows["truth_projection"] | rows["truth_size_clipped"])]
    return cfg, iso


def _noiseless(cfg, row, noise: float = 1e-3, seed: int | None = None):
    """Images (PSF-convolved), sigma maps and PSFs of ``row`` in `BANDS`."""
    images, sigmas, psfs = [], [], []
    rng = None if seed is None else np.random.default_rng(seed)
    for band in BANDS:
        img = synthetic.render_noiseless(row, cfg, band=band, components=("bulge", "disc"))
        sig = np.full(img.shape, noise * img.max())
        if rng is not None:
            img = img + sig * rng.standard_normal(img.shape)
        images.append(img)
        sigmas.append(sig)
        psfs.append(synthetic.psf_image(cfg, band))
    return images, sigmas, psfs


def _fit(cfg, row, images, sigmas, psfs, **kwargs):
    size = images[0].shape[0]
    c = (size - 1) / 2.0
    ps = float(cfg["synthetic"]["pixel_scale"])
    start = float(row["truth_r50_r"]) / ps
    return bulgedisc.fit_bulge_disc(
        images, sigmas, np.ones(images[0].shape, bool), psfs, (c, c), bands=BANDS,
        theta=math.radians(float(row["truth_pa_deg"])), r_start=start,
        q_start=float(row["truth_q_disc"]), **kwargs)


def _pick(iso, *, early: bool):
    """A galaxy 1.5-3 PSF FWHM large with a clear bulge (early) or a clear disc."""
    size_ok = iso["truth_r50_r"].between(2.0, 4.0)
    bt = iso["truth_bt"]
    kind = (bt > 0.5) if early else (bt.between(0.15, 0.45))
    return iso[size_ok & kind].iloc[0]


@pytest.mark.parametrize("early", [True, False])
def test_noiseless_fit_recovers_structure_and_radii(survey, early):
    cfg, iso = survey
    row = _pick(iso, early=early)
    images, sigmas, psfs = _noiseless(cfg, row)
    fit = _fit(cfg, row, images, sigmas, psfs)
    ps = float(cfg["synthetic"]["pixel_scale"])
    assert fit.bulge_to_total("r") == pytest.approx(float(row["truth_bt"]), abs=0.03)
    # GalSim's half_light_radius of a sheared profile is circularised: a = r / sqrt(q)
    r_disc = float(row["truth_r_e_disc"]) / ps / math.sqrt(float(row["truth_q_disc"]))
    assert fit.r_disc == pytest.approx(r_disc, rel=0.05)
    assert fit.q_disc == pytest.approx(float(row["truth_q_disc"]), abs=0.03)
    for k, band in enumerate(BANDS):
        total = float(row[f"truth_flux_bulge_{band}"] + row[f"truth_flux_disc_{band}"])
        assert fit.flux_bulge[k] + fit.flux_disc[k] == pytest.approx(total, rel=0.02)
    valid = np.ones(images[0].shape, bool)
    r50, flag = bulgedisc.light_radius(fit, images[0], valid, band="r")
    assert r50 * ps == pytest.approx(float(row["truth_r50_r"]), rel=0.02)
    assert not flag & halfmass.HALFMASS_FATAL
    zps = dict.fromkeys(BANDS, 22.5)
    r_mass, flag, info = bulgedisc.mass_radius(fit, images[0], valid, relation="bell2003_gr",
                                               zeropoints=zps)
    assert r_mass * ps == pytest.approx(float(row["truth_r50_mass"]), rel=0.03)
    # component colours are those the survey drew
    true_delta = -2.5 * math.log10(row["truth_flux_bulge_g"] / row["truth_flux_bulge_r"]
                                   * row["truth_flux_disc_r"] / row["truth_flux_disc_g"])
    assert info["delta_measured"] == pytest.approx(true_delta, abs=0.03)


def test_bulge_dominated_galaxies_are_not_left_in_the_disc_dominated_mode(survey):
    """Noiseless renders of 8 early types (true B/T > 0.6): started only from a disc of
    the galaxy's size, 3 of them stopped at B/T low by 0.12-0.22; the second start (a
    bulge of the galaxy's size inside a large disc) brings every one within 0.1."""
    cfg, iso = survey
    early = iso[(iso["truth_bt"] > 0.6) & iso["truth_r50_r"].between(1.5, 5.0)].head(8)
    assert len(early) == 8
    errors = []
    for _, row in early.iterrows():
        images, sigmas, psfs = _noiseless(cfg, row, noise=1e-4, seed=1)
        fit = _fit(cfg, row, images, sigmas, psfs)
        errors.append(fit.bulge_to_total("r") - float(row["truth_bt"]))
    assert np.max(np.abs(errors)) < 0.1, np.round(errors, 3)


def test_light_radius_counts_what_the_model_misses(survey):
    """The residual (data − model ⊗ PSF) inside the aperture enters the curve of growth:
    light added at the centre that no model component holds moves r50 inwards."""
    cfg, iso = survey
    row = _pick(iso, early=False)
    images, sigmas, psfs = _noiseless(cfg, row)
    fit = _fit(cfg, row, images, sigmas, psfs)
    valid = np.ones(images[0].shape, bool)
    base, _ = bulgedisc.light_radius(fit, images[0], valid, band="r")
    extra = images[0].copy()
    c = images[0].shape[0] // 2
    extra[c - 1:c + 1, c - 1:c + 1] += 0.05 * images[0].sum() / 4  # a nuclear point source
    more, _ = bulgedisc.light_radius(fit, extra, valid, band="r")
    assert more < 0.97 * base


def test_noisy_fit_is_stable_and_colour_prior_shrinks_the_difference(survey):
    cfg, iso = survey
    row = _pick(iso, early=False)
    images, sigmas, psfs = _noiseless(cfg, row, noise=0.05, seed=3)
    prior = {"log_ratio": (-0.46, 0.25), "n_bulge": (3.5, 1.5), "q_bulge": (0.8, 0.2)}
    fit = _fit(cfg, row, images, sigmas, psfs, priors=prior)
    assert np.all(fit.flux_bulge >= 0) and np.all(fit.flux_disc >= 0)
    assert fit.flux_cov.shape == (4, 4)
    assert np.all(np.diag(fit.flux_cov) > 0)
    free = bulgedisc.component_colours(fit, "g", "r", 0.0)
    assert free["delta"] == free["delta_measured"]
    assert free["delta_err"] > 0
    tight = bulgedisc.component_colours(fit, "g", "r", 0.0, prior=(0.15, 1e-4))
    assert tight["delta"] == pytest.approx(0.15, abs=1e-3)
    loose = bulgedisc.component_colours(fit, "g", "r", 0.0, prior=(0.15, 100.0))
    assert loose["delta"] == pytest.approx(free["delta_measured"], abs=1e-3)
    # the galaxy's blue (g) flux is kept whatever the prior does to the difference
    kg, kr = fit.band("g"), fit.band("r")
    for colours in (free, tight, loose):
        g = (fit.flux_bulge[kr] * 10 ** (-0.4 * colours["bulge"])
             + fit.flux_disc[kr] * 10 ** (-0.4 * colours["disc"]))
        assert g == pytest.approx(fit.flux_bulge[kg] + fit.flux_disc[kg], rel=1e-9)


@pytest.mark.parametrize("early", [False, True])
def test_errors_of_bt_and_axis_ratios_match_the_scatter_of_noisy_fits(survey, early):
    """The inverse Fisher matrix's errors against the scatter of 30 fits to noisy renders
    of one galaxy (~3 s). Measured: B/T 0.019 scatter / 0.021 error (late type, noise 1%
    of the peak), 0.056 / 0.056 (early type); the dominant component's q 0.0064 / 0.0068
    and 0.0081 / 0.0071. An error off by 1.5x either way fails (30 draws pin a scatter
    to ~13%)."""
    cfg, iso = survey
    row = _pick(iso, early=early)
    dominant = "q_bulge" if early else "q_disc"
    bt, bt_err, q, q_err = [], [], [], []
    for seed in range(30):
        fit = _fit(cfg, row, *_noiseless(cfg, row, noise=0.01, seed=100 + seed))
        bt.append(fit.bulge_to_total("r"))
        bt_err.append(fit.bulge_to_total_err("r"))
        q.append(getattr(fit, dominant))
        q_err.append(fit.structure_err(dominant))
    for values, errors in ((bt, bt_err), (q, q_err)):
        assert 1 / 1.5 < np.std(values) / np.median(errors) < 1.5, (np.std(values), errors)
    with pytest.raises(KeyError, match="'q_halo'"):
        fit.structure_err("q_halo")


def test_nonnegative_fluxes_drop_a_component_that_would_be_negative():
    rng = np.random.default_rng(0)
    a = rng.random((50, 2))
    data = a @ np.array([-0.5, 2.0]) + 0.01 * rng.standard_normal(50)
    f = bulgedisc._nonnegative_fluxes(a, data)
    assert f[0] == 0.0 and f[1] > 0
    np.testing.assert_allclose(bulgedisc._nonnegative_fluxes(a, a @ np.array([1.0, 2.0])),
                               [1.0, 2.0])


def test_bad_input_raises_typed_errors_naming_the_problem(survey):
    cfg, iso = survey
    row = _pick(iso, early=True)
    images, sigmas, psfs = _noiseless(cfg, row)
    with pytest.raises(bulgedisc.BulgeDiscError, match="usable pixels"):
        bulgedisc.fit_bulge_disc(images, sigmas, np.zeros(images[0].shape, bool), psfs,
                                 (31.5, 31.5), bands=BANDS, theta=0.0, r_start=5.0, q_start=1.0)
    with pytest.raises(bulgedisc.BulgeDiscError, match="starting radius nan"):
        _fit(cfg, {**row.to_dict(), "truth_r50_r": math.nan}, images, sigmas, psfs)
    with pytest.raises(ValueError, match="unknown bulge \\+ disc prior 'nb'"):
        _fit(cfg, row, images, sigmas, psfs, priors={"nb": (3.0, 1.0)})
    with pytest.raises(ValueError, match="sd > 0"):
        _fit(cfg, row, images, sigmas, psfs, priors={"n_bulge": (3.0, 0.0)})
    fit = _fit(cfg, row, images, sigmas, psfs, max_nfev=3)
    with pytest.raises(KeyError, match="band 'i' was not fitted"):
        fit.band("i")


def _noisy_problem(survey) -> bulgedisc._Problem:
    """The projected problem of an early type at 2% of the peak noise."""
    cfg, iso = survey
    row = _pick(iso, early=True)
    images, sigmas, psfs = _noiseless(cfg, row, noise=0.02, seed=4)
    c = (images[0].shape[0] - 1) / 2.0
    return bulgedisc._Problem(images, sigmas, np.ones(images[0].shape, bool), psfs,
                              (c, c), 0.4, 8.0)


def test_analytic_jacobian_of_the_projected_problem_matches_finite_differences(survey):
    """The fit's Jacobian (variable projection, Golub & Pereyra) against central
    differences of the residuals, with both components bright and with the bulge flux
    held at zero by the non-negativity."""
    from scipy.optimize._numdiff import approx_derivative

    problem = _noisy_problem(survey)
    for v in (np.array([math.log10(4.0), math.log10(0.35), 3.0, 0.8, 0.6]),
              np.array([math.log10(2.0), math.log10(0.9), 1.2, 0.3, 0.9])):
        analytic = problem.jacobian(v)
        numeric = approx_derivative(lambda x: problem.solve(x)[0], v, method="3-point")
        scale = np.linalg.norm(numeric, axis=0)
        err = np.linalg.norm(analytic - numeric, axis=0)
        assert np.all(err <= 1e-5 * np.maximum(scale, 1e-12 * np.abs(analytic).max())), err


def test_radii_from_chunks_equal_the_whole_curve_of_growth(survey):
    """light_radius and mass_radius evaluate the model's curve in chunks until the
    crossing; the radius is the first crossing of the whole curve."""
    cfg, iso = survey
    row = _pick(iso, early=True)
    images, sigmas, psfs = _noiseless(cfg, row)
    fit = _fit(cfg, row, images, sigmas, psfs)
    valid = np.ones(images[0].shape, bool)
    r, _ = bulgedisc.light_radius(fit, images[0], valid, band="r")
    r_ap, _, _, grid, cumulative = bulgedisc._aperture_and_grid(fit, images[0], valid, "r",
                                                                3.0)
    residual = images[0] - fit.convolved["r"]
    whole = (fit.flux_bulge[0] * fit._circular_fraction(grid, "bulge")
             + fit.flux_disc[0] * fit._circular_fraction(grid, "disc")
             + cumulative(residual, np.minimum(grid, r_ap)))
    assert len(grid) > 3 * bulgedisc._CHUNK
    assert r == pytest.approx(halfmass._first_crossing(grid, whole, 0.5 * whole[-1]), rel=1e-12)


def test_flux_and_bulge_to_total_derivatives_match_finite_differences(survey):
    """The B/T term of a mixture prior differentiates the projected fluxes
    (``G⁻¹ (∂Aᵀ r − Aᵀ ∂A f)``): against central differences of the solved fluxes."""
    from scipy.optimize._numdiff import approx_derivative

    problem = _noisy_problem(survey)
    term = bulgedisc._BulgeToTotalTerm(problem, 1, (0.5, 0.1))
    v = np.array([math.log10(4.0), math.log10(0.35), 3.0, 0.8, 0.6])
    for k in range(2):
        numeric = approx_derivative(lambda x, k=k: problem.solve(x)[1][k], v, method="3-point")
        np.testing.assert_allclose(problem.flux_jacobian(v, k), numeric, rtol=1e-5,
                                   atol=1e-6 * np.abs(numeric).max())
    numeric = approx_derivative(term, v, method="3-point")
    np.testing.assert_allclose(term.jacobian(v)[0], numeric, rtol=1e-5,
                               atol=1e-6 * np.abs(numeric).max())


#: Two types like the synthetic survey's (late: small faint bulges; early: B/T ~ 0.75).
_TYPES = (
    bulgedisc.PriorComponent(0.6, {"log_ratio": (-0.52, 0.13), "n_bulge": (2.8, 0.72),
                                   "q_bulge": (0.85, 0.12)}, (0.14, 0.11)),
    bulgedisc.PriorComponent(0.4, {"log_ratio": (-0.37, 0.11), "n_bulge": (4.0, 0.5),
                                   "q_bulge": (0.73, 0.15)}, (0.74, 0.14)),
)


def test_a_mixture_of_types_recovers_bt_better_than_one_prior_for_all(survey):
    """20 single galaxies at 5% of the peak noise (~4 s). One prior for all types sits
    between them; a mixture of a late and an early type picks each galaxy's own type
    (measured: 20 of 20) and brings the B/T rms from 0.084 to 0.069. Its errors carry
    the doubt over the type: the most doubted galaxy (the other type at 3%) has a wider
    B/T error than the chosen type alone gives."""
    cfg, iso = survey
    single = {"log_ratio": (-0.46, 0.25), "n_bulge": (3.5, 1.5), "q_bulge": (0.8, 0.2)}
    rows = iso[iso["truth_r50_r"].between(1.5, 5.0)].head(20)
    one, two, right_type, doubted = [], [], 0, None
    for seed, (_, row) in enumerate(rows.iterrows()):
        data = _noiseless(cfg, row, noise=0.05, seed=seed)
        truth = float(row["truth_bt"])
        one.append(_fit(cfg, row, *data, priors=single).bulge_to_total("r") - truth)
        fit = _fit(cfg, row, *data, mixture=_TYPES, bt_band="r")
        two.append(fit.bulge_to_total("r") - truth)
        p = np.array(fit.component_probabilities)
        assert p.shape == (2,) and p.sum() == pytest.approx(1.0)
        right_type += int(np.argmax(p) == (row["truth_type"] == "early"))
        if doubted is None or p.min() > doubted[0]:
            doubted = (p.min(), row, data, fit)
    rms_one, rms_two = np.sqrt(np.mean(np.square(one))), np.sqrt(np.mean(np.square(two)))
    assert right_type >= 18
    assert rms_two < 0.9 * rms_one, (rms_one, rms_two)
    p_other, row, data, fit = doubted
    chosen = _TYPES[int(np.argmax(fit.component_probabilities))]
    alone = _fit(cfg, row, *data, mixture=[bulgedisc.PriorComponent(
        1.0, chosen.priors, chosen.bulge_to_total)], bt_band="r")
    assert alone.bulge_to_total("r") == pytest.approx(fit.bulge_to_total("r"))
    assert p_other > 0.01 and fit.bulge_to_total_err("r") > alone.bulge_to_total_err("r")


def test_a_mixture_of_one_type_is_the_single_prior_fit(survey):
    cfg, iso = survey
    row = _pick(iso, early=False)
    data = _noiseless(cfg, row, noise=0.05, seed=3)
    prior = {"log_ratio": (-0.46, 0.25), "n_bulge": (3.5, 1.5)}
    plain = _fit(cfg, row, *data, priors=prior)
    mixed = _fit(cfg, row, *data, mixture=[bulgedisc.PriorComponent(1.0, prior)])
    assert plain.component_probabilities == () and mixed.component_probabilities == (1.0,)
    np.testing.assert_array_equal(plain.flux_bulge, mixed.flux_bulge)
    np.testing.assert_array_equal(plain.flux_cov, mixed.flux_cov)
    assert plain.n_bulge == mixed.n_bulge


def test_bad_mixture_priors_raise_errors_naming_the_value(survey):
    cfg, iso = survey
    row = _pick(iso, early=True)
    data = _noiseless(cfg, row)
    with pytest.raises(ValueError, match="not both"):
        _fit(cfg, row, *data, priors={"n_bulge": (3.0, 1.0)}, mixture=_TYPES)
    with pytest.raises(ValueError, match="bt_band 'u' is not a fitted band"):
        _fit(cfg, row, *data, mixture=_TYPES, bt_band="u")
    with pytest.raises(ValueError, match="at least one component"):
        _fit(cfg, row, *data, mixture=[])
    with pytest.raises(ValueError, match="weight must be in \\(0, 1\\]; got 0.0"):
        bulgedisc.PriorComponent(0.0, {})
    with pytest.raises(ValueError, match="bulge_to_total needs .* got \\(0.5, -0.1\\)"):
        bulgedisc.PriorComponent(0.5, {}, (0.5, -0.1))
    with pytest.raises(ValueError, match="unknown bulge \\+ disc prior 'nb'"):
        _fit(cfg, row, *data, mixture=[bulgedisc.PriorComponent(1.0, {"nb": (3.0, 1.0)})])
