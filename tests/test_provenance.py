"""Every shard table records the code version and settings that wrote it, and
``galcat status --outdated`` names exactly the tables of another version, ready
for ``snakemake -R``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from galcat.provenance import code_version, shard_status
from galcat.tables import column_units, read_table, table_metadata, write_table
from tests.conftest import BIN, TINY, jobs_in, snakemake

pytestmark = pytest.mark.slow
OUT = "results/synthetic"


def test_shard_tables_record_version_and_settings(tiny_run):
    status = shard_status(tiny_run / OUT)
    assert len(status) == 6  # 3 shards x (segment, measure)
    assert set(status["galcat_version"]) == {code_version()}
    assert not status["outdated"].any()
    meta = table_metadata(tiny_run / OUT / "features" / "s000001.parquet")
    assert meta["stage"] == "measure" and meta["shard"] == "s000001"
    assert len(meta["settings_hash"]) == 16
    # the priors the shard was measured with (measure.priors = fixed: the configured ones)
    assert meta["priors"]["mode"] == "fixed"
    assert meta["priors"]["bulge_disc_priors"]["n_bulge"] == [3.5, 1.5]


def test_status_names_the_tables_of_another_version_and_snakemake_reruns_them(
        tiny_run, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    old = work / OUT / "features" / "s000002.parquet"
    meta = {**table_metadata(old), "galcat_version": "0.0.9"}
    write_table(read_table(old), old, units=column_units(old), metadata=meta)

    proc = subprocess.run([str(BIN / "galcat"), "status", "--outdated", "--results", OUT],
                          cwd=work, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [f"{OUT}/features/s000002.parquet"]
    summary = subprocess.run([str(BIN / "galcat"), "status", "--results", OUT], cwd=work,
                             capture_output=True, text=True, check=True).stdout
    assert "0.0.9" in summary and "1 written by another version" in summary

    planned = jobs_in(snakemake(work, TINY, "-n", "-R", *proc.stdout.split()).stdout)
    # the outdated shard is measured again and everything that aggregates its features
    # follows: catalogue, report, the models' evaluation, the analyses, and the models that
    # read measurements (r50, gz2: train, then predict on every shard); nothing else
    assert {job for job in planned if job[1] is not None} == {
        ("measure", "s000002"), *(("predict", s) for s in ("s000000", "s000001", "s000002"))}
    assert {("catalogue", None), ("report", None), ("all", None), ("train", None)} <= planned
    assert not {rule for rule, _ in planned} & {"fetch_cutouts", "segment", "predict_pixels"}
