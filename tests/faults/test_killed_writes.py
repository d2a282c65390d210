"""A write killed at any point (or stopped by a full disk) leaves the old output whole,
or the new one whole, and never a part; the next attempt clears what was left.

Each writer rewrites an existing output (a rerun), so a kill has something to lose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat.store import CutoutBatch, read_cutouts, write_cutouts
from galcat.tables import read_table, write_table
from tests.faults.killing import kill_at_every_step, run_killed_at

pytestmark = pytest.mark.slow


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def small_batch(n: int, value: float) -> CutoutBatch:
    shape = (n, 2, 16, 16)
    return CutoutBatch(
        object_id=np.arange(1, n + 1), image=np.full(shape, value, np.float32),
        sigma=np.ones(shape, np.float32), mask=np.zeros(shape, bool),
        psf=np.full((2, 5, 5), 1 / 25, np.float32), bands=["g", "r"], pixel_scale=0.4,
        zeropoints=[22.5, 22.5])


WRITE_SHARD = """
import numpy as np
from galcat.store import CutoutBatch, write_cutouts
n = 40
shape = (n, 2, 16, 16)
batch = CutoutBatch(object_id=np.arange(1, n + 1), image=np.full(shape, 2.0, np.float32),
                    sigma=np.ones(shape, np.float32), mask=np.zeros(shape, bool),
                    psf=np.full((2, 5, 5), 1 / 25, np.float32), bands=["g", "r"],
                    pixel_scale=0.4, zeropoints=[22.5, 22.5])
write_cutouts(args["path"], batch, shard="s000000")
"""


def test_a_killed_zarr_shard_write_leaves_a_whole_shard(tmp_path, reliability):
    path = tmp_path / "s000000.zarr"
    write_cutouts(path, small_batch(40, 1.0), shard="s000000")  # the finished shard
    seen = set()

    def check(step):
        batch = read_cutouts(path)  # readable whole after every death
        assert batch.n_objects == 40
        seen.add(float(batch.image[0, 0, 0, 0]))
        if step is None:
            assert float(batch.image.min()) == 2.0 and leftovers(tmp_path) == []

    steps = kill_at_every_step(WRITE_SHARD, {"path": str(path)}, check)
    assert steps >= 5 and seen == {1.0, 2.0}
    reliability("killed_zarr_shard", f"killed at each of {steps} steps: the old shard stayed "
                "whole until the new one replaced it; the rerun cleared the leftovers")


WRITE_TABLE = """
import pandas as pd
from galcat.tables import write_table
df = pd.DataFrame({"object_id": range(1, 2001), "r50": [2.0] * 2000})
write_table(df, args["path"], units={"r50": "arcsec"}, metadata={"stage": "measure"})
"""


def test_a_killed_parquet_write_leaves_a_whole_table(tmp_path, reliability):
    path = tmp_path / "features.parquet"
    write_table(pd.DataFrame({"object_id": range(1, 2001), "r50": [1.0] * 2000}), path)

    def check(step):
        table = read_table(path)
        assert len(table) == 2000 and table["r50"].nunique() == 1
        if step is None:
            assert table["r50"].iloc[0] == 2.0 and leftovers(tmp_path) == []

    steps = kill_at_every_step(WRITE_TABLE, {"path": str(path)}, check)
    assert steps >= 1  # pyarrow writes through its own file system: the rename is the step
    reliability("killed_parquet", f"killed before the rename (arrow writes natively; {steps} Python step): the old table stayed "
                "whole and readable until the new one replaced it")


BUILD_CATALOGUE = """
from galcat.catalogue import build_catalogue
build_catalogue(args["objects"], [args["features"]], config_hash="0" * 16, survey="synthetic",
                output_parquet=args["parquet"], output_fits=args["fits"],
                output_votable=args["vot"])
"""


def test_a_killed_catalogue_leaves_every_format_whole(tmp_path, reliability):
    from astropy.table import Table

    from galcat.catalogue import build_catalogue

    objects, features = tmp_path / "objects.parquet", tmp_path / "features.parquet"
    pd.DataFrame({"object_id": [1, 2, 3], "ra": [1.0, 2.0, 3.0], "dec": [0.0] * 3,
                  "z": [0.1] * 3, "shard": ["s000000"] * 3}).to_parquet(objects)
    write_table(pd.DataFrame({"object_id": [1, 2, 3], "r50": [1.0, 1.5, 2.0]}), features,
                units={"r50": "arcsec"}, descriptions={"r50": "half-light radius"})
    out = {k: tmp_path / f"catalogue.{k}" for k in ("parquet", "fits", "vot")}
    build_catalogue(objects, [features], config_hash="1" * 16, survey="synthetic",
                    output_parquet=out["parquet"], output_fits=out["fits"],
                    output_votable=out["vot"])

    def check(step):
        for path in out.values():
            assert len(Table.read(path)) == 3, path  # each format whole, old or new

    args = {"objects": str(objects), "features": str(features),
            **{k: str(v) for k, v in out.items()}}
    steps = kill_at_every_step(BUILD_CATALOGUE, args, check)
    assert leftovers(tmp_path) == []
    reliability("killed_catalogue", f"killed at each of {steps} steps: Parquet, FITS and "
                "VOTable each stayed whole (old or new), never part-written")


def test_a_full_disk_fails_the_write_and_keeps_the_old_output(tmp_path, reliability):
    table, shard = tmp_path / "features.parquet", tmp_path / "s000000.zarr"
    write_table(pd.DataFrame({"object_id": range(1, 2001), "r50": [1.0] * 2000}), table)
    write_cutouts(shard, small_batch(40, 1.0), shard="s000000")
    big = """
import pandas as pd, numpy as np
from galcat.tables import write_table
write_table(pd.DataFrame({"object_id": range(1, 200001), "r50": np.random.rand(200000)}),
            args["path"])
"""
    failed = run_killed_at(0, big, {"path": str(table)}, limit_file_bytes=200_000)
    assert failed.returncode != 0 and "File too large" in failed.stderr
    noisy = WRITE_SHARD.replace("n = 40", "n = 400").replace(
        "image=np.full(shape, 2.0, np.float32)",
        "image=np.random.default_rng(1).random(shape, np.float32)")  # incompressible
    failed_shard = run_killed_at(0, noisy, {"path": str(shard)}, limit_file_bytes=10_000)
    assert failed_shard.returncode != 0 and "File too large" in failed_shard.stderr
    assert read_table(table)["r50"].eq(1.0).all() and len(read_table(table)) == 2000
    assert read_cutouts(shard).n_objects == 40
    # Zarr's own writer threads may still add a chunk after the clean-up: the next
    # attempt at the same output clears what they left
    write_cutouts(shard, small_batch(40, 3.0), shard="s000000")
    write_table(read_table(table), table)
    assert leftovers(tmp_path) == []
    reliability("full_disk", "the write failed with 'File too large'; the old table and "
                "shard stayed whole; the partial files went with the next attempt")
