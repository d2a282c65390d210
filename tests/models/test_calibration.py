"""The std of a regression output is calibrated on the validation split after training:
68.27% of the validation truths lie within one (calibrated) std."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from galcat.models.predict import load_model
from galcat.models.train import COVERAGE_68, train_model
from galcat.store import CutoutReader
from tests.models.conftest import tiny_settings


def _validation_ratios(model_file, survey) -> np.ndarray:
    """|truth - mean| / std in the fitting space, for the validation objects."""
    model = load_model(model_file)
    splits = pd.read_parquet(model_file.parent / "splits.parquet")
    table = pd.read_parquet(survey["objects"]).set_index("object_id")
    ratios = []
    for path in survey["cutouts"]:
        reader = CutoutReader(path)
        rows = np.flatnonzero(np.isin(reader.object_id, splits.loc[
            splits["split"] == "validation", "object_id"]))
        x = torch.from_numpy(reader.read("image", slice(0, reader.n_objects))[rows]
                             .astype(np.float32))
        with torch.no_grad():
            out = model.net(x)
            mean, std = model.net.to_fit_space(out["mean"], out["std"])
        truth = model.family.targets(table.loc[reader.object_id[rows]].reset_index())
        ratios.append(np.abs(truth - mean.numpy()) / std.numpy())
    return np.concatenate(ratios)


def test_the_std_covers_68_percent_of_the_validation_truths(tmp_path, tiny_survey, tiny_config):
    # half the tiny survey validates: enough objects (>= 20) to calibrate on
    training = {**tiny_config["training"], "validation_fraction": 0.5, "test_fraction": 0.1}
    model_file = train_model("r50", tiny_settings(tiny_config, "r50"), training=training,
                             objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                             out_dir=tmp_path / "r50", threads=1)
    (factor,) = json.loads((tmp_path / "r50" / "train.json").read_text())["std_calibration"]
    assert factor > 0 and factor != 1.0
    ratios = _validation_ratios(model_file, tiny_survey)[:, 0]
    assert len(ratios) >= 20
    assert abs(np.mean(ratios <= 1.0) - COVERAGE_68) <= 1.5 / len(ratios)
    # a model saved before the calibration existed loads with its std as it was
    payload = torch.load(model_file, weights_only=True)
    del payload["state_dict"]["std_calibration"]
    torch.save(payload, tmp_path / "old.pt")
    (tmp_path / "old.pt").rename(model_file)
    np.testing.assert_allclose(_validation_ratios(model_file, tiny_survey)[:, 0],
                               ratios * factor, rtol=1e-5)


def test_vote_fractions_are_not_calibrated(tmp_path, tiny_survey, tiny_config):
    """A vote fraction's residual holds the volunteers' own noise: no factor."""
    train_model("gz2", tiny_settings(tiny_config, "gz2"), training=tiny_config["training"],
                objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                out_dir=tmp_path, threads=1)
    assert json.loads((tmp_path / "train.json").read_text())["std_calibration"] is None
