"""Injection–recovery scoring (`galcat.validation.recovery`).

Unit tests of the binning and deblending scores on hand-made arrays, then
one end-to-end run on 50 synthetic galaxies (render, segment, measure with the default
config) held to bounds twice as loose as the goals of bench/morphology_recovery.py.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galcat.config import load_config
from galcat.flags import MeasureFlag
from galcat.metrics import fractional_error, median_abs
from galcat.validation import recovery as v

# --------------------------------------------------------------------------- binning


def _table(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {
        "truth_merger": np.zeros(n, bool),
        "truth_projection": np.zeros(n, bool),
        "truth_size_clipped": np.zeros(n, bool),
        "flag": np.zeros(n, np.int64),
        "snr": np.full(n, 100.0),
    }
    base.update(cols)
    return pd.DataFrame(base)


def test_binned_statistics_by_hand():
    q = v.Quantity("x", "x", "truth_x", "x")
    t = _table(
        snr=[10.0, 15.0, 30.0, 40.0, 45.0, 80.0],
        x=[1.2, 0.8, 1.0, 1.1, np.nan, 2.0],
        truth_x=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        flag=[0, MeasureFlag.STATMORPH_WARNING, 0, MeasureFlag.STATMORPH_FAILED, 0, 0],
    )
    t["err_x"] = fractional_error(t["x"], t["truth_x"])
    s = v.binned_statistics(t, "snr", (20.0, 50.0), quantities=[q]).set_index("bin")
    assert s.index.tolist() == ["<20", "20-50", ">=50"]
    assert s.loc["<20", "n"] == 2 and s.loc["<20", "bias"] == pytest.approx(0.0)
    assert s.loc["<20", "median_abs"] == pytest.approx(0.2)
    assert s.loc["<20", "flagged"] == pytest.approx(0.5)
    assert s.loc["<20", "flagged_bad"] == 0.0  # a warning only
    assert s.loc["20-50", "n_bin"] == 3 and s.loc["20-50", "n"] == 2
    assert s.loc["20-50", "failed"] == pytest.approx(1 / 3)
    assert s.loc["20-50", "bias"] == pytest.approx(0.05)
    assert s.loc["20-50", "flagged_bad"] == pytest.approx(1 / 3)
    assert s.loc[">=50", "bias"] == pytest.approx(1.0)
    # a selection that empties a bin keeps the row
    sel = t["snr"].to_numpy() < 50
    s2 = v.binned_statistics(t, "snr", (20.0, 50.0), quantities=[q], selection=sel)
    assert s2.set_index("bin").loc[">=50", "n_bin"] == 0


def test_benign_flags_are_the_two_warnings():
    assert v.BENIGN_FLAGS == MeasureFlag.STATMORPH_WARNING | MeasureFlag.SERSIC_WARNING


def test_headline_selects_isolated_high_snr_and_compares_with_goals():
    t = _table(
        snr=[100.0, 100.0, 100.0, 10.0, 100.0],
        truth_merger=[False, False, False, False, True],
        err_r50=[0.04, -0.03, 0.06, 0.9, 0.9],
        err_r50_mass=[0.2, -0.2, 0.1, 0.0, 0.0],
        err_sersic_n=[np.nan, np.nan, np.nan, 0.0, 0.0],
    )
    h = v.headline(t)
    assert h["n"] == 3
    assert h["figures"]["r50"] == pytest.approx(0.04)
    assert h["pass"] == {"r50": True, "r50_mass": False, "sersic_n": False}
    assert h["failed"]["sersic_n"] == 1.0
    assert v.isolated(t).tolist() == [True, True, True, True, False]


# --------------------------------------------------------------------------- S/N, sizes


def test_snr_isophotal_and_optimal():
    sigma = np.ones((2, 4, 4))
    seg = np.zeros((2, 4, 4), np.int32)
    seg[0, 1:3, 1:3] = 1  # 4 pixels of sigma 1 -> noise 2
    seg[0, 0, 0] = 2  # a neighbour does not count
    snr = v.snr_isophotal(np.array([10.0, 10.0]), sigma, seg)
    assert snr[0] == pytest.approx(5.0)
    assert np.isnan(snr[1])  # no label 1
    model = np.zeros((4, 4))
    model[0, 0], model[1, 1] = 3.0, 4.0
    assert v.snr_optimal(model, 2 * np.ones((4, 4))) == pytest.approx(2.5)


def test_sersic_circular_r50():
    # a round exponential: the circular r50 is r_eff (truncation at 8 r_e loses 0.03%)
    assert v.sersic_circular_r50(1.0, 1.0, 2.0)[0] == pytest.approx(2.0, rel=2e-3)
    # flattened: between the minor (a q) and major (a) half-light axes, near sqrt(q) a
    r = v.sersic_circular_r50([1.0, 4.0], [0.4, 0.4], [2.0, 2.0])
    assert np.all((r > 0.8) & (r < 2.0))
    assert v.sersic_circular_r50(1.0, 0.4, 2.0)[0] == pytest.approx(2.0 * math.sqrt(0.4), rel=0.1)
    bad = v.sersic_circular_r50([np.nan, 1.0, 1.0], [0.5, 0.0, 0.5], [1.0, 1.0, -1.0])
    assert np.all(np.isnan(bad))


def test_dim_population_scales_fluxes_only():
    rows = pd.DataFrame({
        "object_id": [1, 2, 3],
        "truth_flux_bulge_r": [1.0, 2.0, 3.0],
        "truth_flux_companion_g": [0.5, 0.0, 1.0],
        "mag_r": [17.0, 18.0, 16.0],
        "truth_r50_r": [1.0, 2.0, 3.0],
    })
    out = v.dim_population(rows, 2.0, seed=7)
    dm = out["dim_mag"].to_numpy()
    assert np.all((dm >= 0) & (dm <= 2.0)) and len(set(dm)) == 3
    np.testing.assert_allclose(out["truth_flux_bulge_r"], rows["truth_flux_bulge_r"] * 10 ** (-0.4 * dm))
    np.testing.assert_allclose(out["mag_r"], rows["mag_r"] + dm)
    np.testing.assert_array_equal(out["truth_r50_r"], rows["truth_r50_r"])
    # depends only on (seed, object_id)
    again = v.dim_population(rows.iloc[[2, 0]], 2.0, seed=7)
    np.testing.assert_allclose(again["dim_mag"], dm[[2, 0]])
    assert np.all(v.dim_population(rows, 0.0, seed=7)["dim_mag"] == 0.0)


# --------------------------------------------------------------------------- deblending


def _pair_row(angle_deg: float, merger: bool = False) -> dict:
    return {
        "truth_companion_sep": 10 * 0.4,  # 10 pixels of 0.4 arcsec
        "truth_companion_angle_deg": angle_deg,
        "truth_flux_bulge_r": 30.0,
        "truth_flux_disc_r": 70.0,
        "truth_flux_companion_r": 50.0,
        "truth_merger": merger,
        "truth_tail_frac": 0.1,
        "truth_lopsided_frac": 0.1,
    }


def test_companion_pixel_follows_galsim_axes():
    y, x = v.companion_pixel(_pair_row(0.0), 32, 0.4)
    assert (y, x) == pytest.approx((15.5, 25.5))
    y, x = v.companion_pixel(_pair_row(90.0), 32, 0.4)
    assert (y, x) == pytest.approx((25.5, 15.5))


def test_primary_flux_counts_tidal_features_of_mergers():
    assert v.primary_flux(_pair_row(0.0), "r") == pytest.approx(100.0)
    assert v.primary_flux(_pair_row(0.0, merger=True), "r") == pytest.approx(120.0)


def test_deblend_outcome_on_hand_made_maps():
    row = _pair_row(0.0)  # companion at (row 16, col 26) of a 33x33 cutout
    seg = np.zeros((33, 33), np.int32)
    seg[12:21, 12:21] = 1
    seg[12:21, 22:31] = 2
    image = np.zeros((33, 33))
    image[seg == 1] = 90.0 / 81
    image[seg == 2] = 45.0 / 81
    ok = v.deblend_outcome(seg, row, 90.0, pixel_scale=0.4, image=image)
    assert ok["recovered"] and ok["flux_ok"] and ok["success"] and ok["success_split"]
    assert ok["flux_ratio"] == pytest.approx(0.9)
    # measured split 90/135 = 2/3 vs true 100/150 = 2/3
    assert ok["split_ratio"] == pytest.approx(1.0)
    assert ok["companion_label"] == 2 and ok["visible"] is None

    merged = seg.copy()
    merged[merged == 2] = 1
    bad = v.deblend_outcome(merged, row, 135.0, pixel_scale=0.4, image=image)
    assert not bad["recovered"] and not bad["success"] and not bad["flux_ok"]
    assert np.isnan(bad["split_ratio"])

    # the companion is found but the centre is not label 1
    swapped = np.where(seg == 1, 3, seg)
    assert not v.deblend_outcome(swapped, row, 90.0, pixel_scale=0.4)["recovered"]

    # recovered, but label 1 holds half the primary's light
    low = v.deblend_outcome(seg, row, 50.0, pixel_scale=0.4)
    assert low["recovered"] and not low["flux_ok"] and not low["success"]

    truth = np.zeros((33, 33), np.uint8)
    truth[16, 26] = 3
    assert v.deblend_outcome(seg, row, 90.0, pixel_scale=0.4, truth_class=truth)["visible"]
    truth[16, 26] = 1
    assert not v.deblend_outcome(seg, row, 90.0, pixel_scale=0.4, truth_class=truth)["visible"]


def test_deblend_summary_per_method_and_kind():
    outcomes = pd.DataFrame({
        "method": ["a", "a", "a", "b"],
        "kind": ["merger", "projection", "merger", "merger"],
        "recovered": [True, True, False, False],
        "flux_ok": [True, False, False, True],
        "success": [True, False, False, False],
        "success_split": [True, True, False, False],
        "visible": [True, True, False, True],
        "flux_ratio": [1.0, 0.5, 2.0, 1.0],
        "split_ratio": [1.0, 1.1, np.nan, np.nan],
    })
    s = v.deblend_summary(outcomes).set_index(["method", "kind"])
    assert s.loc[("a", "all"), "n"] == 3
    assert s.loc[("a", "all"), "recovered"] == pytest.approx(2 / 3)
    assert s.loc[("a", "all"), "success_visible"] == pytest.approx(0.5)
    assert s.loc[("a", "merger"), "success"] == pytest.approx(0.5)
    assert s.loc[("b", "all"), "median_flux_ratio"] == 1.0
    assert math.isnan(s.loc[("b", "all"), "median_split_ratio"])
    assert v.run_deblending(pd.DataFrame()).empty


# --------------------------------------------------------------------------- the wing
SRC = Path(__file__).resolve().parents[1] / "src" / "galcat"


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` names, made
    absolute for a module of ``package``; lazy imports inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _wing_imports(source: str, package: str) -> list[str]:
    return sorted(n for n in _imported_modules(source, package)
                  if n == "galcat.validation" or n.startswith("galcat.validation."))


def test_the_import_check_sees_every_spelling():
    for source in ("import galcat.validation.recovery",
                   "from galcat import validation",
                   "from galcat.validation.blends import make_pair",
                   "def f():\n    from ..validation import recovery\n"):
        assert _wing_imports(source, "galcat.surveys"), source
    assert _wing_imports("from galcat import segment\nimport validation", "galcat") == []


def test_science_never_imports_the_validation_wing():
    """No module outside galcat/validation names it in an import (statically), and
    importing all of them loads none of it (dynamically)."""
    science = sorted(p for p in SRC.rglob("*.py") if "validation" not in p.relative_to(SRC).parts)
    assert len(science) > 20
    names = {p: ".".join(("galcat", *p.relative_to(SRC).with_suffix("").parts))
             for p in science}
    offenders = {}
    for path, name in names.items():
        package = name.removesuffix(".__init__") if path.name == "__init__.py" \
            else name.rpartition(".")[0]
        found = _wing_imports(path.read_text(), package)
        if found:
            offenders[str(path.relative_to(SRC))] = found
    assert offenders == {}
    modules = [name.removesuffix(".__init__") for name in names.values()]
    if importlib.util.find_spec("torch") is None:  # `make test-min`: no `ml` extra
        modules = [m for m in modules if not m.startswith("galcat.models")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('galcat.validation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- end to end

#: Loose bounds (twice the goals of bench/morphology_recovery.py) for 60 galaxies dimmed as
#: the benchmark dims them (so S/N 20-50 is in the headline), on the headline quantities:
#: r50 is r50_psf_corrected, sersic_n is scored against the same fit to the noiseless
#: PSF-free render (see galcat.validation.recovery).
LOOSE = {"r50": 0.10, "r50_mass": 0.20, "sersic_n": 0.30}
N_RECOVERY = 60


@pytest.fixture(scope="module")
def recovery():
    cfg = load_config()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, deblend = v.recovery_table(
            N_RECOVERY, cfg, methods=("watershed",), scheduler="synchronous", dim_max=2.5
        )
    return table, deblend


@pytest.mark.slow
def test_recovery_table_joins_truth_and_measurements(recovery):
    table, deblend = recovery
    assert len(table) == N_RECOVERY and table["object_id"].is_unique
    for col in ("truth_r50_r", "r50", "r50_mass", "seg_flag", "snr", "snr_optimal", "size_bin",
                "dim_mag", "diff_bulge_to_total"):
        assert col in table
    # dimming by U(0, 2.5) mag puts galaxies at S/N 20-50 and below
    snr = table["snr"].to_numpy(np.float64)
    assert np.nanmean(snr < 20) > 0.05 and np.nanmean((snr > 20) & (snr < 50)) > 0.2
    # the truth-side S/N sees all of the primary's light
    assert (table["snr_optimal"] > table["snr"]).mean() > 0.9
    has = table["truth_merger"] | table["truth_projection"]
    assert set(deblend["object_id"]) == set(table.loc[has, "object_id"])
    assert set(deblend["method"]) == {"multithreshold", "watershed"}
    # the estimator-matched n reference exists for the headline galaxies only
    scored = v.isolated(table) & (table["snr"] > v.HEADLINE_MIN_SNR)
    assert np.isfinite(table.loc[scored, "sersic_n_ref"]).mean() > 0.9
    assert table.loc[~scored, "sersic_n_ref"].isna().all()
    # every headline galaxy has its Sérsic fit: with scipy's default tolerance the fit
    # that places the centre ran object 36 (S/N 43) to the evaluation limit
    assert (table.loc[scored, "sersic_flag"] != 2).all()
    for q in v.QUANTITIES:
        assert f"err_{q.name}" in table


@pytest.mark.slow
@pytest.mark.parametrize("quantity", list(LOOSE))
def test_recovery_within_loose_bounds(recovery, quantity):
    table, _ = recovery
    h = v.headline(table, goals=LOOSE)
    assert h["n"] >= 25
    # the headline includes the faint end, not just the bright survey
    low = v.isolated(table) & table["snr"].between(v.HEADLINE_MIN_SNR, 50).to_numpy()
    assert low.sum() >= 8
    assert h["failed"][quantity] <= 0.1
    assert h["pass"][quantity], (
        f"median |d{quantity}|/{quantity} = {h['figures'][quantity]:.3f} > {LOOSE[quantity]}"
    )


@pytest.mark.slow
def test_bulge_to_total_of_the_bulge_disc_fit(recovery):
    table, _ = recovery
    sel = v.isolated(table) & (table["snr"].to_numpy(np.float64) > v.HEADLINE_MIN_SNR)
    diff = table.loc[sel, "diff_bulge_to_total"].to_numpy(np.float64)
    assert np.isfinite(diff).mean() >= 0.9
    assert median_abs(diff) <= 0.12  # 0.06 on the benchmark's 400 galaxies
    assert abs(np.nanmedian(diff)) <= 0.05
    # the fit's error says how far to trust it: 68% within it if it holds (the science
    # survey's 4500 isolated galaxies: 66%); ~30 galaxies here pin that to +-9%, and an
    # error 3x too small or too large would give < 30% or > 95%
    err = table.loc[sel, "bulge_to_total_err"].to_numpy(np.float64)
    ok = np.isfinite(diff)
    assert np.isfinite(err[ok]).all()
    assert 0.45 <= np.mean(np.abs(diff[ok]) <= err[ok]) <= 0.9


@pytest.mark.slow
def test_axis_ratio_and_flags(recovery):
    table, _ = recovery
    iso = table["isolated"].to_numpy(bool)
    assert median_abs(table.loc[iso, "err_q"]) <= 0.10
    flags = table.loc[iso, "flag"].to_numpy(np.int64)
    assert np.mean(flags & ~v.BENIGN_FLAGS != 0) <= 0.2


@pytest.mark.slow
def test_deblending_recovers_most_companions(recovery):
    _, deblend = recovery
    s = v.run_deblending(deblend).set_index(["method", "kind"])
    assert s.loc[("multithreshold", "all"), "n"] >= 4
    assert s.loc[("multithreshold", "all"), "recovered"] >= 0.5


@pytest.mark.slow
def test_single_sersic_injections_recover_the_exact_index():
    """Galaxies that are one Sérsic profile have an exact n: the headline n is scored on
    them too (bench/morphology_recovery.py prints the figure with 200 of them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = v.single_sersic_table(24, load_config(), scheduler="synchronous")
    assert len(table) == 24 and table["object_id"].is_unique
    assert table["truth_n"].between(*v.SINGLE_SERSIC_N).all()
    # the r80 of every galaxy fits the cutout, as in the survey
    cfg = load_config()
    half_width = 0.5 * cfg["synthetic"]["cutout_size"] * cfg["synthetic"]["pixel_scale"]
    assert (table["truth_r50"] < 0.8 * half_width).all()
    sel = table["snr"] > v.HEADLINE_MIN_SNR
    assert sel.sum() >= 12
    assert median_abs(table.loc[sel, "err_sersic_n"]) <= 2 * v.GOALS["sersic_n"]
    assert median_abs(table.loc[sel, "err_r50"]) <= 2 * v.GOALS["r50"]
