"""Where gz2 loses against the floor: the network given true quantities beside the image.

`bench/gz2_information_bound.py` says what the images allow of B/T and the axis ratios;
this bench asks the other half: with the quantities the simulated volunteers answer
from handed to it exactly, how close does the same network (science config, same
splits, same epochs) get to the label-noise floor? If it gets there, the 4200
noisy-vote training galaxies suffice to learn the volunteers' function, and the
distance of the shipped network is in reading those quantities from the image.

Each variant trains the science config's gz2 model on copies of the features tables in
which some of its measured inputs are replaced by the truth of the synthetic survey
(cumulatively, in this order):

* ``q``: ``bulge_q`` and ``disc_q`` (the bulge + disc fit's) <- the true axis ratios;
* ``bt``: ``bulge_to_total`` <- true r-band B/T;
* ``flags``: ``sersic_n`` <- 10 for early types and 1 for late (the network sees its
  log10: 1 or 0), ``asymmetry`` <- merger (0/1), ``seg_n_sources`` <- projection (0/1).

These are diagnostics: a network never has truth as an input in the workflow. Needs the
science survey staged and gz2 trained (``bench/train_science.py``).

    .venv/bin/python bench/gz2_oracle_inputs.py [--variants q bt flags] [--threads 2]

Costs one gz2 training per variant (~3 minutes each for the small CNN on 2 cores).
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
#: variant -> {measured input column: the truth written into it}, applied cumulatively
VARIANTS = {
    "q": {"bulge_q": "truth_q_bulge", "disc_q": "truth_q_disc"},
    "bt": {"bulge_to_total": "truth_bt"},
    "flags": {"sersic_n": "early_as_n", "asymmetry": "merger_01",
              "seg_n_sources": "projection_01"},
}


def truth_columns(objects: pd.DataFrame) -> pd.DataFrame:
    """The truths the variants write, by object_id (flags as numbers)."""
    out = objects[["object_id", "truth_q_bulge", "truth_q_disc", "truth_bt"]].copy()
    out["early_as_n"] = np.where(objects["truth_type"] == "early", 10.0, 1.0)
    out["merger_01"] = objects["truth_merger"].astype(float)
    out["projection_01"] = objects["truth_projection"].astype(float)
    return out


def oracle_features(staged: Path, cutouts: list[Path], swap: dict[str, str],
                    truth: pd.DataFrame, out: Path) -> list[Path]:
    """Copies of the shards' features tables with ``swap``'s columns from ``truth``."""
    files = []
    for cut in cutouts:
        feat = pd.read_parquet(staged / "features" / f"{cut.stem}.parquet")
        joined = feat[["object_id"]].merge(truth, on="object_id", how="left")
        for column, source in swap.items():
            feat[column] = joined[source].to_numpy()
        path = out / "features" / f"{cut.stem}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        feat.to_parquet(path)
        files.append(path)
    return files


def train_variant(config: dict, model: str, staged: Path, swap: dict[str, str],
                  truth: pd.DataFrame, out: Path, threads: int) -> dict:
    """Train, predict and score ``model`` with ``swap`` applied; its test scores."""
    from galcat.models.stages import run_evaluate, run_predict, run_train

    table = staged / "objects.parquet"
    cutouts = sorted((staged / "cutouts").glob("*.zarr"))
    features = oracle_features(staged, cutouts, swap, truth, out)
    t0 = time.perf_counter()
    model_file = run_train(config, model, [table], cutouts, out / "model", threads=threads,
                           features=features)
    train_s = time.perf_counter() - t0
    splits = out / "model" / "splits.parquet"
    predictions = []
    for cut, feat in zip(cutouts, features, strict=True):
        p = out / "predictions" / f"{cut.stem}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        run_predict(config, model, model_file, splits, cut, p, threads=threads,
                    objects=[table], features=[feat])
        predictions.append(p)
    run_evaluate(config, model, [table], features, cutouts,
                 [staged / "segmaps" / c.name for c in cutouts], predictions, splits,
                 out / "metrics.json", threads=threads)
    return _scores(out / "metrics.json") | {"train_s": round(train_s, 1)}


def _scores(metrics_file: Path) -> dict:
    s = json.loads(metrics_file.read_text())["scores"]
    return {"floor": s["noise_floor_rmse"], "rmse_votes": s["model"]["rmse_votes"],
            "over_floor": round(s["model"]["rmse_votes_over_floor"], 3),
            "random_forest_over_floor": round(s["random_forest"]["rmse_votes_over_floor"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="cumulative steps to train (default: all three)")
    ap.add_argument("--model", default="gz2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    config = science_config()
    staged = ROOT / config["results"] / config["survey"]
    shipped = staged / "models" / args.model / "metrics.json"
    if not shipped.exists():
        raise SystemExit(f"{shipped} is missing: run bench/train_science.py")
    inputs = set(config["models"][args.model].get("inputs") or ())
    truth = truth_columns(pd.read_parquet(staged / "objects.parquet"))
    rows = [{"variant": "measured (the shipped model)", **_scores(shipped), "train_s": None}]
    swap: dict[str, str] = {}
    applied: list[str] = []
    for name in VARIANTS:
        swap = {**swap, **VARIANTS[name]}
        applied.append(name)
        if name not in args.variants:
            continue
        missing = set(swap) - inputs
        if missing:
            raise SystemExit(f"models.{args.model}.inputs lacks {sorted(missing)}, which "
                             f"variant {name!r} writes the truth into")
        out = staged / "bench" / "gz2_oracle_inputs" / args.model / name
        rows.append({"variant": "true " + " + ".join(applied),
                     **train_variant(config, args.model, staged, swap, truth, out,
                                     args.threads)})

    print(f"{args.model}: RMSE against the votes / label-noise floor "
          f"({rows[0]['floor']:.4f}), test split; goal <= {GOAL_OVER_FLOOR}")
    print(f"  {'inputs beside the image':<32} {'network':>8} {'forest':>8} {'train s':>8}")
    for r in rows:
        t = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        print(f"  {r['variant']:<32} {r['over_floor']:>8.3f} "
              f"{r['random_forest_over_floor']:>8.3f} {t:>8}")
    print(json.dumps({"bench": "gz2_oracle_inputs", "model": args.model, "rows": rows},
                     default=float))


if __name__ == "__main__":
    main()
