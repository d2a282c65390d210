"""gz2's ``vote_loss: multinomial``: the votes' likelihood, question by question."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from galcat import gz2
from galcat.models.families.gz2 import multinomial_vote_loss, tree_fractions
from galcat.models.train import train_model
from tests.models.conftest import tiny_settings

VOTERS = 40


def _question_probabilities(logits: torch.Tensor) -> np.ndarray:
    probs = torch.zeros_like(logits)
    for q in gz2.QUESTIONS:
        cols = list(q.columns)
        probs[:, cols] = F.softmax(logits[:, cols], dim=1)
    return probs.numpy()


def _votes(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = _question_probabilities(torch.as_tensor(rng.normal(0, 1.5, (n, 37))))
    return torch.as_tensor(gz2.simulate_votes(truth, VOTERS, rng)), truth


def test_the_loss_is_the_votes_multinomial_likelihood_per_vote_less_its_maximum():
    votes, _ = _votes(6, seed=1)
    logits = torch.as_tensor(np.random.default_rng(2).normal(0, 1, (6, 37)))
    probs = _question_probabilities(logits)
    counts = np.rint(votes.numpy() * VOTERS).astype(int)
    expected = np.zeros(6)
    for q in gz2.QUESTIONS:
        cols = list(q.columns)
        for i in range(6):
            reach = counts[i, cols].sum()
            if reach == 0:
                continue
            shares = counts[i, cols] / reach
            expected[i] += (stats.multinomial.logpmf(counts[i, cols], reach, shares)
                            - stats.multinomial.logpmf(counts[i, cols], reach, probs[i, cols]))
    got = multinomial_vote_loss(logits, votes).item()
    assert got == pytest.approx(expected.mean() / VOTERS, rel=1e-9)
    weight = torch.tensor([2.0, 1, 1, 1, 1, 0])
    assert multinomial_vote_loss(logits, votes, weight).item() == pytest.approx(
        (expected * weight.numpy()).sum() / weight.sum().item() / VOTERS, rel=1e-9)


def test_its_minimum_is_the_observed_votes_and_is_zero():
    votes, _ = _votes(4, seed=3)
    logits = torch.zeros(4, 37, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = multinomial_vote_loss(logits, votes)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert multinomial_vote_loss(logits, votes).item() < 1e-9
    np.testing.assert_allclose(tree_fractions(logits.detach()).numpy(), votes.numpy(), atol=1e-6)


def test_a_masked_question_adds_nothing_and_pulls_on_no_logit():
    votes, _ = _votes(3, seed=4)
    logits = torch.as_tensor(np.random.default_rng(5).normal(0, 1, (3, 37)))
    logits.requires_grad_(True)
    cols = list(next(q for q in gz2.QUESTIONS if q.id == "Class1").columns)
    masked = votes.clone()
    masked[0, cols] = float("nan")
    loss = multinomial_vote_loss(logits, masked)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(logits.grad[0, cols] == 0)
    # the masked question's own term (positive: these logits do not fit it) went missing
    unmasked = multinomial_vote_loss(logits.detach(), votes).item()
    assert loss.item() < unmasked


def test_the_vote_loss_reaches_gz2s_train_params_only():
    from galcat.config import keys_training_ignores

    entry = {"point_estimate": "mean", "architecture": "small_cnn", "family": "gz2"}
    # a job given no value would fill in the default, so either value is a read
    for loss in ("least_squares", "multinomial"):
        assert "vote_loss" not in keys_training_ignores({**entry, "vote_loss": loss})
    # no other family reads it, whatever its value
    assert "vote_loss" in keys_training_ignores({**entry, "family": "r50",
                                                 "vote_loss": "multinomial"})


def test_an_unknown_vote_loss_is_refused_by_value():
    from galcat.models.families.gz2 import TreeHead

    with pytest.raises(ValueError, match="'poisson'"):
        TreeHead(8, vote_loss="poisson")


def test_a_point_estimate_beside_the_votes_likelihood_is_refused(tiny_config):
    from galcat.models.registry import build_net

    settings = tiny_settings(tiny_config, "gz2", point_estimate="median")
    with pytest.raises(ValueError, match="point_estimate 'median'.*vote_loss 'multinomial'"):
        build_net("gz2", settings, n_bands=3, n_targets=37, size=32)
    build_net("gz2", {**settings, "vote_loss": "least_squares"}, n_bands=3, n_targets=37,
              size=32)


def test_a_gz2_network_trains_on_the_votes_likelihood(tiny_survey, tiny_config, tmp_path):
    settings = tiny_settings(tiny_config, "gz2", vote_loss="multinomial", epochs=3)
    train_model("gz2", settings, training=tiny_config["training"],
                objects=tiny_survey["objects"], cutouts=tiny_survey["cutouts"],
                out_dir=tmp_path, threads=1)
    train = pd.read_csv(tmp_path / "history.csv")["train_loss"].to_numpy()
    assert np.isfinite(train).all()
    # the widths' likelihood is negative; the votes' term is positive and the epochs lower it
    assert train[-1] < train[0]
