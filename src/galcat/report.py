"""The HTML summary page: what a person reads first after a run.

`write_report` builds it from the catalogue alone: the headline numbers first (survey
size, flags, photometric stellar mass and every measurement scored against the
synthetic truth), then every figure, then whatever the analyses have written. The
page is self-contained (figures embedded as PNG, so it can be mailed or published
with a release) and links each figure's own file.

The figures (`FIGURES`) are also written as PNG files, the outputs the ``report`` rule
marks for Snakemake's own report (``snakemake --report report.zip``), each with its
caption in ``workflow/report/{name}.rst``. Analyses (``analysis/*.json`` and
``analysis/*.png`` beside the catalogue) are listed whatever they are: a JSON file's
scalar values become a table, a PNG is shown and linked.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import replacing_file
from galcat.metrics import summarize
from galcat.tables import read_table, table_metadata

__all__ = [
    "FIGURES",
    "Figure",
    "analysis_headlines",
    "analysis_results",
    "figure_names",
    "headline_numbers",
    "truth_comparisons",
    "write_figures",
    "write_report",
]

#: Most points drawn in a scatter plot (a random, seeded subsample beyond).
MAX_POINTS = 20000
#: The analysis whose table (the seed papers' figures beside galcat's) follows the
#: headline numbers.
SEED_PAPERS = "seed_papers"
#: Goal of the photometric stellar mass on the synthetic survey (median |Δ log M*|, dex).
STELLAR_MASS_GOAL_DEX = 0.1

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
    ("log_mass_phot", "truth_log_mass", "photometric stellar mass log M* [dex], difference",
     "difference"),
)


#: Reference stellar masses a catalogue may carry, the first present is compared with
#: ``log_mass_phot``: (column, label). Only the synthetic truth has a goal.
REFERENCE_MASSES = (
    ("truth_log_mass", "truth"),
    ("log_mass", "MPA-JHU (SDSS archive)"),
    ("log_mass_nsa", "NSA (MaNGA archive)"),
)


def _reference_mass(cat: pd.DataFrame) -> tuple[str, str] | None:
    for column, label in REFERENCE_MASSES:
        if column in cat and np.isfinite(pd.to_numeric(cat[column], errors="coerce")).any():
            return column, label
    return None


def truth_comparisons(cat: pd.DataFrame, pairs=TRUTH_PAIRS) -> pd.DataFrame:
    """Median bias and robust scatter (`galcat.metrics.summarize`) of each measurement vs
    its truth (``pairs``: tuples ``(measured, truth, label, error)`` as `TRUTH_PAIRS`, the
    default)."""
    rows = []
    for measured, truth, label, error in pairs:
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


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _sample(cat: pd.DataFrame) -> pd.DataFrame:
    """At most `MAX_POINTS` rows (seeded), so plots of a million galaxies stay light."""
    return cat.sample(MAX_POINTS, random_state=0) if len(cat) > MAX_POINTS else cat


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _no_data(title: str, missing) -> object:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{title}: no data in this catalogue\n(missing: {', '.join(missing)})",
            ha="center", va="center", fontsize=9)
    return fig


def _truth_figure(cat: pd.DataFrame):
    plt = _pyplot()
    pairs = [p for p in TRUTH_PAIRS if p[0] in cat and p[1] in cat]
    if not pairs:
        return _no_data("measured vs truth", ["truth_* columns"])
    sub = _sample(cat)
    ncols = min(4, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4 * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    for ax, (measured, truth, label, _) in zip(axes.flat, pairs, strict=False):
        t, m = sub[truth].to_numpy(float), sub[measured].to_numpy(float)
        ax.scatter(t, m, s=4, alpha=0.5)
        lo = np.nanmin([np.nanmin(t), np.nanmin(m)])
        hi = np.nanmax([np.nanmax(t), np.nanmax(m)])
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"truth: {truth}")
        ax.set_ylabel(f"measured: {measured}")
        ax.set_title(label, fontsize=9)
    return fig


def _stellar_mass_figure(cat: pd.DataFrame):
    plt = _pyplot()
    if not {"log_mass_phot", "z"} <= set(cat.columns):
        return _no_data("stellar mass", sorted({"log_mass_phot", "z"} - set(cat.columns)))
    sub = _sample(cat)
    ref = _reference_mass(sub)
    fig, axes = plt.subplots(1, 3 if ref else 2, figsize=(13 if ref else 9, 4),
                             layout="constrained")
    m = sub["log_mass_phot"].to_numpy(float)
    ok = np.isfinite(m)
    axes[0].scatter(sub.loc[ok, "z"], m[ok], s=4, alpha=0.5)
    axes[0].set_xlabel("redshift z")
    axes[0].set_ylabel("log M* / Msun (photometric)")
    axes[0].set_title(f"{int(ok.sum())} of {len(sub)} galaxies with a mass", fontsize=9)
    if ref is None:
        axes[1].hist(sub["log_mass_phot_err"].dropna(), bins=30)
        axes[1].set_xlabel("log_mass_phot_err [dex]")
        return fig
    column, label = ref
    t = pd.to_numeric(sub[column], errors="coerce").to_numpy(float)
    err = sub["log_mass_phot_err"].to_numpy(float) if "log_mass_phot_err" in sub else None
    axes[1].errorbar(t, m, yerr=err, fmt=".", ms=3, alpha=0.5, elinewidth=0.5)
    lo, hi = np.nanmin(t), np.nanmax(t)
    axes[1].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[1].set_xlabel(f"{column} ({label})")
    axes[1].set_ylabel("log_mass_phot (measured)")
    delta = (m - t)[np.isfinite(m - t)]
    axes[2].hist(delta, bins=40)
    if delta.size:
        goal = f" (goal ≤ {STELLAR_MASS_GOAL_DEX})" if column == "truth_log_mass" else ""
        axes[2].set_title(f"median |Δ| = {np.median(np.abs(delta)):.3f} dex{goal}", fontsize=9)
    axes[2].set_xlabel(f"Δ log M* = measured − {label} [dex]")
    return fig


def _gini_m20_figure(cat: pd.DataFrame):
    plt = _pyplot()
    if not {"gini", "m20"} <= set(cat.columns):
        return _no_data("Gini-M20", sorted({"gini", "m20"} - set(cat.columns)))
    sub = _sample(cat)
    fig, ax = plt.subplots(figsize=(5, 4))
    merger = sub.get("truth_merger", pd.Series(False, index=sub.index)).astype(bool)
    ax.scatter(sub.loc[~merger, "m20"], sub.loc[~merger, "gini"], s=4, label="isolated")
    ax.scatter(sub.loc[merger, "m20"], sub.loc[merger, "gini"], s=8, c="r", label="merger")
    x = np.linspace(-3, 0, 10)
    ax.plot(x, -0.14 * x + 0.33, "k--", lw=1, label="Lotz+08 merger line")
    ax.invert_xaxis()
    ax.set_xlabel("M20")
    ax.set_ylabel("Gini")
    ax.legend(fontsize=8)
    return fig


def _kpc_per_arcsec(z: np.ndarray) -> np.ndarray:
    from astropy.cosmology import Planck18

    z = np.asarray(z, dtype=float)
    ok = np.isfinite(z) & (z > 0)
    out = np.full(z.shape, np.nan)
    if ok.any():
        grid = np.linspace(z[ok].min(), z[ok].max() + 1e-6, 256)
        scale = Planck18.kpc_proper_per_arcmin(grid).value / 60.0
        out[ok] = np.interp(z[ok], grid, scale)
    return out


def _size_mass_figure(cat: pd.DataFrame):
    plt = _pyplot()
    need = {"log_mass_phot", "r50_psf_corrected", "z"}
    if not need <= set(cat.columns):
        return _no_data("size-mass", sorted(need - set(cat.columns)))
    from galcat.relations import size_mass_vanderwel2014

    sub = _sample(cat)
    truth = {"truth_log_mass", "truth_r50_kpc"} <= set(sub.columns)
    fig, axes = plt.subplots(1, 2 if truth else 1, figsize=(11 if truth else 5.5, 4),
                             squeeze=False, layout="constrained")
    r_kpc = sub["r50_psf_corrected"].to_numpy(float) * _kpc_per_arcsec(sub["z"].to_numpy())
    colour = sub["bulge_to_total"] if "bulge_to_total" in sub else None
    art = axes[0, 0].scatter(sub["log_mass_phot"], np.log10(r_kpc), s=4, c=colour, cmap="coolwarm",
                             vmin=0, vmax=1)
    if colour is not None:
        fig.colorbar(art, ax=axes[0, 0], label="bulge_to_total")
    axes[0, 0].set_title("measured: log_mass_phot, r50_psf_corrected", fontsize=9)
    panels = [(axes[0, 0], None)]
    if truth:
        for kind, c in (("early", "r"), ("late", "b")):
            sel = sub.get("truth_type", pd.Series("", index=sub.index)) == kind
            axes[0, 1].scatter(sub.loc[sel, "truth_log_mass"],
                               np.log10(sub.loc[sel, "truth_r50_kpc"]), s=4, c=c, label=kind)
        axes[0, 1].set_title("truth (circular r50 of the r band)", fontsize=9)
        axes[0, 1].legend(fontsize=8)
        panels.append((axes[0, 1], None))
    x = np.linspace(9.0, 12.0, 50)
    for ax, _ in panels:
        for early, style in ((True, "r--"), (False, "b--")):
            r, _ = size_mass_vanderwel2014(x, np.full(x.shape, early), 0.08)
            ax.plot(x, np.log10(r), style, lw=1)
        ax.set_xlabel("log M* / Msun")
        ax.set_ylabel("log r50 / kpc")
    return fig


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its title, its plotting function and whether it needs
    the synthetic truth. Its caption is ``workflow/report/{name}.rst``."""

    title: str
    plot: Callable[[pd.DataFrame], object]
    needs_truth: bool = False


