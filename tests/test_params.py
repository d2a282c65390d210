"""Every config value a rule's code reads reaches it through the rule's params.

Snakemake reruns a job when its params change, so a value that the code reads
but the params do not carry (the code falls back on the schema default) would
be silently ignored and an edit of it would rerun nothing. The test takes each
job's shell command from a real ``snakemake --dry-run --printshellcmds`` and
runs it in-process under `galcat.config.record_default_reads`: any value read
from a schema default instead of from the command's ``--config-json`` fails it.
New rules are covered by this test without being named in it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest

from galcat import cli
from galcat.config import record_default_reads
from tests.conftest import TINY, snakemake

pytestmark = pytest.mark.slow

def shell_commands(workdir, config, *force: str) -> list[tuple[str, list[str]]]:
    """(rule, galcat argv) of every job of a forced dry run, in the printed order.

    ``force``: the rules to force (default: all of them).
    """
    force = ("--forcerun", *force) if force else ("--forceall",)
    proc = snakemake(workdir, config, "-n", "-p", *force)
    jobs, rule = [], None
    for line in proc.stdout.splitlines():
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", line)
        if head:
            rule = head.group(1)
        elif line.startswith("Shell command: galcat "):
            command = line.removeprefix("Shell command: ").split(" 2> ")[0]
            jobs.append((rule, shlex.split(command)[1:]))
    return jobs


def with_option(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag``'s value replaced (Dask runs in-process, so reads are seen)."""
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def default_reads(argv: list[str]) -> list[str]:
    if "--dask-json" in argv:
        dask = json.loads(argv[argv.index("--dask-json") + 1])
        argv = with_option(argv, "--dask-json", json.dumps({**dask, "scheduler": "synchronous"}))
    with record_default_reads() as reads:
        assert cli.main(argv) == 0
    return sorted(set(reads))


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """A copy of the finished tiny run: its jobs are rerun in place, so they need
    their inputs, and the shared run must stay untouched for the other tests."""
    workdir = tmp_path_factory.mktemp("params_coverage")
    shutil.copytree(tiny_run / "results", workdir / "results")
    return workdir


@pytest.fixture(scope="module")
def commands(run_copy):
    jobs = shell_commands(run_copy, TINY)
    assert {rule for rule, _ in jobs} >= {
        "query_catalog", "fetch_cutouts", "segment", "measure", "catalogue", "report",
    }
    return jobs


def first_job(commands, rule):
    return next(argv for name, argv in commands if name == rule)


def test_every_rule_reads_only_what_its_params_carry(run_copy, commands, monkeypatch):
    monkeypatch.chdir(run_copy)
    seen = set()
    for rule, argv in commands:
        if rule in seen:  # one job per rule: the shards of a rule run the same code
            continue
        seen.add(rule)
        assert default_reads(argv) == [], f"rule {rule} read values its params lack"


@pytest.mark.parametrize(
    ("rule", "section", "key"),
    [("measure", "measure", "half_mass_min_snr"), ("segment", "segment", "nsigma"),
     ("fetch_cutouts", "synthetic", "psf_fwhm_r")],
)
def test_a_key_dropped_from_the_params_is_caught(run_copy, commands, monkeypatch,
                                                 rule, section, key):
    """The check above can fail: the same command with one key removed from its params."""
    monkeypatch.chdir(run_copy)
    argv = first_job(commands, rule)
    params = json.loads(argv[argv.index("--config-json") + 1])
    del params[section][key]
    assert default_reads(with_option(argv, "--config-json", json.dumps(params))) == [
        f"{section}.{key}"
    ]


def test_execution_settings_stay_out_of_the_params(commands):
    """Dask settings reach the per-shard jobs beside the params, never inside them."""
    for rule, argv in commands:
        if "--config-json" in argv:
            params = json.loads(argv[argv.index("--config-json") + 1])
            assert "dask" not in params, rule
    assert "--dask-json" in first_job(commands, "measure")


@pytest.mark.parametrize("rule", ["segment", "measure"])
def test_the_detect_band_reaches_segment_and_measure(run_copy, commands, monkeypatch, rule):
    """The run's one detect_band is in both rules' params: without it, it is a default read."""
    monkeypatch.chdir(run_copy)
    argv = first_job(commands, rule)
    params = json.loads(argv[argv.index("--config-json") + 1])
    assert params["detect_band"] == "auto"
    del params["detect_band"]
    assert default_reads(with_option(argv, "--config-json", json.dumps(params))) == [
        "detect_band"]


def test_a_model_that_draws_injections_carries_the_synthetic_section(run_copy, commands,
                                                                     monkeypatch):
    """Injections are drawn with the synthetic survey's PSF and noise: with them, its
    section is a train param (an edit retrains), and the job reads nothing else."""
    from tests.conftest import deep_update

    monkeypatch.chdir(run_copy)

    def sersic_train(jobs):
        return next(argv for rule, argv in jobs
                    if rule == "train" and argv[argv.index("--model") + 1] == "sersic")

    def params(argv):
        return json.loads(argv[argv.index("--config-json") + 1])

    argv = sersic_train(commands)  # TINY draws a few injections
    assert params(argv)["synthetic"]["psf_fwhm_r"] == 1.3
    assert default_reads(argv) == []
    none = deep_update(TINY, {"models": {"sersic": {"injections": 0}}})
    assert "synthetic" not in params(sersic_train(shell_commands(run_copy, none, "train")))
