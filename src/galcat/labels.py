"""Training labels per survey: which model families a survey can train, from which columns.

Each survey declares, per family, where its object table keeps that family's
targets (`LabelSource`): the synthetic survey its truths and simulated votes,
SDSS the Galaxy Zoo 2 debiased vote fractions with their number of
classifications and the MPA-JHU 12 + log(O/H) with its 16th-84th percentile
range. A family trains on a survey only if the survey provides its target
(`provides`); `galcat.config.trained_models` asks here. MaNGA, JADES and local
tables hold no labels a family learns, so they train nothing.

`label_table` turns an object table into the family's own label columns (the
names its ``targets`` read), applies the quality cuts of the config's ``labels``
section (an object that fails keeps its row with NaN labels: it is predicted,
never trained on, and never filled in) and adds the per-object weights the losses
read: `VOTES_COLUMN` (the number of classifications, GZ2) and `ERROR_COLUMN`
(the 1-sigma measurement error of a regression label, dex for metallicity).
torch-free: the workflow imports it to plan the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from galcat import gz2

__all__ = ["ERROR_COLUMN", "SURVEY_LABELS", "VOTES_COLUMN", "LabelSource", "cut_keys",
           "label_spec", "label_table", "provides"]

#: Column of `label_table` with the number of volunteer classifications (NaN: unknown).
VOTES_COLUMN = "label_votes"
#: Column of `label_table` with the 1-sigma error of a regression label (NaN: none).
ERROR_COLUMN = "label_err"
#: MPA-JHU ``bptclass`` of star-forming galaxies (Brinchmann et al. 2004: class 1,
#: S/N > 3 in the four BPT lines and below the Kauffmann et al. 2003 line).
BPT_STAR_FORMING = 1
#: The four BPT lines whose S/N the metallicity cut reads (`galcat.surveys.sdss.LINES`).
BPT_LINES = ("h_alpha", "h_beta", "oiii_5007", "nii_6584")


@dataclass(frozen=True)
class LabelSource:
    """Where one survey keeps one family's labels.

    Attributes
    ----------
    columns : tuple of str or None
        The survey's columns, in the order of the family's ``label_columns``; None:
        the family's own names (the synthetic survey's truths).
    votes : str or None
        Column of the number of volunteer classifications (GZ2).
    error : tuple of str or None
        ``(p16, p84)`` columns; the label's 1-sigma error is half their difference.
    cuts : tuple of str
        Keys of the config's ``labels.{family}`` section this source applies (only
        these reach the train rule's params).
    extra : tuple of (str, str)
        ``(family column, survey column)`` pairs of further columns a family's
        baselines read (the stellar mass of the MZR baseline).
    """

    columns: tuple[str, ...] | None = None
    votes: str | None = None
    error: tuple[str, str] | None = None
    cuts: tuple[str, ...] = field(default_factory=tuple)
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)


#: Every family, from the synthetic survey's own columns.
_ALL = "*"

#: survey -> family -> where its labels are. Surveys not listed provide none.
SURVEY_LABELS: dict[str, dict[str, LabelSource]] = {
    "synthetic": {_ALL: LabelSource()},
    "sdss": {
        # zoo2MainSpecz debiased fractions, Kaggle-weighted by galcat.surveys.sdss
        "gz2": LabelSource(columns=tuple(gz2.column_names("gz2_")),
                           votes="gz2_total_classifications",
                           cuts=("min_votes", "min_question_votes")),
        # galSpecExtra.oh_p50 with its p16/p84
        "metallicity": LabelSource(columns=("oh_12",), error=("oh_12_p16", "oh_12_p84"),
                                   cuts=("star_forming_only", "min_line_snr"),
                                   extra=(("truth_log_mass", "log_mass"),)),
    },
    "manga": {},
    "jades": {},
    "local": {},
}


def _source(survey: str, family: str) -> LabelSource | None:
    labels = SURVEY_LABELS.get(survey, {})
    return labels.get(family, labels.get(_ALL))


def provides(survey: str, family: str) -> bool:
    """Whether ``survey``'s object table holds the labels of ``family``."""
    return _source(survey, family) is not None


def label_spec(survey: str, family: str, cuts: Mapping | None) -> dict | None:
    """The JSON-ready description of ``family``'s labels on ``survey`` (None: none).

    ``cuts`` is the config's ``labels.{family}`` section; only the keys the
    source applies are kept, so that a cut another survey reads reruns nothing
    here. This dict is what the train and evaluate rules carry in their params
    and what `label_table` reads.
    """
    src = _source(survey, family)
    if src is None:
        return None
    # only the cuts this source applies are read: the others are no params of its jobs
    return {"survey": survey, "columns": None if src.columns is None else list(src.columns),
            "votes": src.votes, "error": None if src.error is None else list(src.error),
            "extra": {k: v for k, v in src.extra},
            "cuts": {k: cuts[k] for k in src.cuts} if src.cuts else {}}


def cut_keys(survey: str, family: str) -> tuple[str, ...]:
    """Keys of ``labels.{family}`` that apply on ``survey`` (what its jobs' params carry)."""
    src = _source(survey, family)
    return () if src is None else src.cuts


