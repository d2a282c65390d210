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

import numpy as np
import pandas as pd
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


def _job(name: str, survey, out: Path, changes: dict) -> list[str]:
    return [sys.executable, "-c", SCRIPT.format(changes=changes), name, str(survey["objects"]),
            str(out), *map(str, survey["cutouts"])]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _kill_after_a_checkpoint(name: str, survey, out: Path, changes: dict = CHANGES) -> int:
    """Start the job, SIGKILL it once ``last.ckpt`` exists; return that epoch."""
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(_job(name, survey, out, changes), env=_env(), stdout=subprocess.PIPE,
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
    return killed_at


def _resume_and_compare(name: str, survey, config, out: Path, straight_dir: Path,
                        killed_at: int, changes: dict = CHANGES) -> dict:
    """Rerun the killed job; assert it ends as an uninterrupted run; return its weights."""
    resumed = subprocess.run(_job(name, survey, out, changes), env=_env(), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr

    straight = train_model(name, tiny_settings(config, name, **changes),
                           training=config["training"], objects=survey["objects"],
                           cutouts=survey["cutouts"], out_dir=straight_dir, threads=1)
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(straight, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resuming at epoch {killed_at}: {different}"
    assert (out / "history.csv").read_text() == (straight_dir / "history.csv").read_text()
    return a


@pytest.mark.parametrize("name", ["r50", "sersic", "vae", "pixels"])
def test_a_killed_training_job_resumes_to_the_same_weights(tiny_survey, tiny_config, tmp_path,
                                                           name):
    out = tmp_path / "killed"
    killed_at = _kill_after_a_checkpoint(name, tiny_survey, out)
    _resume_and_compare(name, tiny_survey, tiny_config, out, tmp_path / "straight", killed_at)


def test_a_killed_job_resumes_its_moving_average_and_its_cosine_schedule(
        tiny_survey, tiny_config, tmp_path):
    # the average is checkpointed beside the live weights (Lightning keeps them under
    # current_model_state); a resumed job that restarted either would end elsewhere.
    # The cosine's position is the scheduler's state: restarted, the history's lr
    # column would start the curve again.
    changes = {**CHANGES, "ema_epochs": 1.5, "lr_schedule": "cosine"}
    out = tmp_path / "killed"
    killed_at = _kill_after_a_checkpoint("gz2", tiny_survey, out, changes)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["state_dict"].keys() == last["current_model_state"].keys()
    assert any(not torch.equal(v, last["current_model_state"][k])
               for k, v in last["state_dict"].items())
    _resume_and_compare("gz2", tiny_survey, tiny_config, out, tmp_path / "straight", killed_at,
                        changes)
    lr = pd.read_csv(out / "history.csv")["lr"].to_numpy()
    epochs, lr0 = changes["epochs"], tiny_settings(tiny_config, "gz2")["learning_rate"]
    np.testing.assert_allclose(lr, lr0 * (1 + np.cos(np.pi * np.arange(epochs) / epochs)) / 2)


def test_a_checkpoint_written_before_a_new_buffer_still_resumes(tiny_survey, tiny_config,
                                                                  tmp_path):
    # the checkpoints of galcat before f5136ec lack `std_calibration_tta`: a job killed
    # before an upgrade must resume after it, not stop on a missing key. The factors are
    # refitted after every training, so the checkpoint's are never used.
    out = tmp_path / "killed"
    killed_at = _kill_after_a_checkpoint("r50", tiny_survey, out)
    for path in (out / "checkpoints").glob("*.ckpt"):
        old = torch.load(path, weights_only=True)
        del old["state_dict"]["net.std_calibration_tta"]
        torch.save(old, path)
    weights = _resume_and_compare("r50", tiny_survey, tiny_config, out, tmp_path / "straight",
                                  killed_at)
    assert "std_calibration_tta" in weights
