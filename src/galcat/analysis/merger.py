"""Merger fraction in redshift and stellar-mass bins, with the chance-projection correction.

Two routes select mergers:

* ``gz2`` — the network's Galaxy Zoo 2 answer (``nn_{model}_{answer}``, by default
  ``class6_1``, "anything odd? yes", Kaggle weighting) above a threshold (0.54 on the
  vote fraction, as in the seed work). A network trained on noisy votes predicts their
  expectation, pulled towards the mean vote, so 0.54 on the prediction selects fewer
  galaxies than 0.54 on the votes (on the default run, none). With
  ``threshold_calibration: votes`` the threshold on the prediction is set where it
  selects the votes' share among the labelled galaxies of the network's validation
  split (`vote_matched_threshold`);
* ``nonparametric`` — the Gini–M20 merger statistic above zero (Lotz et al. 2004, 2008:
  ``gini_m20_merger``) or the asymmetry above 0.35 (Conselice 2003).

The fraction of selected galaxies in each bin has a bootstrap 95% interval. A selection
contains false mergers: chance projections of an unrelated galaxy (most of them, and
more at small separation) and isolated galaxies. Where the catalogue has the synthetic
truth (``truth_merger``, ``truth_projection``, ``truth_companion_sep``), the analysis
measures the share of selected galaxies that are not mergers in bins of companion
separation (the angular-separation bias) and the completeness, and corrects the
fraction: each selected galaxy counts ``1 - false share`` of its separation class,
divided by the completeness in its bin. The correction is cross-fitted (``folds`` folds
by a hash of ``object_id``, 5 by default; each fold corrected with what the others
show), so a bin's corrected fraction is never fitted to its own truth; the bootstrap
redraws calibration and application together, so the interval carries the
calibration's error.

The fractions are of every galaxy of the catalogue (the science sample), including
those the network trained on; purity and completeness are also given on the network's
test split alone (``test_split``), the figures to quote for unseen galaxies.

Public API: `merger_probability`, `vote_matched_threshold`, `prediction_threshold`,
`probability_columns`, `purity_completeness`, `balanced_threshold`, `separation_bias`,
`merger_fractions`, `run_merger_fraction`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from galcat.analysis.common import (
    AnalysisError,
    bootstrap,
    no_data_figure,
    read_columns,
    save_figure,
    write_json,
)
from galcat.config import settings
from galcat.metrics import assign_bins, bin_label
from galcat.report import _pyplot

__all__ = [
    "balanced_threshold",
    "fraction_figure",
    "merger_fraction",
    "merger_fractions",
    "merger_probability",
    "prediction_threshold",
    "probability_columns",
    "purity_completeness",
    "run_merger_fraction",
    "selection_figure",
    "separation_bias",
    "vote_matched_threshold",
]

#: Thresholds of the purity / completeness curve.
THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)
#: Truth columns of the synthetic survey the correction is calibrated with.
TRUTH = ("truth_merger", "truth_projection", "truth_companion_sep")


def merger_probability(cat: pd.DataFrame, *, model: str, answer: str) -> np.ndarray | None:
    """The predicted merger probability ``nn_{model}_{answer}``; None if not in ``cat``."""
    column = f"nn_{model}_{answer}"
    return cat[column].to_numpy(float) if column in cat else None


#: Fewest labelled galaxies `vote_matched_threshold` calibrates on.
MIN_CALIBRATION = 20


def vote_matched_threshold(prob, votes, threshold: float, *, use=None) -> float:
    """The threshold on ``prob`` that selects the share ``threshold`` selects on ``votes``.

    Parameters
    ----------
    prob : array-like of float
        Predicted vote fraction of each galaxy.
    votes : array-like of float
        Observed vote fraction (NaN: no votes).
    threshold : float
        The threshold on the vote fraction (a galaxy is selected above it).
    use : array-like of bool, optional
        Galaxies to calibrate on (default: all with a prediction and votes).

    Returns
    -------
    float
        Midway between the k-th and (k+1)-th largest ``prob`` of the calibration
        galaxies, k the number of them whose votes exceed ``threshold``: ``prob > t``
        then selects k of them. The largest ``prob`` when k is 0 (nothing is selected);
        NaN with fewer than `MIN_CALIBRATION` calibration galaxies.
    """
    p = np.asarray(prob, dtype=float)
    v = np.asarray(votes, dtype=float)
    ok = np.isfinite(p) & np.isfinite(v)
    if use is not None:
        ok &= np.asarray(use, dtype=bool)
    if ok.sum() < MIN_CALIBRATION:
        return float("nan")
    ranked = np.sort(p[ok])[::-1]
    k = int((v[ok] > threshold).sum())
    if k == 0:
        return float(ranked[0])
    if k == ranked.size:
        return float(np.nextafter(ranked[-1], -np.inf))
    return float(0.5 * (ranked[k - 1] + ranked[k]))


def probability_columns(cfg) -> list[str]:
    """The columns `prediction_threshold` reads: prediction, votes, the network's split."""
    return [f"nn_{cfg['model']}_{cfg['answer']}", f"gz2_{cfg['answer']}",
            f"nn_{cfg['model']}_split"]


