"""Stage functions: shard rows, serial == parallel staging, idempotent shard plans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat.config import load_config
from galcat.stages import run_fetch, run_plan_shards, run_query
from galcat.store import read_cutouts
from galcat.surveys import synthetic
from galcat.tables import read_table


@pytest.fixture
def config():
    return load_config(overrides={"synthetic": {"n_objects": 10}, "sharding": {"objects_per_shard": 4},
                                  "dask": {"objects_per_task": 1}})


def test_a_shard_is_made_alone_exactly_as_in_the_full_table(config):
    full = synthetic.query(config)
    last = synthetic.shard_rows({**config, "shard_size": 2}, "s000002")
    pd.testing.assert_frame_equal(last, full.iloc[8:10].reset_index(drop=True))
    grown = synthetic.query({**config, "synthetic": {**config["synthetic"], "n_objects": 30}})
    pd.testing.assert_frame_equal(full, grown.iloc[:10])


def test_fetch_serial_equals_parallel(tmp_path, config):
    outputs = {}
    for scheduler, workers in (("synchronous", 1), ("threads", 2), ("processes", 2)):
        cfg = {**config, "dask": {**config["dask"], "scheduler": scheduler}, "shard_size": 4}
        path = run_fetch(cfg, None, "s000001", tmp_path / f"{scheduler}.zarr", threads=workers)
        outputs[scheduler] = read_cutouts(path)
    ref = outputs["synchronous"]
    np.testing.assert_array_equal(ref.object_id, [5, 6, 7, 8])
    for other in ("threads", "processes"):
        for name in ("image", "sigma", "mask", "psf"):
            np.testing.assert_array_equal(getattr(outputs[other], name), getattr(ref, name))
        np.testing.assert_array_equal(outputs[other].extras["truth_class"],
                                      ref.extras["truth_class"])


def test_plan_shards_rewrites_only_changed_shards(tmp_path, config):
    objects = run_query(config, tmp_path / "objects.parquet")
    shard_dir = tmp_path / "objects"
    run_plan_shards(objects, tmp_path / "shards.txt", shard_dir)
    assert (tmp_path / "shards.txt").read_text().split() == ["s000000", "s000001", "s000002"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    # the same table again: nothing is rewritten
    run_plan_shards(objects, tmp_path / "shards.txt", shard_dir)
    assert {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()} == mtimes
    # the survey grows: the partial last shard changes, a new one appears
    grown = {**config, "synthetic": {**config["synthetic"], "n_objects": 14}}
    run_query(grown, objects)
    run_plan_shards(objects, tmp_path / "shards.txt", shard_dir)
    after = {p.name: p.stat().st_mtime_ns for p in shard_dir.iterdir()}
    assert after["s000000.parquet"] == mtimes["s000000.parquet"]
    assert after["s000001.parquet"] == mtimes["s000001.parquet"]
    assert after["s000002.parquet"] != mtimes["s000002.parquet"]
    assert "s000003.parquet" in after
    assert read_table(shard_dir / "s000003.parquet")["object_id"].tolist() == [13, 14]
