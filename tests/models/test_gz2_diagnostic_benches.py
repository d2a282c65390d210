"""The two diagnostics of gz2's distance from the floor that need no staged survey to be
checked: bench/gz2_oracle_inputs.py's draw of the best measurement the images allow, and
bench/gz2_column_learner.py's perceptron on per-object columns."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from galcat import gz2

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch):
    """The bench scripts import each other by module name, as they do when run."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_the_posterior_mean_draw_has_the_posterior_covariance(bench):
    """A measurement of two correlated parameters, a prior on the first only: over a
    population drawn from that prior, the draws' errors are unbiased and scatter as
    (F + P)^-1, narrower than the measurement alone (F^-1) where the prior acts."""
    oracle = bench("gz2_oracle_inputs")
    f = np.array([[100.0, -30.0], [-30.0, 20.0]])
    prior = np.diag([1.0 / 0.2**2, 0.0])
    rng = np.random.default_rng(5)
    mu = 0.6
    errors = []
    for theta in mu + 0.2 * rng.standard_normal(6000):
        pull = prior @ np.array([mu - theta, 0.0])
        error, cov = oracle.posterior_mean_draw(f, prior, pull, rng)
        errors.append(error)
    errors = np.array(errors)
    expected = np.linalg.inv(f + prior)
    np.testing.assert_allclose(cov, expected, rtol=1e-10)
    np.testing.assert_allclose(np.cov(errors.T), expected, rtol=0.08)
    assert np.all(np.abs(errors.mean(axis=0)) < 3 * np.sqrt(np.diag(expected) / len(errors)))
    assert expected[0, 0] < 0.8 * np.linalg.inv(f)[0, 0]


def _volunteers(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Galaxies' true quantities, their expected fractions and 40 volunteers' votes."""
    bt = rng.uniform(0.0, 1.0, n)
    early = rng.random(n) < bt
    q_disc, q_bulge = rng.uniform(0.1, 1.0, (2, n))
    merger = rng.random(n) < 0.1
    projection = ~merger & (rng.random(n) < 0.1)
    probs = gz2.probabilities_from_truth(bt=bt, early=early, q_disc=q_disc, q_bulge=q_bulge,
                                         merger=merger, projection=projection)
    columns = np.stack([bt, early, q_disc, q_bulge, merger, projection], axis=1)
    return columns, gz2.expected_fractions(probs), gz2.simulate_votes(probs, 40, rng)


def test_the_column_learner_learns_the_volunteers_from_the_truths_and_not_from_noise(bench):
    """Given the quantities the volunteers answer from, the perceptron comes near the
    label-noise floor on held-out galaxies; given the same columns shuffled across
    galaxies, it is no better than the mean vote (1.08x and 5.5x when written)."""
    learner = bench("gz2_column_learner")
    rng = np.random.default_rng(3)
    columns, expected, votes = _volunteers(2400, rng)
    split = np.array(["train", "train", "train", "validation", "test"] * 480)
    test = split == "test"
    truths = learner.fit(columns, votes, split, 0)
    shuffled = learner.fit(rng.permutation(columns), votes, split, 0)
    mean_vote = np.broadcast_to(votes[split == "train"].mean(axis=0), votes.shape)
    assert truths.shape == votes.shape
    assert learner.over_floor(truths, votes, expected, test) < 1.15
    assert learner.over_floor(shuffled, votes, expected, test) > (
        0.95 * learner.over_floor(mean_vote, votes, expected, test))
