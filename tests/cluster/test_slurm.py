"""profiles/slurm against a real SLURM: a CPU job lands on partition `cpu`, a GPU
job on partition `gpu` with gres/gpu:1.

The test profile is derived from profiles/slurm/config.yaml: its three site values
are set for the local test cluster (no account, partitions `cpu` and `gpu`), the
test's `gpu_step` gets the resources the profile gives `train`, `cpu_step` those it
gives `segment`, shrunk to fit one small node, and the status checks are made fast.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
SNAKEFILE = HERE / "workflow" / "Snakefile"

pytestmark = pytest.mark.slow

GALCAT_RULES = [
    "query_catalog",
    "fetch_cutouts",
    "segment",
    "measure",
    "train",
    "predict",
    "catalogue",
    "report",
]


def load_profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def derive_test_profile(dest: Path, logdir: Path) -> dict:
    """Write a profile for the local test cluster derived from profiles/slurm."""
    prof = load_profile()
    defaults = dict(prof["default-resources"])
    # the three site values
    # no accounts here; without slurm_account the plugin tries to guess one with
    # sacct, finds none and submits without -A (slurm-no-account is a no-op in 2.8.0)
    defaults.pop("slurm_account")
    defaults["slurm_partition"] = "cpu"
    # shrink to one small node, fast turnaround
    defaults.update(runtime=5, mem_mb=300)
    prof["default-resources"] = defaults

    train = dict(prof["set-resources"]["train"])
    train.update(slurm_partition="gpu", cpus_per_gpu=1, runtime=5, mem_mb=300)
    segment = dict(prof["set-resources"]["segment"])
    segment.update(runtime=5, mem_mb=300)
    prof["set-resources"] = {"gpu_step": train, "cpu_step": segment}
    # as many threads as segment gets, but leave the GPU job its one CPU so that
    # both jobs run at once (1 thread on a 2-CPU CI machine)
    cpu_threads = max(1, min(prof["set-threads"]["segment"], node_cpus() - 1))
    prof["set-threads"] = {"cpu_step": cpu_threads}

    prof.update(
        {
            "jobs": 2,
            "local-cores": 1,
            "latency-wait": 5,
            "retries": 0,
            # no slurmdbd here: sacct cannot answer, squeue can (MinJobAge=300)
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,
            "slurm-logdir": str(logdir),
            "slurm-keep-successful-logs": True,
        }
    )
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return prof


def node_cpus() -> int:
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-n", "localhost", "-o", "%c"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return int(out.stdout.split()[0])


def parse_kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z_]+=", line))


def scontrol_job(jobid: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "-d", jobid], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, f"scontrol show job {jobid}: {out.stderr}"
    return out.stdout


def field(record: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(name)}=(\S*)", record)
    return m.group(1) if m else None


def test_profile_site_values_and_gpu_keys():
    """The profile has what a site edits and what the GPU rules need."""
    prof = load_profile()
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] in {"sacct", "squeue"}
    defaults = prof["default-resources"]
    for key in ("slurm_account", "slurm_partition", "runtime", "mem_mb"):
        assert key in defaults, key
    # cpus_per_task in default-resources would beat cpus_per_gpu for GPU jobs
    assert "cpus_per_task" not in defaults
    res = prof["set-resources"]
    for rule in ("train", "predict"):
        assert res[rule]["gpu"] == 1
        assert res[rule]["cpus_per_gpu"] >= 1
        assert res[rule]["slurm_partition"] != defaults["slurm_partition"]
    assert res["train"]["slurm_partition"] == res["predict"]["slurm_partition"]
    for rule in ("segment", "measure"):
        assert prof["set-threads"][rule] > 1
        assert res[rule]["mem_mb"] > defaults["mem_mb"]


def test_profile_dry_run(slurm, tmp_path):
    """snakemake accepts every key of profiles/slurm; jobs get the resources it sets."""
    # (`slurm` only for speed: where SLURM is installed but slurmctld is down, the
    # plugin's `scontrol show config` at start-up retries for ~10 s)
    rules = "\n".join(
        f"rule {r}:\n    output: '{r}.txt'\n    shell: 'touch {{output}}'\n" for r in GALCAT_RULES
    )
    targets = ", ".join(f"'{r}.txt'" for r in GALCAT_RULES)
    (tmp_path / "Snakefile").write_text(
        f"localrules: all, catalogue, report\n\nrule all:\n    input: {targets}\n\n{rules}"
    )
    # -n caps threads at the local cores unless given more with --cores
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "64"]
    out = subprocess.run(
        cmd + ["--workflow-profile", str(PROFILE)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            jobs[m.group(1)] = block
    train = jobs["train"]
    assert "slurm_partition=your_gpu_partition" in train
    assert re.search(r"\bgpu=1\b", train) and "cpus_per_gpu=8" in train
    assert "threads: 8" in jobs["segment"]
    assert "slurm_partition=your_cpu_partition" in jobs["segment"]
    assert "slurm_account=your_account" in jobs["measure"]


@pytest.mark.timeout(240)
def test_gpu_and_cpu_jobs_on_real_slurm(slurm, tmp_path):
    profile_dir = tmp_path / "profile"
    logdir = tmp_path / "slurm_logs"
    prof = derive_test_profile(profile_dir, logdir)
    cpu_threads = prof["set-threads"]["cpu_step"]
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(SNAKEFILE),
        "--directory", str(workdir),
        "--workflow-profile", str(profile_dir),
        "--executor", "slurm",
        "--verbose",  # logs each "sbatch call: ..."
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=200)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-8000:]

    # the submit lines
    calls = {
        m.group(1): m.group(0)
        for m in re.finditer(r"sbatch call: sbatch .*?--comment rule_(\w+).*", log)
    }
    assert set(calls) == {"cpu_step", "gpu_step"}, log[-8000:]
    gpu_call = calls["gpu_step"].split("--wrap")[0]
    cpu_call = calls["cpu_step"].split("--wrap")[0]
    assert " -p gpu " in gpu_call and "--gpus=1" in gpu_call, gpu_call
    assert "--cpus-per-gpu=1" in gpu_call, gpu_call
    assert " -p cpu " in cpu_call and f"--cpus-per-task={cpu_threads}" in cpu_call, cpu_call
    assert "--gpus" not in cpu_call and "--gres" not in cpu_call, cpu_call
    assert " -A " not in gpu_call + cpu_call

    pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/"
    submitted = {rule: jobid for jobid, rule in re.findall(pattern, log)}

    # what the jobs saw, and what SLURM says it gave them
    cpu_env = parse_kv((workdir / "out" / "cpu_step.txt").read_text())
    gpu_text = (workdir / "out" / "gpu_step.txt").read_text()
    gpu_env = parse_kv(gpu_text)
    assert cpu_env["SLURM_JOB_ID"] == submitted["cpu_step"]
    assert gpu_env["SLURM_JOB_ID"] == submitted["gpu_step"]
    assert cpu_env["SLURM_JOB_PARTITION"] == "cpu"
    assert gpu_env["SLURM_JOB_PARTITION"] == "gpu"
    assert gpu_env["CUDA_VISIBLE_DEVICES"] == "0"

    gpu_job = scontrol_job(gpu_env["SLURM_JOB_ID"])
    cpu_job = scontrol_job(cpu_env["SLURM_JOB_ID"])
    assert field(gpu_job, "Partition") == "gpu"
    assert field(gpu_job, "JobState") == "COMPLETED"
    assert field(gpu_job, "TresPerJob") == "gres:gpu:1", gpu_job
    assert field(gpu_job, "JOB_GRES") == "gpu:1", gpu_job
    assert field(cpu_job, "Partition") == "cpu"
    assert field(cpu_job, "JobState") == "COMPLETED"
    assert field(cpu_job, "NumCPUs") == str(cpu_threads)
    assert "gpu" not in (field(cpu_job, "TresPerJob") or "")
    assert field(cpu_job, "JOB_GRES") in (None, "(null)")
    # the GPU job ran scontrol on itself, inside the allocation: GPU index 0
    assert "TresPerJob=gres:gpu:1" in gpu_text
    assert "GRES=gpu:1(IDX:0)" in gpu_text
