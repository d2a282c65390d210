"""The science analyses (galcat.analysis) on catalogues with a known answer.

The fast tests write a catalogue Parquet whose truth is drawn here (so the right answer
is known: the merger fraction per bin, the MZR's coefficients, which latent carries
B/T, which radii are the outliers) and run each analysis through the ``galcat``
command line, as the workflow's rules do. The slow test checks the real run of the
whole DAG (the session's tiny run) wrote every analysis and the report shows them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galcat import cli, gz2
from galcat.analysis import FIGURES
from galcat.analysis.common import AnalysisError
from galcat.analysis.merger import (
    balanced_threshold,
    purity_completeness,
    vote_matched_threshold,
)
from galcat.analysis.mzr import (
    COEFFICIENTS,
    compare_coefficients,
    fit_quadratic,
    mzr,
    prediction_powered_fit,
)
from galcat.relations import mzr_tremonti2004
from galcat.tables import write_table

N = 6000
TREMONTI = COEFFICIENTS["tremonti2004"]


def _population(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Galaxies with the truth the analyses are scored against."""
    z = rng.uniform(0.02, 0.15, n)
    mass = rng.uniform(9.5, 11.5, n)
    kind = rng.random(n)
    merger = kind < 0.04 + 0.6 * (z - 0.02)  # the true fraction rises with redshift
    projection = ~merger & (kind > 0.88)
    sep = np.where(merger, rng.uniform(3, 10, n), np.where(projection, rng.uniform(1, 8, n),
                                                           np.nan))
    # chance projections look like mergers at small separation
    p_merger = np.where(merger, rng.normal(0.8, 0.12, n),
                        np.where(projection, 1.05 - 0.12 * np.nan_to_num(sep), 0.1)
                        + rng.normal(0, 0.12, n))
    bt = rng.uniform(0, 1, n)
    mu = mzr_tremonti2004(mass)
    metal = mu + rng.normal(0, 0.1, n)
    r50 = np.exp(rng.normal(0.3, 0.4, n))
    return pd.DataFrame({
        "object_id": np.arange(n, dtype=np.int64), "shard": "s000000", "z": z,
        "truth_log_mass": mass, "truth_merger": merger, "truth_projection": projection,
        "truth_companion_sep": sep, "truth_bt": bt, "truth_metallicity": metal,
        "truth_r50_mass": r50, "truth_sersic_n": 1 + 3 * bt,
        "nn_gz2_class6_1": np.clip(p_merger, 0, 1),
        "gini_m20_merger": np.where(merger, rng.normal(0.02, 0.03, n), rng.normal(-0.05, 0.03, n)),
        "asymmetry": np.where(projection, rng.normal(0.3, 0.1, n), rng.normal(0.1, 0.05, n)),
        "bulge_to_total": np.clip(bt + rng.normal(0, 0.05, n), 0, 1),
        "sersic_n": 1 + 3 * bt + rng.normal(0, 0.3, n),
        "log_mass_phot": mass + rng.normal(0, 0.1, n), "log_mass_phot_err": np.full(n, 0.1),
        # a calibrated network: E[pred | mass] is the relation, less scatter than the truth
        "nn_metallicity_metallicity": mu + 0.6 * (metal - mu) + rng.normal(0, 0.03, n),
        "nn_r50_r50_mass": r50 * np.exp(rng.normal(0, 0.07, n)),
        "r50_mass": np.where(rng.random(n) < 0.05, np.nan, r50 * np.exp(rng.normal(0, 0.15, n))),
        # the metallicity network's split (its own stream: the draws above stay as they were)
        "nn_metallicity_split": np.random.default_rng(99).choice(
            ["train", "validation", "test"], n, p=[0.7, 0.15, 0.15]),
    })


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    rng = np.random.default_rng(12)
    cat = _population(rng, N)
    cat.loc[:9, "log_mass_phot"] = np.nan  # failed masses: flagged galaxies, not fatal
    cat.loc[:2, "nn_r50_r50_mass"] *= 3.0  # three planted outliers
    for col in gz2.column_names("gz2_"):  # volunteer votes and a network near them
        cat[col] = rng.uniform(0, 1, N)
        if col != "gz2_class6_1":  # the population's merger probability stays
            cat[f"nn_gz2_{col.removeprefix('gz2_')}"] = cat[col] + rng.normal(0, 0.05, N)
    cat["gz2_class6_1"] = cat["nn_gz2_class6_1"] + rng.normal(0, 0.05, N)
    cat["nn_gz2_split"] = np.where(np.arange(N) % 2 == 0, "train", "test")
    path = tmp_path_factory.mktemp("analysis") / "catalogue.parquet"
    write_table(cat, path)
    return path


