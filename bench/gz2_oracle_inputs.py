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

and, on its own (not cumulative), ``ideal``: B/T and both axis ratios as the best
measurement the images allow, with the flags exact. Each galaxy's Fisher matrix of
`gz2_information_bound` (companion and tidal light as nuisance parameters) gives a
noisy measurement of all its parameters, ``u ~ N(0, F)``, which the population's
Gaussian prior within the galaxy's type turns into the posterior mean,
``theta + (F + P)^-1 (u + P (mu - theta))``: one draw of the estimator the bound
assumes, with the posterior sigmas as ``*_err`` inputs. The bound gives the volunteers'
function exactly; here the network learns it from the 4206 training galaxies' votes. So
``ideal`` asks whether this training set can reach the goal at all, if the images were
read as well as they allow (the type and merger flags for free).
`bench/gz2_column_learner.py` asks the same of a learner on the columns alone.

These are diagnostics: a network never has truth as an input in the workflow. Needs the
science survey staged and gz2 trained (``bench/train_science.py``).

    .venv/bin/python bench/gz2_oracle_inputs.py [--variants q bt flags ideal] [--seeds 0]
        [--threads 2]

Costs one gz2 training per variant and seed (~3 minutes each for the small CNN on 2
cores); ``ideal`` adds ~0.1 s of Fisher matrices per galaxy (~7 minutes for 6000 on 2
cores, cached). Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import time
from pathlib import Path

import gz2_information_bound as bound
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
#: the best measurement the images allow (`ideal_measurements`) and the flags exact
IDEAL = {"bulge_to_total": "ideal_bt", "disc_q": "ideal_q_disc", "bulge_q": "ideal_q_bulge",
         "bulge_to_total_err": "ideal_sigma_bt", "disc_q_err": "ideal_sigma_q_disc",
         "bulge_q_err": "ideal_sigma_q_bulge", **VARIANTS["flags"]}
IDEAL_SEED = 20261207


def truth_columns(objects: pd.DataFrame) -> pd.DataFrame:
    """The truths the variants write, by object_id (flags as numbers)."""
    out = objects[["object_id", "truth_q_bulge", "truth_q_disc", "truth_bt"]].copy()
    out["early_as_n"] = np.where(objects["truth_type"] == "early", 10.0, 1.0)
    out["merger_01"] = objects["truth_merger"].astype(float)
    out["projection_01"] = objects["truth_projection"].astype(float)
    return out


