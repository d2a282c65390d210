"""dask.scheduler: slurm spreads one shard's objects over dask-jobqueue workers
that are themselves SLURM jobs, and gives the same result as a serial run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from galcat.parallel import map_blocks_of_objects

pytestmark = pytest.mark.slow


def square_block(block: slice) -> list[int]:
    import os

    return [(i * i, os.environ.get("SLURM_JOB_ID", "")) for i in range(block.start, block.stop)]


def test_blocks_run_on_slurm_workers(slurm, caplog, tmp_path, monkeypatch):
    # the workers start in the submit directory: the repository, so that they can
    # import this test module (and its square_block) by name
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    caplog.set_level("INFO", logger="galcat.progress")
    options = {"jobs": 1, "cores": 1, "memory": "400MB", "walltime": "00:05:00",
               "queue": "cpu", "account": "", "worker_wait_s": 120,
               "log_directory": str(tmp_path / "logs" / "dask-slurm")}
    result = map_blocks_of_objects(square_block, 10, objects_per_task=3, scheduler="slurm",
                                   slurm_cluster=options, label="slurm test")
    flat = [value for block in result for value in block]
    assert [v for v, _ in flat] == [i * i for i in range(10)]
    job_ids = {job for _, job in flat}
    assert len(job_ids) == 1 and job_ids.pop().isdigit(), "workers were not SLURM jobs"
    assert "slurm test: 10/10 objects" in caplog.text
    assert "#SBATCH -p cpu" in caplog.text
    assert list((tmp_path / "logs" / "dask-slurm").glob("*.out")), "no worker job log"
    # the worker job is cancelled when the cluster closes (SLURM takes a moment)
    deadline = time.time() + 60
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True)
        if "dask-worker" not in queue.stdout:
            break
        time.sleep(1)
    assert "dask-worker" not in queue.stdout, queue.stdout


def test_no_worker_is_a_clear_error(slurm, tmp_path):
    options = {"jobs": 1, "cores": 1, "memory": "400MB", "walltime": "00:05:00",
               "queue": "no_such_partition", "worker_wait_s": 5,
               "log_directory": str(tmp_path / "logs")}
    with pytest.raises(RuntimeError, match="SLURMCluster failed|no Dask worker joined"):
        map_blocks_of_objects(square_block, 4, scheduler="slurm", slurm_cluster=options)
