"""The Galaxy Zoo 2 decision tree: expected and finite-voter vote fractions.

The tree (11 questions, 37 answers) is Willett et al. (2013, MNRAS 435, 2835),
Table 2, loaded from ``galcat/data/gz2_decision_tree.json`` with the answer names
of the Galaxy Zoo Kaggle challenge (``Class1.1`` ... ``Class11.6``).

Fractions follow the Kaggle weighting (the ``weighting`` note of the JSON file):

* the answers of a question sum to the fraction of volunteers who reached it,
  i.e. the sum of the fractions of the answers listed in ``reached_from``;
* ``Class1`` sums to 1;
* ``Class6`` ("anything odd?") sums to 1 for every galaxy, even when some
  volunteers answered ``Class1.3`` (star or artifact);
* ``Class8`` therefore sums to ``Class6.1``.

Arrays of per-answer quantities have shape ``(n, 37)`` with columns in the order
of `ANSWERS`. Conditional answer probabilities (``probs``) give, for every
question, the probability of each answer *given that the question is reached*,
so each question's block of columns sums to 1.

Public API: `ANSWERS`, `QUESTIONS`, `Question`, `column_names`,
`expected_fractions`, `kaggle_fractions`, `simulate_votes`, `normalise_per_question`,
`probabilities_from_truth`, `check_sum_rules`, `walk_order`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

__all__ = [
    "ANSWERS",
    "QUESTIONS",
    "Question",
    "check_sum_rules",
    "column_names",
    "expected_fractions",
    "kaggle_fractions",
    "normalise_per_question",
    "probabilities_from_truth",
    "simulate_votes",
    "walk_order",
]

#: Questions whose answers are normalised to sum to 1 for every galaxy (Kaggle).
ALWAYS_REACHED = ("Class1", "Class6")


@dataclass(frozen=True)
class Question:
    """One question of the tree.

    Attributes
    ----------
    id : str
        Kaggle name of the question, e.g. ``"Class1"``.
    text : str
    answers : tuple of str
        Kaggle names of its answers, e.g. ``("Class1.1", "Class1.2", "Class1.3")``.
    labels : tuple of str
        Short meaning of each answer ("smooth", ...).
    reached_from : tuple of str
        Answers that lead to this question (empty for the first question).
    columns : tuple of int
        Positions of its answers in `ANSWERS`.
    """

    id: str
    text: str
    answers: tuple[str, ...]
    labels: tuple[str, ...]
    reached_from: tuple[str, ...]
    columns: tuple[int, ...]


@cache
def _load() -> tuple[tuple[Question, ...], tuple[str, ...]]:
    text = resources.files("galcat").joinpath("data/gz2_decision_tree.json").read_text()
    tree = json.loads(text)
    answers: list[str] = []
    raw = []
    for q in tree["questions"]:
        names = tuple(q["answers"].keys())
        raw.append((q, names, len(answers)))
        answers.extend(names)

    # ANSWERS in Kaggle order: Class1.1 ... Class11.6 (questions sorted numerically).
    def key(name: str) -> tuple[int, int]:
        qn, an = name.removeprefix("Class").split(".")
        return int(qn), int(an)

    ordered = tuple(sorted(answers, key=key))
    index = {a: i for i, a in enumerate(ordered)}
    questions = []
    for q, names, _ in raw:
        questions.append(
            Question(
                id=q["id"],
                text=q["text"],
                answers=names,
                labels=tuple(q["answers"][a] for a in names),
                reached_from=tuple(q["reached_from"]),
                columns=tuple(index[a] for a in names),
            )
        )
    questions.sort(key=lambda q: int(q.id.removeprefix("Class")))
    return tuple(questions), ordered


QUESTIONS: tuple[Question, ...] = _load()[0]
#: The 37 Kaggle answer names in column order: Class1.1, Class1.2, ..., Class11.6.
ANSWERS: tuple[str, ...] = _load()[1]
_QUESTION_BY_ID = {q.id: q for q in QUESTIONS}
_ANSWER_INDEX = {a: i for i, a in enumerate(ANSWERS)}


def column_names(prefix: str = "gz2_") -> list[str]:
    """Table column names of the 37 answers: ``Class1.1`` -> ``{prefix}class1_1``."""
    return [prefix + a.lower().replace(".", "_") for a in ANSWERS]


def _walk_order() -> list[Question]:
    """Questions in an order where every question follows those that lead to it."""
    done: set[str] = set()
    order: list[Question] = []
    answer_owner = {a: q.id for q in QUESTIONS for a in q.answers}
    pending = list(QUESTIONS)
    while pending:
        progressed = False
        for q in list(pending):
            parents = set() if q.id in ALWAYS_REACHED else {answer_owner[a] for a in q.reached_from}
            if parents <= done:
                order.append(q)
                done.add(q.id)
                pending.remove(q)
                progressed = True
        if not progressed:  # pragma: no cover - the shipped tree is acyclic
            raise ValueError("the GZ2 decision tree has a cycle")
    return order


_ORDER = _walk_order()


def walk_order() -> tuple[Question, ...]:
    """The questions in the order the Kaggle weighting is computed: each question
    after those whose answers lead to it (for code that walks the tree itself,
    e.g. a network head that turns answer probabilities into fractions)."""
    return tuple(_ORDER)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        probs = probs[None, :]
    if probs.shape[-1] != len(ANSWERS):
        raise ValueError(
            f"probabilities need {len(ANSWERS)} columns (one per answer); got {probs.shape}"
        )
    if np.any(probs < 0) or not np.all(np.isfinite(probs)):
        raise ValueError("answer probabilities must be finite and >= 0")
    for q in QUESTIONS:
        s = probs[:, q.columns].sum(axis=1)
        if np.any(np.abs(s - 1.0) > 1e-6):
            raise ValueError(f"answer probabilities of {q.id} must sum to 1 for every galaxy")
    return probs


def expected_fractions(probs: np.ndarray) -> np.ndarray:
    """Vote fractions of infinitely many volunteers (Kaggle weighting).

    Parameters
    ----------
    probs : ndarray, shape (n, 37)
        Conditional answer probabilities; each question's columns sum to 1.

    Returns
    -------
    ndarray of float64, shape (n, 37)
        ``fraction(answer) = reach(question) * probs(answer)``, where the reach of a
        question is the summed fraction of its ``reached_from`` answers, except
        ``Class1`` and ``Class6`` whose reach is 1.
    """
    return _walk(_check_probs(probs))


def _walk(cond: np.ndarray) -> np.ndarray:
    """Walk the tree: each answer's conditional value times the reach of its question.

    The one implementation of the Kaggle weighting; NaN propagates to every question
    below a NaN answer.
    """
    out = np.zeros_like(cond)
    for q in _ORDER:
        if q.id in ALWAYS_REACHED:
            reach = np.ones(cond.shape[0])
        else:
            reach = out[:, [_ANSWER_INDEX[a] for a in q.reached_from]].sum(axis=1)
        cols = list(q.columns)
        out[:, cols] = reach[:, None] * cond[:, cols]
    return out


def kaggle_fractions(votes: np.ndarray) -> np.ndarray:
    """Kaggle-weighted fractions from a catalogue's per-question vote fractions.

    Galaxy Zoo 2's tables (e.g. SDSS ``zoo2MainSpecz``) give, for each question, the
    fraction of the volunteers *who answered it* choosing each answer. This weights
    them as `expected_fractions` does: each answer times the fraction of volunteers
    who reached its question (Willett et al. 2013; the Kaggle convention).

    Parameters
    ----------
    votes : ndarray, shape (n, 37) or (37,)
        Per-question vote fractions in `ANSWERS` order; NaN where the catalogue has
        no value. A question's fractions need not sum to 1 (debiased ones do not):
        each question is first renormalised to sum to 1.

    Returns
    -------
    ndarray of float64, the shape of ``votes``
        Kaggle-weighted fractions satisfying `check_sum_rules`. A question nobody
        answered (its fractions sum to 0) contributes 0; a question whose fractions
        are all NaN is NaN, and so is every question below it (an object absent from
        the catalogue is NaN everywhere). Cost: O(n * 37).
    """
    v = np.asarray(votes, dtype=np.float64)
    squeeze = v.ndim == 1
    v = np.atleast_2d(v)
    if v.shape[-1] != len(ANSWERS):
        raise ValueError(f"votes need {len(ANSWERS)} columns (one per answer); got {v.shape}")
    cond = normalise_per_question(np.nan_to_num(v, nan=0.0), fill=0.0)
    for q in QUESTIONS:
        cols = list(q.columns)
        absent = np.all(np.isnan(v[:, cols]), axis=1)
        cond[np.ix_(absent, cols)] = np.nan
    out = _walk(cond)
    return out[0] if squeeze else out


def _multinomial(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Vectorised multinomial counts as a chain of conditional binomials."""
    counts = np.zeros(p.shape, dtype=np.int64)
    remaining = n.astype(np.int64).copy()
    left = np.ones(p.shape[0])
    for j in range(p.shape[1] - 1):
        with np.errstate(divide="ignore", invalid="ignore"):
            pj = np.where(left > 0, p[:, j] / left, 0.0)
        pj = np.clip(pj, 0.0, 1.0)
        c = rng.binomial(remaining, pj)
        counts[:, j] = c
        remaining -= c
        left = left - p[:, j]
    counts[:, -1] = remaining
    return counts


