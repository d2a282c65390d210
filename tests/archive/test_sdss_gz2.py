"""The SDSS client's Galaxy Zoo 2 columns come from galcat.gz2's one tree walk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat import gz2
from galcat.surveys import sdss


def test_kaggle_fractions_is_the_walk_of_expected_fractions():
    rng = np.random.default_rng(3)
    probs = np.zeros((5, len(gz2.ANSWERS)))
    for q in gz2.QUESTIONS:
        block = rng.uniform(0.05, 1.0, (5, len(q.columns)))
        probs[:, list(q.columns)] = block / block.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(gz2.kaggle_fractions(probs), gz2.expected_fractions(probs))
    # debiased fractions that do not sum to 1 are renormalised per question first
    scaled = probs.copy()
    scaled[:, list(gz2.QUESTIONS[0].columns)] *= 0.9
    np.testing.assert_allclose(gz2.kaggle_fractions(scaled), gz2.expected_fractions(probs))
    assert max(gz2.check_sum_rules(gz2.kaggle_fractions(scaled)).values()) < 1e-12


def test_kaggle_fractions_missing_and_unanswered():
    votes = np.full((2, len(gz2.ANSWERS)), np.nan)
    out = gz2.kaggle_fractions(votes)
    assert np.isnan(out).all()  # an object absent from the catalogue: NaN everywhere
    first = gz2.QUESTIONS[0]
    one = np.zeros(len(gz2.ANSWERS))
    one[list(first.columns)] = [1.0, 0.0, 0.0]  # all smooth: nobody reached the disc branch
    out = gz2.kaggle_fractions(one)
    assert out.shape == (len(gz2.ANSWERS),)
    assert out[first.columns[0]] == 1.0
    disc_only = [q for q in gz2.QUESTIONS if q.id == "Class2"][0]
    assert (out[list(disc_only.columns)] == 0).all()  # unreached: 0, not NaN
    with pytest.raises(ValueError, match="37 columns"):
        gz2.kaggle_fractions(np.zeros((2, 36)))


def test_sdss_columns_are_gz2_column_names_and_values():
    rng = np.random.default_rng(7)
    raw = rng.uniform(0, 1, (3, len(gz2.ANSWERS)))
    raw[2] = np.nan
    df = pd.DataFrame({f"gz2_raw_{a.removeprefix('Class').replace('.', '_')}": raw[:, k]
                       for k, a in enumerate(gz2.ANSWERS)})
    out = sdss._gz2_kaggle(df)
    assert list(out.columns[-37:]) == gz2.column_names("gz2_")
    np.testing.assert_allclose(out[gz2.column_names("gz2_")].to_numpy(),
                               gz2.kaggle_fractions(raw), equal_nan=True)
    assert list(sdss.GZ2_COLUMNS) == [a.removeprefix("Class") for a in gz2.ANSWERS]
