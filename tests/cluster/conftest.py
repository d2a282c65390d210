"""A real single-node SLURM for the cluster tests.

The session fixture ``slurm`` starts SLURM with ``slurm_up.sh`` (it installs the
Debian packages if they are missing, so it needs root, as in CI) unless a usable
SLURM is already up, and stops with ``slurm_down.sh`` exactly what it started.
The tests are never skipped for a missing SLURM: they start one, or fail saying why.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.cluster import local_slurm
from tests.cluster.local_slurm import SLURM_UP


@pytest.fixture(scope="session")
def slurm():
    """Yield once SLURM runs with partitions ``cpu`` and ``gpu`` on node ``localhost``."""
    started = False
    if not local_slurm.slurm_usable():
        if not local_slurm.can_start():
            pytest.fail(
                "the cluster tests need SLURM: run them as root (they start it with "
                f"{SLURM_UP}), or start it yourself first with `sudo {SLURM_UP}`"
            )
        try:
            print(f"\n{local_slurm.start()}")
        except local_slurm.SlurmStartError as err:
            pytest.fail(str(err))
        started = True
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
            local_slurm.stop()
