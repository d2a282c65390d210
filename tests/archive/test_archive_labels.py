"""Training on the archive's own labels (issue 16): the SDSS config against a replayed
field of 300 labelled galaxies trains gz2 on Galaxy Zoo 2 votes and metallicity on
MPA-JHU 12 + log(O/H), predicts every object, and reruns only what a label cut touches."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from galcat import gz2
from tests.conftest import snakemake
from tests.test_params import default_reads, shell_commands

pytestmark = pytest.mark.slow

OUT = "results/sdss"
#: What the tests read: the analyses and the report are not asked for (each job
#: starts Python and torch: their time is not what is tested here).
TARGETS = (f"{OUT}/catalogue.parquet", f"{OUT}/models/gz2/metrics.json",
           f"{OUT}/models/metallicity/metrics.json")


def jobs_of(output: str) -> set[tuple[str, str | None, str | None]]:
    """(rule, model, shard) of every job a snakemake run or dry run lists."""
    jobs, rule, wc = set(), None, ""
    for line in [*output.splitlines(), "rule END:"]:
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$", line)
        if head:
            if rule is not None:
                model = re.search(r"\bmodel=(\w+)", wc)
                shard = re.search(r"\bshard=(s\d+)", wc)
                jobs.add((rule, model and model.group(1), shard and shard.group(1)))
            rule, wc = head.group(1), ""
        elif re.match(r"^\s+wildcards:", line):
            wc = line
    return jobs


@pytest.fixture(scope="module")
def labelled_run(labelled_config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("labelled_run")
    config = labelled_config()
    # (a flag first: --configfile, which the helper puts before these, takes a list)
    snakemake(workdir, config, "--cores", "2", *TARGETS)
    return workdir, config


def test_sdss_trains_gz2_and_metallicity_on_archive_labels(labelled_run, labelled_archive):
    workdir, _ = labelled_run
    _, truth = labelled_archive
    out = workdir / OUT
    cat = pd.read_parquet(out / "catalogue.parquet")
    assert len(cat) == truth["n"]
    # every object is predicted, labelled or not
    assert cat["nn_metallicity_metallicity"].notna().all()
    assert cat[[f"nn_gz2_{c}" for c in gz2.column_names("")]].notna().all().all()
    assert not any(c.startswith(("nn_r50_", "nn_vae_", "nn_pixels_")) for c in cat.columns)
    for model in ("gz2", "metallicity"):
        metrics = json.loads((out / "models" / model / "metrics.json").read_text())
        train = json.loads((out / "models" / model / "train.json").read_text())
        assert metrics["labels"]["survey"] == "sdss" and train["labels"]["kept"] > 150
        assert metrics["n_objects"]["scored"] > 15
        assert np.isfinite(metrics["scores"]["model"]["rmse_votes" if model == "gz2"
                                                      else "rmse_dex"])
    gz2_metrics = json.loads((out / "models/gz2/metrics.json").read_text())
    assert gz2_metrics["labels"]["cuts"] == {"min_votes": 20, "min_question_votes": 5.0}
    assert gz2_metrics["labels"]["removed"]["min_votes"] > 0  # the 10- and 18-vote objects
    assert "rmse_votes_weighted" in gz2_metrics["scores"]["mean_vote"]
    oh = json.loads((out / "models/metallicity/metrics.json").read_text())
    assert oh["labels"]["cuts"] == {"star_forming_only": True, "min_line_snr": 3.0}
    assert oh["labels"]["removed"]["star_forming_only"] > 0
    assert {"mean_label", "mzr", "random_forest"} <= set(oh["scores"])
    assert "chi2_per_object" in oh["scores"]["model"]


def test_objects_without_a_label_are_predicted_but_never_trained_on(labelled_run,
                                                                    labelled_archive):
    workdir, _ = labelled_run
    _, truth = labelled_archive
    out = workdir / OUT
    cat = pd.read_parquet(out / "catalogue.parquet").set_index("object_id")
    objects = truth["objects"]
    for model, has_label in (
            ("gz2", lambda o: o["in_gz2"] and o["votes"] >= 20),
            ("metallicity", lambda o: o["in_mpa"] and o["bpt"] == 1)):
        splits = pd.read_parquet(out / "models" / model / "splits.parquet").set_index("object_id")
        unlabelled = [int(k) for k, o in objects.items() if not has_label(o)]
        assert len(unlabelled) > 20
        assert not splits.loc[unlabelled, "trained"].any()
        # some of them fall in the training split: they are left out, not the split
        assert (splits.loc[unlabelled, "split"] == "train").sum() > 5
        col = "nn_metallicity_metallicity" if model == "metallicity" else "nn_gz2_class1_1"
        assert cat.loc[unlabelled, col].notna().all()
        train = json.loads((out / "models" / model / "train.json").read_text())
        assert train["labels"]["trained_on"]["train"] == int(splits["trained"].sum())


def test_a_label_cut_reruns_that_family_only(labelled_run):
    workdir, config = labelled_run
    changed = json.loads(json.dumps(config))
    changed["labels"] = {"metallicity": {"min_line_snr": 5.0}}
    proc = snakemake(workdir, changed, "-n", *TARGETS)
    jobs = jobs_of(proc.stdout + proc.stderr)
    models = {(rule, model) for rule, model, _ in jobs if model}
    assert models == {("train", "metallicity"), ("predict", "metallicity"),
                      ("evaluate", "metallicity")}
    shards = (workdir / OUT / "shards.txt").read_text().split()
    assert {s for r, m, s in jobs if r == "predict"} == set(shards)
    assert not {r for r, _, _ in jobs} & {"query_catalog", "fetch_cutouts", "segment", "measure"}
    # a GZ2 cut moves gz2 only
    changed["labels"] = {"gz2": {"min_votes": 25}}
    jobs = jobs_of(snakemake(workdir, changed, "-n", *TARGETS).stdout)
    assert {m for _, m, _ in jobs if m} == {"gz2"}


def test_label_jobs_read_no_value_their_params_lack(labelled_run, monkeypatch):
    """The label cuts reach train and evaluate through their params (as tests/test_params.py
    checks for the synthetic survey): run the metallicity jobs' commands in-process."""
    workdir, config = labelled_run
    monkeypatch.chdir(workdir)
    commands = [(rule, argv) for rule, argv in shell_commands(workdir, config, "train")
                if rule in ("train", "evaluate") and "metallicity" in argv]
    assert {rule for rule, _ in commands} == {"train", "evaluate"}
    for rule, argv in commands:
        assert default_reads(argv) == [], rule


