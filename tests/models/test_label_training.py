"""Training on partial labels (NaN masked, never filled), the count- and error-aware
losses, and fine-tuning from another model's weights (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from galcat import gz2
from galcat.models.registry import regression_loss
from galcat.models.train import train_model
from tests.models.conftest import tiny_settings


def test_nan_targets_add_nothing_to_the_loss_or_its_gradient():
    torch.manual_seed(0)
    mean = torch.randn(6, 3, requires_grad=True)
    std = torch.rand(6, 3) + 0.5
    target = torch.randn(6, 3)
    target[1, 2] = target[4, 0] = float("nan")
    for kw in ({}, {"weight": torch.ones(6)}, {"error": torch.zeros(6, 1)}):
        loss = regression_loss(mean, std, target, **kw)
        loss.backward()
        assert torch.isfinite(loss)
        assert mean.grad[1, 2] == 0 and mean.grad[4, 0] == 0 and mean.grad[0, 0] != 0
        mean.grad = None
    # unit weights and zero errors are the plain loss
    plain = regression_loss(mean, std, target)
    assert torch.allclose(regression_loss(mean, std, target, weight=torch.ones(6)), plain)
    assert torch.allclose(regression_loss(mean, std, target, error=torch.zeros(6, 1)), plain)


def test_votes_and_errors_weight_the_objects():
    mean = torch.zeros(2, 1, requires_grad=True)
    std = torch.ones(2, 1)
    target = torch.tensor([[1.0], [-1.0]])
    # the object of many votes pulls the mean towards its label
    regression_loss(mean, std, target, weight=torch.tensor([9.0, 1.0])).backward()
    assert mean.grad[0, 0] < 0 and abs(mean.grad[0, 0]) == pytest.approx(9 * abs(mean.grad[1, 0]))
    mean.grad = None
    # a label with a large measurement error pulls less
    regression_loss(mean, std, target, error=torch.tensor([[0.0], [3.0]])).backward()
    assert abs(mean.grad[1, 0]) < 0.2 * abs(mean.grad[0, 0])


@pytest.fixture(scope="module")
def partial_objects(tiny_survey, tmp_path_factory) -> tuple:
    """The tiny survey's object table with no GZ2 votes for 12 objects and the arm
    questions (Class10, Class11) unknown for 12 others."""
    table = pd.read_parquet(tiny_survey["objects"])
    cols = gz2.column_names("gz2_")
    ids = table["object_id"].to_numpy()
    none, partial = ids[:12], ids[12:24]
    table.loc[table["object_id"].isin(none), cols] = np.nan
    arms = [cols[c] for q in gz2.QUESTIONS if q.id in ("Class10", "Class11") for c in q.columns]
    table.loc[table["object_id"].isin(partial), arms] = np.nan
    path = tmp_path_factory.mktemp("partial") / "objects.parquet"
    table.to_parquet(path)
    return path, set(none.tolist()), set(partial.tolist())


def test_objects_without_labels_are_left_out_and_partial_ones_kept(
        partial_objects, tiny_survey, tiny_config, tmp_path):
    path, none, partial = partial_objects
    model = train_model("gz2", tiny_settings(tiny_config, "gz2"), training=tiny_config["training"],
                        objects=path, cutouts=tiny_survey["cutouts"], out_dir=tmp_path / "gz2")
    splits = pd.read_parquet(tmp_path / "gz2" / "splits.parquet").set_index("object_id")
    assert len(splits) == 64  # every object is in the split table
    assert not splits.loc[sorted(none), "trained"].any()
    part_train = [i for i in partial if splits.loc[i, "split"] == "train"]
    assert part_train and splits.loc[part_train, "trained"].all()
    summary = json.loads((tmp_path / "gz2" / "train.json").read_text())
    assert np.isfinite(summary["best_val_loss"]) and model.exists()


def _encoder(path) -> dict:
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def test_fine_tuning_starts_from_the_given_weights(tiny_survey, tiny_config, tmp_path):
    def train(name, out, init=None, **changes):
        return train_model(name, tiny_settings(tiny_config, name, **changes),
                           training=tiny_config["training"], objects=tiny_survey["objects"],
                           cutouts=tiny_survey["cutouts"], out_dir=tmp_path / out,
                           init_model=init)

    base = train("metallicity", "base", epochs=1)
    # a learning rate of ~0 leaves the weights where they started
    tuned = train("metallicity", "tuned", init=base, epochs=1, learning_rate=1e-12, seed=7)
    fresh = train("metallicity", "fresh", epochs=1, learning_rate=1e-12, seed=7)
    a, b, c = _encoder(base), _encoder(tuned), _encoder(fresh)
    assert a and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=1e-3) for k in a)
    assert json.loads((tmp_path / "tuned" / "train.json").read_text())["init_model"] == str(base)
    with pytest.raises(ValueError, match=r"of family 'metallicity', not 'r50'"):
        train("r50", "wrong", init=base, epochs=1)
    with pytest.raises(ValueError, match=r"do not fit this network"):
        train("metallicity", "wider", init=base, epochs=1, width=8)
