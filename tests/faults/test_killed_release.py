"""A release killed at any point leaves ``latest`` on a complete release.

The release is built in a subprocess that dies (``os._exit``, as SIGKILL: no
clean-up runs) at its k-th file-system step, for every k until it finishes;
after each death every name a reader uses must lead to a complete release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from galcat.release import sha256_file

pytestmark = pytest.mark.slow

KILL_AT_STEP = r"""
import os, pathlib, shutil, sys
step, limit = [0], int(sys.argv[1])
def dies(fn):
    def at_step(*args, **kwargs):
        step[0] += 1
        if step[0] == limit:
            os._exit(137)
        return fn(*args, **kwargs)
    return at_step
os.replace, os.symlink, shutil.copy2 = dies(os.replace), dies(os.symlink), dies(shutil.copy2)
pathlib.Path.write_text = dies(pathlib.Path.write_text)
from galcat.release import make_release
releases, date, *files = sys.argv[2:]
make_release(releases, date, files, catalogue=files[0])
"""


def catalogue(path: Path, n: int) -> Path:
    pd.DataFrame({"object_id": range(1, n + 1), "shard": "s000000"}).to_parquet(path)
    return path


def complete(release: Path) -> bool:
    manifest = json.loads((release / "manifest.json").read_text())
    return all(sha256_file(release / name) == digest
               for name, digest in manifest["sha256"].items())


def release_in_subprocess(kill_at: int, releases: Path, date: str, *files: Path) -> int:
    return subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(kill_at), str(releases),
                           date, *map(str, files)], capture_output=True).returncode


@pytest.mark.parametrize("date", ["2026-11-20", "2026-11-21"], ids=["rebuild", "next night"])
def test_a_release_killed_at_any_step_leaves_latest_complete(tmp_path, date, reliability):
    releases = tmp_path / "releases"
    first = catalogue(tmp_path / "catalogue.parquet", 10)
    assert release_in_subprocess(0, releases, "2026-11-20", first) == 0
    (tmp_path / "new").mkdir()
    second = catalogue(tmp_path / "new" / "catalogue.parquet", 12)
    report = tmp_path / "new" / "report.html"
    report.write_text("<html>night two</html>")

    steps = 0
    for kill_at in range(1, 100):
        code = release_in_subprocess(kill_at, releases, date, second, report)
        latest = releases / "latest"
        assert complete(latest), f"latest incomplete after a kill at step {kill_at}"
        assert complete(releases / "2026-11-20"), f"a kill at step {kill_at} broke 2026-11-20"
        if code == 0:
            break
        assert code == 137
        steps = kill_at
    else:
        pytest.fail("the release never finished")
    assert steps >= 6, "too few steps were killed to mean anything"
    assert os.readlink(releases / "latest") == date
    manifest = json.loads((releases / date / "manifest.json").read_text())
    assert manifest["n_objects"] == 12
    assert json.loads((releases / f"{date}.manifest.json").read_text()) == manifest
    # what the killed attempts left behind is cleared once a release completes
    assert len(list((releases / ".store").iterdir())) == 2 if date != "2026-11-20" else 1
    if date == "2026-11-20":
        reliability("killed_release", f"a rebuild killed at each of {steps} steps: latest "
                    "and the release it replaces stayed complete; the next run finished it")
