"""The models in the real DAG (the tiny run): outputs, catalogue columns, partial reruns."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from galcat import gz2
from galcat.analysis import FIGURES
from galcat.tables import column_descriptions, column_units
from tests.conftest import DEFAULT_MODELS, TINY, deep_update, snakemake

pytestmark = pytest.mark.slow
OUT = "results/synthetic"
SHARDS = ("s000000", "s000001", "s000002")
MODELS = DEFAULT_MODELS
#: jobs that read every model's outputs through the catalogue: it, the report and the
#: analyses (one rule each, `galcat.analysis.FIGURES`)
AGGREGATIONS = {("catalogue", None, None), ("report", None, None), ("all", None, None),
                *((name, None, None) for name in FIGURES)}


def planned(output: str) -> set[tuple[str, str | None, str | None]]:
    """(rule, model, shard) of every job a dry run lists."""
    jobs, rule, wc = set(), None, {}
    for text in output.splitlines() + ["rule end:"]:
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", text)
        if head:
            if rule is not None:
                jobs.add((rule, wc.get("model"), wc.get("shard")))
            rule, wc = head.group(1), {}
        elif rule is not None and re.match(r"^\s+wildcards:", text):
            wc = dict(re.findall(r"(\w+)=([\w]+)", text))
    return jobs


def model_jobs(model: str, *rules: str) -> set[tuple[str, str | None, str | None]]:
    jobs = set()
    for rule in rules:
        if rule == "predict":
            # a per-pixel family's predict job also writes the shard's pixel maps
            kind = "predict_pixels" if model == "pixels" else "predict"
            jobs |= {(kind, model, s) for s in SHARDS}
        else:
            jobs.add((rule, model, None))
    return jobs


def test_every_model_trains_predicts_and_is_scored(tiny_run):
    out = tiny_run / OUT
    for model in MODELS:
        d = out / "models" / model
        for name in ("model.pt", "splits.parquet", "history.csv", "learning_curve.png",
                     "train.json", "metrics.json"):
            assert (d / name).stat().st_size > 0, f"{model}: {name}"
        metrics = json.loads((d / "metrics.json").read_text())
        assert "model" in metrics["scores"] and metrics["n_objects"]["scored"] >= 1
        for shard in SHARDS:
            assert (out / "predictions" / model / f"{shard}.parquet").exists()
    baselines = json.loads((out / "models" / "gz2" / "metrics.json").read_text())["scores"]
    assert {"mean_vote", "random_forest", "noise_floor_rmse"} <= set(baselines)
    # the pixel model's maps, one Zarr group per shard beside the segmentation maps
    from galcat.store import CutoutReader, read_pixelmaps

    for shard in SHARDS:
        ids, classes = read_pixelmaps(out / "pixelmaps" / "pixels" / f"{shard}.zarr")
        reader = CutoutReader(out / "cutouts" / f"{shard}.zarr")
        assert ids.tolist() == reader.object_id.tolist()
        assert classes.shape == (reader.n_objects, *reader.shape[2:])
        assert set(np.unique(classes).tolist()) <= {0, 1, 2, 3}
    # measure's residual maps, which the tiny run's gz2 reads (TINY: residual_map)
    from galcat.store import read_residual_maps

    for shard in SHARDS:
        ids, maps = read_residual_maps(out / "residuals" / f"{shard}.zarr")
        assert ids.tolist() == CutoutReader(out / "cutouts" / f"{shard}.zarr").object_id.tolist()
    from galcat.models.predict import load_model

    gz2_model = load_model(out / "models" / "gz2" / "model.pt")
    assert gz2_model.settings["residual_map"] is True
    assert gz2_model.net.normalise.scale.shape[0] == 4  # g, r, i and the map
    pixels = json.loads((out / "models" / "pixels" / "metrics.json").read_text())["scores"]
    assert pixels["n_pixels"] > 0 and "mean_iou" in pixels["model"]
    assert "central_iou_blended" in pixels["segment"]
    vae = json.loads((out / "models" / "vae" / "metrics.json").read_text())["scores"]
    assert "pca" in vae and "spearman" in vae["model"]


def test_the_catalogue_joins_the_predictions_with_units_and_descriptions(tiny_run):
    path = tiny_run / OUT / "catalogue.parquet"
    cat = pd.read_parquet(path)
    units, desc = column_units(path), column_descriptions(path)
    # a log quantity is dimensionless in the published files (FITS and VOUnit have no
    # log unit astropy reads back): its description says dex (galcat.columns)
    expected = {"nn_r50_r50_mass": "arcsec", "nn_r50_r50_mass_err": "arcsec",
                "nn_metallicity_metallicity": "", "nn_metallicity_metallicity_err": "",
                "nn_sersic_sersic_n": "", "nn_sersic_sersic_n_err": "",
                "nn_sersic_r_e": "arcsec", "nn_sersic_r_e_err": "arcsec",
                "nn_vae_z1": "", "nn_vae_z1_err": "", "nn_vae_z2": "", "nn_vae_z2_err": "",
                "nn_vae_recon_mse": "", "nn_pixels_central_area": "pix"}
    for col, unit in expected.items():
        assert cat[col].notna().all() and units.get(col, "") == unit and desc[col]
        assert unit or "dex" in desc[col] or not col.startswith(("nn_r50", "nn_metallicity"))
    # an object without central (or any) pixels has no share (NaN), never a fake value
    for col in ("nn_pixels_spheroid_share", "nn_pixels_companion_share"):
        share = cat[col]
        assert ((share >= 0) & (share <= 1) | share.isna()).all() and units.get(col, "") == ""
    fractions = cat[[f"nn_gz2_{c}" for c in gz2.column_names("")]].to_numpy()
    assert max(gz2.check_sum_rules(fractions, atol=1e-5).values()) < 1e-5
    assert set(cat["nn_r50_split"]) <= {"train", "validation", "test"}


def test_editing_one_model_reruns_that_model_and_the_aggregations_only(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"models": {"gz2": {"epochs": 3}}}), "-n")
    assert planned(proc.stdout) == (
        model_jobs("gz2", "train", "predict", "evaluate") | AGGREGATIONS)


def test_editing_test_time_augmentation_reruns_predictions_only(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"models": {"r50": {"tta": False}}}), "-n")
    assert planned(proc.stdout) == model_jobs("r50", "predict", "evaluate") | AGGREGATIONS


def test_huber_delta_retrains_only_a_model_that_fits_huber(tiny_run):
    # r50 fits huber (its default); gz2 the mean, so its huber_delta is read by nothing;
    # resnet_norm and resnet_stem likewise by nothing but a resnet18 encoder (the tiny
    # models have none)
    edit = {"models": {"r50": {"huber_delta": 0.5},
                       "gz2": {"huber_delta": 0.5, "resnet_norm": "batch",
                               "resnet_stem": "stride4"},
                       "metallicity": {"resnet_norm": "batch", "resnet_stem": "stride4"}}}
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert planned(proc.stdout) == (
        model_jobs("r50", "train", "predict", "evaluate") | AGGREGATIONS)


def test_a_moving_average_of_the_weights_retrains_only_the_model_given_one(tiny_run):
    # ema_epochs 0 (none, the default) stays out of the train params: stating it, or a
    # galcat that adds the key, retrains nothing; so does lr_schedule plateau
    edit = {"models": {"gz2": {"ema_epochs": 2},
                       "r50": {"ema_epochs": 0, "lr_schedule": "plateau"}}}
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert planned(proc.stdout) == (
        model_jobs("gz2", "train", "predict", "evaluate") | AGGREGATIONS)


def test_gz2s_vote_loss_retrains_gz2_only(tiny_run):
    # no other family reads it: stating it on r50 retrains nothing
    edit = {"models": {"gz2": {"vote_loss": "least_squares"},
                       "r50": {"vote_loss": "least_squares"}}}
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert planned(proc.stdout) == (
        model_jobs("gz2", "train", "predict", "evaluate") | AGGREGATIONS)


def test_the_residual_map_retrains_only_the_model_it_is_given_or_taken_from(tiny_run):
    # false (the default) stays out of the train params: stating it retrains nothing
    edit = {"models": {"gz2": {"residual_map": False}, "r50": {"residual_map": False}}}
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert planned(proc.stdout) == (
        model_jobs("gz2", "train", "predict", "evaluate") | AGGREGATIONS)


def test_a_crop_retrains_only_the_model_given_one(tiny_run):
    # crop 1 (the whole cutout, the default) stays out of the train and evaluate params
    edit = {"models": {"r50": {"crop": 0.5}, "gz2": {"crop": 1}}}
    proc = snakemake(tiny_run, deep_update(TINY, edit), "-n")
    assert planned(proc.stdout) == (
        model_jobs("r50", "train", "predict", "evaluate") | AGGREGATIONS)


def test_a_split_change_retrains_every_model(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"training": {"split_seed": 9}}), "-n")
    jobs = planned(proc.stdout)
    assert {("train", m, None) for m in MODELS} <= jobs
    assert not {j for j in jobs if j[0] in {"fetch_cutouts", "segment", "measure"}}


def test_a_model_with_inputs_reads_the_object_table_in_its_predict_jobs(tiny_run):
    jobs = {}
    for model in ("metallicity", "vae", "gz2"):
        target = f"{OUT}/predictions/{model}/s000001.parquet"
        proc = snakemake(tiny_run, TINY, "-n", "-p", "--forcerun", target)
        jobs[model] = next(line for line in proc.stdout.splitlines()
                           if line.startswith("Shell command: galcat predict"))
    assert (f"--objects {OUT}/objects.parquet --features  --residuals  --output"
            in jobs["metallicity"])
    # no inputs: no table, no edge
    assert "--objects  --features  --residuals  --output" in jobs["vae"]
    # gz2 (TINY: residual_map) reads its shard's residual maps
    assert f"--residuals {OUT}/residuals/s000001.zarr --output" in jobs["gz2"]


def test_a_model_with_measured_inputs_reads_the_features_in_its_jobs(tiny_run):
    config = deep_update(TINY, {"models": {"r50": {"inputs": ["r50_mass"]}}})
    proc = snakemake(tiny_run, config, "-n", "-p")
    # a new input retrains that model only, like any edit of its entry
    assert planned(proc.stdout) == model_jobs("r50", "train", "predict", "evaluate") | AGGREGATIONS
    commands = [line for line in proc.stdout.splitlines()
                if line.startswith("Shell command: galcat")]
    train = next(c for c in commands if " train " in c and "--model r50 " in c)
    features = " ".join(f"{OUT}/features/{s}.parquet" for s in SHARDS)
    # every shard's: the training split; no residual maps (r50 has no residual_map)
    assert f"--features {features} --residuals  2>" in train
    predict = next(c for c in commands if " predict " in c and "--model r50 " in c
                   and "s000001.zarr" in c)
    # its shard's features, and no object table: it reads nothing from it
    assert (f"--objects  --features {OUT}/features/s000001.parquet --residuals  --output"
            in predict)


def test_re_measuring_retrains_only_the_models_with_measured_inputs(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"measure": {"half_mass": False}}), "-n")
    jobs = planned(proc.stdout)
    assert {(rule, model) for rule, model, _ in jobs if rule == "train"} == {
        ("train", "r50"), ("train", "gz2")}  # the defaults' inputs: r50_mass, B/T...
    assert {model for rule, model, _ in jobs if rule == "predict"} == {"r50", "gz2"}


def test_editing_a_model_s_inputs_reruns_that_model_only(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"models": {"metallicity": {"inputs": []}}}),
                     "-n")
    assert planned(proc.stdout) == (
        model_jobs("metallicity", "train", "predict", "evaluate") | AGGREGATIONS)


def test_editing_a_model_s_injections_reruns_that_model_only(tiny_run):
    proc = snakemake(tiny_run, deep_update(TINY, {"models": {"sersic": {"injections": 8}}}),
                     "-n")
    assert planned(proc.stdout) == (
        model_jobs("sersic", "train", "predict", "evaluate") | AGGREGATIONS)