def simulate_votes(probs: np.ndarray, n_voters: int, rng: np.random.Generator) -> np.ndarray:
    """Vote fractions of ``n_voters`` volunteers who walk the tree.

    Each volunteer answers ``Class1``; the volunteers who reach a question answer
    it by drawing from its conditional probabilities (a multinomial per galaxy,
    vectorised over galaxies). As in the Kaggle table, every volunteer answers
    ``Class6``. Fractions are counts divided by ``n_voters``, so the sum rules of
    `expected_fractions` hold exactly.

    Parameters
    ----------
    probs : ndarray, shape (n, 37)
    n_voters : int
        Volunteers per galaxy (>= 1).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float64, shape (n, 37)
    """
    probs = _check_probs(probs)
    if int(n_voters) < 1:
        raise ValueError(f"n_voters must be >= 1; got {n_voters}")
    n = probs.shape[0]
    counts = np.zeros(probs.shape, dtype=np.int64)
    for q in _ORDER:
        if q.id in ALWAYS_REACHED:
            reach = np.full(n, int(n_voters), dtype=np.int64)
        else:
            reach = counts[:, [_ANSWER_INDEX[a] for a in q.reached_from]].sum(axis=1)
        cols = list(q.columns)
        counts[:, cols] = _multinomial(rng, reach, probs[:, cols])
    return counts / float(n_voters)


