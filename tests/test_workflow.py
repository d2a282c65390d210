"""A real snakemake run of the whole DAG on the tiny synthetic survey."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from galcat.store import read_cutouts, read_segmaps
from galcat.tables import column_units, table_metadata
from tests.conftest import TINY, jobs_in, snakemake

pytestmark = pytest.mark.slow
OUT = "results/synthetic"
SHARDS = ["s000000", "s000001", "s000002"]


def test_every_stage_wrote_its_outputs(tiny_run):
    out = tiny_run / OUT
    assert (out / "objects.parquet").exists()
    for shard in SHARDS:
        assert (out / "cutouts" / f"{shard}.zarr").is_dir()
        assert (out / "segmaps" / f"{shard}.zarr").is_dir()
        assert (out / "features" / f"{shard}.parquet").exists()
        for rule in ("fetch_cutouts", "segment", "measure"):
            assert (out / "logs" / rule / f"{shard}.log").exists()
            assert (out / "benchmarks" / rule / f"{shard}.tsv").exists()
    html = (out / "report.html").read_text()
    assert "<h1>galcat catalogue" in html and "data:image/png;base64" in html


def test_catalogue_joins_every_object_with_units_and_provenance(tiny_run):
    out = tiny_run / OUT
    cat = pd.read_parquet(out / "catalogue.parquet")
    n = TINY["synthetic"]["n_objects"]
    assert len(cat) == n
    assert cat["object_id"].tolist() == list(range(1, n + 1))
    assert {"ra", "dec", "z", "shard", "r50", "gini", "m20", "flag"} <= set(cat.columns)
    units = column_units(out / "catalogue.parquet")
    assert units["ra"] == "deg" and units["r50"] == "arcsec"
    meta = table_metadata(out / "catalogue.parquet")
    assert len(meta["config_hash"]) == 16 and meta["galcat_version"]

    table = Table.read(out / "catalogue.fits")
    assert len(table) == n
    assert str(table["r50"].unit) == "arcsec"
    header = fits.getheader(out / "catalogue.fits", 1)
    assert header["CONFHASH"] == meta["config_hash"]
    assert header["GALCATV"] and header["CREATED"].endswith("Z")


def test_zarr_shards_follow_the_layout(tiny_run):
    out = tiny_run / OUT
    objects = pd.read_parquet(out / "objects.parquet")
    for shard in SHARDS:
        batch = read_cutouts(out / "cutouts" / f"{shard}.zarr")
        expected = objects.loc[objects["shard"] == shard, "object_id"].to_numpy()
        np.testing.assert_array_equal(batch.object_id, expected)
        assert batch.image.shape[1:] == (5, 64, 64)
        assert batch.extras["truth_class"].shape == (len(expected), 64, 64)
        ids, seg = read_segmaps(out / "segmaps" / f"{shard}.zarr")
        np.testing.assert_array_equal(ids, expected)
        assert seg.shape == (len(expected), 64, 64)


def test_logs_show_progress_per_shard(tiny_run):
    log = (tiny_run / OUT / "logs" / "measure" / "s000001.log").read_text()
    assert "measure s000001: 0/4 objects" in log
    assert "measure s000001: 4/4 objects" in log


def test_rerun_with_nothing_changed_does_nothing(tiny_run):
    proc = snakemake(tiny_run, TINY, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_rerun_from_scratch_gives_byte_identical_catalogue_data(tiny_run, tmp_path):
    """Same config, same inputs: the same bytes of data in every catalogue format; only
    the creation time (one metadata field) differs. tiny_run's jobs ran with one
    thread each, this run's stages with the rules' own (Dask pools of two workers):
    serial jobs and parallel ones write the same bytes.

    The second run is asked for the catalogue only: everything its bytes depend on
    (every stage and every model upstream of it) runs from scratch; the evaluations,
    analyses and report, which read the catalogue and add nothing to it, do not."""
    import json

    import pyarrow.parquet as pq

    # the stages with the rules' own threads (Dask pools of two workers), against
    # tiny_run's one-thread jobs: parallel jobs write the same bytes as serial ones.
    # Training keeps one thread: torch's reductions add in another order on two
    # threads, and the weights (so every nn_* column) differ in the last bits.
    proc = snakemake(tmp_path, TINY, "--set-threads", "train=1", "--",
                     f"{OUT}/catalogue.parquet", one_thread_per_job=False)
    ran = {rule for rule, _ in jobs_in(proc.stdout + proc.stderr)}
    assert {"query_catalog", "fetch_cutouts", "segment", "measure", "train", "predict",
            "catalogue"} <= ran, ran
    first, second = tiny_run / OUT, tmp_path / OUT
    a, b = pq.read_table(first / "catalogue.parquet"), pq.read_table(second / "catalogue.parquet")
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    for name in a.column_names:
        assert a[name].equals(b[name]), name

    def meta(table):
        out = json.loads(table.schema.metadata[b"galcat"])
        out.pop("created_utc")
        return out

    assert meta(a) == meta(b)
    with fits.open(first / "catalogue.fits") as fa, fits.open(second / "catalogue.fits") as fb:
        assert fa[1].data.tobytes() == fb[1].data.tobytes()
        ha, hb = fa[1].header.copy(), fb[1].header.copy()
        for header in (ha, hb):
            del header["CREATED"]
        assert ha == hb
