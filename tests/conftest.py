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
    # a few injections: drawn and trained on like the default's 1000, in a second;
    # gz2 given measure's residual maps, so that the real DAG trains and predicts with them
    "models": {"sersic": {"injections": 16}, "gz2": {"residual_map": True}},
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


#: Session fixtures that take tens of seconds to build, in the order their tests start.
#: `make test` runs the suite on two pytest-xdist workers; the tests that use one of
#: these form one group, run by one worker, so each is built once (a test using
#: several goes with the first). The cluster tests share one SLURM node, so they run
#: one at a time. Every other test is grouped with its module, whose module-scoped
#: fixtures are then built once too.
SHARED_FIXTURES = ("slurm", "tiny_run", "labelled_archive", "tiny_survey")
#: Set where the controlling process started SLURM, which it then stops.
_SLURM_STARTED = pytest.StashKey[bool]()
_UNGROUPED = pytest.StashKey[list]()


def xdist_group(item) -> tuple[int, str]:
    """(rank, name) of the worker group of ``item``: the shared fixtures' first."""
    for rank, name in enumerate(SHARED_FIXTURES):
        if name in item.fixturenames:
            return rank, name
    return len(SHARED_FIXTURES), Path(item.nodeid.split("::")[0]).stem


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(session, config, items):
    """The cluster tests first: the rest of the suite then finds SLURM's controller up.

    Snakemake loads its SLURM executor plugin at every start, and the plugin asks
    ``scontrol show config`` for a setting. Where SLURM is installed but its
    controller is not running, that call waits 9 s before it fails: 9 s added to
    every snakemake run and dry run. The cluster tests' session fixture starts the
    controller and keeps it up to the end of the session (on several workers, the
    controlling process does: `pytest_configure`).

    On an xdist worker, the groups of `SHARED_FIXTURES` come first: they are the
    longest, and a long group handed out last leaves the other worker idle.
    """
    items.sort(key=lambda item: not item.nodeid.startswith("tests/cluster/"))
    if not hasattr(config, "workerinput"):
        return
    groups = {item.nodeid: xdist_group(item) for item in items}
    items.sort(key=lambda item: groups[item.nodeid][0])
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid][1]))


def pytest_collection_finish(session):
    """Note the tests that xdist's groups did not reach (see `xdist_groups_hold`)."""
    config = session.config
    if hasattr(config, "workerinput") and config.getvalue("loadgroup"):
        config.stash[_UNGROUPED] = [item.nodeid for item in session.items if "@" not in item.nodeid]


@pytest.fixture(scope="session", autouse=True)
def xdist_groups_hold(request):
    """Every test errors, saying why, where xdist's groups did not reach the node ids.

    pytest-xdist 3.8 names a test's group by rewriting ``item._nodeid``, which pytest
    9.2 no longer reads (pytest-xdist#1386): the groups are then silently dropped and
    the session fixtures above are built on both workers (constraints.txt pins pytest
    9.1.1). A worker that raised at collection would crash without the reason."""
    ungrouped = request.config.stash.get(_UNGROUPED, [])
    if ungrouped:
        pytest.fail(f"--dist loadgroup: {len(ungrouped)} tests lost their xdist group, e.g. "
                    f"{ungrouped[0]} (pytest-xdist#1386 with pytest >= 9.2: keep pytest < 9.2)")


def _selects_cluster_tests(config) -> bool:
    cluster = ROOT / "tests" / "cluster"
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == cluster or cluster in path.parents or path in cluster.parents:
            return True
    return False


def _torchvision_importable() -> None:
    """Let the controlling process import Lightning: xdist imports the module of each
    warning category a worker reports, and Lightning's import fails beside the CPU torch
    unless galcat's shim ran first (`galcat.models._torch_compat`)."""
    try:
        from galcat.models._torch_compat import import_torchvision
    except ImportError:  # installed without the `ml` extra: no Lightning warnings either
        return
    import_torchvision()


def pytest_configure(config):
    """On several xdist workers, the controlling process can read Lightning's warnings,
    and brings SLURM up before any worker starts.

    A worker's ``slurm`` fixture ends with that worker's session, while the other
    worker may still run snakemake for minutes; so the controlling process, which
    outlives both, starts SLURM (where the cluster tests are selected and it may) and
    stops it in `pytest_unconfigure`. The workers' fixtures then find it up.
    """
    if not getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        return
    _torchvision_importable()
    if _selects_cluster_tests(config):
        from tests.cluster import local_slurm

        if not local_slurm.slurm_usable() and local_slurm.can_start():
            try:
                print(local_slurm.start())
                config.stash[_SLURM_STARTED] = True
            except local_slurm.SlurmStartError as err:
                # the workers' fixture tries again and fails the cluster tests with this
                print(err)


def pytest_unconfigure(config):
    if config.stash.get(_SLURM_STARTED, False):
        from tests.cluster import local_slurm

        local_slurm.stop()