def normalise_per_question(fractions: np.ndarray, *, fill: float = np.nan) -> np.ndarray:
    """Divide each question's answers by their sum (the GZ2 "debiased-style" view).

    Parameters
    ----------
    fractions : ndarray, shape (n, 37)
        Kaggle-weighted fractions (expected, simulated or predicted); NaN allowed.
    fill : float, optional
        Value given to every answer of a question that nobody reached (its sum
        is 0 or NaN). Default NaN; no warning is raised.

    Returns
    -------
    ndarray of float64, shape (n, 37); each reached question sums to 1.
    """
    f = np.asarray(fractions, dtype=np.float64)
    squeeze = f.ndim == 1
    if squeeze:
        f = f[None, :]
    if f.shape[-1] != len(ANSWERS):
        raise ValueError(f"fractions need {len(ANSWERS)} columns; got {f.shape}")
    out = np.empty_like(f)
    for q in QUESTIONS:
        cols = list(q.columns)
        block = f[:, cols]
        s = block.sum(axis=1)
        ok = np.isfinite(s) & (s > 0)
        res = np.full(block.shape, fill, dtype=np.float64)
        res[ok] = block[ok] / s[ok, None]
        out[:, cols] = res
    return out[0] if squeeze else out


def check_sum_rules(fractions: np.ndarray, *, atol: float = 1e-6) -> dict[str, float]:
    """Largest violation of each Kaggle sum rule (0 when all hold); for tests and QA."""
    f = np.atleast_2d(np.asarray(fractions, dtype=np.float64))
    worst: dict[str, float] = {}
    for q in QUESTIONS:
        s = f[:, list(q.columns)].sum(axis=1)
        if q.id in ALWAYS_REACHED:
            target = np.ones_like(s)
        else:
            target = f[:, [_ANSWER_INDEX[a] for a in q.reached_from]].sum(axis=1)
        worst[q.id] = float(np.max(np.abs(s - target))) if s.size else 0.0
    return worst


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _soft_bins(x: np.ndarray, centres: list[float], width: float) -> np.ndarray:
    """Soft assignment of ``x`` to bins around ``centres`` (rows sum to 1)."""
    c = np.asarray(centres)[None, :]
    logit = -0.5 * ((x[:, None] - c) / width) ** 2
    logit -= logit.max(axis=1, keepdims=True)
    w = np.exp(logit)
    return w / w.sum(axis=1, keepdims=True)


