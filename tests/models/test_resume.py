"""A training job killed after an epoch resumes and ends with the weights of an
uninterrupted run with the same seed (a real subprocess, killed with SIGKILL), for a
supervised family and for the encoder-decoder, the VAE (random latent samples) and
the per-pixel U-Net."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from galcat.models.train import train_model
from tests.models.conftest import tiny_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# long enough epochs (many small batches) that the kill lands mid-training
CHANGES = {"epochs": 6, "batch_size": 4, "width": 8, "early_stopping_patience": 100}

SCRIPT = """
import sys
from galcat.config import load_config
from galcat.models.train import train_model
from tests.models.conftest import SURVEY, tiny_settings
config = load_config(overrides=SURVEY)
name, objects, out, *cutouts = sys.argv[1:]
train_model(name, tiny_settings(config, name, **{changes!r}), training=config["training"],
            objects=objects, cutouts=cutouts, out_dir=out, threads=1)
"""


def _job(name: str, survey, out: Path) -> list[str]:
    return [sys.executable, "-c", SCRIPT.format(changes=CHANGES), name, str(survey["objects"]),
            str(out), *map(str, survey["cutouts"])]


@pytest.mark.parametrize("name", ["r50", "sersic", "vae", "pixels"])
def test_a_killed_training_job_resumes_to_the_same_weights(tiny_survey, tiny_config, tmp_path,
                                                           name):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(_job(name, tiny_survey, out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    log = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the job ended before the kill:\n{log[-3000:]}"
    assert last.exists() and not (out / "model.pt").exists()
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < CHANGES["epochs"] - 1

    resumed = subprocess.run(_job(name, tiny_survey, out), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    straight = train_model(name, tiny_settings(tiny_config, name, **CHANGES),
                           training=tiny_config["training"], objects=tiny_survey["objects"],
                           cutouts=tiny_survey["cutouts"], out_dir=tmp_path / "straight",
                           threads=1)
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(straight, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resuming at epoch {killed_at}: {different}"
    assert (out / "history.csv").read_text() == (tmp_path / "straight" / "history.csv").read_text()
