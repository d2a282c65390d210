"""Per-object inputs beside the image (models.<name>.inputs): the redshift from the
object table, a traditional radius from measure's features tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from galcat.config import MEASURED_MODEL_INPUTS, ConfigError, load_config
from galcat.models.data import MEASURED_INPUTS, join_measured, object_inputs
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


def test_the_default_inputs_are_the_redshift_and_the_measurements(tiny_config):
    models = tiny_config["models"]
    assert models["metallicity"]["inputs"] == ["z"]
    assert models["r50"]["inputs"] == ["r50_mass", "sn_per_pixel"]
    assert models["gz2"]["inputs"] == ["bulge_to_total", "bulge_q", "disc_q", "sersic_n",
                                       "sersic_q", "asymmetry", "concentration",
                                       "seg_n_sources", "bulge_colour", "disc_colour",
                                       "neighbour_flux_ratio", "neighbour_colour_offset",
                                       "neighbour_separation", "neighbour_size_ratio",
                                       "colour_g_r", "colour_r_i", "gini", "m20",
                                       "smoothness", "shape_asymmetry", "multimode",
                                       "intensity", "deviation", "ellipticity",
                                       "sn_per_pixel", "r50_psf_corrected",
                                       "residual_flux_fraction"]
    assert all(models[m]["inputs"] == [] for m in ("sersic", "vae", "pixels"))


def test_object_inputs_are_log_redshifts_and_name_what_is_missing():
    table = pd.DataFrame({"object_id": [1, 2, 3, 4, 5], "z": [0.1, 0.0, -1.0, np.nan, 1.0]})
    values = object_inputs(table, ["z"], source="t.parquet")
    assert values.shape == (5, 1) and values.dtype == np.float32
    np.testing.assert_allclose(values[[0, 4], 0], [-1.0, 0.0])
    assert np.isnan(values[1:4, 0]).all()  # z <= 0 or missing: unknown, never log(0)
    with pytest.raises(KeyError, match=r"unknown per-object input 'mass'; known: "
                                       r"\['asymmetry', .*, 'z'\]"):
        object_inputs(table, ["mass"], source="t.parquet")
    with pytest.raises(KeyError, match="reads column 'z', which the object table 'u.parquet' "
                                       "lacks"):
        object_inputs(table.drop(columns="z"), ["z"], source="u.parquet")


def test_colours_are_clipped_and_ratios_logged_so_no_outlier_sets_the_scaling():
    # a component with almost no g flux has a colour of tens of magnitudes; without a
    # neighbour the flux ratio is 0, which is unknown in log, never -inf
    table = pd.DataFrame({"disc_colour": [0.5, 21.9, -7.0, np.nan],
                          "neighbour_colour_offset": [0.1, -30.0, 3.0, np.nan],
                          "neighbour_flux_ratio": [0.1, 1.0, 0.0, np.nan]})
    values = object_inputs(table, ["disc_colour", "neighbour_colour_offset",
                                   "neighbour_flux_ratio"], source="f.parquet")
    np.testing.assert_allclose(values[:3, 0], [0.5, 3.0, -1.0])
    np.testing.assert_allclose(values[:3, 1], [0.1, -2.0, 2.0])
    np.testing.assert_allclose(values[:2, 2], [-1.0, 0.0])
    assert np.isnan(values[2:, 2]).all() and np.isnan(values[3, :2]).all()


def test_a_colour_input_is_the_difference_of_two_model_magnitudes_and_names_a_missing_band():
    table = pd.DataFrame({"mag_model_g": [17.6, 18.0, np.nan, 30.0],
                          "mag_model_r": [17.0, 17.8, 17.0, 17.0]})
    values = object_inputs(table, ["colour_g_r"], source="f.parquet")
    np.testing.assert_allclose(values[[0, 1, 3], 0], [0.6, 0.2, 3.0], rtol=1e-5)  # clipped
    assert np.isnan(values[2, 0])
    with pytest.raises(KeyError, match="'colour_r_i' reads column 'mag_model_i', which the "
                                       "features table"):
        object_inputs(table.assign(mag_model_r=17.0), ["colour_r_i"], source="f.parquet")


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


# ------------------------------------------------------------ measured inputs
def test_the_measured_inputs_are_those_the_schema_and_the_dag_know():
    assert tuple(MEASURED_INPUTS) == MEASURED_MODEL_INPUTS
    every = ["z", *MEASURED_MODEL_INPUTS]
    config = load_config(overrides={"models": {"r50": {"inputs": every}}})
    assert config["models"]["r50"]["inputs"] == every
    with pytest.raises(ConfigError, match="models.r50.inputs"):
        load_config(overrides={"models": {"r50": {"inputs": ["r50"]}}})


def test_join_measured_adds_the_features_column_by_object_id(tmp_path):
    features = tmp_path / "f.parquet"
    pd.DataFrame({"object_id": [3, 1], "r50_mass": [2.0, 0.5], "r50": [9.0, 9.0]}).to_parquet(
        features)
    table = pd.DataFrame({"object_id": [1, 2, 3], "z": [0.1, 0.1, 0.1]})
    joined = join_measured(table, [features], ["z", "r50_mass"])
    assert list(joined["object_id"]) == [1, 2, 3] and "r50" not in joined
    values = object_inputs(joined, ["r50_mass", "z"], source=str(features))
    np.testing.assert_allclose(values[[0, 2], 0], np.log10([0.5, 2.0]), rtol=1e-6)
    assert np.isnan(values[1, 0])  # not measured: unknown (the network imputes it)
    # a fraction or a count is seen as it is: 0 is a value, not an unknown
    shares = pd.DataFrame({"object_id": [1, 2, 3], "bulge_to_total": [0.0, 0.4, np.nan],
                           "asymmetry": [-0.02, 0.1, np.inf]})
    np.testing.assert_array_equal(
        object_inputs(shares, ["bulge_to_total", "asymmetry"], source="s"),
        np.array([[0.0, -0.02], [0.4, 0.1], [np.nan, np.nan]], np.float32))
    assert join_measured(table, None, ["z"]) is table  # no measured input: no features needed
    with pytest.raises(ValueError, match=r"inputs \['r50_mass'\] are read from measure's "
                                         "features tables; none was given"):
        join_measured(table, None, ["r50_mass"])
    with pytest.raises(KeyError, match=r"f.parquet' lacks the column\(s\) "
                                       r"\['r50_psf_corrected'\] .* rerun measure"):
        join_measured(table, [features], ["r50_psf_corrected"])
    # a colour's band the bulge + disc fit left out: say where bands are added
    with pytest.raises(KeyError, match=r"\['mag_model_g', 'mag_model_r'\] .* did not fit "
                                       r"the band\(s\) \['g', 'r'\]: add them to "
                                       r"measure.bulge_disc_extra_bands"):
        join_measured(table, [features], ["colour_g_r"])


#: Objects whose r50_mass the training of `with_r50_mass` sees as failed (NaN).
UNMEASURED = slice(None, None, 8)


@pytest.fixture(scope="module")
def with_r50_mass(tmp_path_factory, tiny_survey, tiny_measured, tiny_config):
    """The tiny r50 model given measure's half-mass radius beside the image; every 8th
    object's measurement failed."""
    root = tmp_path_factory.mktemp("measured")
    features = []
    for i, path in enumerate(tiny_measured["features"]):
        table = pd.read_parquet(path)
        table.loc[table.index[UNMEASURED], "r50_mass"] = np.nan
        table.to_parquet(root / f"f{i}.parquet")
        features.append(root / f"f{i}.parquet")
    settings = tiny_settings(tiny_config, "r50", inputs=["r50_mass"])
    return train_model("r50", settings, training=tiny_config["training"],
                       objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                       features=features, out_dir=root / "r50", threads=1)


