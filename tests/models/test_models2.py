"""The encoder-decoder, VAE and pixel families on the tiny survey: training,
inference, the pixel maps and the test-split scores (real Zarr shards, real models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from galcat.models import get_family
from galcat.models.evaluate import evaluate_model
from galcat.models.predict import load_model, predict_shard
from galcat.models.train import train_model
from galcat.store import CutoutReader, LayoutError, read_pixelmaps, write_pixelmaps
from galcat.surveys.synthetic import TRUTH_CLASSES
from galcat.tables import column_descriptions, column_units
from tests.models.conftest import tiny_settings

NAMES = ("sersic", "vae", "pixels")


@pytest.fixture(scope="module")
def trained2(tmp_path_factory, tiny_survey, tiny_config):
    """sersic, vae (3-D latent) and pixels trained once on the tiny survey: name -> model.pt."""
    root = tmp_path_factory.mktemp("trained2")
    changes = {"sersic": {}, "vae": {"latent_dim": 3}, "pixels": {}}
    return {name: train_model(name, tiny_settings(tiny_config, name, tta=True, **changes[name]),
                              training=tiny_config["training"], objects=tiny_survey["objects"],
                              cutouts=tiny_survey["cutouts"], out_dir=root / name, threads=1)
            for name in NAMES}


@pytest.fixture(scope="module")
def predicted2(trained2, tiny_survey, tmp_path_factory):
    """Predictions (and pixel maps) of every shard: name -> {"predictions", "pixelmaps"}."""
    root = tmp_path_factory.mktemp("predicted2")
    out = {}
    for name, model in trained2.items():
        preds, maps = [], []
        for cut in tiny_survey["cutouts"]:
            pm = root / f"{name}_{cut.stem}_pixels.zarr" if name == "pixels" else None
            path = root / f"{name}_{cut.stem}.parquet"
            predict_shard(model, cut, path, splits=model.parent / "splits.parquet", pixelmaps=pm)
            preds.append(path)
            maps += [pm] if pm else []
        out[name] = {"predictions": preds, "pixelmaps": maps}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_each_new_family_trains_and_predicts_every_object_with_units(trained2, predicted2, name):
    import pandas as pd

    history = pd.read_csv(trained2[name].parent / "history.csv")
    assert len(history) == 2 and np.isfinite(history["val_loss"]).all()
    path = predicted2[name]["predictions"][1]
    df = pd.read_parquet(path)
    assert df["object_id"].tolist() == list(range(33, 65))
    settings = load_model(trained2[name]).settings
    units, desc = column_units(path), column_descriptions(path)
    for o in get_family(name).outputs(settings):
        col = f"nn_{name}_{o.name}"
        assert np.isfinite(df[col]).all(), col
        assert units[col] == o.unit and desc[col]
        if o.error:
            assert (df[f"{col}_err"] > 0).all()


def test_the_vae_has_a_column_pair_per_latent_and_a_reconstruction_error(predicted2):
    import pandas as pd

    df = pd.read_parquet(predicted2["vae"]["predictions"][0])
    assert [c for c in df.columns if c.startswith("nn_vae_z")] == [
        "nn_vae_z1", "nn_vae_z1_err", "nn_vae_z2", "nn_vae_z2_err", "nn_vae_z3", "nn_vae_z3_err"]
    assert (df["nn_vae_recon_mse"] > 0).all()
    # the encoder-decoder reconstructs too
    sersic = pd.read_parquet(predicted2["sersic"]["predictions"][0])
    assert (sersic["nn_sersic_recon_mse"] > 0).all()
    assert ((sersic["nn_sersic_sersic_n"] > 0.1) & (sersic["nn_sersic_sersic_n"] < 20)).all()


def test_the_pixel_map_has_the_cutouts_shape_and_only_the_four_codes(predicted2, tiny_survey):
    import pandas as pd

    for cut, maps, preds in zip(tiny_survey["cutouts"], predicted2["pixels"]["pixelmaps"],
                                predicted2["pixels"]["predictions"], strict=True):
        reader = CutoutReader(cut)
        ids, classes = read_pixelmaps(maps)
        np.testing.assert_array_equal(ids, reader.object_id)
        assert classes.shape == (reader.n_objects, *reader.shape[2:])
        assert classes.dtype == np.uint8
        assert set(np.unique(classes).tolist()) <= set(TRUTH_CLASSES)
        df = pd.read_parquet(preds)
        # the object columns are those of the written map
        central = np.isin(classes, (1, 2)).sum((1, 2))
        np.testing.assert_array_equal(df["nn_pixels_central_area"].to_numpy(), central)
        share = df["nn_pixels_spheroid_share"].to_numpy()
        assert np.all((share[np.isfinite(share)] >= 0) & (share[np.isfinite(share)] <= 1))


def test_pixel_predictions_do_not_depend_on_the_batch_size(trained2, tiny_survey, tmp_path):
    maps = []
    for b in (1, 7, 256):
        predict_shard(trained2["pixels"], tiny_survey["cutouts"][0], tmp_path / f"{b}.parquet",
                      pixelmaps=tmp_path / f"{b}.zarr", batch_size=b)
        maps.append(read_pixelmaps(tmp_path / f"{b}.zarr")[1])
    for m in maps[1:]:
        np.testing.assert_array_equal(m, maps[0])


def test_a_pixel_model_without_a_pixel_map_path_and_bad_maps_are_refused(trained2, tiny_survey,
                                                                         tmp_path):
    with pytest.raises(ValueError, match="model 'pixels' .* writes pixel maps"):
        predict_shard(trained2["pixels"], tiny_survey["cutouts"][0], tmp_path / "p.parquet")
    with pytest.raises(LayoutError, match=r"codes \[7\]"):
        write_pixelmaps(tmp_path / "bad.zarr", np.full((2, 4, 4), 7, np.uint8),
                        np.array([1, 2]), shard="s0", model="pixels", codes=TRUTH_CLASSES)


@pytest.mark.parametrize(("change", "got"), [({"bin": 2}, "bin 2, crop 1"),
                                             ({"crop": 0.5}, "bin 1, crop 0.5")])
def test_the_pixel_family_needs_the_whole_cutout_at_full_resolution(tiny_config, tiny_survey,
                                                                    tmp_path, change, got):
    with pytest.raises(ValueError, match=f"needs bin 1, crop 1 .* got {got}"):
        train_model("pixels", tiny_settings(tiny_config, "pixels", **change),
                    training=tiny_config["training"], objects=tiny_survey["objects"],
                    cutouts=tiny_survey["cutouts"], out_dir=tmp_path / "p", threads=1)


def test_the_vae_samples_in_training_and_uses_the_mean_in_evaluation(trained2):
    model = load_model(trained2["vae"])
    head = model.net.head
    features = torch.randn(4, head.mu.in_features)
    head.eval()
    a, b = head(features)["recon"], head(features)["recon"]
    assert torch.equal(a, b)
    head.train()
    assert not torch.equal(head(features)["recon"], head(features)["recon"])
    head.eval()


@pytest.mark.parametrize("name", NAMES)
def test_the_new_families_are_scored_beside_their_baselines(trained2, predicted2, tiny_survey,
                                                           tiny_measured, tmp_path, name):
    settings = load_model(trained2[name]).settings
    out = tmp_path / "metrics.json"
    evaluate_model(name, {k: settings[k] for k in ("family", "seed", "bands", "bin")},
                   objects=tiny_survey["objects"], features=tiny_measured["features"],
                   cutouts=tiny_survey["cutouts"], segmaps=tiny_measured["segmaps"],
                   predictions=predicted2[name]["predictions"],
                   pixelmaps=predicted2[name]["pixelmaps"],
                   splits=trained2[name].parent / "splits.parquet", output=out)
    scores = json.loads(out.read_text())["scores"]
    if name == "sersic":
        for key in ("model", "measure_fit"):
            assert np.isfinite(scores[key]["median_abs_frac_error_n"])
        assert 0 <= scores["model"]["coverage_68_n"] <= 1
    elif name == "vae":
        assert scores["latent_dim"] == 3
        for key in ("model", "pca"):
            table = scores[key]["spearman"]
            assert set(table) >= {"r50_light", "r50_mass", "bt", "sersic_n", "colour_gr",
                                  "ssfr", "metallicity", "log_mass", "axis_ratio"}
            assert all(len(v) == 3 for v in table.values())
            assert scores[key]["recon_mse"] > 0
    else:
        assert set(scores["model"]["iou"]) == set(TRUTH_CLASSES.values())
        assert 0 <= scores["model"]["mean_iou"] <= 1 and scores["n_pixels"] > 0
        assert scores["blended_pairs"] >= 0 and "central_iou_blended" in scores["segment"]
