"""The seed papers' headline figures beside galcat's, on the same kind of work.

Each row of `SEED_PAPERS` names a quantity, the paper and its published figure; galcat's
figure comes from this run: from the other analyses' JSON files and, for the Galaxy Zoo
2 and Sérsic scores, from the catalogue's columns (never from the networks, never by
hand). A paper figure that galcat does not record is null, said in the note.

Public API: `SEED_PAPERS`, `seed_table`, `run_seed_papers`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galcat import gz2
from galcat.analysis.common import in_split, read_columns, write_json
from galcat.config import settings
from galcat.metrics import median_abs, rmse

__all__ = ["SEED_PAPERS", "gz2_scores", "seed_table", "run_seed_papers"]

#: key -> (quantity, paper, published figure or None).
SEED_PAPERS = {
    "r50_cnn": ("half-mass radius, median |fractional error| (network)",
                "GaMPEN (Ghosh et al. 2022)", 0.07),
    "r50_traditional": ("half-mass radius, median |fractional error| (traditional route)",
                        "GaMPEN (Ghosh et al. 2022)", 0.07),
    "gz2_mean_vote": ("GZ2 vote fractions RMSE, mean-vote predictor", "Kattuparambil", 0.23),
    "gz2_network": ("GZ2 vote fractions RMSE, network", "Kattuparambil", 0.11),
    "sersic_network": ("Sérsic index, median |fractional error| (network)",
                       "encoder-decoder seed work", None),
    "sersic_fit": ("Sérsic index, median |fractional error| (Sérsic fit of measure)",
                   "encoder-decoder seed work", None),
    "latent_bt": ("latent space: strongest |Spearman rho| with B/T", "VAE seed work", None),
    "latent_mass": ("latent space: strongest |Spearman rho| with log M*", "VAE seed work", None),
    "metallicity_rmse": ("metallicity RMSE [dex]", "Wu & Boada 2019", 0.085),
    "mzr_scatter_true": ("MZR scatter, true metallicities [dex]", "Wu & Boada 2019", 0.10),
    "mzr_scatter_ratio": ("MZR scatter ratio, predicted / true", "Wu & Boada 2019", 0.877),
    "merger_fraction": ("merger fraction (gz2 route, corrected; true in the note)",
                        "seed work (threshold 0.54)", None),
}


def gz2_scores(cat: pd.DataFrame, *, model: str, split: str) -> dict:
    """RMSE of the network's vote fractions and of the mean-vote predictor.

    Both against the volunteer votes (``gz2_*``, what the network learns) over all 37
    answers of the scored objects; the mean vote is that of the model's training split
    (of all objects if the catalogue has no split).
    """
    votes_cols = gz2.column_names("gz2_")
    pred_cols = [f"nn_{model}_{c.removeprefix('gz2_')}" for c in votes_cols]
    if not set(votes_cols) <= set(cat.columns):
        return {}
    scored = in_split(cat, model, split)
    votes = cat[votes_cols].to_numpy(float)
    train = in_split(cat, model, "train") if f"nn_{model}_split" in cat else np.ones(len(cat),
                                                                                     bool)
    mean_vote = np.nanmean(votes[train], axis=0)
    out = {"n": int(scored.sum()),
           "mean_vote": rmse(votes[scored] - mean_vote[None, :])}
    if set(pred_cols) <= set(cat.columns):
        out["network"] = rmse(cat[pred_cols].to_numpy(float)[scored] - votes[scored])
    return out


def _sersic_error(cat, column, scored) -> float:
    if column not in cat or "truth_sersic_n" not in cat:
        return float("nan")
    m = cat[column].to_numpy(float)[scored]
    t = cat["truth_sersic_n"].to_numpy(float)[scored]
    with np.errstate(divide="ignore", invalid="ignore"):
        return median_abs((m - t) / t)


def _get(doc: dict, *keys):
    for k in keys:
        if not isinstance(doc, dict) or k not in doc:
            return None
        doc = doc[k]
    return doc


def seed_table(cat: pd.DataFrame, analyses: dict[str, dict], config: dict) -> list[dict]:
    """The rows of the seed papers' table: ``quantity``, ``paper``, ``paper_value``,
    ``galcat_value`` (null where this run has none) and ``note``."""
    a = settings(config, "analysis")
    sersic = [m for m, e in config.get("models", {}).items() if e.get("family") == "sersic"]
    scored_sersic = in_split(cat, sersic[0], a["split"]) if sersic else in_split(cat, "", "all")
    g = gz2_scores(cat, model=a["merger"]["model"], split=a["split"])
    r50, mzr = analyses.get("r50_validation", {}), analyses.get("mzr", {})
    latent, merger = analyses.get("latent_space", {}), analyses.get("merger_fraction", {})
    gz2_all = _get(merger, "routes", "gz2", "all") or {}
    values = {
        "r50_cnn": (_get(r50, "routes", "cnn", "median_abs"), ""),
        "r50_traditional": (_get(r50, "routes", "traditional", "median_abs"), ""),
        "gz2_mean_vote": (g.get("mean_vote"), f"{g.get('n', 0)} objects"),
        "gz2_network": (g.get("network"), f"{g.get('n', 0)} objects"),
        "sersic_network": (_sersic_error(cat, f"nn_{sersic[0]}_sersic_n", scored_sersic)
                           if sersic else None, "" if sersic else "no sersic model"),
        "sersic_fit": (_sersic_error(cat, "sersic_n", scored_sersic), ""),
        "latent_bt": (abs(_get(latent, "strongest", "bulge_to_total", "rho") or np.nan),
                      latent.get("status", "")),
        "latent_mass": (abs(_get(latent, "strongest", "log_mass_phot", "rho") or np.nan),
                        latent.get("status", "")),
        "metallicity_rmse": (mzr.get("metallicity_rmse"), ""),
        "mzr_scatter_true": (_get(mzr, "fits", "true", "scatter_rms"), ""),
        "mzr_scatter_ratio": (mzr.get("scatter_ratio"), ""),
        "merger_fraction": ((gz2_all.get("corrected") or [None])[0],
                            f"true {merger.get('true_fraction')}, observed "
                            f"{(gz2_all.get('observed') or [None])[0]}"),
    }
    rows = []
    for key, (quantity, paper, published) in SEED_PAPERS.items():
        value, note = values[key]
        if published is None:
            note = "; ".join(n for n in (note, "the paper's figure is not recorded in galcat")
                             if n)
        rows.append({"quantity": quantity, "paper": paper, "paper_value": published,
                     "galcat_value": value, "note": note})
    return rows


def run_seed_papers(
    config: dict,
    catalogue: os.PathLike | str,
    analyses: list[os.PathLike | str],
    output_json: os.PathLike | str,
) -> None:
    """Write ``seed_papers.json``: ``{"table": rows}`` (`seed_table`).

    Cost: reading the Galaxy Zoo 2 and Sérsic columns of the catalogue.
    """
    docs = {Path(p).stem: json.loads(Path(p).read_text()) for p in analyses}
    a = settings(config, "analysis")
    sersic = [m for m, e in config.get("models", {}).items() if e.get("family") == "sersic"]
    model = a["merger"]["model"]
    wanted = [*gz2.column_names("gz2_"), f"nn_{model}_split", "sersic_n", "truth_sersic_n",
              *(f"nn_{model}_{c}" for c in gz2.column_names("")),
              *(c for m in sersic for c in (f"nn_{m}_sersic_n", f"nn_{m}_split"))]
    cat = read_columns(catalogue, wanted)
    write_json(output_json, {"table": seed_table(cat, docs, config)})
