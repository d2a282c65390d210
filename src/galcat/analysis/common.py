"""What every analysis shares: reading the catalogue's columns, the model's split,
the Poisson bootstrap, and writing JSON and PNG files atomically.

The analyses read the catalogue only (never the networks): a model's predictions are
its ``nn_{model}_*`` columns and ``nn_{model}_split`` says which objects it trained on.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import replacing_file
from galcat.report import _png, _pyplot
from galcat.tables import column_names, read_table

__all__ = [
    "AnalysisError",
    "bootstrap",
    "in_split",
    "no_data_figure",
    "read_columns",
    "save_figure",
    "write_json",
]


class AnalysisError(ValueError):
    """An analysis cannot run on this catalogue (the message names file and column)."""


def read_columns(catalogue: os.PathLike | str, wanted: Sequence[str]) -> pd.DataFrame:
    """The columns of ``wanted`` that the catalogue has (others are skipped, not fatal).

    Reads only those columns of the Parquet file, so a million-row catalogue with 200
    columns costs what the analysis needs.
    """
    have = set(column_names(catalogue))
    return read_table(catalogue, columns=[c for c in dict.fromkeys(wanted) if c in have])


def in_split(cat: pd.DataFrame, model: str, split: str) -> np.ndarray:
    """Objects to score model ``model`` on: its test split (``split='test'``) or all.

    A catalogue without ``nn_{model}_split`` (a model not in it) keeps every object.
    """
    column = f"nn_{model}_split"
    if split == "all" or column not in cat:
        return np.ones(len(cat), dtype=bool)
    return (cat[column].astype(str) == split).to_numpy()


def bootstrap(
    estimator: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile interval of ``estimator`` by the Poisson bootstrap.

    Parameters
    ----------
    estimator : callable
        Maps per-object weights (float array of length ``n``) to an array of results;
        the point estimate is its value at unit weights.
    n : int
        Number of objects.
    n_boot : int, keyword-only
        Replicates; each draws a Poisson(1) weight per object (the bootstrap's
        multinomial resampling for large ``n``, and free of per-bin sample sizes).
    seed : int, keyword-only
        Seed of the replicates' generator.
    level : float, keyword-only
        Interval level (default 0.95: the 2.5 and 97.5 percentiles).

    Returns
    -------
    point, lo, hi : ndarray
        Shaped like the estimator's result; NaN where a replicate's value is NaN in
        more than half of the replicates.

    Cost: ``n_boot`` calls of ``estimator`` (each typically a few ``bincount`` over n).
    """
    rng = np.random.default_rng(seed)
    point = np.asarray(estimator(np.ones(n)), dtype=float)
    reps = np.stack([np.asarray(estimator(rng.poisson(1.0, n).astype(float)), dtype=float)
                     for _ in range(n_boot)])
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():  # an all-NaN slice is expected (empty bins)
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanpercentile(reps, tail, axis=0)
        hi = np.nanpercentile(reps, 100.0 - tail, axis=0)
    bad = np.mean(~np.isfinite(reps), axis=0) > 0.5
    lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
    return point, lo, hi


def _plain(value):
    """JSON-ready: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path: os.PathLike | str, result: dict) -> Path:
    """Write ``result`` as indented JSON (NaN as null), atomically."""
    path = Path(path)
    with replacing_file(path) as tmp:
        tmp.write_text(json.dumps(_plain(result), indent=2) + "\n")
    return path


def save_figure(fig, path: os.PathLike | str) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it."""
    path = Path(path)
    data = _png(fig)
    _pyplot().close(fig)
    with replacing_file(path) as tmp:
        tmp.write_bytes(data)
    return path


def no_data_figure(title: str, message: str):
    """A small figure that says why an analysis has nothing to plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{title}:\n{message}", ha="center", va="center", fontsize=10)
    return fig
