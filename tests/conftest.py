"""Shared fixtures: a tiny synthetic survey and a real snakemake runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from galcat.config import deep_merge

# The fault suite's `reliability` fixture and the docs/reliability.md writer.
pytest_plugins = ("tests.faults.recorder",)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: A survey small enough for a test, big enough for three shards.
TINY = {
    "synthetic": {"n_objects": 12, "cutout_size": 64},
    "sharding": {"objects_per_shard": 4},
    "dask": {"objects_per_task": 2},
    # a few injections: drawn and trained on like the default's 1000, in a second
    "models": {"sersic": {"injections": 16}},
}


deep_update = deep_merge  # the package's own merge, under the tests' name

#: The networks of the default config, in its order.
DEFAULT_MODELS = tuple(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["models"])


def only_models(*names: str) -> dict:
    """A config layer that enables the default config's networks ``names`` alone."""
    return {"models": {model: {"enabled": False} for model in DEFAULT_MODELS
                       if model not in names}}


#: Rules whose jobs take 2 threads (a Dask pool of two workers). The tests' shards
#: hold four objects: there a pool costs more to start than it saves, and a 2-thread
#: job holds both cores of a CI machine, so the DAG runs one job at a time. With one
#: thread each, two jobs run side by side and a shard runs serially in its job: the
#: tiny DAG takes 120 s instead of 195. The pools have their own tests
#: (test_parallel, test_stages, test_segment, test_morphology), and the byte-identical
#: rerun in test_workflow runs with the rules' own threads against `tiny_run`.
MULTI_THREAD_RULES = ("detect", "fetch_cutouts", "segment", "measure", "train", "evaluate")
ONE_THREAD_PER_JOB = ("--set-threads", *(f"{rule}=1" for rule in MULTI_THREAD_RULES))


def snakemake(workdir: Path, config: dict | None, *args: str, check: bool = True,
              one_thread_per_job: bool = True):
    """Run the real workflow in ``workdir`` with ``config`` layered on the default.

    ``one_thread_per_job`` (default) gives every job one thread (`ONE_THREAD_PER_JOB`);
    False keeps the threads the rules declare.
    """
    threads = ONE_THREAD_PER_JOB if one_thread_per_job else ()
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(workdir), *threads, "--cores", "2"]
    if config is not None:
        path = workdir / "test_config.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(path)]
    cmd += list(args)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole DAG, run once for real on the tiny config; its working directory."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, TINY)
    return workdir


@pytest.fixture
def tiny_config() -> dict:
    from galcat.config import load_config

    return load_config(overrides=TINY)


def jobs_in(output: str) -> set[tuple[str, str | None]]:
    """(rule, shard) of every job a snakemake run or dry run lists."""
    import re

    jobs = set()
    rule, shard = None, None
    for line in output.splitlines():
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", line)
        if head:
            if rule is not None:
                jobs.add((rule, shard))
            rule, shard = head.group(1), None
            continue
        if rule is not None:
            wc = re.match(r"^\s+wildcards:.*\bshard=(s\d+)", line)
            if wc:
                shard = wc.group(1)
    if rule is not None:
        jobs.add((rule, shard))
    return jobs


def rule_graph(workdir: Path, config: dict) -> dict[str, set[str]]:
    """Each rule's direct downstream rules, from ``snakemake --rulegraph``."""
    import re

    proc = snakemake(workdir, config, "--rulegraph", "--forceall")
    names, edges = {}, []
    for line in proc.stdout.splitlines():
        node = re.match(r'^\s*(\d+)\[label = "(\w+)"', line)
        if node:
            names[node.group(1)] = node.group(2)
        edge = re.match(r"^\s*(\d+) -> (\d+)", line)
        if edge:
            edges.append(edge.groups())
    graph = {name: set() for name in names.values()}
    for a, b in edges:
        graph[names[a]].add(names[b])
    return graph


def pytest_collection_modifyitems(session, config, items):
    """The cluster tests first: the rest of the suite then finds SLURM's controller up.

    Snakemake loads its SLURM executor plugin at every start, and the plugin asks
    ``scontrol show config`` for a setting. Where SLURM is installed but its
    controller is not running, that call waits 9 s before it fails: 9 s added to
    every snakemake run and dry run. The cluster tests' session fixture starts the
    controller and keeps it up to the end of the session.
    """
    items.sort(key=lambda item: not item.nodeid.startswith("tests/cluster/"))
