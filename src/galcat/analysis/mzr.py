"""The mass–metallicity relation (MZR) against the measured stellar mass.

12 + log(O/H) is fitted against the catalogue's photometric ``log_mass_phot`` (never
the truth's mass) with a quadratic, as Tremonti et al. (2004, eq. 3), and described by
a running median, twice: with the true metallicities (``truth_metallicity``, synthetic
survey) and with the network's (``nn_{model}_metallicity``). The quadratic's
coefficients carry bootstrap errors (their full covariance); on the synthetic survey
they are compared with the relation the survey was drawn from by a chi-square with
that covariance. The scatter about each fit and their ratio (predicted / true; Wu &
Boada 2019 found 0.877) say how much of the MZR's scatter the images recover. The
residuals about the fit are tested against morphology (Sérsic n, B/T, asymmetry) by
Spearman's rank correlation.

A fit to predictions inherits the network's systematic error (one function, shared by
every galaxy), which no bootstrap over galaxies sees. With
``analysis.mzr.calibration: validation`` the predicted fit is also corrected by
prediction-powered inference (Angelopoulos et al. 2023, Science 382, 669): the bias of
the fit to predictions is measured on the network's validation galaxies that have a
label (fit to the predictions minus fit to the labels, same galaxies, paired bootstrap),
subtracted, and its covariance added (`prediction_powered_fit`).

Public API: `fit_quadratic`, `prediction_powered_fit`, `running_median`,
`morphology_residuals`, `mzr`, `run_mzr`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats

from galcat.analysis.common import (
    AnalysisError,
    in_split,
    no_data_figure,
    read_columns,
    save_figure,
    write_json,
)
from galcat.config import settings
from galcat.metrics import nmad, rmse
from galcat.relations import MZR
from galcat.report import _pyplot

__all__ = ["compare_coefficients", "fit_quadratic", "morphology_residuals", "mzr", "mzr_figure",
           "prediction_powered_fit", "run_mzr", "running_median"]

#: Morphology the residuals are tested against (catalogue columns).
MORPHOLOGY = ("sersic_n", "bulge_to_total", "asymmetry")
#: Fewest labelled calibration galaxies for the prediction-powered fit.
MIN_CALIBRATION = 20
#: Published coefficients (a, b, c of a + b x + c x^2) of the relations `MZR` names.
COEFFICIENTS = {"tremonti2004": (-1.492, 1.847, -0.08026)}


def _powers(x, var) -> np.ndarray:
    """Unbiased estimates of ``X^k`` (k = 0..4) from ``x = X + e``, ``e ~ N(0, var)``.

    The Hermite-type corrections of the adjusted least squares of Cheng & Schneeweiss
    (1998, JRSS B 60, 189): E[x^2 - var] = X^2, E[x^3 - 3 var x] = X^3,
    E[x^4 - 6 var x^2 + 3 var^2] = X^4. With ``var = 0`` they are the plain powers.
    """
    return np.stack([np.ones_like(x), x, x * x - var, x**3 - 3 * var * x,
                     x**4 - 6 * var * x * x + 3 * var * var])


def _polyfit(x, y, w, var) -> np.ndarray:
    """Least squares of ``a + b x + c x^2`` with weights ``w`` (bootstrap counts), the
    moments of x corrected for its measurement variance ``var`` (0: ordinary)."""
    t = _powers(x, var) * w
    moments = t.sum(axis=1)
    m = np.array([[moments[j + k] for k in range(3)] for j in range(3)])
    b = np.array([(t[j] * y).sum() for j in range(3)])
    return np.linalg.solve(m, b)


def fit_quadratic(x, y, *, x_err=None, n_boot: int, seed: int) -> dict:
    """Quadratic ``y = a + b x + c x^2`` with bootstrap errors and covariance.

    A measured mass scatters about the true one, which flattens an ordinary fit
    (regression dilution: on the synthetic survey the pulls against the input
    relation were 4 sigma with 0.08 dex mass errors). Given ``x_err``, the fit is the
    adjusted least squares of Cheng & Schneeweiss (1998), consistent for Gaussian
    errors of known size.

    Parameters
    ----------
    x, y : array-like
        log M* [dex] and 12 + log(O/H) [dex]; non-finite pairs are dropped.
    x_err : array-like, optional, keyword-only
        1-sigma error of each x [dex] (default: none, ordinary least squares).
    n_boot, seed : int, keyword-only
        Bootstrap replicates and seed.

    Returns
    -------
    dict
        ``coefficients`` [a, b, c], ``errors`` (bootstrap standard deviations),
        ``covariance`` (3 x 3), ``n``, ``scatter_rms`` and ``scatter_nmad`` of the
        residuals [dex].
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    var = np.zeros_like(x) if x_err is None else np.asarray(x_err, float) ** 2
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(var)
    x, y, var = x[ok], y[ok], var[ok]
    if x.size < 4:
        raise AnalysisError(f"an MZR fit needs at least 4 galaxies with a mass and a "
                            f"metallicity; got {x.size}")
    rng = np.random.default_rng(seed)
    try:
        coef = _polyfit(x, y, np.ones_like(x), var)
    except np.linalg.LinAlgError:
        raise AnalysisError(f"an MZR fit of {x.size} galaxies is degenerate (too few "
                            "distinct masses for a quadratic)") from None
    reps = []
    for _ in range(n_boot):
        try:  # a resample of a few galaxies may hold fewer than three distinct masses
            reps.append(_polyfit(x, y, rng.poisson(1.0, x.size).astype(float), var))
        except np.linalg.LinAlgError:
            continue
    if len(reps) < max(10, n_boot // 2):
        raise AnalysisError(f"an MZR fit of {x.size} galaxies: only {len(reps)} of {n_boot} "
                            "bootstrap resamples could be fitted")
    reps = np.stack(reps)
    resid = y - np.polyval(coef[::-1], x)
    return {"n": int(x.size), "coefficients": coef.tolist(),
            "errors": reps.std(axis=0, ddof=1).tolist(),
            "covariance": np.cov(reps.T).tolist(),
            "scatter_rms": rmse(resid), "scatter_nmad": nmad(resid)}


def prediction_powered_fit(fit: dict, x, predicted, labelled, *, x_err=None, n_boot: int,
                           seed: int) -> dict:
    """The quadratic ``fit`` of predictions, corrected by its bias on labelled galaxies.

    Prediction-powered inference (Angelopoulos et al. 2023): on calibration galaxies
    that have both a prediction and a label, the same quadratic is fitted to each; their
    difference (the rectifier) estimates the bias of a fit to predictions. It is
    subtracted from ``fit`` (fitted on other galaxies), and the covariance of the
    rectifier (Poisson bootstrap, the same resample for both fits) is added to that of
    ``fit``: the network's own error then enters the coefficient errors.

    Parameters
    ----------
    fit : dict
        `fit_quadratic` of the predictions of the analysed galaxies.
    x, predicted, labelled : array-like
        log M* [dex], predicted and labelled 12 + log(O/H) [dex] of the calibration
        galaxies; non-finite triples are dropped.
    x_err : array-like, optional, keyword-only
        1-sigma errors of ``x`` (as in `fit_quadratic`).
    n_boot, seed : int, keyword-only

    Returns
    -------
    dict
        ``coefficients``, ``errors``, ``covariance``, ``n`` (of ``fit``),
        ``n_calibration``, ``rectifier`` and ``rectifier_errors``.

    Raises
    ------
    AnalysisError
        With fewer than `MIN_CALIBRATION` calibration galaxies, or a degenerate fit.
    """
    x, yp, yt = (np.asarray(v, float) for v in (x, predicted, labelled))
    var = np.zeros_like(x) if x_err is None else np.asarray(x_err, float) ** 2
    ok = np.isfinite(x) & np.isfinite(yp) & np.isfinite(yt) & np.isfinite(var)
    x, yp, yt, var = x[ok], yp[ok], yt[ok], var[ok]
    if x.size < MIN_CALIBRATION:
        raise AnalysisError(f"a prediction-powered MZR needs at least {MIN_CALIBRATION} "
                            f"calibration galaxies with a label and a prediction; got {x.size}")

    def rectifier(w: np.ndarray) -> np.ndarray:
        return _polyfit(x, yp, w, var) - _polyfit(x, yt, w, var)

    rng = np.random.default_rng(seed)
    try:
        delta = rectifier(np.ones_like(x))
    except np.linalg.LinAlgError:
        raise AnalysisError(f"a prediction-powered MZR of {x.size} calibration galaxies is "
                            "degenerate (too few distinct masses for a quadratic)") from None
    reps = []
    for _ in range(n_boot):
        try:
            reps.append(rectifier(rng.poisson(1.0, x.size).astype(float)))
        except np.linalg.LinAlgError:
            continue
    if len(reps) < max(10, n_boot // 2):
        raise AnalysisError(f"a prediction-powered MZR: only {len(reps)} of {n_boot} "
                            "bootstrap resamples of the calibration galaxies could be fitted")
    cov_delta = np.cov(np.stack(reps).T)
    cov = np.asarray(fit["covariance"]) + cov_delta
    return {"n": fit["n"], "n_calibration": int(x.size),
            "coefficients": (np.asarray(fit["coefficients"]) - delta).tolist(),
            "errors": np.sqrt(np.diag(cov)).tolist(), "covariance": cov.tolist(),
            "rectifier": delta.tolist(), "rectifier_errors": np.sqrt(np.diag(cov_delta)).tolist()}


def compare_coefficients(fit: dict, reference) -> dict:
    """Fitted vs published coefficients: per-coefficient pulls and a chi-square.

    ``recovered`` is true when every pull is within 2 and the chi-square (3 degrees of
    freedom, with the bootstrap covariance) has p > 0.05.
    """
    d = np.asarray(fit["coefficients"]) - np.asarray(reference, dtype=float)
    pulls = d / np.asarray(fit["errors"])
    chi2 = float(d @ np.linalg.solve(np.asarray(fit["covariance"]), d))
    p = float(stats.chi2.sf(chi2, 3))
    return {"reference": list(reference), "pulls": pulls.tolist(), "chi2": chi2,
            "p_value": p, "recovered": bool(np.all(np.abs(pulls) < 2.0) and p > 0.05)}


def running_median(x, y, *, width: float, min_count: int) -> pd.DataFrame:
    """Median and 16th/84th percentiles of ``y`` in bins of ``x`` of ``width``.

    Bins with fewer than ``min_count`` finite pairs are dropped.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return pd.DataFrame(columns=["x", "n", "median", "p16", "p84"])
    edges = np.arange(np.floor(x.min() / width) * width, x.max() + width, width)
    idx = np.digitize(x, edges) - 1
    rows = []
    for k in range(edges.size - 1):
        v = y[idx == k]
        if v.size >= min_count:
            p16, med, p84 = np.percentile(v, [16, 50, 84])
            rows.append({"x": edges[k] + width / 2, "n": int(v.size), "median": med,
                         "p16": p16, "p84": p84})
    return pd.DataFrame(rows, columns=["x", "n", "median", "p16", "p84"])


def morphology_residuals(resid, cat: pd.DataFrame) -> dict:
    """Spearman rank correlation of MZR residuals with each `MORPHOLOGY` column present.

    Returns ``{column: {"n", "rho", "p_value", "significant"}}`` (significant: p < 0.01).
    """
    out = {}
    for col in MORPHOLOGY:
        if col not in cat:
            continue
        m = cat[col].to_numpy(float)
        ok = np.isfinite(m) & np.isfinite(resid)
        if ok.sum() < 5:
            continue
        rho, p = stats.spearmanr(resid[ok], m[ok])
        out[col] = {"n": int(ok.sum()), "rho": float(rho), "p_value": float(p),
                    "significant": bool(p < 0.01)}
    return out


def _one(x, y, x_err, cat, cfg, boot) -> dict:
    fit = fit_quadratic(x, y, x_err=x_err, **boot)
    plain = fit_quadratic(x, y, **boot)
    fit["ordinary_least_squares"] = {k: plain[k] for k in ("coefficients", "errors",
                                                            "covariance")}
    resid = y - np.polyval(np.asarray(fit["coefficients"])[::-1], x)
    fit["running_median"] = running_median(x, y, width=cfg["median_bin_dex"],
                                           min_count=cfg["min_per_bin"]).to_dict(orient="list")
    fit["residuals_vs_morphology"] = morphology_residuals(resid, cat)
    return fit


def mzr(cat: pd.DataFrame, config: dict) -> dict:
    """The MZR results of a catalogue (the content of ``mzr.json``)."""
    a = settings(config, "analysis")
    cfg = a["mzr"]
    boot = {"n_boot": a["bootstrap"], "seed": a["seed"]}
    pred_col = f"nn_{cfg['model']}_metallicity"
    sub = cat[in_split(cat, cfg["model"], a["split"])]
    x = sub["log_mass_phot"].to_numpy(float)
    adjusted = cfg["mass_errors"] == "adjusted" and "log_mass_phot_err" in sub
    x_err = sub["log_mass_phot_err"].to_numpy(float) if adjusted else None
    result: dict = {"mass": "log_mass_phot (measured)", "split": a["split"],
                    "fit": "adjusted least squares (mass errors)" if adjusted
                    else "ordinary least squares", "n_objects": len(sub), "fits": {}}
    for name, col in (("true", "truth_metallicity"), ("predicted", pred_col)):
        if col not in sub:
            continue
        try:
            result["fits"][name] = {"column": col,
                                    **_one(x, sub[col].to_numpy(float), x_err, sub, cfg, boot)}
        except AnalysisError as exc:  # too few galaxies: said, never fatal to the run
            result.setdefault("skipped", {})[name] = str(exc)
    fits = result["fits"]
    if not fits:
        result["status"] = "; ".join(f"{k}: {v}" for k, v in result.get("skipped", {}).items()) or (
            f"no metallicity in this catalogue (neither truth_metallicity nor {pred_col})")
        return result
    if cfg["calibration"] == "validation" and "predicted" in fits and "truth_metallicity" in cat:
        cal = cat[in_split(cat, cfg["model"], "validation")]
        try:
            if f"nn_{cfg['model']}_split" not in cat:  # else "validation" means every object
                raise AnalysisError(f"the catalogue has no nn_{cfg['model']}_split: the "
                                    "calibration galaxies cannot be told from the others")
            result["prediction_powered"] = {"calibrated_on": "the network's validation split",
                                            **prediction_powered_fit(
                fits["predicted"], cal["log_mass_phot"], cal[pred_col], cal["truth_metallicity"],
                x_err=cal["log_mass_phot_err"] if adjusted else None, **boot)}
        except AnalysisError as exc:
            result.setdefault("skipped", {})["prediction_powered"] = str(exc)
    relation = config.get("synthetic", {}).get("mzr", {}).get("relation")
    if relation in COEFFICIENTS:
        for fit in fits.values():
            fit["input_relation"] = compare_coefficients(fit, COEFFICIENTS[relation])
            fit["ordinary_least_squares"]["input_relation"] = compare_coefficients(
                fit["ordinary_least_squares"], COEFFICIENTS[relation])
        if "prediction_powered" in result:
            result["prediction_powered"]["input_relation"] = compare_coefficients(
                result["prediction_powered"], COEFFICIENTS[relation])
        result["input_relation"] = relation
    if {"true", "predicted"} <= set(fits):
        result["scatter_ratio"] = fits["predicted"]["scatter_rms"] / fits["true"]["scatter_rms"]
        result["scatter_ratio_nmad"] = (fits["predicted"]["scatter_nmad"]
                                        / fits["true"]["scatter_nmad"])
        result["metallicity_rmse"] = rmse(sub[pred_col].to_numpy(float)
                                          - sub["truth_metallicity"].to_numpy(float))
    return result


def mzr_figure(result: dict, cat: pd.DataFrame):
    """Both MZRs (points, quadratic, running median, input relation) and residuals vs B/T."""
    plt = _pyplot()
    fits = result["fits"]
    if not fits:
        return no_data_figure("mass-metallicity relation", result["status"])
    fig, axes = plt.subplots(1, len(fits) + 1, figsize=(5 * (len(fits) + 1), 4),
                             layout="constrained")
    x = cat["log_mass_phot"].to_numpy(float)
    grid = np.linspace(np.nanmin(x), np.nanmax(x), 50)
    for ax, (name, fit) in zip(axes, fits.items(), strict=False):
        y = cat[fit["column"]].to_numpy(float)
        ax.scatter(x, y, s=3, alpha=0.4, c="0.5")
        ax.plot(grid, np.polyval(np.asarray(fit["coefficients"])[::-1], grid), "b-",
                label=f"quadratic (rms {fit['scatter_rms']:.3f} dex)")
        rm = fit["running_median"]
        ax.errorbar(rm["x"], rm["median"], yerr=[np.subtract(rm["median"], rm["p16"]),
                                                 np.subtract(rm["p84"], rm["median"])],
                    fmt="o", color="orange", ms=4, label="running median (16-84%)")
        if "input_relation" in result:
            ax.plot(grid, MZR[result["input_relation"]](grid), "k--", lw=1,
                    label=f"input: {result['input_relation']}")
        ax.set_xlabel("log_mass_phot (measured) [dex]")
        ax.set_ylabel(f"12 + log(O/H): {fit['column']}")
        ax.set_title(f"{name} metallicities, n = {fit['n']}", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[-1]
    if "bulge_to_total" in cat:
        for name, fit in fits.items():
            resid = cat[fit["column"]].to_numpy(float) - np.polyval(
                np.asarray(fit["coefficients"])[::-1], x)
            ax.scatter(cat["bulge_to_total"], resid, s=3, alpha=0.4, label=name)
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("bulge_to_total")
        ax.set_ylabel("MZR residual [dex]")
        ax.legend(fontsize=7)
    else:
        ax.axis("off")
    if "scatter_ratio" in result:
        fig.suptitle(f"scatter ratio predicted / true = {result['scatter_ratio']:.3f} "
                     "(Wu & Boada 2019: 0.877)", fontsize=10)
    return fig


def run_mzr(
    config: dict,
    catalogue: os.PathLike | str,
    output_json: os.PathLike | str,
    output_png: os.PathLike | str,
) -> None:
    """Write ``mzr.json`` and ``mzr.png``.

    Cost: ``analysis.bootstrap`` least-squares fits of three parameters per
    metallicity (about 0.1 s per 10^4 galaxies and 100 replicates).
    """
    cfg = settings(config, "analysis")
    model = cfg["mzr"]["model"]
    cat = read_columns(catalogue, ["log_mass_phot", "log_mass_phot_err", "truth_metallicity",
                                   f"nn_{model}_metallicity", f"nn_{model}_split", *MORPHOLOGY])
    if "log_mass_phot" not in cat:
        raise AnalysisError(f"catalogue {str(catalogue)!r} has no column 'log_mass_phot': "
                            "the MZR is fitted against the measured stellar mass")
    result = mzr(cat, config)
    write_json(output_json, result)
    sub = cat[in_split(cat, model, cfg["split"])]
    save_figure(mzr_figure(result, sub), output_png)