def probabilities_from_truth(
    *,
    bt: np.ndarray,
    early: np.ndarray,
    q_disc: np.ndarray,
    q_bulge: np.ndarray,
    merger: np.ndarray,
    projection: np.ndarray,
    star_artifact: float = 0.01,
) -> np.ndarray:
    """Conditional answer probabilities of synthetic galaxies from their truth.

    A volunteer model, not a fit to Galaxy Zoo: it encodes the intended answer
    of each question (Willett et al. 2013, section 2) as a smooth function of
    the structural truth, so that the vote fractions correlate with what the
    images show.

    * Class1 smooth vs features: rises with the bulge-to-total ratio ``bt`` and
      for early types; edge-on thin discs and mergers look featured.
    * Class2 edge-on: ``q_disc`` below ~0.3.
    * Class3 bar, Class4 spiral, Class10 winding, Class11 arm number:
      plausible for late types (spiral more likely at low ``bt``; tighter
      arms at higher ``bt``, as along the Hubble sequence).
    * Class5 bulge prominence: soft bins of ``bt`` (0, 0.1, 0.3, 0.6).
    * Class6 odd: high for mergers, moderate for projections.
    * Class7 roundness: the axis ratio of the dominant component.
    * Class8 odd feature: merger/disturbed for mergers, "other"/merger for
      projections, else ring/lens/dust lane (dust lane for edge-on discs).
    * Class9 bulge shape of edge-on discs: from ``bt``.

    Parameters
    ----------
    bt : array
        Bulge-to-total light ratio (r band).
    early : array of bool
        Early type (quenched, bulge dominated).
    q_disc, q_bulge : array
        Projected axis ratios of disc and bulge.
    merger, projection : array of bool
    star_artifact : float
        Probability of answering "star or artifact".

    Returns
    -------
    ndarray, shape (n, 37), each question's block summing to 1.
    """
    bt = np.asarray(bt, dtype=np.float64)
    n = bt.shape[0]
    early = np.asarray(early, dtype=bool)
    q_disc = np.asarray(q_disc, dtype=np.float64)
    q_bulge = np.asarray(q_bulge, dtype=np.float64)
    merger = np.asarray(merger, dtype=bool)
    projection = np.asarray(projection, dtype=bool)
    p = np.zeros((n, len(ANSWERS)))

    def put(qid: str, block: np.ndarray) -> None:
        cols = list(_QUESTION_BY_ID[qid].columns)
        block = np.clip(block, 1e-6, None)
        p[:, cols] = block / block.sum(axis=1, keepdims=True)

    edge_on = _sigmoid((0.32 - q_disc) / 0.05)
    s = 7.0 * (bt - 0.55) + np.where(early, 1.2, -1.0)
    s = s - 2.5 * edge_on * (1.0 - bt) - 1.5 * merger
    p_smooth = (1.0 - star_artifact) * _sigmoid(s)
    put(
        "Class1",
        np.stack([p_smooth, 1.0 - star_artifact - p_smooth, np.full(n, star_artifact)], axis=1),
    )
    put("Class2", np.stack([edge_on, 1.0 - edge_on], axis=1))
    p_bar = np.where(early, 0.08, 0.30)
    put("Class3", np.stack([p_bar, 1.0 - p_bar], axis=1))
    p_spiral = np.where(early, 0.08, 0.15 + 0.75 * (1.0 - bt) ** 2)
    put("Class4", np.stack([p_spiral, 1.0 - p_spiral], axis=1))
    put("Class5", _soft_bins(bt, [0.0, 0.1, 0.3, 0.6], 0.1))
    p_odd = np.clip(0.07 + 0.78 * merger + 0.30 * projection, 0.0, 0.97)
    put("Class6", np.stack([p_odd, 1.0 - p_odd], axis=1))
    q_dom = np.where(bt >= 0.5, q_bulge, q_disc)
    put("Class7", _soft_bins(q_dom, [0.95, 0.65, 0.3], 0.12))
    base8 = np.array([0.18, 0.10, 0.10, 0.08, 0.35, 0.04, 0.15])
    merger8 = np.array([0.02, 0.02, 0.30, 0.06, 0.05, 0.53, 0.02])
    proj8 = np.array([0.04, 0.08, 0.10, 0.05, 0.40, 0.30, 0.03])
    b8 = np.where(merger[:, None], merger8, np.where(projection[:, None], proj8, base8))
    b8 = b8.copy()
    b8[:, 6] += 0.4 * edge_on * ~(merger | projection)
    put("Class8", b8)
    p_nobulge = np.clip(1.0 - bt / 0.08, 0.0, 1.0) * 0.8 + 0.05
    put("Class9", np.stack([(1.0 - p_nobulge) * 0.8, (1.0 - p_nobulge) * 0.2, p_nobulge], axis=1))
    put("Class10", _soft_bins(bt, [0.3, 0.15, 0.0], 0.1))
    put("Class11", np.tile([0.08, 0.45, 0.12, 0.06, 0.04, 0.25], (n, 1)))
    return p
