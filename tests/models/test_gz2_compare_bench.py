"""bench/gz2_compare.py, run as a script on a small made-up run: its ratios, paired
differences, ensemble and per-kind parts are what their definitions say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galcat import gz2

ROOT = Path(__file__).resolve().parents[2]
N = 200


def _expected(rng: np.random.Generator, n: int) -> np.ndarray:
    """Expected fractions that obey the tree: from random per-question probabilities."""
    probs = np.empty((n, len(gz2.ANSWERS)))
    for q in gz2.QUESTIONS:
        p = rng.dirichlet(np.ones(len(q.columns)), size=n)
        probs[:, list(q.columns)] = p
    return gz2.expected_fractions(probs)


def _write_run(tmp_path: Path, predictions: dict[str, np.ndarray], *,
               splits: dict[str, np.ndarray] | None = None) -> tuple[Path, dict]:
    rng = np.random.default_rng(1)
    ids = np.arange(1000, 1000 + N)
    expected = _expected(rng, N)
    votes = expected + rng.normal(0, 0.05, expected.shape)
    kinds = rng.choice(["early", "late"], N)
    merger = rng.random(N) < 0.15
    projection = ~merger & (rng.random(N) < 0.15)
    objects = pd.DataFrame({"object_id": ids, "truth_type": kinds, "truth_merger": merger,
                            "truth_projection": projection})
    objects = pd.concat([objects,
                         pd.DataFrame(votes, columns=gz2.column_names("gz2_")),
                         pd.DataFrame(expected, columns=gz2.column_names("truth_gz2_"))], axis=1)
    objects.to_parquet(tmp_path / "objects.parquet")
    split = np.where(ids % 3 == 0, "test", np.where(ids % 3 == 1, "validation", "train"))
    for name, make in predictions.items():
        frac = make(expected)
        table = pd.DataFrame(frac, columns=gz2.column_names(f"nn_{name}_"))
        table.insert(0, "object_id", ids)
        table[f"nn_{name}_split"] = (splits or {}).get(name, split)
        (tmp_path / "predictions" / name).mkdir(parents=True)
        table.to_parquet(tmp_path / "predictions" / name / "s000000.parquet")
    return tmp_path, {"votes": votes, "expected": expected, "split": split,
                      "objects": objects}


def _run(run: Path, *models: str, ensemble: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "bench" / "gz2_compare.py"), *models, "--run", str(run),
           "--n-boot", "200"] + (["--ensemble"] if ensemble else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_truth_is_at_the_floor_and_a_worse_model_is_measured_against_it(tmp_path):
    noise = np.random.default_rng(7).normal(0, 0.03, (N, len(gz2.ANSWERS)))
    run, data = _write_run(tmp_path, {"exact": lambda e: e, "noisy": lambda e: e + noise})
    proc = _run(run, "exact", "noisy", ensemble=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for split in ("validation", "test"):
        res = out[split]
        rows = data["split"] == split
        assert res["n"] == rows.sum()
        assert res["over_floor"]["exact"] == pytest.approx(1.0, abs=1e-4)
        v, e = data["votes"][rows], data["expected"][rows]
        want = np.sqrt(((e + noise[rows] - v) ** 2).sum() / ((e - v) ** 2).sum())
        assert res["over_floor"]["noisy"] == pytest.approx(want, abs=1e-4)
        # the ensemble is the mean of the two: half the noise
        want_mean = np.sqrt(((e + noise[rows] / 2 - v) ** 2).sum() / ((e - v) ** 2).sum())
        assert res["over_floor"]["ensemble"] == pytest.approx(want_mean, abs=1e-4)
        point, lo, hi = res["minus_first"]["noisy"]
        assert point == pytest.approx(want - 1.0, abs=1e-4) and lo < point < hi
        # the kinds' parts add up to ratio^2 - 1; the exact predictor has none
        parts = sum(cell["noisy"][1] for cell in res["excess_by_kind"].values())
        assert parts == pytest.approx(want ** 2 - 1, abs=3e-3)
        assert all(cell["exact"] == [0.0, 0.0] for cell in res["excess_by_kind"].values())
        assert sum(c["n"] for c in res["excess_by_kind"].values()) == rows.sum()
        assert set(res["question_excess_1e4"]) == {q.id for q in gz2.QUESTIONS}
        assert all(row["exact"] == 0.0 for row in res["question_excess_1e4"].values())


def test_a_labelled_ensemble_is_the_mean_of_its_members(tmp_path):
    noise = np.random.default_rng(7).normal(0, 0.03, (N, len(gz2.ANSWERS)))
    run, _ = _write_run(tmp_path, {"exact": lambda e: e, "noisy": lambda e: e + noise})
    proc = _run(run, "exact", "noisy", "both=exact+noisy", ensemble=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for split in ("validation", "test"):
        ratios = out[split]["over_floor"]
        assert ratios["both"] == pytest.approx(ratios["ensemble"], abs=1e-4)
        assert 1.0 < ratios["both"] < ratios["noisy"]


def test_models_with_different_splits_are_refused_by_name(tmp_path):
    ids = np.arange(1000, 1000 + N)
    other = np.where(ids % 2 == 0, "test", "validation")
    run, _ = _write_run(tmp_path, {"a": lambda e: e, "b": lambda e: e}, splits={"b": other})
    proc = _run(run, "a", "b")
    assert proc.returncode != 0
    assert "'a' and 'b' do not share their validation split" in proc.stderr
    proc = _run(run, "ab=a+b")
    assert proc.returncode != 0
    assert "ensemble 'ab': model 'b' does not share the splits of 'a'" in proc.stderr


def test_a_model_without_predictions_is_named(tmp_path):
    run, _ = _write_run(tmp_path, {"a": lambda e: e})
    proc = _run(run, "a", "missing")
    assert proc.returncode != 0 and "no predictions of model 'missing'" in proc.stderr
