"""Nightly regeneration: new objects become new shards, finished shards are
untouched, each night writes a dated release, and a failed night leaves the
previous release as 'latest'."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from galcat.analysis import FIGURES
from galcat.config import load_config, trained_models
from galcat.release import sha256_file
from tests.conftest import BIN, ONE_THREAD_PER_JOB, ROOT, TINY, deep_update, jobs_in, only_models

pytestmark = pytest.mark.slow
OUT = "results/synthetic"
#: the analyses read the catalogue, so they follow it every night
ANALYSES = {(name, None) for name in FIGURES}
#: The nights train one network, the cheapest: every model's train, predict and
#: evaluate jobs follow a night's growth alike (the tiny run trains all six, and
#: test_workflow_models covers each), and the five others would add ~100 s per night.
NIGHT = deep_update(TINY, only_models("r50"))


NIGHTLY = ROOT / "workflow" / "scripts" / "nightly.sh"


def checksums(directory):
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())}


def night_command(work, config: dict, name: str) -> list[str]:
    import yaml

    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return [str(NIGHTLY), "--directory", str(work), *ONE_THREAD_PER_JOB, "--configfile", str(path)]


def night_env(date: str) -> dict:
    return {**os.environ, "GALCAT_RELEASE": date,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run_night(work, config: dict, date: str) -> set:
    proc = subprocess.run(night_command(work, config, date), capture_output=True, text=True,
                          env=night_env(date))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return jobs_in(proc.stderr + proc.stdout)


@pytest.fixture(scope="module")
def nights(tiny_run, tmp_path_factory):
    """A copy of the finished tiny run, released on night 1, grown on night 2."""
    work = tmp_path_factory.mktemp("nightly") / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    night1 = run_night(work, NIGHT, "2026-11-20")
    first = checksums(work / OUT / "releases" / "2026-11-20")
    grown = deep_update(NIGHT, {"synthetic": {"n_objects": 16}})
    night2 = run_night(work, grown, "2026-11-21")
    return work, night1, night2, first, grown


def test_night_without_new_objects_runs_no_shard_job(nights):
    _, night1, _, _, _ = nights
    assert night1 == {("query_catalog", None), ("catalogue", None), ("report", None),
                      ("release", None), ("all", None), *ANALYSES}


def test_growth_runs_only_new_shards_and_aggregations(nights):
    """The new shard is staged and measured, the old ones are not; the networks are
    aggregations: they retrain on the grown survey (new labelled objects), so every
    shard's predictions are made again by the new model."""
    _, _, night2, _, grown = nights
    models = trained_models(load_config(overrides=grown))
    assert models == ["r50"]  # the nights train a network: this test covers it
    assert night2 == {
        ("query_catalog", None),
        ("fetch_cutouts", "s000003"),
        ("segment", "s000003"),
        ("measure", "s000003"),
        ("train", None),
        *{("predict", f"s{k:06d}") for k in range(4)},
        ("evaluate", None),
        *ANALYSES,
        ("catalogue", None),
        ("report", None),
        ("release", None),
        ("all", None),
    }


def test_two_dated_releases_first_unchanged(nights):
    work, _, _, first, _ = nights
    releases = work / OUT / "releases"
    assert checksums(releases / "2026-11-20") == first
    assert os.readlink(releases / "latest") == "2026-11-21"
    manifest = json.loads((releases / "2026-11-21" / "manifest.json").read_text())
    assert manifest["n_objects"] == 16
    assert manifest["changes"]["previous_release"] == "2026-11-20"
    assert manifest["changes"]["objects_added"] == 4
    # the networks retrained on the grown survey: the 12 earlier objects' predictions
    # (their nn_* columns) moved, nothing else of theirs did
    assert manifest["changes"]["objects_changed"] == 12
    for name, digest in manifest["sha256"].items():
        assert sha256_file(releases / "2026-11-21" / name) == digest


def test_killed_night_keeps_previous_latest(nights):
    work, _, _, _, grown = nights
    bigger = deep_update(grown, {"synthetic": {"n_objects": 20}})
    proc = subprocess.Popen(
        night_command(work, bigger, "night3"), env=night_env("2026-11-22"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    started = work / OUT / "logs" / "segment" / "s000004.log"
    deadline = time.time() + 180
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    releases = work / OUT / "releases"
    assert started.exists(), "the night was killed before it reached segment"
    assert os.readlink(releases / "latest") == "2026-11-21"
    assert not (releases / "2026-11-22").exists()
    assert not (releases / "2026-11-22.manifest.json").exists()
    # the next night clears the killed night's lock, picks up where it stopped, completes
    ran = run_night(work, bigger, "2026-11-22")
    assert ("fetch_cutouts", "s000000") not in ran
    assert os.readlink(releases / "latest") == "2026-11-22"
    manifest = json.loads((releases / "2026-11-22" / "manifest.json").read_text())
    assert manifest["n_objects"] == 20 and manifest["changes"]["previous_release"] == "2026-11-21"


def test_night_refuses_while_a_manual_run_is_going(nights, reliability):
    """Nothing runs twice at once: the night sees the manual run, runs no job, and says so.

    The manual run remeasures every shard and rebuilds the catalogue (its target): it
    holds the directory's lock from its start to its end, which is all the night can
    see; the evaluations, analyses and report after the catalogue would only add time."""
    work, _, _, _, grown = nights
    manual_cfg = work / "manual.yaml"
    manual_cfg.write_text(__import__("yaml").safe_dump(grown))
    manual = subprocess.Popen(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--cores", "1",
         "--directory", str(work), "--configfile", str(manual_cfg), "--forcerun", "measure",
         "--", f"{OUT}/catalogue.parquet"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    locks = work / ".snakemake" / "locks"
    deadline = time.time() + 120
    while not (locks.exists() and any(locks.iterdir())) and time.time() < deadline:
        time.sleep(0.2)
    assert manual.poll() is None, "the manual run ended before the night started"
    night = subprocess.run(night_command(work, grown, "overlap"), capture_output=True,
                           text=True, env={**night_env("2026-11-23"),
                                           "GALCAT_NIGHTLY_WAIT_S": "0"})
    out, _ = manual.communicate(timeout=600)
    assert night.returncode == 75, night.stderr[-2000:]
    assert "a snakemake run is going" in night.stderr
    assert jobs_in(night.stdout + night.stderr) == set()
    assert manual.returncode == 0, out[-3000:]
    assert {rule for rule, _ in jobs_in(out)} >= {"measure", "catalogue"}
    assert not (work / OUT / "releases" / "2026-11-23").exists()
    reliability("manual_and_nightly", "the night saw the manual run, ran no job and "
                "refused (exit 75) with a message; the manual run finished")


def test_second_night_refuses_while_the_first_holds_the_lock(nights, reliability):
    work, _, _, _, grown = nights
    import fcntl

    with open(work / "results" / ".nightly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        night = subprocess.run(night_command(work, grown, "second"), capture_output=True,
                               text=True, env=night_env("2026-11-24"))
    assert night.returncode == 75
    assert "another night holds" in night.stderr
    assert jobs_in(night.stdout + night.stderr) == set()
    reliability("nightly_and_nightly", "the second night found the lock held, ran no job "
                "and refused (exit 75) with a message")
