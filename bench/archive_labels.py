"""Archive labels (issue 16): gz2 and metallicity on the replayed SDSS archive.

For each family, the test-split scores of three networks beside the mean-label
baseline (the training split's mean label for every object):

* ``real_only``: trained on the archive's own labels (Galaxy Zoo 2 debiased vote
  fractions weighted by their vote counts; MPA-JHU 12 + log(O/H) with its error),
  after the config's quality cuts;
* ``synthetic_only``: trained on the synthetic survey (same bands, pixel scale and
  cutout size), applied to the archive's cutouts (the domain shift);
* ``fine_tuned``: the synthetic model's weights fine-tuned on the archive's labels
  (``models.<name>.init: synthetic``).

The archive is the replayed SDSS field of the tests (`tests/archive/make_fixtures.py`,
``labelled_sdss_fixtures``: galaxies whose labels follow their rendered type,
colour and shape, plus label noise), served by the fake SkyServer/SAS and read
through galcat's own SDSS client. Scores: gz2 RMSE against the votes (and weighted
by the vote counts), metallicity RMSE in dex (and weighted by 1/error^2), on the
test objects with a label that passed the cuts.

Usage::

    .venv/bin/python bench/archive_labels.py [--n 300] [--synthetic 600] [--epochs 8]

Cost on 2 shared CPU cores: ~3-5 minutes at the defaults. Prints a table and ends
with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from galcat.config import MEASURED_MODEL_INPUTS, load_config  # noqa: E402
from galcat.labels import ERROR_COLUMN, VOTES_COLUMN, label_table  # noqa: E402
from galcat.models import get_family  # noqa: E402
from galcat.models.data import read_labels  # noqa: E402
from galcat.models.predict import predict_shard  # noqa: E402
from galcat.models.stages import labels_of  # noqa: E402
from galcat.models.train import train_model  # noqa: E402
from galcat.stages import run_fetch, run_plan_shards, run_query  # noqa: E402

FAMILIES = ("gz2", "metallicity")
CUTOUT = 24


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="galaxies in the replayed SDSS field")
    p.add_argument("--synthetic", type=int, default=600, help="synthetic galaxies to pretrain on")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--workdir", type=Path, default=None)
    return p.parse_args()


def _stage(config: dict, out: Path, *, synthetic: bool) -> tuple[list[Path], list[Path]]:
    """Object table(s) and cutout shards of ``config``'s survey under ``out``."""
    dask = {**config["dask"], "scheduler": "synchronous"}
    out.mkdir(parents=True, exist_ok=True)
    objects = run_query(config, out / "objects.parquet",
                        shard_map=None if synthetic else out / "shard_map.parquet")
    if synthetic:
        shards = sorted(pd.read_parquet(objects)["shard"].unique())
        per = int(config["sharding"]["objects_per_shard"])
        cut = [run_fetch({**config, "shard_size": per}, None, s, out / f"{s}.zarr", dask=dask)
               for s in shards]
        return [Path(objects)], [Path(c) for c in cut]
    listing = run_plan_shards(objects, out / "shards.txt", out / "objects")
    shards = Path(listing).read_text().split()
    tables = [out / "objects" / f"{s}.parquet" for s in shards]
    cut = [run_fetch(config, t, s, out / f"{s}.zarr", dask=dask) for s, t in zip(shards, tables,
                                                                                  strict=True)]
    return tables, [Path(c) for c in cut]


def _settings(config: dict, family: str, epochs: int, width: int) -> dict:
    s = dict(config["models"][family])
    s.update({"epochs": epochs, "width": width, "batch_size": 32,
              "early_stopping_patience": 3, "bands": ["g", "r", "i"]})
    s.pop("tta")  # an inference setting, as in galcat.models.stages.run_train
    # the comparison is of label sources on the same images: no `measure` run here, so
    # none of the inputs read from its features
    s["inputs"] = [n for n in s["inputs"] if n not in MEASURED_MODEL_INPUTS]
    return s


def _predict(model: Path, cutouts: list[Path], out: Path) -> pd.DataFrame:
    parts = []
    for c in cutouts:
        path = out / f"pred_{model.parent.name}_{c.stem}.parquet"
        predict_shard(model, c, path, tta=False, batch_size=128, threads=2)
        parts.append(pd.read_parquet(path))
    return pd.concat(parts, ignore_index=True)