#: Every figure of the report by name (the PNG is ``figures/{name}.png``).
FIGURES: dict[str, Figure] = {
    "truth_comparison": Figure("Measurements against injected truth", _truth_figure, True),
    "stellar_mass": Figure("Photometric stellar mass", _stellar_mass_figure),
    "size_mass": Figure("Size-mass relation (measured; van der Wel et al. 2014 dashed)",
                        _size_mass_figure),
    "gini_m20": Figure("Gini-M20 plane (Lotz et al. 2008)", _gini_m20_figure),
}


def figure_names(*, truth: bool) -> list[str]:
    """Names of the figures the report draws: all, or those not needing the truth."""
    return [name for name, fig in FIGURES.items() if truth or not fig.needs_truth]


def write_figures(cat: pd.DataFrame, paths) -> dict[str, bytes]:
    """Draw ``FIGURES[stem]`` of each path and write it (PNG, atomically).

    Returns the PNG bytes by figure name, in the order of ``paths``.
    """
    plt = _pyplot()
    out = {}
    for path in map(Path, paths):
        if path.stem not in FIGURES:
            raise ValueError(f"unknown report figure {path.stem!r} ({str(path)!r}); "
                             f"known: {sorted(FIGURES)}")
        fig = FIGURES[path.stem].plot(cat)
        data = _png(fig)
        plt.close(fig)
        with replacing_file(path) as tmp:
            tmp.write_bytes(data)
        out[path.stem] = data
    return out