def label_table(table: pd.DataFrame, spec: Mapping | None, label_columns: tuple[str, ...], *,
                source: str = "object table") -> tuple[pd.DataFrame, dict]:
    """``table`` with ``label_columns`` made from the survey's columns, cuts applied.

    Parameters
    ----------
    table : DataFrame
        The object table (``object_id`` and the survey's columns).
    spec : mapping or None
        `label_spec`'s dict; None: the columns are the family's own, uncut.
    label_columns : tuple of str
        The family's label columns (``Family.label_columns``).
    source : str
        Name of the table in errors.

    Returns
    -------
    table : DataFrame
        A copy with ``label_columns`` (NaN where a cut removed a label),
        `VOTES_COLUMN` and `ERROR_COLUMN`.
    summary : dict
        The cuts, how many labelled objects each left without any label
        (``removed``) and how many label values it masked (``masked_values``), for
        ``train.json`` and ``metrics.json``.

    Raises
    ------
    KeyError
        Naming the survey's columns the table lacks.
    """
    spec = dict(spec or {})
    out = table.copy()
    columns = spec.get("columns") or list(label_columns)
    if len(columns) != len(label_columns):
        raise ValueError(f"labels of {source!r}: {len(columns)} survey columns for the "
                         f"{len(label_columns)} label columns {list(label_columns)}")
    extra = dict(spec.get("extra") or {})
    needed = [*columns, *([spec["votes"]] if spec.get("votes") else []), *(spec.get("error") or []),
              *extra.values()]
    missing = [c for c in needed if c not in out.columns]
    if missing:
        raise KeyError(f"labels of {source!r} (survey {spec.get('survey', '?')!r}): the table "
                       f"lacks columns {missing}")
    values = out[columns].to_numpy(np.float64).copy()
    votes = (out[spec["votes"]].to_numpy(np.float64) if spec.get("votes")
             else np.full(len(out), np.nan))
    err = (0.5 * (out[spec["error"][1]].to_numpy(np.float64)
                  - out[spec["error"][0]].to_numpy(np.float64))
           if spec.get("error") else np.full(len(out), np.nan))
    labelled = np.any(np.isfinite(values), axis=1)
    summary: dict = {"survey": spec.get("survey"), "labelled": int(labelled.sum()),
                     "cuts": dict(spec.get("cuts") or {}), "removed": {}, "masked_values": {}}
    for key, value in (spec.get("cuts") or {}).items():
        keep = _CUTS[key](out, values, votes, value)
        before = np.isfinite(values)
        values[~keep] = np.nan  # a row mask (per object) or an element mask (per label)
        after = np.isfinite(values)
        # objects left without any label, and label values masked (a question's answers)
        summary["removed"][key] = int((before.any(axis=1) & ~after.any(axis=1)).sum())
        summary["masked_values"][key] = int((before & ~after).sum())
    summary["kept"] = int(np.any(np.isfinite(values), axis=1).sum())
    for j, name in enumerate(label_columns):
        out[name] = values[:, j]
    for name, col in extra.items():
        out[name] = out[col].to_numpy(np.float64)
    out[VOTES_COLUMN] = votes
    out[ERROR_COLUMN] = np.where(np.isfinite(err) & (err > 0), err, np.nan)
    return out, summary


# ----------------------------------------------------------------------- quality cuts
# Each returns True where a label is kept: per object (n,) or per label (n, k).


def _min_votes(table: pd.DataFrame, values: np.ndarray, votes: np.ndarray, minimum) -> np.ndarray:
    """At least ``minimum`` classifications (Willett et al. 2013 publish from ~20)."""
    return np.isfinite(votes) & (votes >= float(minimum))


def _min_question_votes(table: pd.DataFrame, values: np.ndarray, votes: np.ndarray,
                        minimum) -> np.ndarray:
    """Answers of a question reached by fewer than ``minimum`` volunteers are masked.

    The volunteers who reached a question are the classifications times the
    Kaggle fraction of its answers (the fraction that reached it): a fraction
    made of three votes says little (Walmsley et al. 2022 mask such questions).
    """
    keep = np.ones(values.shape, bool)
    for q in gz2.QUESTIONS:
        cols = list(q.columns)
        reached = np.nansum(values[:, cols], axis=1) * votes
        ok = np.isfinite(votes) & (reached >= float(minimum))
        keep[:, cols] = ok[:, None]
    return keep


def _star_forming_only(table: pd.DataFrame, values: np.ndarray, votes: np.ndarray,
                       on) -> np.ndarray:
    """MPA-JHU metallicities hold only for star-forming spectra (BPT class 1)."""
    if not on:
        return np.ones(len(table), bool)
    if "bpt_class" not in table.columns:
        raise KeyError("labels.metallicity.star_forming_only: the object table has no "
                       "bpt_class column")
    return table["bpt_class"].to_numpy(np.float64) == BPT_STAR_FORMING


def _min_line_snr(table: pd.DataFrame, values: np.ndarray, votes: np.ndarray,
                  minimum) -> np.ndarray:
    """S/N of every BPT line at least ``minimum`` (Brinchmann et al. 2004 use 3)."""
    keep = np.ones(len(table), bool)
    for line in BPT_LINES:
        flux, err = f"{line}_flux", f"{line}_flux_err"
        if flux not in table.columns or err not in table.columns:
            raise KeyError(f"labels.metallicity.min_line_snr: the object table has no "
                           f"{flux}/{err} columns")
        f = table[flux].to_numpy(np.float64)
        e = table[err].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            keep &= np.isfinite(f) & np.isfinite(e) & (e > 0) & (f / e >= float(minimum))
    return keep


_CUTS = {"min_votes": _min_votes, "min_question_votes": _min_question_votes,
         "star_forming_only": _star_forming_only, "min_line_snr": _min_line_snr}
