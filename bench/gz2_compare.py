"""gz2 networks of one run compared galaxy by galaxy, on the validation and test splits.

`bench/train_science.py` judges each gz2 network alone on the test split. A change to
a network (a loss, an input, a seed) moves its RMSE by a few hundredths of the
label-noise floor, less than the test split's own sampling noise, so two networks are
compared here on the *same* galaxies with one bootstrap weight per galaxy shared by
both (a paired Poisson bootstrap, `galcat.analysis.common.bootstrap`), and on both
held-out splits: the validation split chose each network's best epoch but never
trained it, so a change that helps on both is not one split's luck.

For every model named (their predictions are read from the run's
``predictions/<model>/*.parquet``, the votes and the expected fractions from its
``objects.parquet``), and per split:

* RMSE against the simulated votes over the label-noise floor (the RMSE of the
  expected fractions against the votes), as `bench/train_science.py` prints it;
* each later model minus the first, with its paired 95% interval;
* where the excess over the floor lies: per kind of galaxy (early and late singles,
  mergers, projections; per object and its part of the mean, in units of the floor's
  mean squared error, so the parts add up to ``(RMSE / floor)^2 - 1`` and the 1.15x
  goal allows 0.3225 in all) and per question of the decision tree (its answers' mean
  squared error over the floor's, x 1e-4);
* with ``--ensemble``, the mean of all the models' fractions as one more predictor (a
  mean of fractions that obey the tree's sum rules obeys them too); a model given as
  ``LABEL=A+B+C`` is such a mean of models A, B and C (seeds of one entry, say), so
  that two ensembles are compared galaxy by galaxy.

The models must share their splits (the hash of ``object_id`` with the same
fractions); the bench checks this.

    .venv/bin/python bench/gz2_compare.py gz2 gz2_resnet [--ensemble] [--run DIR]
    .venv/bin/python bench/gz2_compare.py ls=gz2_ls_s0+gz2_ls_s1 mn=gz2+gz2_s1

Costs a read of the predictions and 2000 bootstrap replicates per comparison (seconds).
Prints tables and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("validation", "test")
KINDS = ("early single", "late single", "merger", "projection")
ENSEMBLE = "ensemble"


def kind_of(objects: pd.DataFrame) -> np.ndarray:
    """Each object's kind: merger, projection, or early/late single (from the truth)."""
    return np.select([objects["truth_merger"].astype(bool),
                      objects["truth_projection"].astype(bool),
                      objects["truth_type"].to_numpy() == "early"],
                     ["merger", "projection", "early single"], "late single")


