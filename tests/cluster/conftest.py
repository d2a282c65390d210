"""A real single-node SLURM for the cluster tests.

The session fixture ``slurm`` starts SLURM with ``slurm_up.sh`` (it installs the
Debian packages if they are missing, so it needs root, as in CI) unless a usable
SLURM is already up, and stops with ``slurm_down.sh`` exactly what it started.
The tests are never skipped for a missing SLURM: they start one, or fail saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SLURM_UP = HERE / "slurm_up.sh"
SLURM_DOWN = HERE / "slurm_down.sh"


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


@pytest.fixture(scope="session")
def slurm():
    """Yield once SLURM runs with partitions ``cpu`` and ``gpu`` on node ``localhost``."""
    started = False
    if not slurm_usable():
        if os.geteuid() != 0:
            pytest.fail(
                "the cluster tests need SLURM: run them as root (they start it with "
                f"{SLURM_UP}), or start it yourself first with `sudo {SLURM_UP}`"
            )
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=900)
        started = True
        if proc.returncode != 0:
            subprocess.run(["bash", str(SLURM_DOWN)], capture_output=True, timeout=120)
            pytest.fail(f"{SLURM_UP} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        print(f"\nslurm_up.sh took {time.monotonic() - t0:.1f} s\n{proc.stderr}")
    partitions = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    missing = {"cpu*", "gpu"} - set(partitions)
    if missing:
        pytest.fail(f"SLURM is up but lacks partitions {sorted(missing)}: {partitions}")
    try:
        yield
    finally:
        if started:
            subprocess.run(["bash", str(SLURM_DOWN)], capture_output=True, timeout=120)
