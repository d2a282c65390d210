"""The synthetic survey: contract, truth self-consistency, population, rendering, speed."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import yaml
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.optimize import brentq
from scipy.special import gammainc, gammaincinv

from galcat import gz2, relations
from galcat.sharding import shard_name, shard_of
from galcat.store import CutoutBatch
from galcat.surveys import get_survey
from galcat.surveys import synthetic as syn
from galcat.surveys.synthetic import TRUTH_CLASSES

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def make_config(**synthetic) -> dict:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["synthetic"].update(synthetic)
    return cfg


@pytest.fixture(scope="module")
def config() -> dict:
    return make_config(n_objects=30000)


@pytest.fixture(scope="module")
def table(config) -> pd.DataFrame:
    return syn.query(config)


@pytest.fixture(scope="module")
def isolated(table) -> pd.DataFrame:
    """Galaxies without neighbours, resolved (r50 > 1.5 arcsec), both types."""
    ok = ~table.truth_merger & ~table.truth_projection & (table.truth_r50_r > 1.5)
    ok &= ~table.truth_size_clipped
    early = table[ok & (table.truth_type == "early")].head(3)
    late = table[ok & (table.truth_type == "late") & (table.truth_bt > 0.1)].head(3)
    return pd.concat([early, late])


# ----------------------------------------------------------------------------- contract
REQUIRED = [
    "object_id",
    "ra",
    "dec",
    "z",
    "shard",
    "mag_r",
    "truth_log_mass",
    "truth_type",
    "truth_bt",
    "truth_n_bulge",
    "truth_n_disc",
    "truth_sersic_n",
    "truth_q",
    "truth_pa_deg",
    "truth_r50_mass",
    "truth_r50_kpc",
    "truth_metallicity",
    "truth_ssfr",
    "truth_merger",
    "truth_projection",
    "truth_companion_sep",
    "truth_companion_flux_ratio",
]


def test_survey_registry_finds_the_module():
    assert get_survey("synthetic") is syn


def test_query_contract(table, config):
    n = config["synthetic"]["n_objects"]
    for col in REQUIRED + [f"truth_r50_{b}" for b in syn.BAND_SETS["sdss"]]:
        assert col in table.columns, col
    for col in gz2.column_names("truth_gz2_") + gz2.column_names("gz2_"):
        assert col in table.columns, col
    assert table.object_id.dtype == np.int64
    np.testing.assert_array_equal(table.object_id, np.arange(1, n + 1))
    per = config["sharding"]["objects_per_shard"]
    expected = [shard_name(i) for i in shard_of(table.object_id.to_numpy(), per)]
    assert list(table.shard) == expected
    assert set(table.truth_type) == {"early", "late"}
    assert table.ra.between(175, 185).all() and table.dec.between(-5, 5).all()
    zr = config["synthetic"]["redshift"]
    assert table.z.between(zr["min"], zr["max"]).all()
    lm = config["synthetic"]["log_mass"]
    assert table.truth_log_mass.between(lm["min"], lm["max"]).all()
    assert (table.truth_n_disc == 1).all()
    assert table.truth_merger.dtype == bool and table.truth_projection.dtype == bool
    none = ~table.truth_merger & ~table.truth_projection
    assert table.truth_companion_sep[none].isna().all()
    assert table.truth_companion_sep[~none].notna().all()
    assert table.truth_companion_flux_ratio[table.truth_merger].between(0.25, 1.0).all()
    assert (
        not table.drop(columns=[c for c in table if c.startswith("truth_companion")])
        .isna()
        .any()
        .any()
    )


def test_every_column_has_a_unit_and_a_description(table):
    wide = syn.query(make_config(n_objects=40, band_set="wide12"))
    assert len([c for c in wide if c.startswith("truth_r50_")]) >= 12 + 1
    for df in (table, wide):
        for col in df.columns:
            assert col in syn.COLUMN_UNITS, col
            assert syn.COLUMN_DESCRIPTIONS[col], col
            u.Unit(syn.COLUMN_UNITS[col])  # parses as an astropy unit


def test_band_sets():
    assert list(syn.BAND_SETS["sdss"]) == ["u", "g", "r", "i", "z"]
    assert len(syn.BAND_SETS["wide12"]) >= 12
    for bands in syn.BAND_SETS.values():
        lam = [b.wavelength_nm for b in bands.values()]
        assert lam == sorted(lam)
        for b in bands.values():
            assert b.zeropoint == 22.5 and b.sky_sigma(0.396) > 0 and b.gain > 0
    cfg = make_config()
    assert syn.psf_fwhm(cfg, "r") == pytest.approx(cfg["synthetic"]["psf_fwhm_r"])
    assert syn.psf_fwhm(cfg, "u") > syn.psf_fwhm(cfg, "z")


def test_objects_are_stable_when_the_survey_grows():
    small = syn.query(make_config(n_objects=150))
    big = syn.query(make_config(n_objects=9000))  # crosses a random-number block
    pd.testing.assert_frame_equal(small, big.iloc[:150].reset_index(drop=True))
    other = make_config(n_objects=150)
    other["sharding"]["objects_per_shard"] = 7
    resharded = syn.query(other)
    pd.testing.assert_frame_equal(small.drop(columns="shard"), resharded.drop(columns="shard"))
    assert resharded.shard.nunique() == 22


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="merger_fraction"):
        syn.query(make_config(n_objects=10, merger_fraction=0.7, projection_fraction=0.5))
    with pytest.raises(ValueError, match="mag_limit_r"):
        syn.query(make_config(n_objects=10, mag_limit_r=10.0))
    with pytest.raises(ValueError, match="redshift"):
        syn.query(make_config(n_objects=10, redshift={"min": 0.2, "max": 0.1}))


# ----------------------------------------------------------------------------- truth
def _exact_fraction(n, q, r_e, radius):
    """Enclosed light of a (truncated) elliptical Sérsic in a circle, by direct integration."""
    phi = (np.arange(4000) + 0.5) * (0.5 * np.pi / 4000)
    rho = radius / np.sqrt(np.cos(phi) ** 2 / q + q * np.sin(phi) ** 2) / r_e
    b = gammaincinv(2 * n, 0.5)
    cum = gammainc(2 * n, b * rho ** (1 / n))
    if abs(n - 1) > 1e-9:
        lt = gammainc(2 * n, b * syn.TRUNC ** (1 / n))
        cum = np.minimum(cum, lt) / lt
    return cum.mean()


def test_truth_radii_match_direct_integration(table):
    rows = table.sample(25, random_state=1)
    for _, r in rows.iterrows():
        for col, w, frac in (
            ("truth_r50_r", r.truth_bt, 0.5),
            ("truth_r50_mass", r.truth_bt_mass, 0.5),
            ("truth_r20_r", r.truth_bt, 0.2),
            ("truth_r80_r", r.truth_bt, 0.8),
        ):

            def f(radius, w=w, frac=frac, r=r):
                return (
                    w * _exact_fraction(r.truth_n_bulge, r.truth_q_bulge, r.truth_r_e_bulge, radius)
                    + (1 - w) * _exact_fraction(1.0, r.truth_q_disc, r.truth_r_e_disc, radius)
                    - frac
                )

            exact = brentq(f, 1e-3, 500.0)
            assert r[col] == pytest.approx(exact, rel=5e-3), col
        # per-band radii use the band's own bulge fraction
        assert syn.circular_radius(r, 0.5, weight="u") == pytest.approx(r.truth_r50_u, rel=3e-3)
    # the public single-profile helper agrees with direct integration too
    radii = np.array([0.3, 1.0, 3.0])
    np.testing.assert_allclose(
        syn.enclosed_fraction(4.0, 0.6, 1.0, radii),
        [_exact_fraction(4.0, 0.6, 1.0, x) for x in radii],
        atol=2e-3,
    )
    # the bulge is redder, so it holds less of the u light: u radius >= r radius
    redder = table.truth_gr_bulge > table.truth_gr_disc + 0.02
    assert (table.truth_r50_u[redder] > table.truth_r50_r[redder]).all()


def _curve_of_growth_radius(
    img: np.ndarray, total: float, scale: float, frac: float = 0.5
) -> float:
    c = (img.shape[1] - 1) / 2.0
    radii = np.linspace(0.3, img.shape[0] / 2.0 - 0.5, 250)
    phot = aperture_photometry(img, [CircularAperture((c, c), r) for r in radii], method="exact")
    enclosed = np.array([phot[f"aperture_sum_{i}"][0] for i in range(radii.size)])
    return float(np.interp(frac * total, enclosed, radii)) * scale


def test_rendered_half_light_and_half_mass_radii_match_truth(isolated, config):
    scale = config["synthetic"]["pixel_scale"]
    assert set(isolated.truth_type) == {"early", "late"}
    for _, r in isolated.iterrows():
        for band in ("r", "g"):
            img = syn.render_noiseless(r, config, band=band, psf=False)
            total = r[f"truth_flux_bulge_{band}"] + r[f"truth_flux_disc_{band}"]
            measured = _curve_of_growth_radius(img, total, scale)
            assert measured == pytest.approx(r[f"truth_r50_{band}"], rel=0.02), (r.object_id, band)
        mass = syn.render_noiseless(r, config, band="mass", psf=False)
        measured = _curve_of_growth_radius(mass, 10**r.truth_log_mass, scale)
        assert measured == pytest.approx(r.truth_r50_mass, rel=0.02), r.object_id


def test_half_mass_radius_is_smaller_when_the_bulge_is_redder(table):
    redder = table.truth_gr_bulge > table.truth_gr_disc + 0.02
    assert redder.mean() > 0.5
    assert (table.truth_r50_mass[redder] < table.truth_r50_r[redder]).all()
    assert (table.truth_bt_mass[redder] > table.truth_bt[redder]).all()
    assert (table.truth_log_ml_bulge[redder] > table.truth_log_ml_disc[redder]).all()


def test_sersic_index_tracks_concentration(table):
    # bulge-dominated galaxies are more concentrated than discs
    early = table.truth_sersic_n[table.truth_bt > 0.7].median()
    late = table.truth_sersic_n[table.truth_bt < 0.1].median()
    assert early > 3.0 and 0.9 < late < 1.6
    # a pure single profile: the index of its own concentration (circular)
    c, n = syn._concentration_table()
    assert np.interp(c[np.argmin(abs(n - 4.0))], c, n) == pytest.approx(4.0, abs=0.01)


# ----------------------------------------------------------------------------- population
def test_magnitude_limit_and_fractions(table, config):
    s = config["synthetic"]
    assert table.mag_r.max() <= s["mag_limit_r"]
    assert table.mag_r.max() > s["mag_limit_r"] - 0.05  # the limit bites
    n = len(table)
    for col, f in (
        ("truth_merger", s["merger_fraction"]),
        ("truth_projection", s["projection_fraction"]),
    ):
        assert abs(table[col].mean() - f) < 4 * np.sqrt(f * (1 - f) / n)
    # flux bookkeeping: magnitudes are those of bulge + disc
    flux = table.truth_flux_bulge_r + table.truth_flux_disc_r
    np.testing.assert_allclose(22.5 - 2.5 * np.log10(flux), table.mag_r, atol=1e-9)
    np.testing.assert_allclose(table.truth_flux_bulge_r / flux, table.truth_bt, rtol=1e-9)


def test_population_follows_the_size_mass_relation(table):
    # z > 0.1 where few galaxies are shrunk to fit the cutout
    far = table[table.z > 0.1]
    early = far.truth_type == "early"
    med, sigma = relations.size_mass_vanderwel2014(far.truth_log_mass, early, far.z)
    resid = np.log10(far.truth_r_eff_kpc) - np.log10(med)
    for kind, sig in ((True, 0.10), (False, 0.16)):
        sel = (early == kind) & far.truth_log_mass.between(10.3, 11.0)
        assert sel.sum() > 1000
        r = resid[sel]
        assert abs(np.median(r)) < 0.3 * sig
        half_width = 0.5 * (np.percentile(r, 84) - np.percentile(r, 16))
        assert half_width == pytest.approx(sig, rel=0.2)
    # early types are smaller than late types at fixed mass
    bins = far.truth_log_mass.between(10.6, 10.9)
    assert far.truth_r50_kpc[bins & early].median() < far.truth_r50_kpc[bins & ~early].median()
    # physical and angular sizes agree through the angular-diameter distance
    from astropy.cosmology import Planck18

    k = Planck18.kpc_proper_per_arcmin(far.z.to_numpy()[:50]).to_value("kpc/arcsec")
    np.testing.assert_allclose(far.truth_r50_kpc[:50] / far.truth_r50_r[:50], k, rtol=1e-3)


def test_population_follows_the_mzr_and_types(table, config):
    resid = table.truth_metallicity - relations.mzr_tremonti2004(table.truth_log_mass)
    assert abs(resid.mean()) < 0.01
    assert resid.std() == pytest.approx(config["synthetic"]["mzr"]["scatter_dex"], rel=0.05)
    frac = table.groupby(
        pd.cut(table.truth_log_mass, [9.5, 10.25, 10.75, 11.5]), observed=True
    ).truth_type.apply(lambda t: (t == "early").mean())
    assert np.all(np.diff(frac.to_numpy()) > 0)
    late = table.truth_type == "late"
    assert table.truth_ssfr[late].median() > table.truth_ssfr[~late].median() + 1.0
    # discs are bluer than bulges; a bluer disc has a higher sSFR
    assert (table.truth_gr_disc[late] < table.truth_gr_bulge[late]).mean() > 0.95
    assert np.corrcoef(table.truth_gr_disc[late], table.truth_ssfr[late])[0, 1] < -0.8


def test_gz2_columns_follow_the_sum_rules(table):
    for prefix in ("truth_gz2_", "gz2_"):
        f = table[gz2.column_names(prefix)].to_numpy(dtype=np.float64)
        assert max(gz2.check_sum_rules(f).values()) < 1e-5
    smooth = table.truth_gz2_class1_1
    assert smooth[table.truth_bt > 0.8].mean() > smooth[table.truth_bt < 0.2].mean() + 0.5
    odd = table.gz2_class6_1
    assert odd[table.truth_merger].mean() > odd[~table.truth_merger].mean() + 0.4


def test_mass_to_light_relation_is_selectable():
    a = syn.query(make_config(n_objects=300))
    b = syn.query(make_config(n_objects=300, mass_to_light="zibetti2009_gi"))
    assert not np.allclose(a.truth_log_ml_bulge, b.truth_log_ml_bulge)
    zib = relations.mass_to_light("zibetti2009_gi")
    gi = -2.5 * np.log10(b.truth_flux_bulge_g / b.truth_flux_bulge_i)
    np.testing.assert_allclose(b.truth_log_ml_bulge, zib.log_ml(gi), atol=1e-9)
    redder = b.truth_gr_bulge > b.truth_gr_disc + 0.02
    assert (b.truth_r50_mass[redder] < b.truth_r50_r[redder]).all()


# ----------------------------------------------------------------------------- rendering
@pytest.fixture(scope="module")
def small():
    cfg = make_config(n_objects=400)
    return cfg, syn.query(cfg)


def test_cutout_batch_contract(small):
    cfg, df = small
    rows = df.iloc[:6]
    batch = syn.cutouts(rows, cfg)
    assert isinstance(batch, CutoutBatch)
    size, ps = cfg["synthetic"]["cutout_size"], cfg["synthetic"]["psf_stamp_size"]
    assert batch.image.shape == (6, 5, size, size)
    assert batch.psf.shape == (5, ps, ps)
    np.testing.assert_allclose(batch.psf.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert batch.bands == ["u", "g", "r", "i", "z"]
    assert batch.zeropoints == [22.5] * 5
    assert batch.flux_unit == "nanomaggy" and batch.survey == "synthetic"
    assert batch.pixel_scale == cfg["synthetic"]["pixel_scale"]
    assert not batch.mask.any()
    np.testing.assert_array_equal(batch.object_id, rows.object_id)
    tc = batch.extras["truth_class"]
    assert tc.shape == (6, size, size) and tc.dtype == np.uint8
    assert set(np.unique(tc)) <= set(TRUTH_CLASSES)
    # each primary dominates its centre; corners are background
    c = size // 2
    assert np.all(tc[:, c - 1 : c + 1, c - 1 : c + 1] > 0)
    assert np.all(tc[:, 0, 0] == 0)
    # PSF width in the r band close to the configured FWHM
    psf_r = batch.psf[2]
    half = psf_r.max() / 2
    area = (psf_r > half).sum() * batch.pixel_scale**2
    assert 2 * np.sqrt(area / np.pi) == pytest.approx(cfg["synthetic"]["psf_fwhm_r"], rel=0.15)


def test_rendering_is_identical_in_any_batch(small):
    cfg, df = small
    a = syn.cutouts(df.iloc[0:3], cfg)
    b = syn.cutouts(df.iloc[1:5], cfg)
    for name in ("image", "sigma", "mask"):
        np.testing.assert_array_equal(getattr(a, name)[1:3], getattr(b, name)[0:2])
    np.testing.assert_array_equal(a.extras["truth_class"][1:3], b.extras["truth_class"][0:2])


def test_noise_matches_the_sigma_map(small):
    cfg, df = small
    rows = df.iloc[10:14]
    batch = syn.cutouts(rows, cfg)
    pulls, sky_ratio = [], []
    for i, (_, r) in enumerate(rows.iterrows()):
        for j, band in enumerate(batch.bands):
            model = syn.render_noiseless(r, cfg, band=band, psf=True)
            pull = (batch.image[i, j] - model) / batch.sigma[i, j]
            pulls.append(pull.ravel())
            sky = batch.extras["truth_class"][i] == 0
            sky_ratio.append(
                np.std(batch.image[i, j][sky] - model[sky]) / np.median(batch.sigma[i, j][sky])
            )
    assert np.std(np.concatenate(pulls)) == pytest.approx(1.0, rel=0.05)
    assert np.mean(sky_ratio) == pytest.approx(1.0, rel=0.05)


def test_noiseless_render_conserves_flux_and_truth_class_components(small):
    cfg, df = small
    compact = df[(df.truth_r80_r < 4.0) & ~df.truth_merger & ~df.truth_projection].iloc[:3]
    for _, r in compact.iterrows():
        img = syn.render_noiseless(r, cfg, band="r", psf=True)
        assert img.sum() == pytest.approx(r.truth_flux_bulge_r + r.truth_flux_disc_r, rel=0.02)
    merger = df[df.truth_merger & (df.truth_companion_sep < 8)].iloc[:2]
    batch = syn.cutouts(merger, cfg)
    for i in range(len(merger)):
        assert (batch.extras["truth_class"][i] == 3).sum() > 5  # the companion is visible
    # a merger's primary is lopsided: its light centroid moves towards the companion
    r = merger.iloc[0]
    prim = syn.render_noiseless(r, cfg, band="r", psf=False, components=["bulge", "disc"])
    y, x = np.indices(prim.shape)
    c = (prim.shape[0] - 1) / 2
    dx, dy = (prim * (x - c)).sum() / prim.sum(), (prim * (y - c)).sum() / prim.sum()
    assert np.hypot(dx, dy) > 0.1


def test_draw_profile_is_the_survey_renderer(small):
    """Any GalSim profile drawn through the survey's PSF, pixel and accuracy: a galaxy's own
    components give its noiseless render byte for byte; a compact profile keeps its flux."""
    import galsim

    cfg, df = small
    row = df[~df.truth_merger & ~df.truth_projection].iloc[0]
    objs = [o for group in syn._components(row, "g").values() for o in group]
    np.testing.assert_array_equal(syn.draw_profile(galsim.Add(objs), cfg, band="g"),
                                  syn.render_noiseless(row, cfg, band="g"))
    img = syn.draw_profile(galsim.Gaussian(sigma=0.5, flux=3.0), cfg)
    assert img.shape == (cfg["synthetic"]["cutout_size"],) * 2
    assert img.sum() == pytest.approx(3.0, rel=1e-3)
    psf = syn.psf_image(cfg, "r")
    assert psf.sum() == pytest.approx(1.0) and psf.shape[0] == cfg["synthetic"]["psf_stamp_size"]


def test_wide12_renders_every_band():
    cfg = make_config(n_objects=5, band_set="wide12")
    df = syn.query(cfg)
    batch = syn.cutouts(df.iloc[:2], cfg)
    assert batch.image.shape[1] == len(batch.bands) >= 12
    assert np.all(batch.image.std(axis=(2, 3)) > 0)