def _flag_summary(cat: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for col in [c for c in cat.columns if c == "flag" or c.endswith("_flag")]:
        values = pd.to_numeric(cat[col], errors="coerce").fillna(0).astype(np.int64)
        rows.append({"flag column": col, "objects flagged": int((values != 0).sum()),
                     "fraction": float((values != 0).mean())})
    return pd.DataFrame(rows)


def headline_numbers(cat: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> list[dict]:
    """The numbers at the top of the report: ``{"quantity", "value", "goal"}`` rows."""
    comparisons = truth_comparisons(cat) if comparisons is None else comparisons
    rows = [{"quantity": "objects", "value": f"{len(cat)}", "goal": ""}]
    if "shard" in cat:
        rows.append({"quantity": "shards", "value": f"{cat['shard'].nunique()}", "goal": ""})
    if "flag" in cat:
        clean = float((pd.to_numeric(cat["flag"], errors="coerce").fillna(-1) == 0).mean())
        rows.append({"quantity": "measured without a flag (flag = 0)",
                     "value": f"{clean:.1%}", "goal": ""})
    if "log_mass_phot" in cat:
        m = cat["log_mass_phot"].to_numpy(float)
        ok = np.isfinite(m)
        rows.append({"quantity": "galaxies with a photometric stellar mass",
                     "value": f"{int(ok.sum())} ({ok.mean():.1%})" if len(m) else "0",
                     "goal": ""})
        if ok.any():
            rows.append({"quantity": "median log M* / Msun",
                         "value": f"{np.median(m[ok]):.2f}", "goal": ""})
        if "log_mass_phot_err" in cat and ok.any():
            rows.append({"quantity": "median error of log M* [dex]",
                         "value": f"{np.nanmedian(cat['log_mass_phot_err'].to_numpy(float)):.3f}",
                         "goal": ""})
    scored = comparisons.set_index("measured") if not comparisons.empty else None
    ref = _reference_mass(cat) if "log_mass_phot" in cat else None
    if ref is not None:
        column, label = ref
        row = truth_comparisons(
            cat, pairs=[("log_mass_phot", column, label, "difference")]).iloc[0]
        goal = f"≤ {STELLAR_MASS_GOAL_DEX}" if column == "truth_log_mass" else ""
        rows.append({"quantity": f"stellar mass vs {label}: median |Δ log M*| [dex]",
                     "value": f"{row['median_abs_error']:.3f}", "goal": goal})
        rows.append({"quantity": f"stellar mass vs {label}: median Δ, NMAD [dex]",
                     "value": f"{row['median_bias']:+.3f}, {row['scatter_nmad']:.3f}",
                     "goal": ""})
    for measured in ("r50_psf_corrected", "r50_mass"):
        if scored is not None and measured in scored.index:
            row = scored.loc[measured]
            rows.append({"quantity": f"{measured} vs truth: median |error|, NMAD (fraction)",
                         "value": f"{row['median_abs_error']:.3f}, {row['scatter_nmad']:.3f}",
                         "goal": ""})
    return rows


def _load(directory, name: str) -> dict:
    path = Path(directory) / f"{name}.json" if directory else None
    try:
        return json.loads(path.read_text()) if path and path.is_file() else {}
    except (OSError, ValueError):
        return {}


def analysis_headlines(directory: os.PathLike | str | None) -> list[dict]:
    """Headline rows from the analyses (issue 12's checks): merger fraction corrected vs
    true, the MZR's input coefficients from predicted metallicities, the scatter ratio."""
    rows = []
    merger = _load(directory, "merger_fraction")
    for route, res in merger.get("routes", {}).items():
        if "corrected_agrees_in_every_bin" in res:
            rows.append({"quantity": f"merger fraction ({route}): true fraction inside the "
                                     "corrected 95% interval in every bin (uncorrected)",
                         "value": f"{res['corrected_agrees_in_every_bin']} "
                                  f"({res['observed_agrees_in_every_bin']})",
                         "goal": "True"})
    mzr = _load(directory, "mzr")
    pred = mzr.get("fits", {}).get("predicted", {})
    if "input_relation" in pred:
        rel = pred["input_relation"]
        rows.append({"quantity": "MZR from predicted metallicities and measured masses "
                                 "recovers the input coefficients (chi-square p)",
                     "value": f"{rel['recovered']} (p = {_fmt(rel['p_value'])})",
                     "goal": "True"})
    powered = mzr.get("prediction_powered", {})
    if "input_relation" in powered:
        rel = powered["input_relation"]
        rows.append({"quantity": "the same, prediction-powered (the network's bias measured on "
                                 f"{powered['n_calibration']} labelled validation galaxies)",
                     "value": f"{rel['recovered']} (p = {_fmt(rel['p_value'])})",
                     "goal": "True"})
    if mzr.get("scatter_ratio") is not None:
        rows.append({"quantity": "MZR scatter ratio, predicted / true metallicities",
                     "value": _fmt(mzr["scatter_ratio"]), "goal": "Wu & Boada 2019: 0.877"})
    return rows


def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of a JSON value as ``(dotted key, text)``; long lists summarised."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}{k}.")]
    key = prefix.rstrip(".") or "value"
    if isinstance(value, list):
        if len(value) <= 8 and all(not isinstance(v, (dict, list)) for v in value):
            return [(key, ", ".join(_fmt(v) for v in value))]
        return [(key, f"[{len(value)} values]")]
    return [(key, _fmt(value))]


