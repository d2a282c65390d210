"""galcat.report: truth comparisons, headline numbers, figures and the analyses' listing,
on hand-made catalogues."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from galcat.report import FIGURES, figure_names, headline_numbers, truth_comparisons, write_report
from tests.conftest import ROOT


def test_fractions_are_scored_by_difference_and_radii_by_fraction():
    cat = pd.DataFrame({
        "r50_psf_corrected": [1.1, 2.0, np.nan],
        "truth_r50_r": [1.0, 2.0, 3.0],
        "bulge_to_total": [0.05, 0.5, 0.9],
        "truth_bt": [0.0, 0.4, 0.9],
    })
    table = truth_comparisons(cat).set_index("measured")
    assert list(table.index) == ["r50_psf_corrected", "bulge_to_total"]
    r50 = table.loc["r50_psf_corrected"]
    assert r50["error"] == "fraction" and r50["n"] == 2 and r50["n_missing"] == 1
    assert r50["median_bias"] == pytest.approx(0.05)
    bt = table.loc["bulge_to_total"]
    # a truth of 0 is kept for a difference (it would divide by zero as a fraction)
    assert bt["error"] == "difference" and bt["n"] == 3
    assert bt["median_bias"] == pytest.approx(0.05)
    assert bt["median_abs_error"] == pytest.approx(0.05)


def test_write_report_plots_every_scored_pair(tmp_path):
    cat = pd.DataFrame({
        "object_id": np.arange(1, 7),
        "r50_psf_corrected": np.linspace(1.0, 2.0, 6),
        "truth_r50_r": np.linspace(1.0, 2.1, 6),
        "bulge_to_total": np.linspace(0.0, 0.5, 6),
        "truth_bt": np.linspace(0.0, 0.6, 6),
    })
    cat.to_parquet(tmp_path / "catalogue.parquet")
    write_report(tmp_path / "catalogue.parquet", tmp_path / "report.html",
                 config={"survey": "synthetic"}, figures=[tmp_path / "truth_comparison.png"])
    html = (tmp_path / "report.html").read_text()
    assert "bulge-to-total" in html and "data:image/png;base64" in html
    assert (tmp_path / "truth_comparison.png").stat().st_size > 0


def _catalogue(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    truth = rng.uniform(9.5, 11.5, n)
    cat = pd.DataFrame({
        "object_id": np.arange(1, n + 1), "shard": ["s000000"] * n,
        "z": rng.uniform(0.02, 0.15, n), "flag": np.zeros(n, dtype=np.int64),
        "log_mass_phot": truth + rng.normal(0, 0.05, n), "log_mass_phot_err": np.full(n, 0.11),
        "log_mass_phot_flag": np.zeros(n, dtype=np.int64), "truth_log_mass": truth,
        "gini": rng.uniform(0.4, 0.6, n), "m20": rng.uniform(-2.5, -1.5, n),
        "r50_psf_corrected": rng.uniform(1, 3, n), "truth_r50_r": rng.uniform(1, 3, n),
        "bulge_to_total": rng.uniform(0, 1, n),
    })
    cat.to_parquet(tmp_path / "catalogue.parquet")
    return cat


def test_headline_numbers_put_the_stellar_mass_beside_its_goal(tmp_path):
    cat = _catalogue(tmp_path)
    rows = {r["quantity"]: r for r in headline_numbers(cat)}
    mass = rows["stellar mass vs truth: median |Δ log M*| [dex]"]
    delta = np.abs(cat["log_mass_phot"] - cat["truth_log_mass"])
    assert float(mass["value"]) == pytest.approx(np.median(delta), abs=1e-3)
    assert mass["goal"] == "≤ 0.1"
    assert rows["galaxies with a photometric stellar mass"]["value"] == "40 (100.0%)"


def test_report_writes_its_figures_and_lists_whatever_the_analyses_wrote(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _catalogue(tmp_path)
    analysis = tmp_path / "analysis"
    analysis.mkdir()
    (analysis / "mzr.json").write_text(json.dumps(
        {"scatter_ratio": 0.877123, "fit": {"a": -1.49, "b": 1.85}, "bins": list(range(20))}))
    (analysis / "broken.json").write_text("{not json")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    fig.savefig(analysis / "merger_fraction.png")
    plt.close(fig)
    figures = [tmp_path / "figures" / f"{name}.png" for name in figure_names(truth=True)]
    page = write_report(tmp_path / "catalogue.parquet", tmp_path / "report.html",
                        config={"survey": "synthetic"}, figures=figures,
                        analysis_dir=analysis)
    text = page.read_text()
    for path in figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"href='figures/{path.name}'" in text
    assert "scatter_ratio" in text and "0.8771" in text and "fit.b" in text
    assert "[20 values]" in text and "could not read" in text
    assert "href='analysis/merger_fraction.png'" in text
    # every embedded image decodes to a PNG
    for data in re.findall(r"src='data:image/png;base64,([^']+)'", text):
        assert base64.b64decode(data)[:4] == b"\x89PNG"
    assert text.count("data:image/png;base64,") == len(figures) + 1


def test_figures_are_named_and_truth_figures_only_where_there_is_truth(tmp_path):
    assert "truth_comparison" in figure_names(truth=True)
    assert "truth_comparison" not in figure_names(truth=False)
    assert set(figure_names(truth=False)) < set(FIGURES)
    for name in FIGURES:  # every figure has its caption for Snakemake's report
        assert (ROOT / "workflow" / "report" / f"{name}.rst").read_text().strip()
    _catalogue(tmp_path)
    with pytest.raises(ValueError, match="unknown report figure 'nope'"):
        write_report(tmp_path / "catalogue.parquet", tmp_path / "r.html", config={},
                     figures=[tmp_path / "nope.png"])
