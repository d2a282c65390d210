"""Labels per survey (galcat.labels): which families a survey trains, the quality cuts,
NaN labels kept NaN (masked, never filled)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat import gz2
from galcat.config import load_config, run_notes, trained_models
from galcat.labels import ERROR_COLUMN, VOTES_COLUMN, label_spec, label_table, provides

GZ2_COLS = tuple(gz2.column_names("gz2_"))


def test_a_family_trains_only_where_the_survey_provides_its_labels():
    assert trained_models(load_config()) == ["r50", "gz2", "metallicity", "sersic", "vae",
                                             "pixels"]
    sdss = load_config(overrides={"survey": "sdss"})
    assert trained_models(sdss) == ["gz2", "metallicity"]
    assert any("'r50'" in note and "no training labels" in note for note in run_notes(sdss))
    for survey in ("manga", "jades"):
        assert trained_models(load_config(overrides={"survey": survey})) == []
    assert not provides("sdss", "r50") and provides("synthetic", "pixels")
    # a model of another name trains where its family's labels are
    other = load_config(overrides={"survey": "sdss", "models": {"oh": {"family": "metallicity"}}})
    assert "oh" in trained_models(other)


def _sdss_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 6
    probs = rng.dirichlet(np.ones(3), size=n)
    t = pd.DataFrame({"object_id": np.arange(n)})
    uniform = np.zeros(len(gz2.ANSWERS))
    for q in gz2.QUESTIONS:
        uniform[list(q.columns)] = 1.0 / len(q.columns)
    fr = gz2.expected_fractions(np.tile(uniform, (n, 1)))
    for j, c in enumerate(GZ2_COLS):
        t[c] = fr[:, j]
    t["gz2_class1_1"], t["gz2_class1_2"], t["gz2_class1_3"] = probs.T
    t["gz2_total_classifications"] = [40, 10, 40, np.nan, 60, 40]
    t.loc[5, list(GZ2_COLS)] = np.nan  # not in Galaxy Zoo 2
    t["oh_12"] = [8.9, 9.0, np.nan, 8.7, 8.8, 9.1]
    t["oh_12_p16"], t["oh_12_p84"] = t["oh_12"] - 0.05, t["oh_12"] + 0.05
    t["log_mass"] = 10.0
    t["bpt_class"] = [1, 1, 1, 4, 1, 1]
    for line in ("h_alpha", "h_beta", "oiii_5007", "nii_6584"):
        t[f"{line}_flux"] = [100.0, 100.0, 100.0, 100.0, 10.0, 100.0]
        t[f"{line}_flux_err"] = 5.0
    return t


def test_gz2_cuts_mask_objects_and_questions_and_record_counts():
    spec = label_spec("sdss", "gz2", {"min_votes": 20, "min_question_votes": 12.0})
    out, summary = label_table(_sdss_table(), spec, GZ2_COLS, source="t")
    y = out[list(GZ2_COLS)].to_numpy()
    # too few votes (10), unknown count and absent from GZ2: no label at all
    assert np.isnan(y[[1, 3, 5]]).all()
    assert summary["labelled"] == 5 and summary["kept"] == 3
    assert summary["removed"]["min_votes"] == 2
    # a question 40 volunteers reached at a fraction 0.25 (10 < 12) is masked alone
    q_low = [q for q in gz2.QUESTIONS if q.id == "Class11"][0]
    reach = np.nansum(_sdss_table()[[GZ2_COLS[c] for c in q_low.columns]].to_numpy(), axis=1)
    for row in (0, 2):
        masked = np.isnan(y[row, list(q_low.columns)]).all()
        assert masked == (reach[row] * 40 < 12.0)
        assert np.isfinite(y[row, :3]).all()
    assert np.isnan(y[0]).any()  # some deep question is reached by too few
    assert out[VOTES_COLUMN].tolist()[:3] == [40, 10, 40]
    assert summary["cuts"] == {"min_votes": 20, "min_question_votes": 12.0}


def test_metallicity_cuts_error_and_mass():
    spec = label_spec("sdss", "metallicity", {"star_forming_only": True, "min_line_snr": 3.0})
    out, summary = label_table(_sdss_table(), spec, ("truth_metallicity",), source="t")
    z = out["truth_metallicity"].to_numpy()
    # 2 has no metallicity (stays NaN: never filled), 3 is an AGN, 4 has line S/N 2
    assert np.isnan(z[[2, 3, 4]]).all() and np.isfinite(z[[0, 1, 5]]).all()
    assert summary["removed"] == {"star_forming_only": 1, "min_line_snr": 1}
    assert np.allclose(out[ERROR_COLUMN].to_numpy()[[0, 1, 5]], 0.05)
    assert (out["truth_log_mass"] == 10.0).all()


def test_cuts_of_other_surveys_are_not_read_and_missing_columns_named():
    assert label_spec("synthetic", "gz2", None)["cuts"] == {}
    assert label_spec("jades", "gz2", None) is None
    spec = label_spec("sdss", "metallicity", {"star_forming_only": False, "min_line_snr": 0.0})
    with pytest.raises(KeyError, match=r"oh_12_p84"):
        label_table(_sdss_table().drop(columns=["oh_12_p84"]), spec, ("truth_metallicity",))


def test_the_models_come_in_the_schema_s_order_whatever_the_config_s():
    """The catalogue's columns follow this order: a config that mentions sersic first
    (or adds a model of its own) must not move them."""
    config = load_config(overrides={"models": {"sersic": {"injections": 16},
                                               "mine": {"family": "r50"}}})
    assert list(config["models"])[:2] == ["sersic", "mine"]
    assert trained_models(config) == ["r50", "gz2", "metallicity", "sersic", "vae", "pixels",
                                      "mine"]