def _fmt(value) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def analysis_results(directory: os.PathLike | str | None) -> list[dict]:
    """What the analyses wrote: ``{"name", "kind" ('json' or 'png'), "path", "rows" or
    "png"}`` for every ``*.json`` and ``*.png`` in ``directory``, sorted by name.

    A JSON file that cannot be read is listed with its error, never fatal to the report.
    """
    if directory is None or not Path(directory).is_dir():
        return []
    out = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix == ".json":
            try:
                doc = json.loads(path.read_text())
                rows = _flatten(doc)
            except (OSError, ValueError) as exc:
                doc, rows = {}, [("error", f"could not read: {exc}")]
            item = {"name": path.stem, "kind": "json", "path": path, "rows": rows}
            if isinstance(doc, dict) and isinstance(doc.get("table"), list):
                item["table"] = doc["table"]  # records, shown as a table of their own
            out.append(item)
        elif path.suffix == ".png":
            out.append({"name": path.stem, "kind": "png", "path": path,
                        "png": path.read_bytes()})
    return out


def _table(rows: list[dict] | list[tuple], header: tuple[str, ...]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        values = row.values() if isinstance(row, dict) else row
        body.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
                    + "</tr>")
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def _records(records: list) -> str:
    """A list of JSON records as a table (columns: the first record's keys)."""
    header = tuple(records[0]) if records and isinstance(records[0], dict) else ()
    rows = [tuple(_fmt(r.get(h)) if r.get(h) is not None else "" for h in header)
            for r in records if isinstance(r, dict)]
    return _table(rows, header)


