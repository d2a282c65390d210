"""Start and stop the single-node SLURM of the cluster tests (``slurm_up.sh``).

Used by the ``slurm`` session fixture and, when the suite runs on several pytest-xdist
workers, by the controlling process (`tests/conftest.py`), which brings SLURM up
before any worker starts and down after the last one ends: a worker's session end
would stop it under the other worker's snakemake runs, each of which then waits 9 s
for a controller that is gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLURM_UP = HERE / "slurm_up.sh"
SLURM_DOWN = HERE / "slurm_down.sh"


class SlurmStartError(RuntimeError):
    """``slurm_up.sh`` could not start SLURM; the message holds its output."""


def node_state() -> str | None:
    """State of node ``localhost`` as sinfo reports it, or None without an answer."""
    if shutil.which("sinfo") is None:
        return None
    # without a slurmctld, sinfo keeps retrying for ~10 s: don't ask then
    # (a zombie "slurmctld", a daemon's exited fork, does not count)
    ps = subprocess.run(["ps", "-eo", "stat=,comm="], capture_output=True, text=True)
    if not any(
        line.split()[1:] == ["slurmctld"] and not line.startswith("Z")
        for line in ps.stdout.splitlines()
    ):
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return None
    state = out.stdout.strip().splitlines()
    return state[0] if out.returncode == 0 and state else None


def slurm_usable() -> bool:
    return node_state() in {"idle", "mixed", "allocated", "completing"}


def can_start() -> bool:
    """``slurm_up.sh`` installs Debian packages and starts daemons: it needs root."""
    return os.geteuid() == 0


def start() -> str:
    """Run ``slurm_up.sh``; its timing and log. Raises `SlurmStartError` if it fails
    (after stopping whatever it started)."""
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        stop()
        raise SlurmStartError(
            f"{SLURM_UP} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return f"slurm_up.sh took {time.monotonic() - t0:.1f} s\n{proc.stderr}"


def stop() -> None:
    subprocess.run(["bash", str(SLURM_DOWN)], capture_output=True, timeout=120)
