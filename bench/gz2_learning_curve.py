"""How gz2's RMSE over the label-noise floor falls with the size of the training split.

Issue 10 asks the gz2 networks for an RMSE against the simulated votes of at most
1.15x the label-noise floor; at the science config's ~4200 training galaxies they
are at ~1.8x. This bench asks whether that is the size of the training set: it
trains the science config's gz2 model (default: the small CNN) on fractions of its
training split, with the validation and test splits unchanged (both are fixed by a
hash of ``object_id``, and the script checks that they are), predicts every shard
and scores the test split as the workflow's ``evaluate`` does. The full training
split is the model the workflow trained, read from its ``metrics.json``.

The excess over the floor, ``RMSE^2 - floor^2`` (what the network adds to the
volunteers' binomial noise), is fitted as a power law of the number of training
galaxies, and the size at which the power law would reach the goal is printed.
A power law has no floor of its own, so that size is a lower bound where the
images, not the labels, limit the network.

Needs the science survey staged and its gz2 model trained (``bench/train_science.py``).

    .venv/bin/python bench/gz2_learning_curve.py [--fractions 0.125 0.25 0.5]
        [--model gz2] [--threads 2]

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from models2_science import science_config

ROOT = Path(__file__).resolve().parents[1]
GOAL_OVER_FLOOR = 1.15
SUBSET_SEED = 20261204


def _scores(metrics_file: Path) -> dict:
    m = json.loads(metrics_file.read_text())
    s = m["scores"]
    return {"n_train": int(m["n_objects"]["train"]), "n_test": int(m["n_objects"]["scored"]),
            "floor": s["noise_floor_rmse"], "rmse_votes": s["model"]["rmse_votes"],
            "over_floor": s["model"]["rmse_votes_over_floor"]}


def train_on_fraction(config: dict, model: str, staged: Path, full_splits: pd.DataFrame,
                      fraction: float, out: Path, threads: int) -> dict:
    """Train ``model`` on ``fraction`` of the full training split; its test scores."""
    from galcat.models.stages import run_evaluate, run_predict, run_train

    objects = pd.read_parquet(staged / "objects.parquet")
    train_ids = np.sort(full_splits.loc[full_splits["split"] == "train", "object_id"].to_numpy())
    rng = np.random.default_rng(SUBSET_SEED)
    kept = rng.choice(train_ids, size=round(fraction * len(train_ids)), replace=False)
    dropped = np.setdiff1d(train_ids, kept)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "objects.parquet"
    objects[~objects["object_id"].isin(dropped)].to_parquet(table)

    cutouts = sorted((staged / "cutouts").glob("*.zarr"))
    features = [staged / "features" / f"{c.stem}.parquet" for c in cutouts]
    t0 = time.perf_counter()
    model_file = run_train(config, model, [table], cutouts, out / "model", threads=threads,
                           features=features)
    train_s = time.perf_counter() - t0
    splits = pd.read_parquet(out / "model" / "splits.parquet")
    for name in ("validation", "test"):
        mine = set(splits.loc[splits["split"] == name, "object_id"])
        full = set(full_splits.loc[full_splits["split"] == name, "object_id"])
        if mine != full:
            raise RuntimeError(f"the {name} split of the {fraction} subset differs from the "
                               f"full model's ({len(mine ^ full)} objects)")
    predictions = []
    for cut, feat in zip(cutouts, features, strict=True):
        p = out / "predictions" / f"{cut.stem}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        run_predict(config, model, model_file, out / "model" / "splits.parquet", cut, p,
                    threads=threads, objects=[table], features=[feat])
        predictions.append(p)
    run_evaluate(config, model, [table], features, cutouts,
                 [staged / "segmaps" / c.name for c in cutouts], predictions,
                 out / "model" / "splits.parquet", out / "metrics.json", threads=threads)
    return {**_scores(out / "metrics.json"), "fraction": fraction, "train_s": train_s}


def power_law(rows: list[dict]) -> dict:
    """``excess = a * n**-alpha`` fitted in log-log; where it reaches the goal."""
    n = np.array([r["n_train"] for r in rows], float)
    floor = rows[-1]["floor"]
    excess = np.array([r["rmse_votes"] ** 2 - floor**2 for r in rows])
    if len(rows) < 2 or np.any(excess <= 0):
        return {"alpha": None, "n_train_at_goal": None}
    slope, intercept = np.polyfit(np.log(n), np.log(excess), 1)
    alpha = -slope
    goal_excess = (GOAL_OVER_FLOOR**2 - 1) * floor**2
    at_goal = float(np.exp((intercept - np.log(goal_excess)) / alpha)) if alpha > 0 else None
    return {"alpha": float(alpha), "n_train_at_goal": at_goal,
            "excess_over_floor_sq": [float(e / floor**2) for e in excess]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5])
    ap.add_argument("--model", default="gz2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    config = science_config()
    staged = ROOT / config["results"] / config["survey"]
    full_dir = staged / "models" / args.model
    if not (full_dir / "metrics.json").exists():
        raise SystemExit(f"{full_dir / 'metrics.json'} is missing: run bench/train_science.py")
    full_splits = pd.read_parquet(full_dir / "splits.parquet")
    rows = [train_on_fraction(config, args.model, staged, full_splits, f,
                              staged / "bench" / "gz2_learning_curve" / args.model / f"f{f:g}",
                              args.threads)
            for f in sorted(args.fractions)]
    rows.append({**_scores(full_dir / "metrics.json"), "fraction": 1.0, "train_s": None})
    fit = power_law(rows)

    print(f"{args.model}: RMSE against the votes by training-set size (the same "
          f"{rows[-1]['n_test']} test galaxies of the {config['synthetic']['n_objects']}-galaxy "
          "survey throughout)")
    print(f"{'fraction':>8} {'n_train':>8} {'rmse':>8} {'x floor':>8} {'train s':>8}")
    for r in rows:
        t = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        print(f"{r['fraction']:8.3f} {r['n_train']:8d} {r['rmse_votes']:8.4f} "
              f"{r['over_floor']:8.2f} {t:>8}")
    if fit["alpha"] is not None:
        print(f"(RMSE^2 - floor^2) ~ n^-{fit['alpha']:.2f}; {GOAL_OVER_FLOOR}x the floor at "
              f"n_train ~ {fit['n_train_at_goal']:.3g} if the power law held")
    print(json.dumps({"bench": "gz2_learning_curve", "model": args.model, "rows": rows, **fit},
                     default=float))


if __name__ == "__main__":
    main()
