"""``gz2``: colour cutout -> the 37 Galaxy Zoo 2 vote fractions (Dieleman et al. 2015;
Kattuparambil; Zoobot, Walmsley et al. 2022).

The head turns 37 numbers into answer probabilities by a softmax per question,
then walks the decision tree of `galcat.gz2` (Willett et al. 2013) with the Kaggle
weighting: each question's answers are scaled by the fraction of volunteers who
reached it. Every output therefore obeys the tree's sum rules exactly. Trained on
the vote fractions the survey provides (`galcat.labels`: the synthetic survey's
simulated volunteers, SDSS's zoo2MainSpecz debiased fractions) by the votes'
multinomial likelihood question by question (`multinomial_vote_loss`; ``vote_loss:
least_squares``: the Kaggle RMSE, as before 2026-12-07), weighted by each
object's number of votes where the survey gives it (a fraction of N votes has a
binomial variance ~1/N), with a Gaussian width per answer. The answers of
questions too few volunteers reached are NaN and masked (`partial_labels`).
Scored against the votes (and, weighted by the number of votes, where known) and,
on the synthetic survey, against the expected fractions (``truth_gz2_*``) beside
the label-noise floor (the RMSE of the expected fractions against the votes).
Baselines: the mean vote of the training split and a random forest on the `measure`
features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galcat import gz2
from galcat.config import POINT_ESTIMATE_BESIDE_LIKELIHOOD
from galcat.labels import VOTES_COLUMN
from galcat.models import baselines, scores
from galcat.models.registry import (
    Family,
    Output,
    inputs_phrase,
    mlp,
    register,
    regression_loss,
    width_loss,
)

__all__ = ["GZ2", "MIN_STD", "VOTE_LOSSES", "TreeHead", "multinomial_vote_loss", "tree_fractions"]

_INDEX = {a: i for i, a in enumerate(gz2.ANSWERS)}
#: Floor of the predicted standard deviation of a vote fraction.
MIN_STD = 0.005
_ALWAYS = set(gz2.ALWAYS_REACHED)
#: What the fractions' logits are fitted by (``models.<name>.vote_loss``).
VOTE_LOSSES = ("least_squares", "multinomial")
_QUESTION_COLUMNS = tuple(list(q.columns) for q in gz2.QUESTIONS)


def tree_fractions(logits: torch.Tensor) -> torch.Tensor:
    """Kaggle-weighted fractions ``(n, 37)`` from per-answer ``logits``.

    The torch counterpart of `galcat.gz2.expected_fractions` applied to the
    per-question softmax of ``logits`` (a test checks they agree).
    """
    cols: list[torch.Tensor | None] = [None] * len(gz2.ANSWERS)
    ones = torch.ones(logits.shape[0], 1, dtype=logits.dtype, device=logits.device)
    for q in gz2.walk_order():
        probs = F.softmax(logits[:, list(q.columns)], dim=1)
        if q.id in _ALWAYS:
            reach = ones
        else:
            reach = sum(cols[_INDEX[a]] for a in q.reached_from)
        for j, c in enumerate(q.columns):
            cols[c] = reach * probs[:, j : j + 1]
    return torch.cat(cols, dim=1)


def multinomial_vote_loss(logits: torch.Tensor, votes: torch.Tensor,
                          weight: torch.Tensor | None = None) -> torch.Tensor:
    """The volunteers' votes' multinomial log-likelihood per vote, less its maximum.

    For each question, the votes of the ``N r`` volunteers who reached it (``r``:
    the Kaggle-weighted fractions of its answers summed) are a multinomial draw
    from the question's answer probabilities ``softmax(logits)``; minus the log
    likelihood over ``N`` is ``r`` times the Kullback-Leibler divergence of the
    predicted probabilities from the observed shares, summed over the questions
    (0 for a perfect fit). The fractions' least squares weigh every answer's
    residual alike, though a fraction near 0 or 1 scatters far less than one near
    0.5 (binomial variance ``p (1 - p) / N``); the likelihood weighs each by the
    votes' own precision. NaN votes (questions too few volunteers reached) add
    nothing.

    Parameters
    ----------
    logits : torch.Tensor
        ``(n, 37)`` per-answer logits of `TreeHead`.
    votes : torch.Tensor
        ``(n, 37)`` observed Kaggle-weighted vote fractions (NaN: masked).
    weight : torch.Tensor, optional
        ``(n,)`` per-object weight, the number of votes relative to the mean.

    Returns
    -------
    torch.Tensor
        The weighted mean over the objects, in nats per volunteer.
    """
    f = torch.where(torch.isfinite(votes), votes, torch.zeros_like(votes))
    per_object = torch.zeros(f.shape[0], dtype=logits.dtype, device=logits.device)
    for cols in _QUESTION_COLUMNS:
        share = f[:, cols]
        reach = share.sum(dim=1, keepdim=True)
        observed = share / reach.clamp_min(torch.finfo(share.dtype).tiny)
        log_p = F.log_softmax(logits[:, cols], dim=1)
        per_object = per_object + (torch.xlogy(share, observed) - share * log_p).sum(dim=1)
    if weight is None:
        return per_object.mean()
    w = weight.reshape(-1).to(per_object.dtype)
    return (w * per_object).sum() / w.sum().clamp_min(1e-12)


class TreeHead(nn.Module):
    """Encoder features -> ``{"mean": fractions (n, 37), "std": (n, 37)}``.

    ``vote_loss`` (one of `VOTE_LOSSES`) is what `GZ2.loss` fits the logits by.
    The standard deviations are floored at `MIN_STD` (a fifth of the 1/40 step of
    a vote fraction of 40 volunteers): without a floor the likelihood of the many
    answers that nobody reaches drives them to zero and the training diverges.
    """

    def __init__(self, n_features: int, *, vote_loss: str = "least_squares") -> None:
        super().__init__()
        if vote_loss not in VOTE_LOSSES:
            raise ValueError(f"vote_loss must be one of {VOTE_LOSSES}; got {vote_loss!r}")
        self.vote_loss = vote_loss
        self.logits = mlp(n_features, len(gz2.ANSWERS))
        self.std = mlp(n_features, len(gz2.ANSWERS))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        # the widths are fitted on detached features, as in GaussianHead
        logits = self.logits(features)
        return {"mean": tree_fractions(logits), "logits": logits,
                "std": F.softplus(self.std(features.detach())) + MIN_STD}


class GZ2(Family):
    name = "gz2"
    summary = "colour cutout -> 37 Galaxy Zoo 2 vote fractions, sum rules of the tree exact"
    label_columns = tuple(gz2.column_names("gz2_"))
    standardise_targets = False
    partial_labels = True
    # `_err` is the spread of a volunteer vote fraction about the prediction, so the
    # validation votes are what it must cover: the likelihood-fitted width covered 81%
    # of the test votes (science config), residuals with heavier tails than a Gaussian
    calibrates_std = True
    fits_point_estimate = True

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        return table[list(self.label_columns)].to_numpy(np.float64)

    def head(self, n_features: int, n_targets: int, **shape) -> nn.Module:
        settings = shape.get("settings") or {}
        # dict.get: a model saved before the key was fitted by least squares
        vote_loss = settings.get("vote_loss", "least_squares")
        point = settings.get("point_estimate", "mean")
        # also refused when the config loads (galcat.config); here for direct callers
        if vote_loss == "multinomial" and point != "mean":
            raise ValueError(f"point_estimate {point!r} {POINT_ESTIMATE_BESIDE_LIKELIHOOD}")
        return TreeHead(n_features, vote_loss=vote_loss)

    def loss(self, out, target, batch, net) -> torch.Tensor:
        """The head's ``vote_loss`` (the votes' likelihood or least squares) weighted by
        the votes behind each object's fractions (where known), plus the widths'
        Gaussian likelihood."""
        votes = batch.get(VOTES_COLUMN)
        weight = None
        if votes is not None and bool(torch.isfinite(votes).any()):
            known = torch.isfinite(votes) & (votes > 0)
            # relative to the batch's mean count, so the loss keeps its scale; an object
            # of unknown count weighs as an average one
            weight = torch.where(known, votes / votes[known].mean(), torch.ones_like(votes))
        if net.head.vote_loss == "multinomial":
            return (multinomial_vote_loss(out["logits"], target, weight)
                    + width_loss(out["mean"], out["std"], target))
        return regression_loss(out["mean"], out["std"], target, scale=net.loss_scale,
                               weight=weight, point_estimate=net.point_estimate,
                               huber_delta=net.huber_delta)

    def outputs(self, settings=None) -> list[Output]:
        out, seen = [], inputs_phrase(settings)
        for q in gz2.QUESTIONS:
            for answer, label in zip(q.answers, q.labels, strict=True):
                col = gz2.column_names("")[_INDEX[answer]]
                out.append(Output(col, "", f"Galaxy Zoo 2 vote fraction {answer} ({q.id}: {label}) "
                                  f"predicted by the network from the cutout{seen}, Kaggle "
                                  "weighting; _err is the 1-sigma spread of a volunteer vote "
                                  "fraction about it"))
        return sorted(out, key=lambda o: gz2.column_names("").index(o.name))

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        names = gz2.column_names("")
        out = {}
        for j, name in enumerate(names):
            out[name] = mean[:, j]
            out[f"{name}_err"] = std[:, j]
        return out

    def _matrix(self, pred: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.stack([np.asarray(pred[c], np.float64) for c in gz2.column_names("")], axis=1)

    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        y = self.targets(data.table.loc[data.train])
        n = int(data.test.sum())
        names = gz2.column_names("")
        rf = data.random_forest(y)
        mean = baselines.mean_predictor(y, n)
        return {"mean_vote": dict(zip(names, mean.T, strict=True)),
                "random_forest": dict(zip(names, rf.T, strict=True))}

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        test = data.table.loc[data.test]
        votes = self.targets(test)
        truth_cols = gz2.column_names("truth_gz2_")
        # expected fractions exist only where the volunteers are simulated
        expected = (test[truth_cols].to_numpy(np.float64)
                    if set(truth_cols) <= set(test.columns) else None)
        n_votes = (test[VOTES_COLUMN].to_numpy(np.float64) if VOTES_COLUMN in test.columns
                   else None)
        if n_votes is not None and not np.isfinite(n_votes).any():
            n_votes = None
        out: dict = {}
        if expected is not None:
            out["noise_floor_rmse"] = scores.rmse(expected, votes)
        for name, pred in predictions.items():
            f = self._matrix(pred)
            entry = {"rmse_votes": scores.rmse(f, votes),
                     "sum_rule_max_violation": max(gz2.check_sum_rules(f).values())}
            if n_votes is not None:
                entry["rmse_votes_weighted"] = scores.weighted_rmse(f, votes, n_votes)
            if expected is not None:
                entry["rmse_expected"] = scores.rmse(f, expected)
                entry["rmse_votes_over_floor"] = entry["rmse_votes"] / out["noise_floor_rmse"]
            if f"{gz2.column_names('')[0]}_err" in pred:
                err = np.stack([np.asarray(pred[f"{c}_err"]) for c in gz2.column_names("")], 1)
                entry["coverage_68"] = scores.coverage(f, err, votes)
            out[name] = entry
        return out


register(GZ2())
