"""Half-mass radius validation: the network's and the traditional route's r50 vs truth.

The network (``nn_{model}_r50_mass``, GaMPEN-style) and the traditional route of
``measure`` (image -> colour profile -> M/L -> mass profile, ``r50_mass``) are scored
against the synthetic truth ``truth_r50_mass`` on the same objects (the network's
test split by default), with `galcat.metrics`. The worst outliers of the network are
shown as cutouts, read from the Zarr shards (the only pixels an analysis reads).

Public API: `r50_validation`, `run_r50_validation`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.analysis.common import (
    in_split,
    no_data_figure,
    read_columns,
    save_figure,
    write_json,
)
from galcat.config import settings
from galcat.metrics import fractional_error, rmse, summarize
from galcat.report import _pyplot
from galcat.store import CutoutReader

__all__ = ["outliers_figure", "r50_validation", "run_r50_validation", "validation_figure"]

TRUTH = "truth_r50_mass"
TRADITIONAL = "r50_mass"


def _scores(measured, truth) -> dict:
    frac = fractional_error(measured, truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log10(np.asarray(measured, float) / np.asarray(truth, float))
    return {**summarize(frac), "n_missing": int((~np.isfinite(frac)).sum()),
            "rmse_dex": rmse(log_ratio)}


def r50_validation(cat: pd.DataFrame, config: dict) -> dict:
    """Scores and worst outliers (the content of ``r50_validation.json``).

    Fractional errors ``(measured - truth) / truth``: ``bias`` (median), ``nmad``,
    ``median_abs`` (GaMPEN's headline is ~7%), ``rmse_dex`` of log10(measured/truth).
    """
    a = settings(config, "analysis")
    cfg = a["r50"]
    cnn = f"nn_{cfg['model']}_r50_mass"
    result: dict = {"truth": TRUTH, "split": a["split"], "routes": {}}
    if TRUTH not in cat:
        result["status"] = f"no {TRUTH} in this catalogue (validation needs the synthetic truth)"
        return result
    sub = cat[in_split(cat, cfg["model"], a["split"])]
    t = sub[TRUTH].to_numpy(float)
    result["n_objects"] = len(sub)
    for name, col in (("cnn", cnn), ("traditional", TRADITIONAL)):
        if col in sub:
            result["routes"][name] = {"column": col, **_scores(sub[col].to_numpy(float), t)}
    if {"cnn", "traditional"} <= set(result["routes"]):
        both = np.isfinite(sub[cnn].to_numpy(float)) & np.isfinite(
            sub[TRADITIONAL].to_numpy(float))
        result["same_objects"] = {
            "n": int(both.sum()),
            "cnn": _scores(sub[cnn].to_numpy(float)[both], t[both]),
            "traditional": _scores(sub[TRADITIONAL].to_numpy(float)[both], t[both])}
    if "cnn" in result["routes"]:
        frac = fractional_error(sub[cnn].to_numpy(float), t)
        order = np.argsort(-np.nan_to_num(np.abs(frac), nan=-1.0))[:cfg["n_outliers"]]
        keep = [c for c in ("object_id", "shard", TRUTH, cnn, TRADITIONAL) if c in sub]
        rows = sub.iloc[order][keep].assign(cnn_fractional_error=frac[order])
        result["outliers"] = rows.to_dict(orient="records")
    return result


def validation_figure(result: dict, cat: pd.DataFrame):
    """Predicted vs true r50 with the one-to-one line, one panel per route."""
    plt = _pyplot()
    routes = result["routes"]
    if not routes:
        return no_data_figure("r50 validation", result.get("status", "no r50 in this catalogue"))
    fig, axes = plt.subplots(1, len(routes), figsize=(5 * len(routes), 4.5), squeeze=False,
                             layout="constrained")
    sub = cat[in_split(cat, *result["_split"])]
    t = sub[TRUTH].to_numpy(float)
    for ax, (name, route) in zip(axes[0], routes.items(), strict=True):
        m = sub[route["column"]].to_numpy(float)
        ax.loglog(t, m, ".", ms=3, alpha=0.5)
        ok = np.isfinite(t) & np.isfinite(m) & (t > 0) & (m > 0)
        if ok.any():
            lo, hi = min(t[ok].min(), m[ok].min()), max(t[ok].max(), m[ok].max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"{TRUTH} [arcsec]")
        ax.set_ylabel(f"{route['column']} [arcsec]")
        ax.set_title(f"{name}: median |error| {route['median_abs']:.3f}, NMAD "
                     f"{route['nmad']:.3f}, n = {route['n']}", fontsize=9)
    return fig


def _stamp(cutouts: dict[str, Path], shard: str, object_id: int) -> np.ndarray | None:
    """The middle band of one object's cutout, or None where its shard is not given."""
    if shard not in cutouts:
        return None
    reader = CutoutReader(cutouts[shard])
    where = np.flatnonzero(reader.object_id == object_id)
    if where.size == 0:
        return None
    band = reader.bands[len(reader.bands) // 2]
    i = int(where[0])
    return reader.read("image", slice(i, i + 1), bands=[band])[0, 0]


def outliers_figure(result: dict, cutouts):
    """The network's worst outliers as cutouts (middle band, asinh stretch)."""
    plt = _pyplot()
    rows = result.get("outliers", [])
    if not rows:
        return no_data_figure("r50 outliers", result.get("status", "no network r50 to rank"))
    paths = {Path(p).name.removesuffix(".zarr"): Path(p) for p in cutouts}
    ncols = min(4, len(rows))
    nrows = -(-len(rows) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    cnn = result["routes"]["cnn"]["column"]
    for ax, row in zip(axes.flat, rows, strict=False):
        img = _stamp(paths, str(row.get("shard")), int(row["object_id"]))
        if img is not None:
            scale = np.nanpercentile(np.abs(img), 99) or 1.0
            ax.imshow(np.arcsinh(img / (0.05 * scale)), origin="lower", cmap="gray_r")
        ax.set_title(f"id {row['object_id']}: true {row[TRUTH]:.2f}\"\n"
                     f"CNN {row[cnn]:.2f}\", trad. {row.get(TRADITIONAL, np.nan):.2f}\"",
                     fontsize=8)
    return fig


def run_r50_validation(
    config: dict,
    catalogue: os.PathLike | str,
    output_json: os.PathLike | str,
    output_png: list[os.PathLike | str],
    cutouts: list[os.PathLike | str] = (),
) -> None:
    """Write ``r50_validation.json``, the one-to-one figure and the outliers' cutouts.

    Cost: reading a few columns of the catalogue, and one cutout per outlier.
    """
    a = settings(config, "analysis")
    model = a["r50"]["model"]
    cat = read_columns(catalogue, ["object_id", "shard", TRUTH, TRADITIONAL,
                                   f"nn_{model}_r50_mass", f"nn_{model}_split"])
    result = r50_validation(cat, config)
    write_json(output_json, result)
    one_to_one, outliers = output_png
    save_figure(validation_figure({**result, "_split": (model, a["split"])}, cat), one_to_one)
    save_figure(outliers_figure(result, cutouts), outliers)
