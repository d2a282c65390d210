"""Latent space of the VAE: how its latent means order the galaxies.

The model's latent means are its catalogue columns ``nn_{model}_*`` (the latent-space
model of the ``analysis.latent.model`` setting; uncertainties ``*_err``, the split and
reconstruction errors are not latents). The analysis runs on whatever such columns
exist and says "no latent model in this catalogue" where there are none. It writes the
rank correlation (Spearman) of every latent with morphology and physical properties,
the strongest for each property, where the mergers fall (their mean in units of each
latent's spread), and the latent plane (two latents, or the first two principal
components of more) coloured by properties.

Public API: `latent_columns`, `latent_correlations`, `latent_space`, `run_latent_space`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats

from galcat.analysis.common import no_data_figure, read_columns, save_figure, write_json
from galcat.analysis.merger import prediction_threshold, probability_columns
from galcat.config import settings
from galcat.report import _pyplot, _sample
from galcat.tables import column_names

__all__ = ["latent_columns", "latent_correlations", "latent_figure", "latent_space",
           "run_latent_space"]

#: Properties the latents are correlated with, where the catalogue has them.
PROPERTIES = ("log_mass_phot", "z", "mag_r", "sersic_n", "bulge_to_total", "asymmetry",
              "concentration", "gini", "m20", "r50_psf_corrected", "truth_log_mass",
              "truth_bt", "truth_sersic_n", "truth_q", "truth_metallicity", "truth_ssfr")
#: Suffixes of a model's columns that are not latent means.
NOT_LATENT = ("_err", "_split", "_recon_mse")
NO_MODEL = "no latent model in this catalogue"


def latent_columns(columns, model: str) -> list[str]:
    """The latent-mean columns ``nn_{model}_*`` among ``columns``, in catalogue order."""
    prefix = f"nn_{model}_"
    return [c for c in columns if c.startswith(prefix) and not c.endswith(NOT_LATENT)]


def latent_correlations(cat: pd.DataFrame, latents: list[str]) -> pd.DataFrame:
    """Spearman rank correlation of every latent with every property present.

    Returns one row per (latent, property) with ``n``, ``rho`` and ``p_value``.
    """
    rows = []
    for prop in [p for p in PROPERTIES if p in cat]:
        y = pd.to_numeric(cat[prop], errors="coerce").to_numpy(float)
        for lat in latents:
            x = cat[lat].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < 5 or np.ptp(y[ok]) == 0 or np.ptp(x[ok]) == 0:
                continue
            rho, p = stats.spearmanr(x[ok], y[ok])
            rows.append({"latent": lat, "property": prop, "n": int(ok.sum()),
                         "rho": float(rho), "p_value": float(p)})
    return pd.DataFrame(rows, columns=["latent", "property", "n", "rho", "p_value"])


def _mergers(cat: pd.DataFrame, cfg) -> tuple[np.ndarray | None, str]:
    if "truth_merger" in cat:
        return cat["truth_merger"].to_numpy(bool), "truth_merger"
    column = f"nn_{cfg['model']}_{cfg['answer']}"
    if column in cat:  # the merger analysis's selection, its calibrated threshold
        threshold, _ = prediction_threshold(cat, cfg)
        p = np.nan_to_num(cat[column].to_numpy(float), nan=-np.inf)
        return p > threshold, f"{column} > {threshold:.3g}"
    return None, ""


def latent_space(cat: pd.DataFrame, config: dict) -> dict:
    """The latent-space results of a catalogue (the content of ``latent_space.json``)."""
    a = settings(config, "analysis")
    model = a["latent"]["model"]
    latents = latent_columns(cat.columns, model)
    if not latents:
        return {"model": model, "status": NO_MODEL, "latents": []}
    corr = latent_correlations(cat, latents)
    result: dict = {"model": model, "latents": latents, "n_objects": len(cat),
                    "correlations": corr.to_dict(orient="list")}
    if not corr.empty:
        best = corr.loc[corr["rho"].abs().groupby(corr["property"]).idxmax()]
        result["strongest"] = {row.property: {"latent": row.latent, "rho": row.rho,
                                              "p_value": row.p_value}
                               for row in best.itertuples()}
    mergers, label = _mergers(cat, a["merger"])
    if mergers is not None and mergers.any() and (~mergers).any():
        z = cat[latents].to_numpy(float)
        spread = np.nanstd(z, axis=0)
        shift = (np.nanmean(z[mergers], axis=0) - np.nanmean(z[~mergers], axis=0)) / spread
        result["mergers"] = {"selection": label, "n": int(mergers.sum()),
                             "mean_shift_in_sigma": dict(zip(latents, shift.tolist(),
                                                             strict=True))}
    return result


def _plane(z: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if z.shape[1] == 1:
        return np.column_stack([z[:, 0], np.zeros(len(z))]), ["latent 1", ""]
    if z.shape[1] == 2:
        return z, ["latent 1", "latent 2"]
    ok = np.isfinite(z).all(axis=1)
    centred = z - np.nanmean(z[ok], axis=0)
    _, _, vt = np.linalg.svd(centred[ok], full_matrices=False)
    return centred @ vt[:2].T, ["principal component 1", "principal component 2"]


def latent_figure(result: dict, cat: pd.DataFrame, config: dict):
    """The latent plane coloured by properties, and where the mergers fall."""
    plt = _pyplot()
    if not result["latents"]:
        return no_data_figure("latent space", f"{result['status']} "
                              f"(no nn_{result['model']}_* columns)")
    sub = _sample(cat)
    xy, labels = _plane(sub[result["latents"]].to_numpy(float))
    props = [p for p in ("log_mass_phot", "bulge_to_total", "sersic_n", "asymmetry")
             if p in sub][:3]
    fig, axes = plt.subplots(1, len(props) + 1, figsize=(4.5 * (len(props) + 1), 4),
                             squeeze=False, layout="constrained")
    for ax, prop in zip(axes[0], props, strict=False):
        art = ax.scatter(xy[:, 0], xy[:, 1], c=sub[prop], s=4, cmap="viridis")
        fig.colorbar(art, ax=ax, label=prop)
    ax = axes[0, -1]
    # selected on the whole catalogue (the threshold is calibrated on it), then sampled
    mergers, label = _mergers(cat, settings(config, "analysis")["merger"])
    if mergers is not None:
        mergers = pd.Series(mergers, index=cat.index).loc[sub.index].to_numpy()
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c="0.7", label="all")
    if mergers is not None:
        ax.scatter(xy[mergers, 0], xy[mergers, 1], s=10, c="r", label=f"mergers ({label})")
    ax.legend(fontsize=7)
    for ax in axes[0]:
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    return fig


def run_latent_space(
    config: dict,
    catalogue: os.PathLike | str,
    output_json: os.PathLike | str,
    output_png: os.PathLike | str,
) -> None:
    """Write ``latent_space.json`` and ``latent_space.png``.

    Cost: one rank correlation per latent and property (O(n log n) each).
    """
    a = settings(config, "analysis")
    latents = latent_columns(column_names(catalogue), a["latent"]["model"])
    m = a["merger"]
    cat = read_columns(catalogue, [*latents, *PROPERTIES, "truth_merger",
                                   *probability_columns(m)])
    result = latent_space(cat, config)
    write_json(output_json, result)
    save_figure(latent_figure(result, cat, config), output_png)