def _features_with(path, source, change) -> str:
    table = pd.read_parquet(source)
    change(table)
    table.to_parquet(path)
    return str(path)


def test_a_measured_input_is_read_from_the_shard_s_features(
        with_r50_mass, tiny_survey, tiny_measured, tmp_path):
    model = load_model(with_r50_mass)
    assert model.inputs == ["r50_mass"] and model.net.n_inputs == 1
    cut, feats = tiny_survey["cutouts"][1], tiny_measured["features"][1]
    col = "nn_r50_r50_mass"
    real = predict_shard(with_r50_mass, cut, tmp_path / "real.parquet", features=[feats])
    assert np.isfinite(real[[col, f"{col}_err"]]).all(axis=None)

    def larger(t):
        t["r50_mass"] *= 3

    moved = predict_shard(with_r50_mass, cut, tmp_path / "moved.parquet",
                          features=[_features_with(tmp_path / "f3.parquet", feats, larger)])
    measured = pd.read_parquet(feats).set_index("object_id")["r50_mass"]
    known = measured.reindex(real["object_id"]).gt(0).to_numpy()
    assert known.sum() > 20 and (moved.loc[known, col] != real.loc[known, col]).all()
    with pytest.raises(ValueError, match=r"inputs \['r50_mass'\] are read from measure's "
                                         "features tables; none was given"):
        predict_shard(with_r50_mass, cut, tmp_path / "none.parquet")
    assert not (tmp_path / "none.parquet").exists()