def prediction_threshold(cat: pd.DataFrame, cfg) -> tuple[float, dict]:
    """The threshold on the predicted probability of ``cat`` under the merger settings
    ``cfg`` (``threshold_calibration``), and a record of how it was set."""
    how = {"threshold_calibration": cfg["threshold_calibration"]}
    prob = merger_probability(cat, model=cfg["model"], answer=cfg["answer"])
    votes_column = f"gz2_{cfg['answer']}"
    if cfg["threshold_calibration"] == "none" or prob is None:
        return float(cfg["threshold"]), how
    if votes_column not in cat:
        how["calibration_status"] = f"no observed votes ({votes_column}): threshold as given"
        return float(cfg["threshold"]), how
    votes = cat[votes_column].to_numpy(float)
    # the validation split where it has enough labelled galaxies, else every one
    labelled, on = np.isfinite(prob) & np.isfinite(votes), "every galaxy with votes"
    split = f"nn_{cfg['model']}_split"
    if split in cat:
        validation = labelled & (cat[split].astype(str) == "validation").to_numpy()
        if validation.sum() >= MIN_CALIBRATION:
            labelled, on = validation, "the network's validation split"
    t = vote_matched_threshold(prob, votes, cfg["threshold"], use=labelled)
    if not np.isfinite(t):
        how["calibration_status"] = (f"fewer than {MIN_CALIBRATION} galaxies with votes "
                                     f"and a prediction: threshold as given")
        return float(cfg["threshold"]), how
    how.update(calibrated_on=on, n_calibration=int(labelled.sum()),
               vote_share=float(np.mean(votes[labelled] > cfg["threshold"])))
    return t, how


