"""The SExtractor wrapper and the deblending benchmark's scoring (galcat.validation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galcat.validation import blends
from galcat.validation.sextractor import (
    SExtractorError,
    SExtractorNotFoundError,
    find_sextractor,
    gaussian_filter_kernel,
    run_sextractor,
)

PSF_FWHM_ARCSEC = 1.3
SKY = 600.0


def _render(galaxies, *, seed=0, size=64):
    """Noisy GalSim image of ``galaxies`` [(x, y, flux, r50_arcsec)], sigma, fwhm px."""
    import galsim

    psf = galsim.Moffat(beta=3.5, fwhm=PSF_FWHM_ARCSEC)
    centre = (size - 1) / 2.0
    model = np.zeros((size, size))
    for x, y, flux, r50 in galaxies:
        gal = galsim.Exponential(half_light_radius=r50, flux=flux).shear(
            q=0.7, beta=30 * galsim.degrees
        )
        model += (
            galsim.Convolve(gal, psf)
            .drawImage(nx=size, ny=size, scale=blends.PIXEL_SCALE, offset=(x - centre, y - centre))
            .array
        )
    rng = np.random.default_rng(seed)
    expected = np.clip(model, 0, None) + SKY
    image = rng.poisson(expected) - SKY
    return image.astype(np.float64), np.sqrt(expected), PSF_FWHM_ARCSEC / blends.PIXEL_SCALE


def test_single_galaxy_position_and_flux():
    x0, y0, flux = 33.3, 29.6, 1.0e5
    image, sigma, fwhm = _render([(x0, y0, flux, 1.0)])
    table, segmap = run_sextractor(image, sigma, filter_fwhm=fwhm)
    assert len(table) == 1
    row = table.iloc[0]
    assert math.hypot(row["x"] - x0, row["y"] - y0) < 1.0
    assert row["x"] == pytest.approx(row["X_IMAGE"] - 1.0)
    assert abs(row["FLUX_AUTO"] / flux - 1.0) < 0.10
    assert row["FLUX_RADIUS"] > 0 and row["KRON_RADIUS"] > 0
    assert {"A_IMAGE", "B_IMAGE", "THETA_IMAGE", "FLAGS", "NUMBER"} <= set(table.columns)
    assert segmap.shape == image.shape and segmap.dtype == np.int32
    assert set(np.unique(segmap)) == {0, 1}
    assert segmap[round(y0), round(x0)] == 1


def test_well_separated_pair_gives_two_detections():
    truth = [(20.0, 22.0, 5.0e4, 0.8), (44.0, 42.0, 3.0e4, 0.8)]
    image, sigma, fwhm = _render(truth, seed=1)
    table, segmap = run_sextractor(
        image, sigma, filter_fwhm=fwhm, detect_thresh=2.0, deblend_mincont=0.005
    )
    assert len(table) == 2
    for x, y, _, _ in truth:
        d = np.hypot(table["x"] - x, table["y"] - y)
        assert d.min() < 1.5
        assert segmap[round(y), round(x)] == int(table["NUMBER"].iloc[int(d.argmin())])


def test_empty_image_and_mask():
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, (48, 48))
    table, segmap = run_sextractor(image, np.ones_like(image), detect_thresh=5.0)
    assert len(table) == 0 and not segmap.any()
    assert list(table.columns)[:3] == ["NUMBER", "X_IMAGE", "Y_IMAGE"]
    # a masked bright blob is not detected
    image[20:26, 20:26] += 50.0
    mask = np.zeros(image.shape, bool)
    mask[18:28, 18:28] = True
    table, _ = run_sextractor(image, np.ones_like(image), mask=mask, detect_thresh=5.0)
    assert len(table) == 0


def test_missing_binary_names_the_package(tmp_path):
    missing = tmp_path / "no-such-source-extractor"
    with pytest.raises(SExtractorNotFoundError, match="apt-get install source-extractor"):
        run_sextractor(np.zeros((8, 8)), binary=missing)
    with pytest.raises(FileNotFoundError):
        find_sextractor(missing)


def test_failing_binary_reports_stderr(tmp_path):
    fake = tmp_path / "fake-sex"
    fake.write_text("#!/bin/sh\necho 'ERROR: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(SExtractorError, match="something broke") as info:
        run_sextractor(np.zeros((8, 8)), binary=fake)
    assert info.value.returncode == 3


def test_options_are_checked(tmp_path):
    fake = tmp_path / "fake-sex"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    with pytest.raises(ValueError, match="deblend_mincont"):
        run_sextractor(np.zeros((8, 8)), binary=fake, deblend_mincont=2.0)
    with pytest.raises(ValueError, match="sigma shape"):
        run_sextractor(np.zeros((8, 8)), np.ones((4, 4)), binary=fake)
    kern = gaussian_filter_kernel(3.0)
    assert kern.shape[0] % 2 == 1 and kern.sum() == pytest.approx(1.0)


def test_score_detections_matching_and_flux():
    truth = pd.DataFrame({"x": [10.0, 20.0], "y": [10.0, 10.0], "flux": [100.0, 50.0]})
    good = pd.DataFrame(
        {"x": [20.5, 10.2], "y": [10.0, 9.5], "flux": [45.0, 110.0], "flux_kron": [50, 100]}
    )
    s = blends.score_detections(truth, good)
    assert s["recovered"] and s["success"] and s["share_ok"]
    assert s["matched_index"] == [1, 0]
    merged = pd.DataFrame({"x": [15.0], "y": [10.0], "flux": [150.0], "flux_kron": [150.0]})
    s = blends.score_detections(truth, merged)
    assert not s["recovered"] and not s["success"] and s["n_matched"] == 0
    bad_flux = good.assign(flux=[45.0, 60.0])
    s = blends.score_detections(truth, bad_flux)
    assert s["recovered"] and not s["success"]
    # one detection cannot serve both components
    close = pd.DataFrame({"x": [10.0, 12.0], "y": [10.0, 10.0], "flux": [100.0, 50.0]})
    s = blends.score_detections(truth.assign(x=[10.0, 11.0]), close.iloc[:1], flux_columns=["flux"])
    assert s["n_matched"] == 1 and not s["recovered"]


def test_make_pair_truth():
    b = blends.make_pair(np.random.default_rng(5), separation_r50=3.0, flux_ratio=2.0)
    assert b.image.shape == (blends.STAMP_SIZE, blends.STAMP_SIZE)
    assert b.sigma.shape == b.image.shape and np.all(b.sigma > 0)
    assert b.psf.sum() == pytest.approx(1.0)
    t = b.truth
    assert len(t) == 2
    assert t["flux"].iloc[0] / t["flux"].iloc[1] == pytest.approx(2.0)
    sep = math.hypot(t["x"].iloc[0] - t["x"].iloc[1], t["y"].iloc[0] - t["y"].iloc[1])
    assert sep == pytest.approx(b.meta["separation"])
    assert np.all(t["flux_stamp"] <= t["flux"] * 1.001)
    assert np.all(t["r50_circ_psf"] > t["r50_circ"])


def test_pair_scoring_small_run():
    rows = blends.evaluate_many("pair", range(4), seed=2)
    rows += blends.evaluate_many("isolated", range(3), seed=2)
    table = pd.DataFrame(rows)
    assert set(table["method"]) == {*blends.GALCAT_METHODS, "sextractor"}
    assert table["error"].isna().all(), table["error"].dropna().tolist()
    pairs = blends.summarise_pairs(table)
    for stats in pairs.values():
        assert stats["n"] == 4
        for key in ("success", "success_kron", "recovered", "share_ok"):
            assert 0.0 <= stats[key] <= 1.0
        assert stats["success"] <= stats["recovered"]
    iso = blends.summarise_isolated(table)
    for stats in iso.values():
        assert 0.0 <= stats["completeness"] <= 1.0
    # the same seed gives the same cutouts and scores
    again = pd.DataFrame(blends.evaluate_many("pair", [1], seed=2))
    first = table[(table["kind"] == "pair") & (table["index"] == 1)].reset_index(drop=True)
    assert again["success"].tolist() == first["success"].tolist()
    assert again["n_det"].tolist() == first["n_det"].tolist()


def test_benchmark_script_ends_with_json(capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "deblend_vs_sextractor.py"
    spec = importlib.util.spec_from_file_location("deblend_vs_sextractor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--n-pairs", "3", "--n-isolated", "2", "--workers", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["bench"] == "deblend_vs_sextractor"
    assert summary["best_ours"] in blends.GALCAT_METHODS
    assert 0.0 <= summary["sextractor_rate"] <= 1.0
    assert isinstance(summary["best_ours_ge_sextractor"], bool)
    for rate in summary["success"].values():
        assert 0.0 <= rate <= 1.0
