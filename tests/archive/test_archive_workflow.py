"""The whole DAG through Snakemake on an archive survey replayed by the fake
archive: query_catalog -> plan_shards (checkpoint) -> per-shard jobs -> catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import jobs_in, snakemake

pytestmark = pytest.mark.slow


def test_sdss_dag_runs_end_to_end(make_config, tmp_path, truth):
    config = make_config("sdss")
    proc = snakemake(tmp_path, config)
    out = tmp_path / "results" / "sdss"
    objects = pd.read_parquet(out / "objects.parquet")
    shards = (out / "shards.txt").read_text().split()
    assert shards == sorted(objects["shard"].unique())
    assert len(shards) >= 2
    for shard in shards:
        assert (out / "cutouts" / f"{shard}.zarr").is_dir()
        assert (out / "features" / f"{shard}.parquet").exists()
    cat = pd.read_parquet(out / "catalogue.parquet")
    assert sorted(cat["object_id"]) == sorted(objects["object_id"])
    assert cat["r50"].notna().any()
    # spectrum ids over 2**63 stay exact through Parquet and FITS
    from astropy.table import Table

    exact = [truth["sdss"]["specobjid"][str(o)] for o in cat["object_id"]]
    assert [str(v) for v in cat["specobjid"]] == exact
    fits_cat = Table.read(out / "catalogue.fits")
    assert [str(v) for v in fits_cat["specobjid"]] == exact
    ran = jobs_in(proc.stderr + proc.stdout)
    assert ("plan_shards", None) in ran
    assert {s for r, s in ran if r == "fetch_cutouts"} == set(shards)

    # a second identical run does nothing, a rerun query leaves the shards alone
    again = snakemake(tmp_path, config, "--forcerun", "query_catalog")
    ran = jobs_in(again.stderr + again.stdout)
    assert not {job for job in ran if job[0] in {"fetch_cutouts", "segment", "measure"}}


@pytest.mark.parametrize("kind", ["mosaic", "cutouts"])
def test_local_fits_dag_runs_end_to_end(local_config, local_dir, tmp_path, kind):
    if kind == "mosaic":
        config = local_config()
    else:
        pattern = str(local_dir / "cutouts" / "{object_id}_{band}.fits")
        config = local_config(images={"kind": "cutouts", "pattern": pattern}, noise={},
                              psf={"fwhm_arcsec": {"g": 0.9, "r": 0.9}})
    snakemake(tmp_path, config)
    out = tmp_path / "results" / "local"
    objects = pd.read_parquet(out / "objects.parquet")
    cat = pd.read_parquet(out / "catalogue.parquet")
    assert sorted(cat["object_id"]) == sorted(objects["object_id"])
    assert cat["r50"].notna().sum() >= len(cat) - 1


def test_sdss_ids_above_2_63_survive_every_catalogue_format(make_config, tmp_path):
    """specobjid is numeric(20,0) on the server: exact in Parquet and FITS (uint64) and, as
    VOTable has no unsigned 64-bit type, as its digits there."""
    from astropy.table import Table

    from galcat.catalogue import build_catalogue

    objects = tmp_path / "objects.parquet"
    ids = np.array([2**63 + 12345, 17], dtype=np.uint64)
    pd.DataFrame({"object_id": [1, 2], "ra": [1.0, 2.0], "dec": [0.0, 0.0], "z": [0.1, 0.1],
                  "shard": ["s000000"] * 2, "specobjid": ids}).to_parquet(objects)
    out = {k: tmp_path / f"cat.{k}" for k in ("parquet", "fits", "vot")}
    build_catalogue(objects, [], config_hash="0" * 16, survey="sdss",
                    output_parquet=out["parquet"], output_fits=out["fits"],
                    output_votable=out["vot"])
    assert pd.read_parquet(out["parquet"])["specobjid"].tolist() == ids.tolist()
    assert Table.read(out["fits"])["specobjid"].tolist() == ids.tolist()
    assert [int(v) for v in Table.read(out["vot"])["specobjid"]] == ids.tolist()
