"""Objects keep their shard for life: an object whose id falls between existing ids
goes to a new shard, and no finished shard is refetched, segmented or measured again.

Issue found before the shard map: ranks of sorted ids moved every later object to
another shard, so a nightly run re-downloaded and re-measured every later shard."""

from __future__ import annotations

import pandas as pd
import pytest

from galcat.sharding import read_shard_map, stable_shards
from tests.conftest import jobs_in, snakemake

pytestmark = pytest.mark.slow


def test_stable_shards_keep_known_objects_where_they_were(tmp_path):
    path = tmp_path / "shard_map.parquet"
    first = stable_shards(pd.DataFrame({"object_id": [10, 20, 30, 40]}), 2, path)
    assert first["shard"].tolist() == ["s000000", "s000000", "s000001", "s000001"]
    grown = stable_shards(pd.DataFrame({"object_id": [10, 15, 20, 30, 40, 50]}), 2, path)
    assert dict(zip(grown["object_id"], grown["shard"], strict=True)) == {
        10: "s000000", 20: "s000000", 30: "s000001", 40: "s000001",
        15: "s000002", 50: "s000002"}
    # an object that left the survey keeps its entry: its shard name is never reused
    stable_shards(pd.DataFrame({"object_id": [10, 15, 20]}), 2, path)
    assert 40 in set(read_shard_map(path, 2)["object_id"])
    # another shard size plans afresh (every per-shard job reruns anyway)
    assert read_shard_map(path, 3) is None


def test_an_object_inserted_between_ids_reruns_only_its_new_shard(local_config, local_dir,
                                                                 tmp_path):
    rows = (local_dir / "objects.csv").read_text().splitlines()
    header, first, *others = rows
    renumber = [f"{10 * (k + 1)},{row.split(',', 1)[1]}" for k, row in
                enumerate([first, *others])]
    table = tmp_path / "objects.csv"
    table.write_text("\n".join([header, *renumber]) + "\n")
    config = local_config(objects=str(table))
    snakemake(tmp_path, config)
    objects = pd.read_parquet(tmp_path / "results" / "local" / "objects.parquet")
    before = dict(zip(objects["object_id"], objects["shard"], strict=True))
    assert before == {10: "s000000", 20: "s000000", 30: "s000001"}

    # id 15, between 10 and 20, at object 20's position a little off
    inserted = f"15,{renumber[1].split(',', 1)[1]}"
    table.write_text("\n".join([header, renumber[0], inserted, *renumber[1:]]) + "\n")
    # as the nightly profile does: the archive (here the user's table) is asked again
    proc = snakemake(tmp_path, config, "--forcerun", "query_catalog")
    ran = jobs_in(proc.stdout + proc.stderr)
    per_shard = {(rule, shard) for rule, shard in ran if shard}
    assert per_shard == {("fetch_cutouts", "s000002"), ("segment", "s000002"),
                         ("measure", "s000002")}
    assert {rule for rule, shard in ran if not shard} >= {"query_catalog", "plan_shards",
                                                          "catalogue"}
    objects = pd.read_parquet(tmp_path / "results" / "local" / "objects.parquet")
    after = dict(zip(objects["object_id"], objects["shard"], strict=True))
    assert after == {**before, 15: "s000002"}
    cat = pd.read_parquet(tmp_path / "results" / "local" / "catalogue.parquet")
    assert sorted(cat["object_id"]) == [10, 15, 20, 30]