def read_predictions(run: Path, model: str) -> pd.DataFrame:
    """``object_id``, ``split`` and the 37 fractions of ``model`` (answer names as columns)."""
    from galcat import gz2

    files = sorted((run / "predictions" / model).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no predictions of model {model!r} under {run / 'predictions'}")
    prefix = f"nn_{model}_"
    columns = ["object_id", f"{prefix}split", *(prefix + a for a in gz2.column_names(""))]
    table = pd.concat(pd.read_parquet(f, columns=columns) for f in files)
    return table.rename(columns=lambda c: c[len(prefix):] if c.startswith(prefix) else c)


def read_ensemble(run: Path, spec: str) -> tuple[str, pd.DataFrame]:
    """``LABEL=A+B+...``: the mean of the models' fractions, labelled; a plain name: the
    model itself. The members must give every object the same split."""
    label, _, members = spec.partition("=")
    if not members:
        return spec, read_predictions(run, spec)
    tables = [read_predictions(run, m).set_index("object_id").sort_index()
              for m in members.split("+")]
    first = tables[0]
    for m, t in zip(members.split("+"), tables, strict=True):
        if not t.index.equals(first.index) or not (t["split"] == first["split"]).all():
            raise ValueError(f"ensemble {label!r}: model {m!r} does not share the splits "
                             f"of {members.split('+')[0]!r}")
    mean = first.copy()
    answers = [c for c in first.columns if c != "split"]
    mean[answers] = np.mean([t[answers].to_numpy(np.float64) for t in tables], axis=0)
    return label, mean.reset_index()


def squared_errors(pred: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 37) squared errors against the votes (0 where either is NaN) and the mask."""
    ok = np.isfinite(pred) & np.isfinite(votes)
    return np.where(ok, pred - votes, 0.0) ** 2, ok


def over_floor(err: np.ndarray, floor: np.ndarray, w: np.ndarray | None = None) -> float:
    """RMSE over the floor's RMSE, both over the same answers, galaxies weighted by ``w``."""
    w = np.ones(len(err)) if w is None else w
    return float(np.sqrt((w @ err.sum(axis=1)) / (w @ floor.sum(axis=1))))


def compare(objects: pd.DataFrame, predictions: dict[str, pd.DataFrame], split: str, *,
            ensemble: bool = False, n_boot: int = 2000, seed: int = 0) -> dict:
    """The figures above for one split, as a dict (see the module docstring).

    ``objects`` holds ``object_id``, the votes ``gz2_*``, the expected fractions
    ``truth_gz2_*`` and the truth flags; ``predictions`` maps each model to what
    `read_predictions` returns. The galaxies are those in ``split`` for every model.
    """
    from galcat import gz2
    from galcat.analysis.common import bootstrap

    answers = gz2.column_names("")
    names = list(predictions)
    ids = None
    for name, pred in predictions.items():
        in_split = set(pred.loc[pred["split"] == split, "object_id"])
        ids = in_split if ids is None else ids
        if in_split != ids:
            raise ValueError(f"models {names[0]!r} and {name!r} do not share their "
                             f"{split} split: train them with the same splits settings")
    chosen = objects[objects["object_id"].isin(ids)].sort_values("object_id")
    votes = chosen[gz2.column_names("gz2_")].to_numpy(np.float64)
    expected = chosen[gz2.column_names("truth_gz2_")].to_numpy(np.float64)
    fractions = {}
    for name, pred in predictions.items():
        aligned = chosen[["object_id"]].merge(pred, on="object_id", how="left",
                                              validate="one_to_one")
        fractions[name] = aligned[answers].to_numpy(np.float64)
    if ensemble:
        fractions[ENSEMBLE] = np.mean([fractions[n] for n in names], axis=0)
    errors = {n: squared_errors(f, votes) for n, f in fractions.items()}
    # the floor over the answers every predictor has, so each ratio is like for like
    mask = np.logical_and.reduce([ok for _, ok in errors.values()])
    floor = np.where(mask, expected - votes, 0.0) ** 2
    err = {n: np.where(mask, e, 0.0) for n, (e, _) in errors.items()}
    count = mask.sum(axis=1)

    out: dict = {"n": len(chosen), "over_floor": {n: round(over_floor(e, floor), 4)
                                                  for n, e in err.items()}}
    first = names[0]
    out["minus_first"] = {}
    for name in err:
        if name == first:
            continue

        def difference(w: np.ndarray, a: str = name) -> np.ndarray:
            return np.asarray([over_floor(err[a], floor, w)
                               - over_floor(err[first], floor, w)])

        point, lo, hi = bootstrap(difference, len(chosen), n_boot=n_boot, seed=seed)
        out["minus_first"][name] = [round(float(v[0]), 4) for v in (point, lo, hi)]

    floor_mse = floor.sum() / count.sum()
    kind = kind_of(chosen)
    out["excess_by_kind"] = {}
    for k in KINDS:
        rows = kind == k
        cell = {"n": int(rows.sum())}
        for name, e in err.items():
            excess = (e[rows] - floor[rows]).sum()
            cell[name] = [round(float(excess / count[rows].sum() / floor_mse), 3) if rows.any()
                          else None, round(float(excess / count.sum() / floor_mse), 3)]
        out["excess_by_kind"][k] = cell
    out["question_excess_1e4"] = {
        q.id: {name: round(float((e[:, list(q.columns)] - floor[:, list(q.columns)]).sum()
                                 / mask[:, list(q.columns)].sum() * 1e4), 2)
               for name, e in err.items()}
        for q in gz2.QUESTIONS}
    return out


def report(split: str, result: dict) -> None:
    names = list(result["over_floor"])
    print(f"{split} split ({result['n']} galaxies): RMSE against the votes / floor")
    for name in names:
        diff = result["minus_first"].get(name)
        extra = "" if diff is None else f"   minus the first {diff[0]:+.4f} [{diff[1]:+.4f}, {diff[2]:+.4f}]"
        print(f"  {name:<24}{result['over_floor'][name]:>8.4f}x{extra}")
    print(f"  {'kind':<14}{'n':>5} " + "".join(f"{n:>20}" for n in names)
          + "   (excess per object / floor MSE; its part of the mean)")
    for k, cell in result["excess_by_kind"].items():
        cells = "".join(f"{'-' if cell[n][0] is None else f'{cell[n][0]:.3f}':>12} ({cell[n][1]:.3f})"
                        for n in names)
        print(f"  {k:<14}{cell['n']:>5} {cells}")
    print(f"  {'question':<14}      " + "".join(f"{n:>20}" for n in names)
          + "   (MSE excess over the floor, x 1e-4)")
    for q, row in result["question_excess_1e4"].items():
        print(f"  {q:<14}      " + "".join(f"{row[n]:>20.2f}" for n in names))


def main() -> None:
    from models2_science import science_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", metavar="MODEL",
                    help="gz2 models of the run, or LABEL=A+B+... for the mean of several; "
                         "the first is the reference")
    ap.add_argument("--run", type=Path, default=None,
                    help="the run's results directory (default: config/science.yaml's)")
    ap.add_argument("--ensemble", action="store_true",
                    help="add the mean of the models' fractions as one more predictor")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    if args.run is None:
        config = science_config()
        args.run = ROOT / config["results"] / config["survey"]
    objects = pd.read_parquet(args.run / "objects.parquet")
    predictions = dict(read_ensemble(args.run, m) for m in args.models)
    out = {"bench": "gz2_compare", "run": str(args.run), "models": args.models}
    for split in SPLITS:
        out[split] = compare(objects, predictions, split, ensemble=args.ensemble,
                             n_boot=args.n_boot)
        report(split, out[split])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