def purity_completeness(prob, truth, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Purity ``TP / selected`` and completeness ``TP / true mergers`` per threshold.

    Parameters
    ----------
    prob : array-like of float
        Merger probability (NaN: never selected).
    truth : array-like of bool
        True mergers.
    thresholds : sequence of float
        A galaxy is selected when ``prob > threshold``.

    Returns
    -------
    pandas.DataFrame
        ``threshold``, ``n_selected``, ``purity`` (NaN when none is selected),
        ``completeness`` (NaN when there is no true merger).
    """
    p = np.nan_to_num(np.asarray(prob, dtype=float), nan=-np.inf)
    t = np.asarray(truth, dtype=bool)
    sel = p[None, :] > np.asarray(thresholds, dtype=float)[:, None]
    n_sel = sel.sum(axis=1)
    tp = (sel & t[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(n_sel > 0, tp / n_sel, np.nan)
        completeness = np.where(t.sum() > 0, tp / max(int(t.sum()), 1), np.nan)
    return pd.DataFrame({"threshold": thresholds, "n_selected": n_sel,
                         "purity": purity, "completeness": completeness})


def balanced_threshold(curve: pd.DataFrame) -> float:
    """The threshold where purity and completeness are closest (NaN if undefined)."""
    gap = (curve["purity"] - curve["completeness"]).abs().to_numpy(float)
    if not np.isfinite(gap).any():
        return float("nan")
    return float(curve["threshold"].to_numpy()[int(np.nanargmin(gap))])


def _separation_class(sep, edges) -> np.ndarray:
    """Bin of the companion separation; galaxies without a companion get the last class."""
    idx = assign_bins(sep, edges)
    return np.where(idx < 0, len(edges) + 1, idx)


def _separation_labels(edges) -> list[str]:
    return [f"{bin_label(edges, k)} arcsec" for k in range(len(edges) + 1)] + ["no companion"]


def separation_bias(selected, truth: pd.DataFrame, edges) -> pd.DataFrame:
    """Who the selected "mergers" are, in bins of companion separation.

    Returns one row per separation class (the last: no companion) with the number of
    selected galaxies and the shares of them that are true mergers, chance
    projections and isolated galaxies.
    """
    sel = np.asarray(selected, dtype=bool)
    cls = _separation_class(truth["truth_companion_sep"].to_numpy(float), edges)
    merger = truth["truth_merger"].to_numpy(bool)
    proj = truth["truth_projection"].to_numpy(bool)
    rows = []
    for k, label in enumerate(_separation_labels(edges)):
        s = sel & (cls == k)
        n = int(s.sum())
        shares = {f"share_{kind}": float((s & m).sum() / n) if n else float("nan")
                  for kind, m in (("merger", merger), ("projection", proj),
                                  ("isolated", ~merger & ~proj))}
        rows.append({"separation": label, "n_selected": n, **shares})
    return pd.DataFrame(rows)


def _folds(object_id, n_folds: int = 2) -> np.ndarray:
    """``n_folds`` folds by a multiplicative hash of ``object_id`` (stable when the survey
    grows): the hash's 32 bits scaled to 0 .. n_folds - 1 (for two, its top bit)."""
    h = (np.asarray(object_id, dtype=np.uint64) * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    return ((h * np.uint64(n_folds)) >> np.uint64(32)).astype(np.int64)


def _corrected_weights(w, sel, merger, cls, fold, n_class, bins, n_bins) -> np.ndarray:
    """Each selected galaxy's share of a true merger, cross-fitted between the folds:
    the galaxies of each fold are corrected with what the other folds show.

    The false share comes from the galaxy's companion-separation class; the
    completeness from its bin (``bins``, -1: none), since it changes with mass and
    redshift (small mergers are missed). A bin whose calibration half has no true
    merger takes the half's overall completeness; a completeness of 0 (nothing of the
    kind selected) leaves the bin uncorrectable: NaN.
    """
    c = np.full(sel.size, np.nan)
    for f in np.unique(fold):
        cal, app = fold != f, fold == f
        ws = (w * sel)[cal]
        n_sel = np.bincount(cls[cal], ws, n_class)
        n_false = np.bincount(cls[cal], ws * ~merger[cal], n_class)
        overall = n_false.sum() / n_sel.sum() if n_sel.sum() > 0 else 0.0
        b = np.where(bins[cal] >= 0, bins[cal], n_bins)  # out of bins: one more, unused
        n_true = np.bincount(b, (w * merger)[cal], n_bins + 1)[:n_bins]
        n_found = np.bincount(b, ws * merger[cal], n_bins + 1)[:n_bins]
        with np.errstate(invalid="ignore", divide="ignore"):
            false_share = np.where(n_sel > 0, n_false / n_sel, overall)
            everywhere = n_found.sum() / n_true.sum() if n_true.sum() > 0 else np.nan
            completeness = np.where(n_true > 0, n_found / n_true, everywhere)
            completeness = np.where(completeness > 0, completeness, np.nan)
        ok = app & (bins >= 0)
        c[ok] = sel[ok] * (1.0 - false_share[cls[ok]]) / completeness[bins[ok]]
    return c


def merger_fractions(
    selected,
    binnings: dict[str, np.ndarray],
    n_bins: dict[str, int],
    *,
    truth: pd.DataFrame | None,
    object_id,
    separation_edges,
    n_boot: int,
    seed: int,
    folds: int = 2,
) -> dict[str, pd.DataFrame]:
    """Observed (and, with truth, corrected and true) merger fraction in every bin.

    Parameters
    ----------
    selected : array of bool
        The route's selection.
    binnings : dict
        Name -> bin index of every object (-1: in no bin), e.g. from
        `galcat.metrics.assign_bins`.
    n_bins : dict
        Name -> number of bins.
    truth : DataFrame or None, keyword-only
        ``truth_merger``, ``truth_projection`` and ``truth_companion_sep``; None for an
        archive survey (then only the observed fraction).
    object_id : array of int, keyword-only
        Splits the objects into the folds of the cross-fitted correction.
    separation_edges : sequence of float, keyword-only
        Companion-separation bins of the correction [arcsec].
    n_boot, seed : int, keyword-only
        Bootstrap replicates and seed (`galcat.analysis.common.bootstrap`).
    folds : int, keyword-only
        Folds of the cross-fitted correction (default 2): each fold is corrected with
        the purity and completeness of the others, so more folds calibrate on more
        galaxies (a bin whose calibration galaxies hold no selected merger cannot be
        corrected).

    Returns
    -------
    dict
        Name -> DataFrame with ``bin``, ``n``, ``observed`` and its ``observed_lo`` /
        ``observed_hi`` (95%), and with truth ``corrected`` (and interval), ``true``
        and ``agrees`` (the true fraction inside the corrected interval).
    """
    sel = np.asarray(selected, dtype=bool)
    names = list(binnings)
    has_truth = truth is not None
    if has_truth:
        merger = truth["truth_merger"].to_numpy(bool)
        cls = _separation_class(truth["truth_companion_sep"].to_numpy(float), separation_edges)
        fold = _folds(object_id, folds)
        n_class = len(separation_edges) + 2

    def estimate(w: np.ndarray) -> np.ndarray:
        out = []
        for name in names:
            b = binnings[name]
            ok = b >= 0
            bb, ww = b[ok], w[ok]
            n = np.bincount(bb, ww, n_bins[name])
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.bincount(bb, ww * sel[ok], n_bins[name]) / n)
                if has_truth:
                    c = _corrected_weights(w, sel, merger, cls, fold, n_class, b, n_bins[name])
                    out.append(np.bincount(bb, ww * c[ok], n_bins[name]) / n)
                    out.append(np.bincount(bb, ww * merger[ok], n_bins[name]) / n)
        return np.concatenate(out)

    point, lo, hi = bootstrap(estimate, sel.size, n_boot=n_boot, seed=seed)
    tables, at = {}, 0
    for name in names:
        k = n_bins[name]
        b = binnings[name]
        table = pd.DataFrame({"n": np.bincount(b[b >= 0], minlength=k)})
        for part in ("observed", "corrected", "true") if has_truth else ("observed",):
            table[part] = point[at:at + k]
            if part != "true":
                table[f"{part}_lo"], table[f"{part}_hi"] = lo[at:at + k], hi[at:at + k]
            at += k
        if has_truth:  # an empty bin agrees with nothing: None
            for part, col in (("corrected", "agrees"), ("observed", "observed_agrees")):
                inside = (table[f"{part}_lo"] <= table["true"]) & (
                    table["true"] <= table[f"{part}_hi"])
                table[col] = inside.astype(object).where(table["n"] > 0, None)
        tables[name] = table
    return tables


def _routes(cat: pd.DataFrame, cfg, prob, threshold: float) -> dict[str, np.ndarray]:
    routes = {}
    if prob is not None:
        routes["gz2"] = np.nan_to_num(prob, nan=-np.inf) > threshold
    if {"gini_m20_merger", "asymmetry"} <= set(cat.columns):
        gm = cat["gini_m20_merger"].to_numpy(float)
        asym = cat["asymmetry"].to_numpy(float)
        routes["nonparametric"] = (np.nan_to_num(gm, nan=-np.inf) > 0) | (
            np.nan_to_num(asym, nan=-np.inf) > cfg["asymmetry_threshold"])
    return routes


def _route_result(name, sel, cat, truth, cfg, binnings, n_bins, labels, boot) -> dict:
    tables = merger_fractions(sel, binnings, n_bins, truth=truth,
                              object_id=cat["object_id"].to_numpy(),
                              separation_edges=cfg["separation_edges"], folds=cfg["folds"],
                              **boot)
    out = {"n_selected": int(sel.sum()), "observed_fraction": float(sel.mean())}
    for key, table in tables.items():
        table.insert(0, "bin", labels[key])
        out[key] = table.to_dict(orient="list")
    if truth is not None:
        merger = truth["truth_merger"].to_numpy(bool)
        curve = purity_completeness(sel.astype(float), merger, [0.5])
        out["purity"] = float(curve["purity"].iloc[0])
        out["completeness"] = float(curve["completeness"].iloc[0])
        binned = [k for k in tables if k != "all"]
        out["corrected_agrees_in_every_bin"] = bool(all(
            tables[k]["agrees"][tables[k]["n"] > 0].astype(bool).all() for k in binned))
        out["observed_agrees_in_every_bin"] = bool(all(
            tables[k]["observed_agrees"][tables[k]["n"] > 0].astype(bool).all()
            for k in binned))
        out["separation_bias"] = separation_bias(sel, truth, cfg["separation_edges"]).to_dict(
            orient="list")
    return out


def merger_fraction(cat: pd.DataFrame, config: dict) -> dict:
    """The merger-fraction results of a catalogue (the content of ``merger_fraction.json``)."""
    a = settings(config, "analysis")
    cfg = a["merger"]
    z_edges, m_edges = cfg["redshift_edges"], cfg["mass_edges"]
    binnings = {"redshift": assign_bins(cat["z"].to_numpy(float), z_edges),
                "mass": assign_bins(cat["log_mass_phot"].to_numpy(float), m_edges),
                "all": np.zeros(len(cat), dtype=np.int64)}
    n_bins = {"redshift": len(z_edges) + 1, "mass": len(m_edges) + 1, "all": 1}
    labels = {"redshift": [f"z {bin_label(z_edges, k)}" for k in range(n_bins["redshift"])],
              "mass": [f"log M* {bin_label(m_edges, k)}" for k in range(n_bins["mass"])],
              "all": ["all"]}
    truth = cat[list(TRUTH)] if set(TRUTH) <= set(cat.columns) else None
    prob = merger_probability(cat, model=cfg["model"], answer=cfg["answer"])
    threshold, calibration = prediction_threshold(cat, cfg)
    result = {
        "n_objects": len(cat),
        "has_truth": truth is not None,
        "probability": f"nn_{cfg['model']}_{cfg['answer']}",
        "vote_threshold": cfg["threshold"],
        "threshold": threshold,
        **calibration,
        "asymmetry_threshold": cfg["asymmetry_threshold"],
        "routes": {},
    }
    if truth is not None:
        result["true_fraction"] = float(truth["truth_merger"].astype(bool).mean())
    boot = {"n_boot": a["bootstrap"], "seed": a["seed"]}
    for name, sel in _routes(cat, cfg, prob, threshold).items():
        result["routes"][name] = _route_result(name, sel, cat, truth, cfg, binnings, n_bins,
                                               labels, boot)
    if truth is not None and prob is not None:
        curve = purity_completeness(prob, truth["truth_merger"].to_numpy(bool))
        result["threshold_curve"] = curve.to_dict(orient="list")
        result["balanced_threshold"] = balanced_threshold(curve)
        split = f"nn_{cfg['model']}_split"
        if split in cat:  # the same on objects the network never trained on
            test = (cat[split].astype(str) == "test").to_numpy()
            merger = truth["truth_merger"].to_numpy(bool)[test]
            at = purity_completeness(prob[test], merger, [threshold]).iloc[0]
            curve = purity_completeness(prob[test], merger)
            result["test_split"] = {"n": int(test.sum()), "purity": float(at["purity"]),
                                    "completeness": float(at["completeness"]),
                                    "balanced_threshold": balanced_threshold(curve)}
    if not result["routes"]:
        result["status"] = (f"no merger selection possible: the catalogue has neither "
                            f"{result['probability']} nor gini_m20_merger and asymmetry")
    return result


def _fraction_panel(ax, route: dict, key: str, title: str) -> None:
    table = route[key]
    x = np.arange(len(table["bin"]))
    for part, dx, style in (("observed", -0.12, "o"), ("corrected", 0.12, "s")):
        if part not in table:
            continue
        y = np.asarray(table[part], dtype=float)
        err = [y - np.asarray(table[f"{part}_lo"], float), np.asarray(table[f"{part}_hi"], float) - y]
        ax.errorbar(x + dx, y, yerr=err, fmt=style, capsize=3,
                    label=f"{part} (95% bootstrap)")
    if "true" in table:
        ax.plot(x, table["true"], "k*", ms=10, label="true (synthetic truth)")
    ax.set_xticks(x, table["bin"], fontsize=8)
    ax.set_ylabel("merger fraction")
    ax.set_title(title, fontsize=9)


def fraction_figure(result: dict):
    """Merger fraction vs redshift and mass, one row per route."""
    plt = _pyplot()
    routes = result["routes"]
    if not routes:
        return no_data_figure("merger fraction", result.get("status", "no data"))
    fig, axes = plt.subplots(len(routes), 2, figsize=(11, 3.8 * len(routes)), squeeze=False,
                             layout="constrained")
    for row, (name, route) in zip(axes, routes.items(), strict=True):
        _fraction_panel(row[0], route, "redshift", f"{name}: vs redshift")
        _fraction_panel(row[1], route, "mass", f"{name}: vs measured stellar mass")
    axes[0, 0].legend(fontsize=7)
    return fig


def selection_figure(result: dict):
    """Purity and completeness vs threshold; who the selected are vs companion separation."""
    plt = _pyplot()
    if "threshold_curve" not in result:
        return no_data_figure("merger selection", "needs the synthetic truth and the "
                              f"{result['probability']} column")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    curve = result["threshold_curve"]
    axes[0].plot(curve["threshold"], curve["purity"], label="purity")
    axes[0].plot(curve["threshold"], curve["completeness"], label="completeness")
    axes[0].axvline(result["threshold"], color="k", ls="--", lw=1,
                    label=f"threshold {result['threshold']:.3g}")
    axes[0].axvline(result["balanced_threshold"], color="g", ls=":", lw=1,
                    label=f"balanced {result['balanced_threshold']:g}")
    axes[0].set_xlabel(f"threshold on {result['probability']}")
    axes[0].legend(fontsize=8)
    bias = result["routes"]["gz2"]["separation_bias"]
    x = np.arange(len(bias["separation"]))
    bottom = np.zeros(x.size)
    for part in ("share_merger", "share_projection", "share_isolated"):
        y = np.nan_to_num(np.asarray(bias[part], dtype=float))
        axes[1].bar(x, y, bottom=bottom, label=part.removeprefix("share_"))
        bottom += y
    axes[1].set_xticks(x, [f"{s}\n(n={n})" for s, n in zip(bias["separation"],
                                                             bias["n_selected"], strict=True)],
                       fontsize=7)
    axes[1].set_ylabel("share of selected 'mergers'")
    axes[1].set_title("angular-separation bias (gz2 route)", fontsize=9)
    axes[1].legend(fontsize=8)
    return fig


#: Catalogue columns the analysis reads (besides the model's probability).
COLUMNS = ("object_id", "z", "log_mass_phot", "gini_m20_merger", "asymmetry", *TRUTH)


def run_merger_fraction(
    config: dict,
    catalogue: os.PathLike | str,
    output_json: os.PathLike | str,
    output_png: list[os.PathLike | str],
) -> None:
    """Write ``merger_fraction.json`` and its two figures (fractions, selection).

    Cost: ``analysis.bootstrap`` replicates of a few ``bincount`` over the catalogue
    per route (about 1 s per 10^5 objects and 100 replicates).
    """
    cfg = settings(config, "analysis")["merger"]
    cat = read_columns(catalogue, [*COLUMNS, *probability_columns(cfg)])
    missing = [c for c in ("object_id", "z", "log_mass_phot") if c not in cat]
    if missing:
        raise AnalysisError(f"catalogue {str(catalogue)!r} has no column(s) {missing}: the "
                            "merger fraction is binned in redshift and measured stellar mass")
    result = merger_fraction(cat, config)
    write_json(output_json, result)
    fraction_png, selection_png = output_png
    save_figure(fraction_figure(result), fraction_png)
    save_figure(selection_figure(result), selection_png)
