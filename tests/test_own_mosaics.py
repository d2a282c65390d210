"""A user with only FITS mosaics gets a catalogue with two commands (docs/user_guide.md):

    galcat local-config BAND=MOSAIC ... --psf-fwhm ... --output mine.yaml
    snakemake --cores 2 --configfile mine.yaml

run for real on small synthetic mosaics: one with a WCS whose bands come in four units
(electron/s with PHOTFLAM/PHOTPLAM, nanomaggies, counts with MAGZERO and GAIN, nJy), one
single-band mosaic in MJy/sr without a WCS. (Every unit stages the same cutouts:
tests/test_local_units.py.)
"""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from galcat.config import deep_merge
from galcat.flags import MeasureFlag
from galcat.validation.mosaic import match_sources, synthetic_mosaic, write_mosaic
from tests.conftest import BIN, snakemake
from tests.test_params import default_reads, shell_commands

pytestmark = pytest.mark.slow

SHAPE = (200, 200)


def local_config(workdir, pairs: list[str], *extra: str) -> None:
    """The first command."""
    cmd = [str(BIN / "galcat"), "local-config", *pairs, "--output", "mine.yaml", *extra]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "wrote mine.yaml" in proc.stdout


def catalogue(workdir, *more: str) -> pd.DataFrame:
    """The second command (with ``more`` config files), and what it wrote."""
    proc = snakemake(workdir, None, "--configfile", "mine.yaml", *more)
    cat = pd.read_parquet(workdir / "results" / "local" / "catalogue.parquet")
    cat.attrs["log"] = proc.stdout + proc.stderr
    return cat


@pytest.fixture(scope="module")
def mosaic():
    return synthetic_mosaic(SHAPE, n_galaxies=5, n_stars=2, bands=("g", "r", "i", "z"), seed=6,
                            dim_max=0.5, min_separation=45.0, redshift=(0.1, 0.3),
                            mag_limit=19.5, star_mag=(17.0, 18.0))


def matched(cat: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    idx = match_sources(truth[["x", "y"]].to_numpy(), cat[["x", "y"]].to_numpy(), 2.0)
    assert (idx >= 0).all(), f"not found: {truth[idx < 0]}"
    return idx


def test_mosaics_with_a_wcs_in_four_units(mosaic, tmp_path, monkeypatch):
    pairs = []
    for band, unit in (("g", "electron/s"), ("r", "nanomaggy"), ("i", "counts"),
                       ("z", "nJy")):
        write_mosaic(mosaic, tmp_path / unit.replace("/", "_"), unit=unit)
        pairs.append(f"{band}={unit.replace('/', '_')}/mosaic_{band}.fits")
    fwhm = [f"{b}={v}" for b, v in
            write_mosaic(mosaic, tmp_path / "x", unit="nanomaggy")["psf"]["fwhm_arcsec"].items()]
    local_config(tmp_path, pairs, "--psf-fwhm", *fwhm)
    # two shards, Dask threads (no worker processes to start for a few objects)
    (tmp_path / "run.yaml").write_text("sharding: {objects_per_shard: 4}\n"
                                       "dask: {scheduler: threads}\n")
    cat = catalogue(tmp_path, "run.yaml")
    truth = mosaic.truth
    idx = matched(cat, truth)
    assert len(cat) == len(truth)
    rows = cat.iloc[idx].reset_index(drop=True)
    # positions: the detection's and the measured centroid, on the mosaic and the sky
    assert np.allclose(rows["ra"], truth["ra"], atol=1.0 * 0.396 / 3600)
    assert np.allclose(rows["x_centroid"], truth["x"], atol=1.0)
    assert np.allclose(rows["dec_centroid"], truth["dec"], atol=1.0 * 0.396 / 3600)
    # every unit became the same AB flux: stars' Kron fluxes (nJy in the catalogue)
    stars = (truth["kind"] == "star").to_numpy()
    for band in ("g", "r", "i", "z"):
        ratio = rows[f"flux_{band}"][stars] / (truth[f"flux_{band}"][stars] * 3631.0)
        assert np.allclose(ratio, 1.0, atol=0.1), band
    # galaxies are measured; stars are point sources, flagged unresolved, without a
    # PSF-corrected radius
    galaxies = rows[~stars]
    assert galaxies["r50"].notna().all() and galaxies["r50_psf_corrected"].notna().all()
    assert galaxies["r50_mass"].notna().sum() >= 4  # g, r and i: the half-mass route runs
    assert not galaxies["point_source"].any() and rows["point_source"][stars].all()
    unresolved = (rows["flag"].to_numpy() & int(MeasureFlag.UNRESOLVED)) > 0
    assert (unresolved == stars).all()
    assert rows["r50_psf_corrected"][stars].isna().all()
    # radii in arcsec and pixels; in kpc only with a redshift (none here)
    assert np.allclose(galaxies["r50_pix"] * 0.396, galaxies["r50"])
    assert cat["r50_kpc"].isna().all()

    # no job of this DAG (detect included) reads a value its params lack
    monkeypatch.chdir(tmp_path)
    config = deep_merge(yaml.safe_load((tmp_path / "mine.yaml").read_text()),
                        yaml.safe_load((tmp_path / "run.yaml").read_text()))
    # (a dry run plans only up to the plan_shards checkpoint; the shard rules' params
    # are those of every survey, checked by tests/test_params.py and
    # tests/archive/test_archive_params.py)
    rules = {"detect", "query_catalog"}
    seen = set()
    for rule, argv in shell_commands(tmp_path, config, *sorted(rules)):
        if rule in rules - seen:
            seen.add(rule)
            assert default_reads(argv) == [], rule
    assert seen == rules


def test_a_single_band_mosaic_without_a_wcs(mosaic, tmp_path):
    section = write_mosaic(mosaic, tmp_path, unit="MJy/sr", wcs=False)
    fwhm = section["psf"]["fwhm_arcsec"]["r"]
    no_wcs = ["r=mosaic_r.fits"]
    proc = subprocess.run([str(BIN / "galcat"), "local-config", *no_wcs, "--psf-fwhm",
                           str(fwhm), "--output", "mine.yaml"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "has no celestial WCS: give --pixel-scale" in proc.stderr
    local_config(tmp_path, no_wcs, "--psf-fwhm", str(fwhm), "--pixel-scale", "0.396")
    (tmp_path / "run.yaml").write_text("dask: {scheduler: threads}\n")
    cat = catalogue(tmp_path, "run.yaml")
    truth = mosaic.truth
    rows = cat.iloc[matched(cat, truth)].reset_index(drop=True)
    assert cat["ra"].isna().all() and cat["ra_centroid"].isna().all()
    assert np.allclose(rows["x_centroid"], truth["x"], atol=1.0)
    galaxies = rows[(truth["kind"] == "galaxy").to_numpy()]
    assert galaxies["r50"].notna().all()
    # one band: the half-mass route is said impossible once, at the start, and skipped
    assert cat.attrs["log"].count("the half-mass radius needs the colour") == 1
    flags = cat["flag"].to_numpy()
    assert ((flags & int(MeasureFlag.SKIPPED)) > 0).all()
    assert not ((flags & int(MeasureFlag.HALFMASS_FAILED | MeasureFlag.MISSING_BAND)) > 0).any()
