"""The galcat DAG itself on the real local SLURM, through --executor slurm and
a profile derived from profiles/slurm (site values replaced by the test cluster's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cluster.test_slurm import field, load_profile, scontrol_job
from tests.conftest import only_models

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
MODEL_RULES = ("train", "predict", "evaluate")


def galcat_test_profile(dest: Path, logdir: Path) -> dict:
    prof = load_profile()
    defaults = dict(prof["default-resources"])
    defaults.pop("slurm_account")
    defaults.update(slurm_partition="cpu", runtime=10, mem_mb=500)
    prof["default-resources"] = defaults
    prof["set-resources"] = {
        # torch alone takes ~0.5 GB: the model rules get more
        rule: {**res, "runtime": 10, "mem_mb": 2000 if rule in MODEL_RULES else 500}
        for rule, res in prof["set-resources"].items()
    }
    for res in prof["set-resources"].values():
        if "slurm_partition" in res:
            res["slurm_partition"] = "gpu"
        if "cpus_per_gpu" in res:  # the test node has the machine's cores, maybe 2
            res["cpus_per_gpu"] = 1
    prof["set-threads"] = {rule: 1 for rule in prof["set-threads"]}
    prof.update({
        "jobs": 2, "local-cores": 1, "latency-wait": 5, "retries": 0,
        "slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 1,
        "slurm-logdir": str(logdir), "slurm-keep-successful-logs": True,
    })
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return prof


def test_tiny_dag_completes_on_slurm(slurm, tmp_path):
    profile = tmp_path / "profile"
    galcat_test_profile(profile, tmp_path / "slurm_logs")
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = workdir / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "synthetic": {"n_objects": 4}, "sharding": {"objects_per_shard": 2},
        "dask": {"objects_per_task": 2},
        # one model is enough to see train on the GPU partition and predict after it
        "models": {"r50": {"epochs": 1}, **only_models("r50")["models"]},
    }))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(bin_dir / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--workflow-profile", str(profile),
           "--executor", "slurm", "--configfile", str(config), "--verbose"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-8000:]

    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", log)
    by_rule: dict[str, list[str]] = {}
    for jobid, rule in submitted:
        by_rule.setdefault(rule, []).append(jobid)
    # the per-shard rules and the model's went to SLURM, the light ones ran locally
    assert {r: len(j) for r, j in by_rule.items()} == {
        "fetch_cutouts": 2, "segment": 2, "measure": 2, "train": 1, "predict": 2, "evaluate": 1}
    # train asked for a GPU on the GPU partition; predict was submitted after it ended
    calls = {m.group(1): m.group(0).split("--wrap")[0]
             for m in re.finditer(r"sbatch call: sbatch .*?--comment rule_(\w+?)(?:_wildcards_\w+)?\s.*", log)}
    assert " -p gpu " in calls["train"] and "--gpus=1" in calls["train"], calls["train"]
    train_job = scontrol_job(by_rule["train"][0])
    assert field(train_job, "Partition") == "gpu"
    assert field(train_job, "TresPerJob") == "gres:gpu:1", train_job
    train_end = field(train_job, "EndTime")
    for jobid in by_rule["predict"]:
        assert field(scontrol_job(jobid), "SubmitTime") >= train_end
    for jobid in by_rule["measure"]:
        record = scontrol_job(jobid)
        assert field(record, "Partition") == "cpu"
        assert field(record, "JobState") == "COMPLETED"
    cat = pd.read_parquet(workdir / "results" / "synthetic" / "catalogue.parquet")
    assert cat["object_id"].tolist() == [1, 2, 3, 4]
    assert cat["r50"].notna().sum() >= 3
    assert cat["nn_r50_r50_mass"].notna().all()
