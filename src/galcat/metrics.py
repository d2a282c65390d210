"""Error statistics: the one home of NMAD, bias and scatter, RMSE and interval coverage.

Every comparison of a measurement or a prediction with its truth in galcat (the
injection–recovery harness of `galcat.validation`, the report, the deblending benchmark,
the models and the analyses) computes its figures here, so that a "scatter" means the
same number everywhere.

Conventions
-----------
* Statistics ignore non-finite values (a failed measurement is NaN and is counted
  apart, e.g. as ``failed`` by `binned_bias_scatter`); with no finite value they are
  NaN, never an exception.
* ``bias`` is the median, ``nmad`` the normalised median absolute deviation
  ``1.4826 median(|x - median x|)`` (the standard deviation of a Gaussian, blind to
  outliers), ``median_abs`` the median of ``|x|``, ``rmse`` the root mean square.
* Bins follow `assign_bins`: bin ``k`` holds ``edges[k-1] <= v < edges[k]``, bin 0 all
  below the first edge and bin ``len(edges)`` all at or above the last.

Cost: each statistic is one or two medians, O(n log n); nothing here loops in Python
over the values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "NMAD_SCALE",
    "assign_bins",
    "bin_label",
    "binned_bias_scatter",
    "coverage",
    "fractional_error",
    "median_abs",
    "nmad",
    "rmse",
    "summarize",
]

#: 1 / Φ⁻¹(3/4): NMAD = NMAD_SCALE × MAD equals σ for Gaussian data.
NMAD_SCALE = 1.482602218505602


def _finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def nmad(x) -> float:
    """Normalised median absolute deviation ``1.4826 median(|x - median x|)``.

    Non-finite values are ignored; NaN when none is finite. Equals the standard
    deviation for Gaussian data.
    """
    a = _finite(x)
    if a.size == 0:
        return math.nan
    return float(NMAD_SCALE * np.median(np.abs(a - np.median(a))))


def median_abs(x) -> float:
    """Median of ``|x|`` over the finite values; NaN for none."""
    a = _finite(x)
    return float(np.median(np.abs(a))) if a.size else math.nan


def rmse(x) -> float:
    """Root mean square ``sqrt(mean(x²))`` of the finite values (residuals); NaN for none."""
    a = _finite(x)
    return float(np.sqrt(np.mean(a * a))) if a.size else math.nan


def fractional_error(measured, truth) -> np.ndarray:
    """``(measured - truth) / truth``, float64; NaN where either is NaN or truth is 0."""
    m = np.asarray(measured, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (m - t) / t
    out[~np.isfinite(out)] = np.nan
    return out


def coverage(predicted, truth, sigma, *, k: float = 1.0) -> float:
    """Fraction of truths inside ``predicted ± k sigma``.

    Parameters
    ----------
    predicted, truth, sigma : array-like, same shape
        Predictions, true values and the predicted 1-sigma uncertainties (same unit).
    k : float
        Half-width of the interval in sigmas (default 1). For Gaussian errors with the
        right sigma the coverage is ``erf(k / √2)``: 0.683 for k = 1, 0.954 for k = 2.

    Returns
    -------
    float
        Over the entries where all three are finite and ``sigma >= 0``; NaN for none.

    Raises
    ------
    ValueError
        ``k`` not positive and finite, or shapes that do not broadcast.
    """
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"coverage needs a positive finite k; got {k!r}")
    p, t, s = np.broadcast_arrays(np.asarray(predicted, dtype=np.float64),
                                  np.asarray(truth, dtype=np.float64),
                                  np.asarray(sigma, dtype=np.float64))
    ok = np.isfinite(p) & np.isfinite(t) & np.isfinite(s) & (s >= 0)
    if not ok.any():
        return math.nan
    return float(np.mean(np.abs(p[ok] - t[ok]) <= k * s[ok]))


def summarize(errors) -> dict[str, float]:
    """``n`` (finite values), ``bias`` (median), ``nmad`` and ``median_abs`` of ``errors``."""
    ok = _finite(errors)
    return {
        "n": int(ok.size),
        "bias": float(np.median(ok)) if ok.size else math.nan,
        "nmad": nmad(ok),
        "median_abs": median_abs(ok),
    }


def bin_label(edges: Sequence[float], index: int) -> str:
    """Label of bin ``index`` (0 .. len(edges)) of `assign_bins`: '<a', 'a-b', '>=b'."""
    edges = list(edges)
    if not 0 <= index <= len(edges):
        raise IndexError(f"bin {index} outside 0..{len(edges)}")
    if index == 0:
        return f"<{edges[0]:g}"
    if index == len(edges):
        return f">={edges[-1]:g}"
    return f"{edges[index - 1]:g}-{edges[index]:g}"


def assign_bins(values, edges: Sequence[float]) -> np.ndarray:
    """Bin index of every value: bin k holds ``edges[k-1] <= v < edges[k]``.

    Bin 0 is everything below ``edges[0]``, bin ``len(edges)`` everything at or above
    ``edges[-1]``; a NaN value gets -1. ``edges`` must increase strictly (else
    ValueError naming them).
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges must increase strictly; got {list(edges)}")
    v = np.asarray(values, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right").astype(np.int64)
    idx[np.isnan(v)] = -1
    return idx


def binned_bias_scatter(errors, by, edges: Sequence[float]) -> pd.DataFrame:
    """Bias and scatter of ``errors`` in bins of ``by``, one row per bin, empty bins kept.

    Parameters
    ----------
    errors : array-like
        Errors (fractional or absolute); NaN for a failed measurement.
    by : array-like, same length
        The binned quantity (S/N, size, redshift ...); NaN falls in no bin.
    edges : sequence of float
        Bin edges, strictly increasing (`assign_bins`).

    Returns
    -------
    pandas.DataFrame
        Columns ``bin`` (`bin_label`), ``n_bin`` (values in the bin), ``n`` (finite
        errors), ``bias``, ``nmad``, ``median_abs``, ``rmse`` and ``failed`` (fraction of
        the bin's errors that are not finite; NaN for an empty bin), in bin order.
    """
    err = np.asarray(errors, dtype=np.float64)
    idx = assign_bins(by, edges)
    if err.shape != idx.shape:
        raise ValueError(f"errors has shape {err.shape} but by has {idx.shape}")
    rows = []
    for k in range(len(edges) + 1):
        in_bin = err[idx == k]
        rows.append({
            "bin": bin_label(edges, k),
            "n_bin": int(in_bin.size),
            **summarize(in_bin),
            "rmse": rmse(in_bin),
            "failed": float(np.mean(~np.isfinite(in_bin))) if in_bin.size else math.nan,
        })
    return pd.DataFrame(rows)
