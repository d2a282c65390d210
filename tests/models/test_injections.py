"""Single-Sérsic injections in the training of the sersic family
(``models.<name>.injections``): an exact index beside the survey's concentration-matched
one, drawn into a real cutout shard and split like the survey's objects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galcat.config import ConfigError, injection_survey, load_config
from galcat.models import get_family
from galcat.models.injections import write_injections
from galcat.models.predict import load_model, predict_shard
from galcat.models.train import INJECTIONS_SHARD, train_model
from galcat.store import CutoutReader
from tests.models.conftest import tiny_settings

LABELS = get_family("sersic").injection_labels


def test_injections_are_a_shard_of_exact_single_sersic_galaxies(tmp_path, tiny_config):
    syn = tiny_config["synthetic"]
    table = write_injections(tmp_path / "a.zarr", 6, syn, seed=0, labels=LABELS)
    assert table["object_id"].tolist() == [-6, -5, -4, -3, -2, -1]
    n = table["truth_sersic_n"].to_numpy()
    assert ((n >= 0.5) & (n <= 6) & np.isclose(n * 10, np.round(n * 10))).all()
    assert (table["truth_r50_r"] > 0).all()
    reader = CutoutReader(tmp_path / "a.zarr")
    assert reader.bands == ["r"] and reader.shape[-1] == syn["cutout_size"]
    image = reader.read("image", slice(0, 6))
    assert np.isfinite(image).all() and image[:, 0, 16, 16].min() > 0  # a galaxy at the centre
    # a resumed job draws the same galaxies; another seed draws others
    write_injections(tmp_path / "b.zarr", 6, syn, seed=0, labels=LABELS)
    write_injections(tmp_path / "c.zarr", 6, syn, seed=1, labels=LABELS)
    assert np.array_equal(image, CutoutReader(tmp_path / "b.zarr").read("image", slice(0, 6)))
    assert not np.array_equal(image, CutoutReader(tmp_path / "c.zarr").read("image", slice(0, 6)))


def test_the_sersic_network_trains_on_the_survey_and_its_injections(tmp_path, tiny_survey,
                                                                     tiny_config):
    out = tmp_path / "sersic"
    model = train_model("sersic", tiny_settings(tiny_config, "sersic", injections=40),
                        training=tiny_config["training"], objects=tiny_survey["objects"],
                        cutouts=tiny_survey["cutouts"], out_dir=out, threads=1,
                        synthetic=tiny_config["synthetic"])
    splits = pd.read_parquet(out / "splits.parquet")
    injected = splits[splits["object_id"] < 0]
    assert sorted(injected["object_id"]) == list(range(-40, 0))
    assert set(injected["split"]) == {"train", "validation", "test"}  # the same hash split
    summary = json.loads((out / "train.json").read_text())
    assert summary["labels"]["injections"] == 40
    assert summary["n_objects"]["train"] == int(splits["trained"].sum())
    assert (injected["trained"] == (injected["split"] == "train")).all()
    assert int(injected["trained"].sum()) > 0
    assert len(splits) == 64 + 40
    assert not (out / INJECTIONS_SHARD).exists()  # drawn again by any rerun
    # the survey's shards are predicted as before, keyed by their own ids
    pred = tmp_path / "pred.parquet"
    predict_shard(load_model(model), tiny_survey["cutouts"][0], pred,
                  splits=out / "splits.parquet")
    df = pd.read_parquet(pred)
    assert df["object_id"].tolist() == list(range(1, 33))
    assert np.isfinite(df["nn_sersic_sersic_n"]).all()


@pytest.mark.parametrize(("name", "changes", "message"), [
    ("r50", {}, "family 'r50' cannot train on single-Sersic injections"),
    ("sersic", {"bands": None}, r"set models.sersic.bands to \[r\]"),
    ("sersic", {"inputs": ["z"]}, "injections have no redshift"),
])
def test_injections_where_they_cannot_be_drawn_stop_with_the_key(tmp_path, tiny_survey,
                                                                 tiny_config, name, changes,
                                                                 message):
    with pytest.raises(ValueError, match=message):
        train_model(name, tiny_settings(tiny_config, name, injections=8, **changes),
                    training=tiny_config["training"], objects=tiny_survey["objects"],
                    cutouts=tiny_survey["cutouts"], out_dir=tmp_path, threads=1,
                    synthetic=tiny_config["synthetic"])


def test_injections_need_the_synthetic_survey_and_a_cutout_of_its_size(tmp_path, tiny_survey,
                                                                       tiny_config):
    settings = tiny_settings(tiny_config, "sersic", injections=8)
    with pytest.raises(ValueError, match="drawn with the synthetic survey's settings"):
        train_model("sersic", settings, training=tiny_config["training"],
                    objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                    out_dir=tmp_path, threads=1)
    with pytest.raises(ValueError, match="injections are 64 pixels a side and the survey's "
                                         "cutouts 32"):
        train_model("sersic", settings, training=tiny_config["training"],
                    objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                    out_dir=tmp_path, threads=1,
                    synthetic={**tiny_config["synthetic"], "cutout_size": 64})
    sdss = load_config(overrides={"survey": "sdss", "models": {"sersic": {"injections": 8}}})
    with pytest.raises(ConfigError, match="not survey 'sdss'"):
        injection_survey(sdss, "sersic")
    assert injection_survey(tiny_config, "sersic") == tiny_config["synthetic"]  # the default
    none = load_config(overrides={"models": {"sersic": {"injections": 0}}})
    assert injection_survey(none, "sersic") is None