def posterior_mean_draw(f: np.ndarray, prior_precision: np.ndarray, pull: np.ndarray,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One draw of the posterior mean's error, and the posterior covariance.

    A measurement with Fisher matrix ``f`` has a score ``u ~ N(0, f)``; with a Gaussian
    prior of precision ``prior_precision`` (zero where a parameter has none) the
    posterior mean lies ``(f + P)^-1 (u + P (mu - theta))`` from the truth ``theta``,
    where ``pull`` is ``P (mu - theta)``. Over the population its covariance is the
    posterior's, ``(f + P)^-1``. Jacobi-scaled, as `structure_covariance`.
    """
    a = f + prior_precision
    s = 1.0 / np.sqrt(np.diag(a))
    w, v = np.linalg.eigh(f * np.outer(s, s))
    u = (v @ (np.sqrt(np.clip(w, 0.0, None)) * rng.standard_normal(len(w)))) / s
    a_s = a * np.outer(s, s)
    error = s * np.linalg.solve(a_s, s * (u + pull))
    return error, np.linalg.inv(a_s) * np.outer(s, s)


def _ideal_one(job: tuple) -> list[float]:
    """`ideal_measurements` for one galaxy: the posterior mean's draw and sigmas of
    (B/T, q_disc, q_bulge)."""
    rec, config, nuisance_sigma, precision, mean = job
    f = bound.fisher(rec, config, nuisance_sigma)  # `PARAMS`, then any nuisance ones
    k = [bound.PARAMS.index(p) for p in bound.PRIOR_PARAMS]
    p_full = np.zeros_like(f)
    p_full[np.ix_(k, k)] = precision
    pull = np.zeros(len(f))
    pull[k] = precision @ (mean - rec["_prior_values"])
    rng = np.random.default_rng([IDEAL_SEED, int(rec["object_id"])])
    error, cov = posterior_mean_draw(f, p_full, pull, rng)
    idx = [bound.PARAMS.index(p) for p in bound.STRUCTURE]
    truth = np.array([rec["truth_bt"], rec["truth_q_disc"], rec["truth_q_bulge"]])
    return [*(truth + error[idx]), *np.sqrt(np.diag(cov)[idx]),
            *cov[np.ix_(idx, idx)].ravel()]


def ideal_measurements(table: pd.DataFrame, config: dict, cache: Path,
                       processes: int) -> pd.DataFrame:
    """One draw of the posterior mean of (B/T, q_disc, q_bulge) per galaxy, from its
    images' Fisher matrix and its type's Gaussian prior (see the module's docstring),
    with the posterior sigmas and covariance; cached in ``cache`` (Parquet), and drawn
    again where the cache holds other objects (a restaged survey)."""
    if cache.exists():
        cached = pd.read_parquet(cache)
        if np.array_equal(cached["object_id"].to_numpy(), table["object_id"].to_numpy()):
            return cached
    values = bound.population_values(table)
    kinds = table["truth_type"].to_numpy()
    prior = {k: (bound.prior_precision(values[kinds == k]),
                 values[kinds == k].mean().to_numpy()) for k in ("early", "late")}
    nuisance_sigma = bound.nuisance_prior_sigma(table)
    jobs = []
    for rec, vals, kind in zip(table.to_dict("records"), values.to_numpy(), kinds,
                               strict=True):
        rec["_prior_values"] = vals
        jobs.append((rec, config, nuisance_sigma, *prior[kind]))
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        rows = pool.map(_ideal_one, jobs, chunksize=16)
    names = [f"ideal_{k}" for k in bound.STRUCTURE]
    names += [f"ideal_sigma_{k}" for k in bound.STRUCTURE]
    names += [f"ideal_cov_{a}_{b}" for a in bound.STRUCTURE for b in bound.STRUCTURE]
    out = pd.DataFrame(rows, columns=names)
    out.insert(0, "object_id", table["object_id"].to_numpy())
    cache.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(cache)
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
    residuals = ([staged / "residuals" / c.name for c in cutouts]
                 if config["models"][model].get("residual_map") else None)
    t0 = time.perf_counter()
    model_file = run_train(config, model, [table], cutouts, out / "model", threads=threads,
                           features=features, residuals=residuals)
    train_s = time.perf_counter() - t0
    splits = out / "model" / "splits.parquet"
    predictions = []
    for cut, feat in zip(cutouts, features, strict=True):
        p = out / "predictions" / f"{cut.stem}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        run_predict(config, model, model_file, splits, cut, p, threads=threads,
                    objects=[table], features=[feat],
                    residuals=[staged / "residuals" / cut.name] if residuals else None)
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
    ap.add_argument("--variants", nargs="+", choices=[*VARIANTS, "ideal"],
                    default=list(VARIANTS),
                    help="cumulative steps to train, and/or 'ideal' (default: the three "
                         "steps)")
    ap.add_argument("--model", default="gz2")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="train each variant at these seeds (default: the config's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    config = science_config()
    staged = ROOT / config["results"] / config["survey"]
    shipped = staged / "models" / args.model / "metrics.json"
    if not shipped.exists():
        raise SystemExit(f"{shipped} is missing: run bench/train_science.py")
    inputs = set(config["models"][args.model].get("inputs") or ())
    objects = pd.read_parquet(staged / "objects.parquet")
    truth = truth_columns(objects)
    seeds = args.seeds or [config["models"][args.model].get("seed", 0)]
    rows = [{"variant": "measured (the shipped model)", "seed": None, **_scores(shipped),
             "train_s": None}]
    base = staged / "bench" / "gz2_oracle_inputs" / args.model
    plan: list[tuple[str, dict[str, str], dict]] = []  # (label, swap, config)
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
        plan.append(("true " + " + ".join(applied), swap, config))
    extra: dict = {}
    if "ideal" in args.variants:
        t0 = time.perf_counter()
        ideal = ideal_measurements(objects, config, base / "ideal_measurements.parquet",
                                   args.threads)
        truth = truth.merge(ideal, on="object_id", how="left")
        ideal_config = copy.deepcopy(config)
        entry = ideal_config["models"][args.model]
        entry["inputs"] = sorted(set(entry.get("inputs") or ()) | set(IDEAL))
        extra = {"ideal_s": round(time.perf_counter() - t0, 1),
                 "ideal_median_sigma": {k: round(float(ideal[f"ideal_sigma_{k}"].median()), 4)
                                        for k in bound.STRUCTURE}}
        plan.append(("ideal B/T, q + true flags", dict(IDEAL), ideal_config))
    for label, swap, cfg in plan:
        for seed in seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg["models"][args.model]["seed"] = seed
            key = "_".join("".join(c for c in label if c.isalnum() or c == " ").split())
            rows.append({"variant": label, "seed": seed,
                         **train_variant(run_cfg, args.model, staged, swap, truth,
                                         base / f"{key}_s{seed}", args.threads)})

    print(f"{args.model}: RMSE against the votes / label-noise floor "
          f"({rows[0]['floor']:.4f}), test split; goal <= {GOAL_OVER_FLOOR}")
    print(f"  {'inputs beside the image':<32} {'seed':>4} {'network':>8} {'forest':>8} "
          f"{'train s':>8}")
    for r in rows:
        t = "" if r["train_s"] is None else f"{r['train_s']:.0f}"
        seed = "" if r["seed"] is None else str(r["seed"])
        print(f"  {r['variant']:<32} {seed:>4} {r['over_floor']:>8.3f} "
              f"{r['random_forest_over_floor']:>8.3f} {t:>8}")
    if extra:
        print("  ideal measurements' median posterior sigma: "
              + ", ".join(f"{k} {v}" for k, v in extra["ideal_median_sigma"].items()))
    print(json.dumps({"bench": "gz2_oracle_inputs", "model": args.model, "rows": rows,
                      **extra}, default=float))


if __name__ == "__main__":
    main()
