"""Score helpers of the families (NaN-aware; every value a plain float for JSON).

Thin on purpose: once `galcat.metrics` (the project's single home of NMAD, RMSE,
coverage and binned statistics) is available these delegate to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["binned", "coverage", "fractional_error", "median", "median_abs", "nmad", "rmse"]


def _finite(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(np.shape(arrays[0]), bool)
    for a in arrays:
        ok &= np.isfinite(np.asarray(a, np.float64))
    return ok


def fractional_error(measured: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(measured - truth) / truth``."""
    return (np.asarray(measured, np.float64) - truth) / np.asarray(truth, np.float64)


def median(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def median_abs(x: np.ndarray) -> float:
    return median(np.abs(np.asarray(x, np.float64)))


def nmad(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation from the median."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Root mean square of ``predicted - truth`` over all finite elements."""
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    ok = _finite(p, t)
    return float(np.sqrt(np.mean((p[ok] - t[ok]) ** 2))) if ok.any() else float("nan")


def weighted_rmse(predicted: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> float:
    """Root mean square of ``predicted - truth`` weighted by ``weight`` (one per object,
    broadcast over a row's columns) over the finite elements of positive weight."""
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    w = np.asarray(weight, np.float64)
    w = np.broadcast_to(np.where(np.isfinite(w), w, 0.0).reshape(len(w), *[1] * (p.ndim - 1)),
                        p.shape)
    ok = _finite(p, t) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.sum(w[ok] * (p[ok] - t[ok]) ** 2) / np.sum(w[ok])))


def coverage(predicted: np.ndarray, sigma: np.ndarray, truth: np.ndarray, *, k: float = 1.0) -> float:
    """Fraction of truths within ``predicted +- k sigma`` (0.683 expected for k = 1)."""
    p, s, t = (np.asarray(a, np.float64) for a in (predicted, sigma, truth))
    ok = _finite(p, s, t)
    return float(np.mean(np.abs(p[ok] - t[ok]) <= k * s[ok])) if ok.any() else float("nan")


def binned(values: np.ndarray, by: np.ndarray, edges: Sequence[float],
           statistic: Callable[[np.ndarray], float]) -> list[dict]:
    """``statistic`` of ``values`` in bins of ``by`` (open-ended first and last bins)."""
    values, by = np.asarray(values, np.float64), np.asarray(by, np.float64)
    bounds = [-np.inf, *edges, np.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        sel = (by >= lo) & (by < hi) & np.isfinite(values)
        out.append({"low": None if np.isinf(lo) else float(lo),
                    "high": None if np.isinf(hi) else float(hi),
                    "n": int(sel.sum()),
                    "value": statistic(values[sel]) if sel.any() else None})
    return out
