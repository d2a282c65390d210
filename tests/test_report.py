"""galcat.report.truth_comparisons on a hand-made catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat.report import truth_comparisons, write_report


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
                 config={"survey": "synthetic"})
    html = (tmp_path / "report.html").read_text()
    assert "bulge-to-total" in html and "data:image/png;base64" in html
