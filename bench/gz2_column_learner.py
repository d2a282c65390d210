"""How far can a learner of the gz2 vote fractions get from per-object columns alone?

`bench/gz2_information_bound.py` bounds what the images allow, with the volunteers'
function given; `bench/gz2_oracle_inputs.py` trains the shipped network with truths in
its columns. This bench trains a small multilayer perceptron, no image, on the columns
of the gz2 model (`models.gz2.inputs`, each as the network sees it) through the
network's own tree head (`tree_fractions`) and vote likelihood
(`multinomial_vote_loss`), on the same splits and votes, with the columns taken from:

* ``measured``: measure's features tables, as the network reads them;
* ``ideal``: B/T and both axis ratios (and their sigmas) replaced by the best measurement
  the images allow (`gz2_oracle_inputs.ideal_measurements`: one draw of the posterior mean
  from each galaxy's Fisher matrix and its type's population prior);
* ``true``: the truths the simulated volunteers answer from;
* ``+ flags``: the type, merger and projection flags written in exactly (as in
  `gz2_oracle_inputs`' ``flags``); ``only``: those columns and nothing else.

Its rows split the shipped network's distance from the floor into what each
measurement costs, and its ideal rows say what a learner from this training set's
votes reaches if the images were read as well as they allow: whether the 1.15x goal
can be met at all. A diagnostic: the workflow never gives a network truths.

    .venv/bin/python bench/gz2_column_learner.py [--variants ...] [--seeds 0 1 2]
        [--features DIR]

``--features`` reads the features tables from another directory, e.g. the shards
re-measured under another `measure` setting, which is then judged in seconds.

Needs the science survey staged and gz2 trained (``bench/train_science.py``). Costs
~2-4 s per variant and seed on one thread (the ideal measurements, if not cached by
`gz2_oracle_inputs`, ~7 minutes more on 2 cores). Prints a table and ends with one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gz2_compare
import numpy as np
import pandas as pd
import torch
from gz2_oracle_inputs import IDEAL, VARIANTS, ideal_measurements, truth_columns
from models2_science import science_config
from torch import nn

from galcat import gz2
from galcat.models.data import join_measured, object_inputs
from galcat.models.families.gz2 import multinomial_vote_loss, tree_fractions

ROOT = Path(__file__).resolve().parents[1]
GOAL_OVER_FLOOR = 1.15
ERRORS = ("bulge_to_total_err", "disc_q_err", "bulge_q_err")
STRUCTURE = ("bulge_to_total", "disc_q", "bulge_q")
FLAGS = VARIANTS["flags"]
TRUE = {**VARIANTS["q"], **VARIANTS["bt"]}
#: name -> (the swaps written into the columns, the only columns read or None for all)
CHOICES = {
    "measured": ({}, None),
    "measured + true flags": (FLAGS, None),
    "ideal B/T, measured rest": ({k: IDEAL[k] for k in ("bulge_to_total",
                                                        "bulge_to_total_err")}, None),
    "ideal B/T, q, measured rest": ({k: IDEAL[k] for k in (*STRUCTURE, *ERRORS)}, None),
    "ideal B/T, q, measured rest + true flags": (IDEAL, None),
    "ideal B/T, q + true flags only": (IDEAL, (*STRUCTURE, *ERRORS, *FLAGS)),
    "true B/T, q + true flags only": ({**TRUE, **FLAGS}, (*STRUCTURE, *FLAGS)),
}


def columns(table: pd.DataFrame, names: list[str], swap: dict[str, str]) -> np.ndarray:
    """The inputs ``names`` of every row, as the network sees them, with ``swap``'s
    columns (input -> column of ``table``) written in first."""
    t = table.copy()
    for name, source in swap.items():
        t[name] = t[source].to_numpy()
    return object_inputs(t, names, source="gz2_column_learner")


def fit(x: np.ndarray, votes: np.ndarray, split: np.ndarray, seed: int, *,
        width: int = 64, patience: int = 30, max_epochs: int = 400) -> np.ndarray:
    """Train the perceptron on the training rows (early stopping on the validation rows'
    vote loss); its fractions for every row."""
    train = split == "train"
    mean, sd = np.nanmean(x[train], 0), np.nanstd(x[train], 0) + 1e-6
    x = np.where(np.isfinite(x), x, mean)  # imputed as the network does: the mean
    xt = torch.from_numpy(((x - mean) / sd).astype(np.float32))
    vt = torch.from_numpy(votes.astype(np.float32))
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], width), nn.SiLU(), nn.Linear(width, width),
                        nn.SiLU(), nn.Linear(width, len(gz2.ANSWERS)))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    rows = torch.from_numpy(np.flatnonzero(train))
    val = torch.from_numpy(np.flatnonzero(split == "validation"))
    order = torch.Generator().manual_seed(seed)
    best, state, stale = np.inf, None, 0
    for _ in range(max_epochs):
        net.train()
        for b in rows[torch.randperm(len(rows), generator=order)].split(256):
            opt.zero_grad()
            multinomial_vote_loss(net(xt[b]), vt[b]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            loss = float(multinomial_vote_loss(net(xt[val]), vt[val]))
        if loss < best - 1e-5:
            best, state, stale = loss, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale > patience:
                break
    net.load_state_dict(state)
    with torch.no_grad():
        return tree_fractions(net(xt)).numpy().astype(np.float64)


def over_floor(pred: np.ndarray, votes: np.ndarray, expected: np.ndarray,
               rows: np.ndarray) -> float:
    """RMSE against the votes over the label-noise floor on ``rows`` (`gz2_compare`'s)."""
    err, _ = gz2_compare.squared_errors(pred[rows], votes[rows])
    floor, _ = gz2_compare.squared_errors(expected[rows], votes[rows])
    return round(gz2_compare.over_floor(err, floor), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", choices=list(CHOICES), default=list(CHOICES))
    ap.add_argument("--model", default="gz2", help="whose inputs and splits")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--features", type=Path, default=None,
                    help="directory of features tables (default: the staged survey's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--processes", type=int, default=2,
                    help="for the ideal measurements, where not cached")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = science_config()
    staged = science_staged(config)
    objects = pd.read_parquet(staged / "objects.parquet")
    splits = pd.read_parquet(staged / "models" / args.model / "splits.parquet")
    names = list(config["models"][args.model].get("inputs") or ())
    names += [e for e in ERRORS if e not in names]
    features = sorted((args.features or staged / "features").glob("*.parquet"))
    if not features:
        raise SystemExit(f"no features tables in {args.features or staged / 'features'}")
    table = join_measured(objects.merge(splits[["object_id", "split"]], on="object_id"),
                          features, names)
    flags = truth_columns(objects)[["object_id", *FLAGS.values()]]  # the rest is in objects
    table = table.merge(flags, on="object_id", how="left")
    if any(c.startswith("ideal") for c in args.variants):
        ideal = ideal_measurements(objects, config, staged / "bench" / "gz2_oracle_inputs"
                                   / args.model / "ideal_measurements.parquet",
                                   args.processes)
        table = table.merge(ideal, on="object_id", how="left")
    votes = table[gz2.column_names("gz2_")].to_numpy(np.float64)
    expected = table[gz2.column_names("truth_gz2_")].to_numpy(np.float64)
    split = table["split"].to_numpy()
    val, test = split == "validation", split == "test"

    print(f"{args.model}: a perceptron on per-object columns alone; RMSE against the votes "
          f"/ label-noise floor, goal <= {GOAL_OVER_FLOOR}")
    print(f"  {'columns':<44} " + " ".join(f"{'seed ' + str(s):>14}" for s in args.seeds)
          + f" {'ensemble':>14}   (validation / test)")
    result = {"bench": "gz2_column_learner", "model": args.model, "seeds": args.seeds,
              "features": str(args.features or staged / "features"),
              "n_train": int((split == "train").sum()), "rows": {}}
    for variant in args.variants:
        swap, only = CHOICES[variant]
        use = list(only) if only else names
        x = columns(table, use, swap)
        t0 = time.perf_counter()
        preds = [fit(x, votes, split, seed) for seed in args.seeds]
        cells = [(over_floor(p, votes, expected, val), over_floor(p, votes, expected, test))
                 for p in preds]
        mean = np.mean(preds, axis=0)
        ens = (over_floor(mean, votes, expected, val), over_floor(mean, votes, expected, test))
        result["rows"][variant] = {"seeds": cells, "ensemble": ens,
                                   "s_per_seed": round((time.perf_counter() - t0)
                                                       / len(preds), 1)}
        print(f"  {variant:<44} " + " ".join(f"{v:.3f} / {t:.3f}".rjust(14) for v, t in cells)
              + f" {ens[0]:.3f} / {ens[1]:.3f}".rjust(15), flush=True)
    print(json.dumps(result))


def science_staged(config: dict) -> Path:
    """The staged science survey, refused by name where gz2 was not trained."""
    staged = ROOT / config["results"] / config["survey"]
    if not (staged / "models" / "gz2" / "splits.parquet").exists():
        raise SystemExit(f"{staged} has no trained gz2: run bench/train_science.py")
    return staged


if __name__ == "__main__":
    main()