def _scores(family: str, table: pd.DataFrame, test: np.ndarray, train: np.ndarray,
            pred: pd.DataFrame | None, prefix: str) -> dict:
    fam = get_family(family)
    y = fam.targets(table)
    yt = y[test]
    if pred is None:  # mean label of the training split
        p = np.tile(np.nanmean(y[train], axis=0), (int(test.sum()), 1))
    else:
        cols = [o.name for o in fam.outputs()]
        merged = table.loc[test, ["object_id"]].merge(pred, on="object_id", how="left")
        p = merged[[f"nn_{prefix}_{c}" for c in cols]].to_numpy(np.float64)
    ok = np.isfinite(yt) & np.isfinite(p)
    rmse = float(np.sqrt(np.mean((p[ok] - yt[ok]) ** 2)))
    if family == "gz2":
        w = np.broadcast_to(table.loc[test, VOTES_COLUMN].to_numpy()[:, None], yt.shape)
    else:
        w = 1.0 / table.loc[test, ERROR_COLUMN].to_numpy()[:, None] ** 2
    ok &= np.isfinite(w)
    weighted = float(np.sqrt(np.sum(w[ok] * (p[ok] - yt[ok]) ** 2) / np.sum(w[ok])))
    return {"rmse": rmse, "rmse_weighted": weighted}


def main() -> int:
    args = _args()
    from tests.archive.fake_archive import FakeArchive
    from tests.archive.make_fixtures import labelled_sdss_fixtures

    t0 = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="galcat_archive_labels_"))
    work.mkdir(parents=True, exist_ok=True)
    labelled_sdss_fixtures(work / "archive", n=args.n)
    fake = FakeArchive(work / "archive", slow_s=1.5).start()
    try:
        real = load_config(overrides={
            "survey": "sdss", "sharding": {"objects_per_shard": 200},
            "archive": {"cache_dir": str(work / "cache"), "timeout_s": 10.0},
            "sdss": {"skyserver_url": fake.url, "sas_url": f"{fake.url}/sas",
                     "cutout_size": CUTOUT, "selection": {"ra": {"min": 150.0, "max": 152.0},
                                                          "dec": {"min": 1.0, "max": 3.0}}}})
        real_tables, real_cut = _stage(real, work / "sdss", synthetic=False)
    finally:
        fake.stop()
    syn = load_config(overrides={"synthetic": {"n_objects": args.synthetic,
                                               "cutout_size": CUTOUT},
                                 "sharding": {"objects_per_shard": 300}})
    syn_tables, syn_cut = _stage(syn, work / "synthetic", synthetic=True)
    t_stage = time.perf_counter() - t0

    rows, result = [], {}
    for family in FAMILIES:
        spec = labels_of(real, family)
        settings = _settings(real, family, args.epochs, args.width)
        out = work / "models" / family
        syn_model = train_model(family, settings, training=syn["training"], objects=syn_tables,
                                cutouts=syn_cut, out_dir=out / "synthetic_only", threads=2,
                                labels=labels_of(syn, family))
        real_model = train_model(family, settings, training=real["training"],
                                 objects=real_tables, cutouts=real_cut, out_dir=out / "real_only",
                                 threads=2, labels=spec)
        tuned = train_model(family, settings, training=real["training"], objects=real_tables,
                            cutouts=real_cut, out_dir=out / "fine_tuned", threads=2, labels=spec,
                            init_model=syn_model)
        table, summary = label_table(read_labels(real_tables), spec,
                                     get_family(family).label_columns)
        splits = pd.read_parquet(out / "real_only" / "splits.parquet")
        table = table.merge(splits, on="object_id", how="inner")
        labelled = get_family(family).labelled(table)
        test = (table["split"].to_numpy() == "test") & labelled
        train = (table["split"].to_numpy() == "train") & labelled
        entry = {"n_test": int(test.sum()), "n_train": int(train.sum()),
                 "label_cuts": summary["cuts"], "removed_by_cuts": summary["removed"],
                 "mean_label": _scores(family, table, test, train, None, family)}
        for variant, model in (("real_only", real_model), ("synthetic_only", syn_model),
                               ("fine_tuned", tuned)):
            pred = _predict(model, real_cut, out / variant)
            entry[variant] = _scores(family, table, test, train, pred, family)
        result[family] = entry
        for variant in ("mean_label", "real_only", "synthetic_only", "fine_tuned"):
            rows.append((family, variant, entry[variant]["rmse"], entry[variant]["rmse_weighted"],
                         entry["n_test"]))

    unit = {"gz2": "votes", "metallicity": "dex"}
    print(f"Archive labels on the replayed SDSS field ({args.n} galaxies; synthetic "
          f"{args.synthetic}; {args.epochs} epochs, width {args.width})")
    print(f"{'family':<12} {'variant':<15} {'RMSE':>8} {'weighted':>9} {'n_test':>6}")
    for family, variant, rmse, weighted, n in rows:
        print(f"{family:<12} {variant:<15} {rmse:8.4f} {weighted:9.4f} {n:6d}  ({unit[family]})")
    total = time.perf_counter() - t0
    print(f"staging {t_stage:.0f} s, total {total:.0f} s; work directory {work}")
    print(json.dumps({"benchmark": "archive_labels", "n_real": args.n,
                      "n_synthetic": args.synthetic, "epochs": args.epochs,
                      "seconds": round(total, 1), **result}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