def test_a_failed_measurement_is_imputed_by_the_training_mean(
        with_r50_mass, tiny_survey, tiny_measured, tmp_path):
    cut, feats = tiny_survey["cutouts"][1], tiny_measured["features"][1]
    col = "nn_r50_r50_mass"
    real = predict_shard(with_r50_mass, cut, tmp_path / "real.parquet", features=[feats])
    lost = int(real["object_id"].iloc[3])

    def failed(t):
        t.loc[t["object_id"] == lost, "r50_mass"] = np.nan

    partial = predict_shard(with_r50_mass, cut, tmp_path / "nan.parquet",
                            features=[_features_with(tmp_path / "f.parquet", feats, failed)])
    row = (partial["object_id"] == lost).to_numpy()
    assert np.isfinite(partial.loc[row, [col, f"{col}_err"]]).all(axis=None)
    # the prediction is that of an object measured at exactly the training mean
    mean = 10.0 ** float(load_model(with_r50_mass).net.input_mean[0])

    def at_mean(t):
        t.loc[t["object_id"] == lost, "r50_mass"] = mean

    imputed = predict_shard(with_r50_mass, cut, tmp_path / "mean.parquet",
                            features=[_features_with(tmp_path / "m.parquet", feats, at_mean)])
    np.testing.assert_allclose(partial.loc[row, col], imputed.loc[row, col], rtol=1e-5)
    assert partial.loc[row, col].iloc[0] != real.loc[row, col].iloc[0]
    pd.testing.assert_frame_equal(partial.loc[~row], real.loc[~row], check_exact=True)


def test_objects_without_the_measured_input_are_still_trained_on(with_r50_mass):
    features = pd.concat([pd.read_parquet(f) for f in sorted(with_r50_mass.parent.parent.glob(
        "f*.parquet"))])
    unmeasured = features.loc[features["r50_mass"].isna(), "object_id"]
    split = pd.read_parquet(with_r50_mass.parent / "splits.parquet").set_index("object_id")
    assert len(unmeasured) == 8
    in_train = split.loc[unmeasured, "split"] == "train"
    assert in_train.any() and split.loc[unmeasured[in_train.to_numpy()], "trained"].all()
    labels = json.loads((with_r50_mass.parent / "train.json").read_text())["labels"]
    assert labels["unknown_inputs"] == 0
    # standardised without the failed ones
    trained = split.index[split["trained"]]
    values = np.log10(features.set_index("object_id").loc[trained, "r50_mass"].to_numpy())
    net = load_model(with_r50_mass).net
    np.testing.assert_allclose(net.input_mean.numpy(), [np.nanmean(values)], rtol=1e-5)
    np.testing.assert_allclose(net.input_std.numpy(), [np.nanstd(values)], rtol=1e-4)

