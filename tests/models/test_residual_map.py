"""``models.<name>.residual_map``: measure's residual significance maps as one more
channel of the network, in training and in prediction."""

from __future__ import annotations

import numpy as np
import pytest

from galcat.config import ConfigError, keys_training_ignores
from galcat.models.data import CutoutDataset, ShardIndex
from galcat.models.predict import load_model, predict_shard
from galcat.models.train import train_model
from galcat.store import CutoutReader, LayoutError, ResidualMapReader, read_residual_maps
from tests.models.conftest import tiny_settings


@pytest.fixture(scope="module")
def with_map(tmp_path_factory, tiny_survey, tiny_measured, tiny_config):
    """The tiny gz2 model given the residual map beside its bands."""
    settings = tiny_settings(tiny_config, "gz2", residual_map=True)
    return train_model("gz2", settings, training=tiny_config["training"],
                       objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                       residuals=tiny_measured["residuals"],
                       out_dir=tmp_path_factory.mktemp("residual_map") / "gz2", threads=1)


def test_measure_writes_a_map_per_object_of_the_shard(tiny_survey, tiny_measured):
    for cut, path in zip(tiny_survey["cutouts"], tiny_measured["residuals"], strict=True):
        object_id, maps = read_residual_maps(path)
        reader = CutoutReader(cut)
        np.testing.assert_array_equal(object_id, reader.object_id)
        assert maps.shape == (reader.n_objects, *reader.shape[-2:])
        fitted = np.isfinite(maps).all(axis=(1, 2))
        assert fitted.mean() > 0.8  # a galaxy without a bulge + disc fit has NaN
        # most pixels of most galaxies: nothing significant left
        assert np.median((maps[fitted] != 0).mean(axis=(1, 2))) < 0.05


def test_the_map_is_one_more_channel_after_the_bands(tiny_survey, tiny_measured):
    readers = [CutoutReader(p) for p in tiny_survey["cutouts"]]
    ids = readers[1].object_id[:5]
    index = ShardIndex.build(readers, ids)
    maps = [ResidualMapReader(p) for p in tiny_measured["residuals"]]
    plain = CutoutDataset(index, np.zeros((5, 1)), bands=["g", "r", "i"])
    extended = CutoutDataset(index, np.zeros((5, 1)), bands=["g", "r", "i"], residuals=maps)
    images = extended.read_images(np.arange(5))
    assert images.shape[1] == 4
    np.testing.assert_array_equal(images[:, :3], plain.read_images(np.arange(5)))
    _, stored = read_residual_maps(tiny_measured["residuals"][1])
    np.testing.assert_array_equal(images[:, 3], np.nan_to_num(stored[:5], nan=0.0))
    # maps of another shard's objects are refused, naming both stores
    with pytest.raises(LayoutError, match="are not of the objects and pixels of the cutouts"):
        CutoutDataset(index, np.zeros((5, 1)), bands=["g"], residuals=maps[::-1])


def test_a_model_trained_with_the_map_predicts_with_it(with_map, tiny_survey, tiny_measured,
                                                       tmp_path):
    model = load_model(with_map)
    assert model.net.normalise.scale.shape[0] == 4  # g, r, i and the map
    cut, maps = tiny_survey["cutouts"][1], tiny_measured["residuals"][1]
    one = predict_shard(with_map, cut, tmp_path / "a.parquet", residuals=maps, batch_size=7)
    every = predict_shard(with_map, cut, tmp_path / "b.parquet", residuals=maps)
    assert np.isfinite(one.filter(like="nn_gz2_").select_dtypes(float)).all(axis=None)
    np.testing.assert_array_equal(one.to_numpy(), every.to_numpy())
    # the map is read: a shard whose maps are all zero gets other predictions
    blank = tmp_path / "blank.zarr"
    from galcat.store import write_residual_maps
    object_id, stored = read_residual_maps(maps)
    write_residual_maps(blank, np.zeros_like(stored), object_id, shard=cut.stem)
    other = predict_shard(with_map, cut, tmp_path / "c.parquet", residuals=blank)
    changed = (other["nn_gz2_class1_1"] != every["nn_gz2_class1_1"]).to_numpy()
    lit = (np.nan_to_num(stored) != 0).any(axis=(1, 2))
    assert changed[lit].all() and not changed[~lit].any()
    with pytest.raises(ValueError, match="trained with models.gz2.residual_map: give the "
                                         "residual maps"):
        predict_shard(with_map, cut, tmp_path / "d.parquet")


def test_training_with_the_map_needs_the_maps_of_every_shard(tiny_survey, tiny_measured,
                                                             tiny_config, tmp_path):
    settings = tiny_settings(tiny_config, "gz2", residual_map=True)
    with pytest.raises(ConfigError, match=r"models.gz2.residual_map is true: give the "
                                          r"residual maps of all 2 shards \(--residuals; got 1\)"):
        train_model("gz2", settings, training=tiny_config["training"],
                    objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                    residuals=tiny_measured["residuals"][:1], out_dir=tmp_path / "m", threads=1)


def test_the_key_is_a_training_param_only_when_true(tiny_config):
    entry = dict(tiny_config["models"]["gz2"])
    assert "residual_map" in keys_training_ignores(entry)  # false: no retraining on upgrade
    assert "residual_map" not in keys_training_ignores({**entry, "residual_map": True})
