"""The HTML summary page: what a person reads first after a run.

One self-contained file (plots embedded as PNG), built from the catalogue
alone, so it can be mailed or published with a release.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import replacing_file
from galcat.metrics import summarize
from galcat.tables import read_table, table_metadata

__all__ = ["truth_comparisons", "write_report"]

#: (measured column, truth column, label, error) scored when both columns exist; error
#: "fraction" is (measured - truth) / truth, "difference" measured - truth (for fractions
#: such as B/T, whose truth can be ~0).
TRUTH_PAIRS = (
    ("r50_psf_corrected", "truth_r50_r", "r50 PSF-corrected (light, r band) [arcsec]",
     "fraction"),
    ("r50", "truth_r50_r", "r50 statmorph (PSF-convolved) [arcsec]", "fraction"),
    ("r50_mass", "truth_r50_mass", "half-mass radius [arcsec]", "fraction"),
    ("sersic_n", "truth_sersic_n", "Sérsic index (truth: concentration-matched)", "fraction"),
    ("sersic_q", "truth_q", "axis ratio", "fraction"),
    ("bulge_to_total", "truth_bt", "bulge-to-total (r band), difference", "difference"),
)


def truth_comparisons(cat: pd.DataFrame) -> pd.DataFrame:
    """Median bias and robust scatter (`galcat.metrics.summarize`) of each measurement vs
    its truth (`TRUTH_PAIRS`)."""
    rows = []
    for measured, truth, label, error in TRUTH_PAIRS:
        if measured not in cat or truth not in cat:
            continue
        m = cat[measured].to_numpy(float)
        t = cat[truth].to_numpy(float)
        ok = np.isfinite(m) & np.isfinite(t) & ((t != 0) | (error == "difference"))
        frac = (m[ok] - t[ok]) / t[ok] if error == "fraction" else m[ok] - t[ok]
        stats = summarize(frac)
        rows.append(
            {
                "quantity": label,
                "measured": measured,
                "truth": truth,
                "n": int(ok.sum()),
                "n_missing": int((~ok).sum()),
                "error": error,
                "median_bias": stats["bias"],
                "scatter_nmad": stats["nmad"],
                "median_abs_error": stats["median_abs"],
            }
        )
    return pd.DataFrame(rows)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _figures(cat: pd.DataFrame) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    pairs = [p for p in TRUTH_PAIRS if p[0] in cat and p[1] in cat]
    if pairs:
        fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 4))
        for ax, (measured, truth, label, _) in zip(np.atleast_1d(axes), pairs, strict=True):
            t, m = cat[truth].to_numpy(float), cat[measured].to_numpy(float)
            ax.scatter(t, m, s=4, alpha=0.5)
            lo = np.nanmin([np.nanmin(t), np.nanmin(m)])
            hi = np.nanmax([np.nanmax(t), np.nanmax(m)])
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xlabel(f"truth: {truth}")
            ax.set_ylabel(f"measured: {measured}")
            ax.set_title(label, fontsize=9)
        figs.append(("Measurements against injected truth", _png(fig)))
        plt.close(fig)
    if {"gini", "m20"} <= set(cat.columns):
        fig, ax = plt.subplots(figsize=(5, 4))
        merger = cat.get("truth_merger", pd.Series(False, index=cat.index)).astype(bool)
        ax.scatter(cat.loc[~merger, "m20"], cat.loc[~merger, "gini"], s=4, label="isolated")
        ax.scatter(cat.loc[merger, "m20"], cat.loc[merger, "gini"], s=8, c="r", label="merger")
        x = np.linspace(-3, 0, 10)
        ax.plot(x, -0.14 * x + 0.33, "k--", lw=1, label="Lotz+08 merger line")
        ax.invert_xaxis()
        ax.set_xlabel("M20")
        ax.set_ylabel("Gini")
        ax.legend(fontsize=8)
        figs.append(("Gini–M20 plane (Lotz et al. 2008)", _png(fig)))
        plt.close(fig)
    if {"truth_log_mass", "truth_r50_kpc"} <= set(cat.columns):
        fig, ax = plt.subplots(figsize=(5, 4))
        for kind, colour in (("early", "r"), ("late", "b")):
            sel = cat.get("truth_type", pd.Series("", index=cat.index)) == kind
            ax.scatter(cat.loc[sel, "truth_log_mass"], np.log10(cat.loc[sel, "truth_r50_kpc"]),
                       s=4, c=colour, label=kind)
        ax.set_xlabel("log M* [Msun]")
        ax.set_ylabel("log r50 [kpc]")
        ax.legend(fontsize=8)
        figs.append(("Size–mass relation of the survey (truth)", _png(fig)))
        plt.close(fig)
    return figs


def _flag_summary(cat: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col in [c for c in cat.columns if c == "flag" or c.endswith("_flag")]:
        values = pd.to_numeric(cat[col], errors="coerce").fillna(0).astype(np.int64)
        rows.append({"flag column": col, "objects flagged": int((values != 0).sum()),
                     "fraction": float((values != 0).mean())})
    return pd.DataFrame(rows)


def write_report(catalogue: os.PathLike | str, output: os.PathLike | str, *, config: dict) -> Path:
    """Write the self-contained HTML report for ``catalogue``."""
    cat = read_table(catalogue)
    meta = table_metadata(catalogue)
    comparisons = truth_comparisons(cat)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>galcat report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}</style>",
        "</head><body>",
        f"<h1>galcat catalogue: {html.escape(str(config.get('survey', '')))}</h1>",
        f"<p>{len(cat)} objects, {cat['shard'].nunique() if 'shard' in cat else 0} shards, "
        f"{len(cat.columns)} columns.</p>",
        "<h2>Provenance</h2><table>",
    ]
    for key in ("config_hash", "galcat_version", "created_utc", "python"):
        parts.append(f"<tr><th>{key}</th><td>{html.escape(str(meta.get(key, '')))}</td></tr>")
    parts.append("</table>")
    if not comparisons.empty:
        parts.append("<h2>Measurements against injected truth</h2>")
        parts.append(comparisons.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    flags = _flag_summary(cat)
    if not flags.empty:
        parts.append("<h2>Flags</h2>")
        parts.append(flags.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    for title, png in _figures(cat):
        parts.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    final = Path(output)
    with replacing_file(final) as tmp:
        tmp.write_text("\n".join(parts))
    return final
