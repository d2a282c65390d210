"""Per-object inputs beside the image (models.<name>.inputs: the redshift)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from galcat.models.data import object_inputs
from galcat.models.predict import load_model, predict_shard
from galcat.models.registry import build_net
from galcat.models.train import train_model
from tests.models.conftest import tiny_settings


def _train(root, survey, config, name, objects=None, **changes):
    settings = tiny_settings(config, "metallicity", **changes)
    return train_model(name, settings, training=config["training"],
                       objects=objects or survey["objects"], cutouts=survey["cutouts"],
                       out_dir=root / name, threads=1)


@pytest.fixture(scope="module")
def with_z(tmp_path_factory, tiny_survey, tiny_config):
    """The metallicity model of the tiny survey with the redshift as input."""
    return _train(tmp_path_factory.mktemp("inputs"), tiny_survey, tiny_config, "metallicity")


def _objects_with(tiny_survey, path, change) -> str:
    table = pd.read_parquet(tiny_survey["objects"])
    changed = change(table)  # in place, or a new table
    (table if changed is None else changed).to_parquet(path)
    return str(path)


def test_the_metallicity_model_takes_the_redshift_by_default(tiny_config):
    assert tiny_config["models"]["metallicity"]["inputs"] == ["z"]
    assert all(tiny_config["models"][m]["inputs"] == [] for m in ("r50", "gz2", "vae"))


def test_object_inputs_are_log_redshifts_and_name_what_is_missing():
    table = pd.DataFrame({"object_id": [1, 2, 3, 4, 5], "z": [0.1, 0.0, -1.0, np.nan, 1.0]})
    values = object_inputs(table, ["z"], source="t.parquet")
    assert values.shape == (5, 1) and values.dtype == np.float32
    np.testing.assert_allclose(values[[0, 4], 0], [-1.0, 0.0])
    assert np.isnan(values[1:4, 0]).all()  # z <= 0 or missing: unknown, never log(0)
    with pytest.raises(KeyError, match=r"unknown per-object input 'mass'; known: \['z'\]"):
        object_inputs(table, ["mass"], source="t.parquet")
    with pytest.raises(KeyError, match="reads column 'z', which the object table 'u.parquet' "
                                       "lacks"):
        object_inputs(table.drop(columns="z"), ["z"], source="u.parquet")


def test_the_inputs_are_standardised_on_the_training_split(with_z, tiny_survey):
    model = load_model(with_z)
    assert model.inputs == ["z"] and model.net.n_inputs == 1
    split = pd.read_parquet(with_z.parent / "splits.parquet")
    objects = pd.read_parquet(tiny_survey["objects"]).merge(split, on="object_id")
    logz = np.log10(objects.loc[objects["trained"], "z"].to_numpy())
    np.testing.assert_allclose(model.net.input_mean.numpy(), [logz.mean()], rtol=1e-5)
    np.testing.assert_allclose(model.net.input_std.numpy(), [logz.std()], rtol=1e-4)


def test_the_redshift_changes_the_prediction_and_an_unknown_one_gives_nan(
        with_z, tiny_survey, tmp_path):
    cut = tiny_survey["cutouts"][0]
    col = "nn_metallicity_metallicity"
    real = predict_shard(with_z, cut, tmp_path / "real.parquet", objects=tiny_survey["objects"])
    assert np.isfinite(real[col]).all()

    def farther(t):
        t["z"] *= 2

    moved = predict_shard(with_z, cut, tmp_path / "moved.parquet",
                          objects=_objects_with(tiny_survey, tmp_path / "far.parquet", farther))
    assert (moved[col] != real[col]).all()

    lost = int(real["object_id"].iloc[3])

    def unknown(t):
        t.loc[t["object_id"] == lost, "z"] = np.nan

    partial = predict_shard(with_z, cut, tmp_path / "partial.parquet",
                            objects=_objects_with(tiny_survey, tmp_path / "nan.parquet", unknown))
    row = partial["object_id"] == lost
    assert partial.loc[row, [col, f"{col}_err"]].isna().all(axis=None)
    # the other objects of the same forward block are untouched, bit for bit
    pd.testing.assert_frame_equal(partial.loc[~row], real.loc[~row], check_exact=True)


def test_predicting_needs_every_object_of_the_shard_in_the_table(with_z, tiny_survey, tmp_path):
    cut = tiny_survey["cutouts"][0]
    with pytest.raises(ValueError, match=r"model 'metallicity' takes the per-object inputs "
                                         r"\['z'\]: give predict_shard the object table"):
        predict_shard(with_z, cut, tmp_path / "p.parquet")
    short = _objects_with(tiny_survey, tmp_path / "short.parquet",
                          lambda t: t[t["object_id"] != 5])
    with pytest.raises(KeyError, match=r"lack 1 object\(s\) of .*s000000.zarr.* \(first: 5\)"):
        predict_shard(with_z, cut, tmp_path / "p.parquet", objects=short)
    assert not (tmp_path / "p.parquet").exists()


def test_objects_without_a_redshift_are_neither_trained_on_nor_scored(
        tmp_path, tiny_survey, tiny_config):
    table = pd.read_parquet(tiny_survey["objects"])
    blind = table["object_id"].to_numpy()[::8]  # 8 of 64 objects

    def no_z(t):
        t.loc[t["object_id"].isin(blind), "z"] = -1.0

    path = _train(tmp_path, tiny_survey, tiny_config, "blind",
                  objects=_objects_with(tiny_survey, tmp_path / "o.parquet", no_z), epochs=1)
    split = pd.read_parquet(path.parent / "splits.parquet")
    assert not split.loc[split["object_id"].isin(blind), "trained"].any()
    labels = json.loads((path.parent / "train.json").read_text())["labels"]
    assert labels["unknown_inputs"] == len(blind)
    n_trained = sum(labels["trained_on"].values())
    assert n_trained == len(table) - len(blind)


def test_networks_refuse_missing_inputs_and_pixel_families_refuse_any(tiny_config):
    settings = {**tiny_settings(tiny_config, "metallicity"), "inputs": ["z"]}
    net = build_net("metallicity", settings, n_bands=5, n_targets=1, size=32)
    with pytest.raises(ValueError, match=r"takes 1 per-object input\(s\) beside each image; "
                                         r"got None for 2 images"):
        net(torch.zeros(2, 5, 32, 32))
    assert net(torch.zeros(2, 5, 32, 32), torch.zeros(2, 1))["mean"].shape == (2, 1)
    pixels = {**tiny_settings(tiny_config, "pixels"), "inputs": ["z"]}
    with pytest.raises(ValueError, match="family 'pixels' predicts per pixel and takes no "
                                         r"per-object inputs; remove inputs \['z'\]"):
        build_net("pixels", pixels, n_bands=5, n_targets=1, size=32)