def _img(data: bytes, alt: str) -> str:
    return (f"<img alt='{html.escape(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")


def _link(path: Path, page: Path) -> str:
    rel = os.path.relpath(path, page.parent)
    return f"<a href='{html.escape(rel)}'>{html.escape(rel)}</a>"


def write_report(
    catalogue: os.PathLike | str,
    output: os.PathLike | str,
    *,
    config: dict,
    figures=(),
    analysis_dir: os.PathLike | str | None = None,
) -> Path:
    """Write the HTML report of ``catalogue`` (and its figure files).

    Parameters
    ----------
    catalogue : path-like
        ``catalogue.parquet``.
    output : path-like
        The HTML page.
    config : dict
        ``survey`` (the title) and ``config_hash``.
    figures : sequence of path-like
        PNG files to draw, each named after a key of `FIGURES`; embedded and linked.
    analysis_dir : path-like, optional
        Directory of the analyses' ``*.json``/``*.png`` (listed if present).

    Cost: a few seconds (plots of at most `MAX_POINTS` galaxies each).
    """
    page = Path(output)
    cat = read_table(catalogue)
    meta = table_metadata(catalogue)
    comparisons = truth_comparisons(cat)
    drawn = write_figures(cat, figures)
    paths = {Path(p).stem: Path(p) for p in figures}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>galcat report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>galcat catalogue: {html.escape(str(config.get('survey', '')))}</h1>",
        f"<p>{len(cat)} objects, {cat['shard'].nunique() if 'shard' in cat else 0} shards, "
        f"{len(cat.columns)} columns. Catalogue: "
        + ", ".join(_link(Path(catalogue).with_suffix(s), page)
                    for s in (".parquet", ".fits", ".vot")) + ".</p>",
    ]
    results = analysis_results(analysis_dir)
    parts += ["<h2>Headline numbers</h2>",
              _table(headline_numbers(cat, comparisons) + analysis_headlines(analysis_dir),
                     ("quantity", "value", "goal"))]
    for item in results:
        if item["name"] == SEED_PAPERS and "table" in item:
            parts.append("<h2>Seed papers and galcat, side by side</h2>")
            parts.append(_records(item["table"]))
    if not comparisons.empty:
        parts.append("<h2>Measurements against injected truth</h2>")
        parts.append(comparisons.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    flags = _flag_summary(cat)
    if not flags.empty:
        parts.append("<h2>Flags</h2>")
        parts.append(flags.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    if drawn:
        parts.append("<h2>Figures</h2><p>Each figure is also a file (below), and Snakemake's "
                     "own report of the run shows them with their captions "
                     "(<code>snakemake --report report.zip</code>).</p><ul>")
        parts += [f"<li>{html.escape(FIGURES[name].title)}: {_link(paths[name], page)}</li>"
                  for name in drawn]
        parts.append("</ul>")
        for name, data in drawn.items():
            parts.append(f"<h3>{html.escape(FIGURES[name].title)}</h3>{_img(data, name)}"
                         f"<p>File: {_link(paths[name], page)}</p>")
    parts.append("<h2>Analyses</h2>")
    if not results:
        parts.append("<p>No analysis results yet (none in "
                     f"<code>{html.escape(str(analysis_dir))}</code>).</p>")
    for item in results:
        parts.append(f"<h3>{html.escape(item['name'])}</h3>")
        if item["kind"] == "json" and "table" in item:
            parts.append(_records(item["table"]))
        elif item["kind"] == "json":
            parts.append(_table(item["rows"], ("key", "value")))
        else:
            parts.append(_img(item["png"], item["name"]))
        parts.append(f"<p>File: {_link(item['path'], page)}</p>")
    parts.append("<h2>Provenance</h2><table>")
    for key in ("config_hash", "galcat_version", "created_utc", "python", "mass_to_light"):
        parts.append(f"<tr><th>{key}</th><td>{html.escape(str(meta.get(key, '')))}</td></tr>")
    parts.append("</table>")
    parts.append("</body></html>")
    with replacing_file(page) as tmp:
        tmp.write_text("\n".join(parts))
    return page
