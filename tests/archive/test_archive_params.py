"""Archive settings reach the rules that use them, and only those.

The ``archive`` section (time-outs, retries, what to do off the image) shapes what
query_catalog and fetch_cutouts stage, so an edit of it reruns them (and what
depends on their outputs); an edited comment reruns nothing; and, as for the
synthetic survey (tests/test_params.py), no job reads a value its params lack.
"""

from __future__ import annotations

import pytest
import yaml

from tests.archive.conftest import deep_update
from tests.conftest import jobs_in, snakemake
from tests.test_params import default_reads, shell_commands

pytestmark = pytest.mark.slow


@pytest.fixture
def sdss_run(make_config, tmp_path):
    config = make_config("sdss")
    snakemake(tmp_path, config)
    return tmp_path, config


def jobs_run(workdir, config_text: str, *args: str) -> set[tuple[str, str | None]]:
    path = workdir / "edited.yaml"
    path.write_text(config_text)
    proc = snakemake(workdir, None, *args, "--configfile", str(path))
    return jobs_in(proc.stdout + proc.stderr)


def test_archive_edits_rerun_query_and_fetch_and_comments_nothing(sdss_run, monkeypatch):
    workdir, config = sdss_run
    text = yaml.safe_dump(config)
    assert jobs_run(workdir, "# a comment\n" + text, "-n") == set()

    # Run for real: the fetch jobs hang below the plan_shards checkpoint, and a dry
    # run cannot plan past a checkpoint that has to run again.
    edited = yaml.safe_dump(deep_update(config, {"archive": {"timeout_s": 2.5}}))
    jobs = jobs_run(workdir, edited)
    shards = (workdir / "results" / "sdss" / "shards.txt").read_text().split()
    assert ("query_catalog", None) in jobs
    assert {s for rule, s in jobs if rule == "fetch_cutouts"} == set(shards)

    # no job of the archive DAG reads a value its params lack
    monkeypatch.chdir(workdir)
    seen = set()
    # (forced below the checkpoint: a dry run cannot plan past one that is forced)
    commands = shell_commands(workdir, yaml.safe_load(edited), "query_catalog")
    commands += shell_commands(workdir, yaml.safe_load(edited), "fetch_cutouts")
    for rule, argv in commands:
        if rule not in seen and rule in {"query_catalog", "fetch_cutouts"}:
            seen.add(rule)
            assert default_reads(argv) == [], rule
    assert seen == {"query_catalog", "fetch_cutouts"}
