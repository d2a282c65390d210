"""Each family trains on the tiny survey; inference; splits; the saved model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from galcat import gz2
from galcat.models import FAMILIES, get_family
from galcat.models.data import ShardIndex, assign_splits, fit_normalisation
from galcat.models.predict import load_model, predict_shard
from galcat.models.train import train_model
from galcat.store import CutoutReader
from galcat.tables import column_descriptions, column_units
from tests.models.conftest import tiny_settings


def _train(tmp_path, survey, config, name, **changes):
    return train_model(name, tiny_settings(config, name, **changes), training=config["training"],
                       objects=survey["objects"], cutouts=survey["cutouts"],
                       out_dir=tmp_path / name, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_survey, tiny_config):
    """The three families trained once on the tiny survey: name -> model.pt."""
    root = tmp_path_factory.mktemp("trained")
    return {name: _train(root, tiny_survey, tiny_config, name, tta=True)
            for name in ("r50", "gz2", "metallicity")}


def test_the_registry_holds_the_families_the_schema_allows():
    import yaml

    from galcat.config import schema_path

    schema = yaml.safe_load(schema_path().read_text())
    allowed = schema["properties"]["models"]["additionalProperties"]["properties"]["family"]["enum"]
    assert sorted(allowed) == sorted(FAMILIES)
    with pytest.raises(KeyError, match="unknown model family 'cnn'; known: gz2, metallicity, "
                                       "pixels, r50, sersic, vae"):
        get_family("cnn")
    # the config check, without torch, names the families whose maps cover the cutout
    from galcat.config import PIXEL_MAP_FAMILIES

    assert set(PIXEL_MAP_FAMILIES) == {n for n, f in FAMILIES.items() if f.pixel_output}


@pytest.mark.parametrize("name", ["r50", "gz2", "metallicity"])
def test_each_family_trains_and_predicts_with_units(trained, tiny_survey, tmp_path, name):
    model_dir = trained[name].parent
    for f in ("model.pt", "splits.parquet", "history.csv", "learning_curve.png", "train.json"):
        assert (model_dir / f).stat().st_size > 0
    assert not (model_dir / "checkpoints").exists()  # a finished model keeps no checkpoints
    history = pd.read_csv(model_dir / "history.csv")
    assert len(history) == 2 and np.isfinite(history["val_loss"]).all()

    out = tmp_path / "pred.parquet"
    df = predict_shard(trained[name], tiny_survey["cutouts"][1], out,
                       splits=model_dir / "splits.parquet", objects=tiny_survey["objects"])
    assert df["object_id"].tolist() == list(range(33, 65))
    family = get_family(name)
    units, desc = column_units(out), column_descriptions(out)
    for o in family.outputs():
        col = f"nn_{name}_{o.name}"
        assert np.isfinite(df[col]).all()
        assert units[col] == o.unit and desc[col]
        if o.error:
            assert (df[f"{col}_err"] > 0).all() and units[f"{col}_err"] == o.unit
    assert set(df[f"nn_{name}_split"]) <= {"train", "validation", "test"}


def test_gz2_outputs_obey_the_decision_tree(trained, tiny_survey, tmp_path):
    from galcat.models.families.gz2 import tree_fractions

    logits = torch.randn(6, 37, dtype=torch.float64)
    probs = np.zeros((6, 37))
    for q in gz2.QUESTIONS:
        block = torch.softmax(logits[:, list(q.columns)], dim=1).numpy()
        probs[:, list(q.columns)] = block
    np.testing.assert_allclose(tree_fractions(logits).numpy(), gz2.expected_fractions(probs),
                               atol=1e-12)
    df = predict_shard(trained["gz2"], tiny_survey["cutouts"][0], tmp_path / "g.parquet")
    fractions = df[[f"nn_gz2_{c}" for c in gz2.column_names("")]].to_numpy()
    assert max(gz2.check_sum_rules(fractions, atol=1e-5).values()) < 1e-5


def test_predictions_do_not_depend_on_the_batch_size(trained, tiny_survey, tmp_path):
    runs = [predict_shard(trained["r50"], tiny_survey["cutouts"][0], tmp_path / f"{b}.parquet",
                          batch_size=b) for b in (1, 5, 32, 256)]
    for df in runs[1:]:
        pd.testing.assert_frame_equal(df, runs[0], check_exact=True)
    # and test-time augmentation changes them (it is on for this model)
    plain = predict_shard(trained["r50"], tiny_survey["cutouts"][0], tmp_path / "p.parquet",
                          tta=False)
    assert not np.array_equal(plain["nn_r50_r50_mass"], runs[0]["nn_r50_r50_mass"])


def test_a_cropped_model_sees_the_centre_of_the_cutout_and_nothing_else(
        tiny_survey, tiny_config, tmp_path):
    import shutil

    import zarr

    model = _train(tmp_path, tiny_survey, tiny_config, "r50", crop=0.5, tta=True)
    assert load_model(model).settings["crop"] == 0.5
    shard = tmp_path / "s000000.zarr"
    shutil.copytree(tiny_survey["cutouts"][0], shard)
    before = predict_shard(model, shard, tmp_path / "before.parquet")
    image = zarr.open_group(str(shard), mode="r+")["image"]
    side = image.shape[-1]
    # light outside the central half: a bright neighbour in every cutout
    edited = np.asarray(image[:])
    edited[..., :side // 4, :] += 1e3
    edited[..., :, -side // 4:] += 1e3
    image[:] = edited
    outside = predict_shard(model, shard, tmp_path / "outside.parquet")
    pd.testing.assert_frame_equal(outside, before, check_exact=True)
    # the same light one pixel inside the crop changes what the network says
    edited[..., side // 4, side // 2] += 1e3
    image[:] = edited
    inside = predict_shard(model, shard, tmp_path / "inside.parquet")
    assert not np.array_equal(inside["nn_r50_r50_mass"], before["nn_r50_r50_mass"])


def test_a_shard_cut_at_another_size_is_refused_by_name(trained, tmp_path):
    from galcat.config import load_config
    from galcat.stages import run_fetch, run_query

    config = load_config(overrides={"synthetic": {"n_objects": 4, "cutout_size": 48},
                                    "sharding": {"objects_per_shard": 4}})
    run_query(config, tmp_path / "objects.parquet")
    shard = run_fetch({**config, "shard_size": 4}, None, "s000000", tmp_path / "s000000.zarr",
                      dask={**config["dask"], "scheduler": "synchronous"})
    with pytest.raises(ValueError, match=r"model 'gz2' was trained on 32x32-pixel inputs, and "
                                         r"the 48-pixel cutouts of .*s000000.zarr' give 48x48"):
        predict_shard(trained["gz2"], shard, tmp_path / "p.parquet")
    assert not (tmp_path / "p.parquet").exists()


def test_splits_never_leak(trained, tiny_survey, tiny_config):
    """Every model has the same hash split; the normalisation saw training objects only."""
    frames = {n: pd.read_parquet(p.parent / "splits.parquet") for n, p in trained.items()}
    first = frames["r50"]
    for df in frames.values():
        pd.testing.assert_frame_equal(df, first)
    expected = assign_splits(first["object_id"].to_numpy(),
                             validation_fraction=tiny_config["training"]["validation_fraction"],
                             test_fraction=tiny_config["training"]["test_fraction"],
                             seed=tiny_config["training"]["split_seed"])
    np.testing.assert_array_equal(first["split"].to_numpy(), expected)
    payload = torch.load(trained["r50"], weights_only=True)
    readers = [CutoutReader(p) for p in tiny_survey["cutouts"]]
    train_ids = first.loc[first["split"] == "train", "object_id"].to_numpy()
    from galcat.models.data import CutoutDataset

    ds = CutoutDataset(ShardIndex.build(readers, train_ids), np.zeros((len(train_ids), 1)),
                       bands=payload["bands"])
    norm = fit_normalisation(ds)
    np.testing.assert_allclose(payload["normalisation"]["mean"], norm["mean"], rtol=1e-6)


def test_a_foreign_file_is_not_loaded_as_a_model(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="is not a galcat model"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_a_survey_without_the_truth_is_refused_by_name(tmp_path, tiny_survey, tiny_config):
    table = pd.read_parquet(tiny_survey["objects"]).drop(columns=["truth_metallicity"])
    objects = tmp_path / "objects.parquet"
    table.to_parquet(objects)
    with pytest.raises(KeyError, match=r"\['truth_metallicity'\].*objects.parquet"):
        train_model("metallicity", tiny_settings(tiny_config, "metallicity"),
                    training=tiny_config["training"], objects=objects,
                    cutouts=tiny_survey["cutouts"], out_dir=tmp_path / "m")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["r50", "gz2", "metallicity"])
def test_metrics_score_the_model_and_its_baselines_on_the_same_objects(
        trained, tiny_survey, tiny_measured, tmp_path, name):
    from galcat.models.evaluate import evaluate_model

    model_dir = trained[name].parent
    preds = [predict_shard(trained[name], c, tmp_path / f"{c.stem}.parquet",
                           splits=model_dir / "splits.parquet", objects=tiny_survey["objects"])
             for c in tiny_survey["cutouts"]]
    features = tiny_measured["features"]
    if name == "r50":  # a traditional measurement that failed on two test galaxies
        split = pd.read_parquet(model_dir / "splits.parquet")
        failed = split.loc[split["split"] == "test", "object_id"].to_numpy()[:2]
        table = pd.concat([pd.read_parquet(f) for f in features])
        table.loc[table["object_id"].isin(failed), "r50_mass"] = np.nan
        features = [tmp_path / "features.parquet"]
        table.to_parquet(features[0])
    settings = {"family": name, "seed": 0, "inputs": load_model(trained[name]).inputs}
    result = evaluate_model(
        name, settings, objects=tiny_survey["objects"], features=features,
        cutouts=tiny_survey["cutouts"], segmaps=tiny_measured["segmaps"],
        predictions=[tmp_path / f"{c.stem}.parquet" for c in tiny_survey["cutouts"]],
        splits=model_dir / "splits.parquet", output=tmp_path / "metrics.json",
        context={"mzr_relation": "tremonti2004", "mzr_scatter_dex": 0.1})
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(
        json.dumps(result, default=float))
    n_test = int((pd.concat(preds)[f"nn_{name}_split"] == "test").sum())
    expected = {"r50": {"model", "traditional"}, "gz2": {"model", "mean_vote", "random_forest"},
                "metallicity": {"model", "mean_label", "mzr", "random_forest"}}[name]
    assert expected <= set(result["scores"]) and set(result["failed_on_test"]) == expected
    assert result["n_objects"]["test"] == n_test
    if name == "r50":
        assert result["failed_on_test"]["traditional"] == 2
        assert result["n_objects"]["scored"] == n_test - 2
        for key in ("model", "traditional"):  # both scored on the same galaxies
            assert sum(b["n"] for b in result["scores"][key]["by_snr"]) == n_test - 2
    else:
        assert result["n_objects"]["scored"] == n_test
    if name == "gz2":
        s = result["scores"]
        assert s["noise_floor_rmse"] > 0 and s["model"]["sum_rule_max_violation"] < 1e-5
