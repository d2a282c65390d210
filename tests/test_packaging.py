"""galcat works installed as a regular wheel, not only as an editable checkout.

The wheel must carry everything the package reads at run time (the config
schema, the Galaxy Zoo 2 tree), and nothing may be found through the
repository's layout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the built galcat wheel; the dependencies come from the
    test's own environment through a .pth file (its editable galcat is not a site dir
    there, so only the wheel's galcat can be imported)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp / "dist"), str(ROOT)],
        check=True, capture_output=True,
    )
    wheels = list((tmp / "dist").glob("galcat-*.whl"))
    assert len(wheels) == 1
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
         str(site), str(wheels[0])],
        check=True, capture_output=True,
    )
    return venv


def run_in(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(venv / "bin" / "python"), *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def test_the_installed_wheel_validates_configs_outside_the_repository(wheel_venv, tmp_path):
    where = run_in(wheel_venv, "-c", "import galcat; print(galcat.__file__, galcat.__version__)",
                   cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert str(wheel_venv) in path and str(ROOT) not in path
    assert version != "0+unknown"

    ok = run_in(wheel_venv, "-m", "galcat.cli", "validate-config",
                str(ROOT / "config" / "surveys" / "sdss.yaml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "config is valid" in ok.stdout

    (tmp_path / "bad.yaml").write_text("segment: {nsigma: -1}\n")
    bad = run_in(wheel_venv, "-m", "galcat.cli", "validate-config", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2
    assert "config key segment.nsigma" in bad.stderr and "Traceback" not in bad.stderr

    defaults = run_in(wheel_venv, "-m", "galcat.cli", "defaults", cwd=tmp_path)
    assert defaults.stdout == (ROOT / "config" / "config.yaml").read_text()
