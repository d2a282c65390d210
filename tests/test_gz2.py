"""The Galaxy Zoo 2 tree: answers, Kaggle sum rules, voters, per-question normalisation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from galcat import gz2

REFERENCE = (
    Path(__file__).resolve().parents[1] / "src" / "galcat" / "data" / "gz2_decision_tree.json"
)


def _col(name: str) -> int:
    return gz2.ANSWERS.index(name)


def _sum(f: np.ndarray, question: str) -> np.ndarray:
    cols = [i for i, a in enumerate(gz2.ANSWERS) if a.split(".")[0] == question]
    return f[:, cols].sum(axis=1)


def _random_probs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.zeros((n, len(gz2.ANSWERS)))
    for q in gz2.QUESTIONS:
        p[:, list(q.columns)] = rng.dirichlet(np.full(len(q.columns), 0.7), size=n)
    return p


def test_answers_are_the_37_kaggle_columns_in_order():
    assert len(gz2.ANSWERS) == 37
    assert len(gz2.QUESTIONS) == 11
    assert gz2.ANSWERS[:4] == ("Class1.1", "Class1.2", "Class1.3", "Class2.1")
    assert gz2.ANSWERS[-1] == "Class11.6"
    tree = json.loads(REFERENCE.read_text())
    names = [a for q in tree["questions"] for a in q["answers"]]
    assert sorted(names) == sorted(gz2.ANSWERS)
    assert gz2.column_names()[0] == "gz2_class1_1"
    assert gz2.column_names("truth_gz2_")[-1] == "truth_gz2_class11_6"


def _check_kaggle_rules(f: np.ndarray, atol: float) -> None:
    a = {name: f[:, _col(name)] for name in gz2.ANSWERS}
    np.testing.assert_allclose(_sum(f, "Class1"), 1.0, atol=atol)
    np.testing.assert_allclose(_sum(f, "Class6"), 1.0, atol=atol)
    np.testing.assert_allclose(_sum(f, "Class8"), a["Class6.1"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class2"), a["Class1.2"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class3"), a["Class2.2"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class4"), a["Class2.2"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class7"), a["Class1.1"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class9"), a["Class2.1"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class10"), a["Class4.1"], atol=atol)
    np.testing.assert_allclose(_sum(f, "Class11"), _sum(f, "Class10"), atol=atol)
    np.testing.assert_allclose(_sum(f, "Class5"), a["Class4.2"] + _sum(f, "Class11"), atol=atol)
    assert np.all(f >= 0) and np.all(f <= 1 + atol)
    assert max(gz2.check_sum_rules(f).values()) < atol


def test_expected_fractions_follow_the_kaggle_sum_rules():
    f = gz2.expected_fractions(_random_probs(500))
    _check_kaggle_rules(f, 1e-12)


def test_simulated_votes_follow_the_sum_rules_and_converge():
    probs = _random_probs(300, seed=1)
    rng = np.random.default_rng(2)
    votes = gz2.simulate_votes(probs, 40, rng)
    _check_kaggle_rules(votes, 1e-12)
    # fractions are whole votes
    np.testing.assert_allclose(votes * 40, np.round(votes * 40), atol=1e-9)
    many = gz2.simulate_votes(probs, 20000, np.random.default_rng(3))
    np.testing.assert_allclose(many, gz2.expected_fractions(probs), atol=0.03)


def test_simulated_votes_are_reproducible():
    probs = _random_probs(20, seed=4)
    a = gz2.simulate_votes(probs, 40, np.random.default_rng(9))
    b = gz2.simulate_votes(probs, 40, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)


def test_normalise_per_question_is_nan_safe():
    probs = _random_probs(50, seed=5)
    f = gz2.simulate_votes(probs, 5, np.random.default_rng(6))
    f[0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = gz2.normalise_per_question(f)
    for q in gz2.QUESTIONS:
        s = f[:, list(q.columns)].sum(axis=1)
        ns = norm[:, list(q.columns)].sum(axis=1)
        reached = np.isfinite(s) & (s > 0)
        np.testing.assert_allclose(ns[reached], 1.0, atol=1e-12)
        assert np.all(np.isnan(norm[~reached][:, list(q.columns)]))
    assert np.all(np.isnan(norm[0]))
    filled = gz2.normalise_per_question(f, fill=0.0)
    assert np.all(filled[0] == 0.0)
    # expected fractions normalised give back the conditional probabilities
    np.testing.assert_allclose(
        gz2.normalise_per_question(gz2.expected_fractions(probs)), probs, atol=1e-12
    )


def test_bad_probabilities_are_rejected():
    with pytest.raises(ValueError, match="37 columns"):
        gz2.expected_fractions(np.ones((3, 36)))
    bad = _random_probs(3)
    bad[:, 0] += 0.5
    with pytest.raises(ValueError, match="Class1"):
        gz2.expected_fractions(bad)
    with pytest.raises(ValueError, match="n_voters"):
        gz2.simulate_votes(_random_probs(2), 0, np.random.default_rng(0))


def test_probabilities_from_truth_follow_the_structure():
    n = 4
    p = gz2.probabilities_from_truth(
        bt=np.array([0.9, 0.05, 0.1, 0.2]),
        early=np.array([True, False, False, False]),
        q_disc=np.array([0.8, 0.12, 0.7, 0.6]),
        q_bulge=np.array([0.9, 0.8, 0.8, 0.8]),
        merger=np.array([False, False, False, True]),
        projection=np.zeros(n, dtype=bool),
    )
    f = gz2.expected_fractions(p)
    assert f[0, _col("Class1.1")] > 0.8  # bulge-dominated elliptical: smooth
    assert f[1, _col("Class2.1")] > 0.7  # thin edge-on disc
    assert f[2, _col("Class4.1")] > 0.5  # face-on late type: spiral plausible
    assert f[3, _col("Class6.1")] > 0.7  # merger: odd ...
    assert f[3, _col("Class8.6")] > 0.3  # ... and called a merger
    assert f[0, _col("Class7.1")] > f[0, _col("Class7.3")]  # round