@pytest.fixture(scope="module")
def with_latents(catalogue, tmp_path_factory):
    cat = pd.read_parquet(catalogue)
    rng = np.random.default_rng(5)
    cat["nn_vae_z0"] = cat["truth_bt"] + rng.normal(0, 0.1, N)
    cat["nn_vae_z1"] = cat["log_mass_phot"] + rng.normal(0, 0.3, N)
    cat["nn_vae_z2"] = rng.normal(size=N)
    cat["nn_vae_z0_err"] = 0.1
    cat["nn_vae_split"] = "test"
    path = tmp_path_factory.mktemp("latent") / "catalogue.parquet"
    write_table(cat, path)
    return path


CONFIG = {"analysis": {"split": "all", "bootstrap": 200},
          "synthetic": {"mzr": {"relation": "tremonti2004"}}}


def run(name: str, catalogue, out, *extra: str, config=CONFIG) -> dict:
    """Run analysis ``name`` through the command line; its JSON."""
    pngs = [str(out / f"{fig}.png") for fig in FIGURES[name]]
    argv = [name.replace("_", "-"), "--config-json", json.dumps(config),
            "--catalogue", str(catalogue), "--output-json", str(out / f"{name}.json"), *extra]
    if pngs:
        argv += ["--output-png", *pngs]
    assert cli.main(argv) == 0
    for png in pngs:
        with open(png, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", png
    return json.loads((out / f"{name}.json").read_text())


def test_purity_completeness_counts_and_balance():
    prob = np.array([0.9, 0.8, 0.6, 0.3, 0.2, np.nan])
    truth = np.array([True, True, False, True, False, False])
    curve = purity_completeness(prob, truth, [0.5, 0.7])
    assert curve["n_selected"].tolist() == [3, 2]
    assert curve["purity"].tolist() == pytest.approx([2 / 3, 1.0])
    assert curve["completeness"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert balanced_threshold(curve) == 0.5


def test_corrected_merger_fraction_agrees_with_truth_where_the_observed_does_not(
        catalogue, tmp_path):
    result = run("merger_fraction", catalogue, tmp_path)
    gz2_route = result["routes"]["gz2"]
    assert gz2_route["corrected_agrees_in_every_bin"]
    # chance projections inflate the observed fraction beyond its interval
    assert not gz2_route["observed_agrees_in_every_bin"]
    z = pd.DataFrame(gz2_route["redshift"])
    assert (z["observed"] > z["true"]).all()
    assert z["true"].is_monotonic_increasing  # the population's rising fraction
    # the separation bias: projections are a larger share of the selected at small separation
    bias = pd.DataFrame(gz2_route["separation_bias"])
    assert bias["share_projection"].iloc[0] > bias["share_projection"].iloc[2]
    assert 0 < result["balanced_threshold"] < 1
    assert result["routes"]["nonparametric"]["corrected_agrees_in_every_bin"]
    # failed masses fall in no mass bin; the batch still ran
    assert sum(gz2_route["mass"]["n"]) == N - 10


def test_mzr_from_measured_masses_recovers_the_input_coefficients(catalogue, tmp_path):
    result = run("mzr", catalogue, tmp_path)
    pred, true = result["fits"]["predicted"], result["fits"]["true"]
    assert pred["input_relation"]["recovered"] and true["input_relation"]["recovered"]
    assert pred["coefficients"] == pytest.approx(TREMONTI, abs=3 * max(pred["errors"]))
    # measured masses scatter: ordinary least squares flattens the relation
    assert not pred["ordinary_least_squares"]["input_relation"]["recovered"]
    assert result["scatter_ratio"] == pytest.approx(pred["scatter_rms"] / true["scatter_rms"])
    assert result["scatter_ratio"] < 0.8
    assert 0.03 < result["metallicity_rmse"] < 0.06
    assert not result["fits"]["true"]["residuals_vs_morphology"]["bulge_to_total"]["significant"]


def test_mzr_residuals_that_follow_morphology_are_significant(catalogue, tmp_path):
    cat = pd.read_parquet(catalogue)
    cat["truth_metallicity"] += 0.1 * cat["bulge_to_total"]
    path = tmp_path / "cat.parquet"
    write_table(cat, path)
    result = run("mzr", path, tmp_path)
    assert result["fits"]["true"]["residuals_vs_morphology"]["bulge_to_total"]["significant"]


def test_r50_validation_scores_both_routes_and_ranks_the_planted_outliers(catalogue, tmp_path):
    result = run("r50_validation", catalogue, tmp_path)
    cnn, trad = result["routes"]["cnn"], result["routes"]["traditional"]
    assert cnn["median_abs"] == pytest.approx(0.6745 * 0.07, rel=0.1)
    assert trad["median_abs"] > cnn["median_abs"]
    assert trad["n_missing"] == pytest.approx(0.05 * N, rel=0.2)
    assert result["same_objects"]["n"] == N - trad["n_missing"]
    errors = [abs(row["cnn_fractional_error"]) for row in result["outliers"]]
    assert errors == sorted(errors, reverse=True)
    assert sorted(row["object_id"] for row in result["outliers"][:3]) == [0, 1, 2]


def test_latent_space_finds_the_latent_that_carries_bt(with_latents, tmp_path):
    result = run("latent_space", with_latents, tmp_path)
    assert result["latents"] == ["nn_vae_z0", "nn_vae_z1", "nn_vae_z2"]
    assert result["strongest"]["truth_bt"]["latent"] == "nn_vae_z0"
    assert result["strongest"]["truth_bt"]["rho"] > 0.9
    assert result["strongest"]["log_mass_phot"]["latent"] == "nn_vae_z1"
    assert result["mergers"]["n"] == int(pd.read_parquet(with_latents)["truth_merger"].sum())


def test_latent_space_says_when_the_catalogue_has_no_latent_model(catalogue, tmp_path):
    result = run("latent_space", catalogue, tmp_path)
    assert result["status"] == "no latent model in this catalogue"
    assert result["latents"] == []


def test_seed_paper_table_takes_galcat_figures_from_the_run(with_latents, tmp_path):
    docs = {name: run(name, with_latents, tmp_path)
            for name in ("merger_fraction", "mzr", "r50_validation", "latent_space")}
    table = run("seed_papers", with_latents, tmp_path, "--analyses",
                *(str(tmp_path / f"{name}.json") for name in docs))["table"]
    rows = {row["quantity"]: row for row in table}
    ratio = rows["MZR scatter ratio, predicted / true"]
    assert ratio["paper_value"] == 0.877
    assert ratio["galcat_value"] == pytest.approx(docs["mzr"]["scatter_ratio"])
    gampen = rows["half-mass radius, median |fractional error| (network)"]
    assert gampen["galcat_value"] == pytest.approx(docs["r50_validation"]["routes"]["cnn"][
        "median_abs"])
    network = rows["GZ2 vote fractions RMSE, network"]["galcat_value"]
    assert network == pytest.approx(0.05, rel=0.1)
    assert rows["GZ2 vote fractions RMSE, mean-vote predictor"]["galcat_value"] > 0.25
    assert rows["latent space: strongest |Spearman rho| with B/T"]["galcat_value"] > 0.8


@pytest.mark.parametrize("name, column", [("mzr", "log_mass_phot"),
                                          ("merger_fraction", "z")])
def test_a_catalogue_without_a_needed_column_is_a_clear_error(catalogue, tmp_path, name,
                                                              column):
    cat = pd.read_parquet(catalogue).drop(columns=[column])
    path = tmp_path / "cat.parquet"
    write_table(cat, path)
    with pytest.raises(AnalysisError, match=rf"cat\.parquet.*{column}"):
        run(name, path, tmp_path)


@pytest.mark.slow
def test_the_workflow_runs_every_analysis_and_the_report_shows_them(tiny_run):
    out = tiny_run / "results" / "synthetic"
    for name, figures in FIGURES.items():
        assert json.loads((out / "analysis" / f"{name}.json").read_text())
        for fig in figures:
            assert (out / "analysis" / f"{fig}.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "Seed papers and galcat, side by side" in page
    assert "Wu &amp; Boada 2019" in page


def test_report_puts_the_analyses_checks_and_the_seed_table_first(catalogue, tmp_path):
    from galcat.report import write_report

    for name in ("merger_fraction", "mzr"):
        run(name, catalogue, tmp_path)
    run("seed_papers", catalogue, tmp_path, "--analyses",
        *(str(tmp_path / f"{n}.json") for n in ("merger_fraction", "mzr")))
    page = write_report(catalogue, tmp_path / "report.html", config={"survey": "synthetic"},
                        analysis_dir=tmp_path).read_text()
    headline = page[page.index("Headline numbers"):page.index("Seed papers")]
    assert "merger fraction (gz2): true fraction inside the corrected 95% interval" in headline
    assert "<td>True (False)</td>" in headline  # corrected agrees, uncorrected does not
    assert "recovers the input coefficients" in headline
    assert "prediction-powered" in headline and "labelled validation galaxies" in headline
    assert "MZR scatter ratio" in headline


def test_cross_fitting_folds_are_stable_and_even():
    from galcat.analysis.merger import _folds

    ids = np.arange(1, 200_001, dtype=np.int64) * 7919
    two, five = _folds(ids, 2), _folds(ids, 5)
    h = (ids.astype(np.uint64) * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)
    np.testing.assert_array_equal(two, (h >> np.uint64(31)).astype(np.int64))  # as before
    assert set(np.unique(five)) == set(range(5))
    assert np.bincount(five).min() > 0.19 * ids.size  # even
    np.testing.assert_array_equal(_folds(ids[::-1], 5), five[::-1])  # by id, not by row


def test_vote_matched_threshold_selects_the_votes_share():
    rng = np.random.default_rng(3)
    votes = rng.uniform(0, 1, 200)
    prob = 0.1 + 0.3 * votes  # shrunk towards the mean: nothing above 0.54
    t = vote_matched_threshold(prob, votes, 0.54)
    assert (prob > t).sum() == (votes > 0.54).sum()
    np.testing.assert_array_equal(prob > t, votes > 0.54)  # a monotone network: the same
    use = np.arange(200) < 100
    prob[~use] = 5.0  # not calibration galaxies: they do not move the threshold
    assert (prob[use] > vote_matched_threshold(prob, votes, 0.54, use=use)).sum() == (
        votes[use] > 0.54).sum()
    assert vote_matched_threshold(prob, votes, 1.0) == prob.max()  # none selected
    assert np.isnan(vote_matched_threshold(prob[:10], votes[:10], 0.54))  # too few
    votes[:150] = np.nan  # galaxies without votes do not count
    assert np.isnan(vote_matched_threshold(prob, votes, 0.54, use=use))


def test_a_network_pulled_to_the_mean_vote_still_selects_mergers(catalogue, tmp_path):
    """A network whose predictions are shrunk towards the mean vote (none above 0.54)
    selects nothing at the votes' threshold; calibrated on the votes of its validation
    split it selects the votes' share, and the corrected fraction agrees with the truth."""
    cat = pd.read_parquet(catalogue)
    cat["nn_gz2_class6_1"] = 0.2 + 0.3 * cat["nn_gz2_class6_1"]
    cat["nn_gz2_split"] = np.where(np.arange(N) % 4 == 1, "validation", cat["nn_gz2_split"])
    path = tmp_path / "shrunk.parquet"
    write_table(cat, path)
    as_given = {**CONFIG, "analysis": {**CONFIG["analysis"],
                                       "merger": {"threshold_calibration": "none"}}}
    assert run("merger_fraction", path, tmp_path, config=as_given)["routes"]["gz2"][
        "n_selected"] == 0
    result = run("merger_fraction", path, tmp_path)
    assert result["calibrated_on"] == "the network's validation split"
    assert result["n_calibration"] == N // 4
    assert result["threshold"] < 0.54 == result["vote_threshold"]
    share = float((cat["gz2_class6_1"] > 0.54).mean())
    assert result["routes"]["gz2"]["observed_fraction"] == pytest.approx(share, abs=0.02)
    assert result["routes"]["gz2"]["corrected_agrees_in_every_bin"]


def test_merger_selection_is_also_scored_on_the_networks_test_split(catalogue, tmp_path):
    result = run("merger_fraction", catalogue, tmp_path)
    assert result["test_split"]["n"] == N // 2
    assert 0 < result["test_split"]["purity"] < 1
    assert 0 < result["test_split"]["completeness"] <= 1


def test_a_degenerate_mzr_sample_is_an_analysis_error_not_a_crash():
    """Four galaxies at one mass (as a tiny run can give) cannot fix a quadratic:
    the analysis says so (the rule writes it into mzr.json) instead of a LinAlgError."""
    x = np.full(4, 10.0)
    y = np.array([8.9, 8.95, 9.0, 9.05])
    with pytest.raises(AnalysisError, match="degenerate"):
        fit_quadratic(x, y, n_boot=50, seed=0)
    fit = fit_quadratic(np.array([9.5, 10.0, 10.5, 11.0, 11.5]),
                        np.array([8.7, 8.9, 9.0, 9.05, 9.07]), n_boot=50, seed=0)
    assert fit["n"] == 5 and np.all(np.isfinite(fit["errors"]))


def _flattening_network(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Galaxies whose network halves the MZR's slope about 9.0 dex (a shared bias no
    bootstrap over galaxies sees), with a hash-like split: 60% test, 40% validation."""
    mass = rng.uniform(9.5, 11.5, n)
    mu = mzr_tremonti2004(mass)
    metal = mu + rng.normal(0, 0.1, n)
    return pd.DataFrame({
        "log_mass_phot": mass + rng.normal(0, 0.1, n), "log_mass_phot_err": np.full(n, 0.1),
        "truth_metallicity": metal,
        "nn_metallicity_metallicity": 9.0 + 0.5 * (mu - 9.0) + rng.normal(0, 0.03, n),
        "nn_metallicity_split": np.where(rng.random(n) < 0.6, "test", "validation"),
    })


def test_prediction_powered_mzr_removes_a_shared_network_bias_and_carries_its_error():
    cat = _flattening_network(np.random.default_rng(5), 5000)
    config = {"analysis": {"bootstrap": 200, "split": "test"},
              "synthetic": {"mzr": {"relation": "tremonti2004"}}}
    result = mzr(cat, config)
    plain, ppi = result["fits"]["predicted"], result["prediction_powered"]
    assert not plain["input_relation"]["recovered"]  # the flattened relation, precisely
    assert max(abs(p) for p in plain["input_relation"]["pulls"]) > 5
    assert max(abs(p) for p in ppi["input_relation"]["pulls"]) < 3
    assert ppi["n"] == plain["n"] and ppi["n_calibration"] == int(
        (cat["nn_metallicity_split"] == "validation").sum())
    assert all(e > f for e, f in zip(ppi["errors"], plain["errors"], strict=True))
    assert result["prediction_powered"]["calibrated_on"] == "the network's validation split"
    none = mzr(cat, {**config, "analysis": {**config["analysis"],
                                            "mzr": {"calibration": "none"}}})
    assert "prediction_powered" not in none
    no_split = mzr(cat.drop(columns="nn_metallicity_split"), config)
    assert "prediction_powered" not in no_split
    assert "no nn_metallicity_split" in no_split["skipped"]["prediction_powered"]


def test_a_perfect_network_needs_no_rectifier_and_few_labels_are_refused():
    rng = np.random.default_rng(2)
    x = rng.uniform(9.5, 11.5, 400)
    y = mzr_tremonti2004(x) + rng.normal(0, 0.1, 400)
    fit = fit_quadratic(x, y, n_boot=100, seed=0)
    same = prediction_powered_fit(fit, x, y, y, n_boot=100, seed=0)
    assert same["rectifier"] == [0.0, 0.0, 0.0] and same["rectifier_errors"] == [0.0] * 3
    np.testing.assert_allclose(same["errors"], fit["errors"], rtol=1e-12)
    assert compare_coefficients(same, TREMONTI)["recovered"]
    with pytest.raises(AnalysisError, match="at least 20 calibration galaxies with a label "
                                            "and a prediction; got 5"):
        prediction_powered_fit(fit, x[:5], y[:5], y[:5], n_boot=10, seed=0)


def test_prediction_powered_pulls_are_standard_normal_over_surveys():
    """Over 30 surveys of 2000 galaxies the corrected slope's pull has mean ~0 and width
    ~1 (the errors are honest), and the relation is recovered about as often as the
    criterion allows (every pull < 2, p > 0.05); the plain fit of the predictions never."""
    pulls, recovered, plain = [], [], []
    for seed in range(30):
        cat = _flattening_network(np.random.default_rng(seed), 2000)
        test = cat[cat["nn_metallicity_split"] == "test"]
        cal = cat[cat["nn_metallicity_split"] == "validation"]
        fit = fit_quadratic(test["log_mass_phot"], test["nn_metallicity_metallicity"],
                            x_err=test["log_mass_phot_err"], n_boot=100, seed=seed)
        ppi = prediction_powered_fit(fit, cal["log_mass_phot"], cal["nn_metallicity_metallicity"],
                                     cal["truth_metallicity"], x_err=cal["log_mass_phot_err"],
                                     n_boot=100, seed=seed)
        check = compare_coefficients(ppi, TREMONTI)
        pulls.append(check["pulls"][1])
        recovered.append(check["recovered"])
        plain.append(compare_coefficients(fit, TREMONTI)["recovered"])
    assert abs(np.mean(pulls)) < 0.4 and 0.7 < np.std(pulls) < 1.4
    assert np.mean(recovered) >= 0.75 and not any(plain)