def test_fine_tuning_takes_the_synthetic_model_as_an_input(labelled_run):
    """models.metallicity.init: synthetic trains from results/synthetic/models/metallicity/
    model.pt; a newer one reruns the fine-tuning (and nothing of gz2)."""
    import os
    import shutil

    workdir, config = labelled_run
    tuned = json.loads(json.dumps(config))
    tuned["models"]["metallicity"]["init"] = "synthetic"
    model = f"{OUT}/models/metallicity/model.pt"
    missing = snakemake(workdir, tuned, "-n", model, check=False)
    assert missing.returncode != 0
    assert "results/synthetic/models/metallicity/model.pt" in missing.stdout + missing.stderr
    # a stand-in of the synthetic model: any metallicity network of these settings fits
    synthetic = workdir / "results/synthetic/models/metallicity/model.pt"
    synthetic.parent.mkdir(parents=True)
    shutil.copy(workdir / model, synthetic)
    snakemake(workdir, tuned, "--cores", "2", model)
    summary = json.loads((workdir / OUT / "models/metallicity/train.json").read_text())
    assert summary["init_model"] == "results/synthetic/models/metallicity/model.pt"
    assert jobs_of(snakemake(workdir, tuned, "-n", model).stdout) == set()
    # a retrained synthetic model (other weights); Snakemake checksums inputs under 1 MB,
    # so a mere touch of the same bytes reruns nothing
    import torch

    payload = torch.load(synthetic, weights_only=True)
    first = next(k for k in payload["state_dict"] if k.startswith("encoder."))
    payload["state_dict"][first] += 0.01
    torch.save(payload, synthetic)
    later = os.stat(workdir / model).st_mtime + 10
    os.utime(synthetic, (later, later))
    jobs = jobs_of(snakemake(workdir, tuned, "-n", *TARGETS).stdout)
    assert ("train", "metallicity", None) in jobs
    assert not {m for _, m, _ in jobs if m == "gz2"}
