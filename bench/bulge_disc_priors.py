"""B/T, axis ratios and r50_mass of the bulge + disc fit under each ``measure.priors`` mode
and each ``measure.neighbour_model``.

Measures the same shards with ``measure.priors`` = fixed, calibrate and
calibrate_mixture (`galcat.priors`), each with every ``measure.neighbour_model`` of
``--neighbour-models`` (default: the config's one), through galcat's own
`measure_shard`, joins the truth, and prints per mode: the B/T error (rms, and the
share off by more than 0.1) of single early types, single late types, mergers and
projections; the coverage of ``bulge_to_total_err`` on single galaxies; the median
|Δ|/truth of r50_mass; the measure time. Two sources of shards:

* ``--staging DIR`` (default ``results/science/synthetic`` where it exists): the
  staged cutouts and segmentation maps of a run (``config/science.yaml``'s DAG), its
  first ``--shards`` shards, the truth from its ``objects.parquet``;
* ``--render N``: ``--shards`` shards of N galaxies of the default synthetic survey,
  each dimmed by U(0, ``--dim-max``) mag (`galcat.validation.recovery.dim_population`),
  so that most galaxies sit at the S/N 10-70 where a bulge + disc is degenerate and the
  prior decides, and a shard has a few dozen bright galaxies to calibrate on.

    .venv/bin/python bench/bulge_disc_priors.py [--staging DIR | --render 80]
        [--shards 5] [--modes fixed,calibrate,calibrate_mixture]
        [--neighbour-models none,bulge_disc] [--workers 2]

Ends with ONE line of JSON: the figures per mode.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.config import load_config
from galcat.morphology import measure_shard
from galcat.segment import segment_shard
from galcat.store import read_cutouts, read_segmaps
from galcat.surveys import synthetic
from galcat.validation.recovery import dim_population

MODES = ("fixed", "calibrate", "calibrate_mixture")
CLASSES = ("single_early", "single_late", "merger", "projection")


def _staged(staging: Path, n_shards: int):
    """(shard name, batch, segmap) of the first ``n_shards`` staged shards, and the
    truth table."""
    truth = pd.read_parquet(staging / "objects.parquet")
    names = sorted(p.name[:-len(".zarr")] for p in (staging / "cutouts").glob("*.zarr"))
    if not names:
        raise SystemExit(f"no staged cutouts under {staging / 'cutouts'}; stage the science "
                         f"survey first (bench/train_science.py) or use --render")
    shards = []
    for name in names[:n_shards]:
        batch = read_cutouts(staging / "cutouts" / f"{name}.zarr")
        _, segmap = read_segmaps(staging / "segmaps" / f"{name}.zarr")
        shards.append((name, batch, segmap))
    return shards, truth


def _rendered(n: int, n_shards: int, dim_max: float):
    """``n_shards`` shards of ``n`` galaxies of the default synthetic survey (seeds 0,
    1, ...), dimmed by U(0, dim_max) mag, segmented by galcat; and their truth."""
    shards, truths = [], []
    for k in range(n_shards):
        cfg = load_config(overrides={"synthetic": {"n_objects": n, "seed": k}})
        rows = dim_population(synthetic.query(cfg).copy(), dim_max, k)
        rows["object_id"] = rows["object_id"] + k * 10 * n  # unique over shards
        batch = synthetic.cutouts(rows, cfg)
        shards.append((f"render{k}", batch, segment_shard(batch, config=cfg).segmap))
        truths.append(rows)
    return load_config(), shards, pd.concat(truths, ignore_index=True)


def _scores(features: pd.DataFrame, truth: pd.DataFrame) -> dict:
    m = features.merge(truth, on="object_id")
    error = (m["bulge_to_total"] - m["truth_bt"]).to_numpy()
    single = ~(m["truth_merger"] | m["truth_projection"]).to_numpy()
    early = (m["truth_type"] == "early").to_numpy()
    classes = {"single_early": single & early, "single_late": single & ~early,
               "merger": m["truth_merger"].to_numpy(),
               "projection": m["truth_projection"].to_numpy()}
    out: dict = {"n": int(len(m)), "bt_failed": int(np.isnan(error).sum())}
    for name, sel in classes.items():
        e = error[sel]
        out[name] = {"n": int(sel.sum()), "bt_rms": round(float(np.sqrt(np.nanmean(e ** 2))), 4),
                     "bt_over_0.1": round(float(np.nanmean(np.abs(e) > 0.1)), 4)}
    e = error[single]
    out["singles_bt_rms"] = round(float(np.sqrt(np.nanmean(e ** 2))), 4)
    out["singles_bt_over_0.1"] = round(float(np.nanmean(np.abs(e) > 0.1)), 4)
    within = np.abs(e) <= m["bulge_to_total_err"].to_numpy()[single]
    out["singles_bt_err_coverage"] = round(float(np.mean(within[np.isfinite(e)])), 4)
    rel = np.abs(m["r50_mass"] / m["truth_r50_mass"] - 1.0).to_numpy()
    out["r50_mass_median_rel"] = round(float(np.nanmedian(rel)), 4)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--staging", type=Path, help="staged run (default: "
                        "results/science/synthetic where it exists)")
    source.add_argument("--render", type=int, help="galaxies per rendered shard")
    parser.add_argument("--config", type=Path, default=Path("config/science.yaml"),
                        help="config of the staged run (default config/science.yaml)")
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--dim-max", type=float, default=2.5)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--neighbour-models", default="",
                        help="measure.neighbour_model values, comma-separated (default: "
                             "the config's)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    neighbours = [m.strip() for m in args.neighbour_models.split(",") if m.strip()]
    if args.render is None and args.staging is None:
        args.staging = Path("results/science/synthetic")
        if not (args.staging / "objects.parquet").exists():
            args.render = 80
    if args.render is not None:
        config, shards, truth = _rendered(args.render, args.shards, args.dim_max)
        source_name = (f"{args.shards} rendered shards of {args.render} galaxies, dimmed by "
                       f"U(0, {args.dim_max:g}) mag")
    else:
        config = load_config(args.config)
        shards, truth = _staged(args.staging, args.shards)
        source_name = f"{len(shards)} shards of {args.staging}"
    print(f"source: {source_name}")
    results = {}
    runs = [(mode, nb) for mode in modes for nb in (neighbours or [None])]
    for mode, neighbour in runs:
        cfg = copy.deepcopy(config)
        cfg["measure"] = {**cfg["measure"], "priors": mode}
        label = mode
        if neighbour is not None:
            cfg["measure"]["neighbour_model"] = neighbour
            label = f"{mode}, neighbour_model {neighbour}"
        start = time.perf_counter()
        tables, records = [], []
        for name, batch, segmap in shards:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = measure_shard(batch, segmap, config=cfg, label=f"measure {name}",
                                      scheduler="processes", workers=args.workers)
            records.append(table.attrs.get("priors") or {})
            tables.append(table)
        seconds = time.perf_counter() - start
        scores = _scores(pd.concat(tables, ignore_index=True), truth)
        scores["measure_s"] = round(seconds, 1)
        scores["shards_with_mixture"] = sum(bool(r.get("bulge_disc_mixture")) for r in records)
        scores["components"] = [len(r.get("bulge_disc_mixture") or []) for r in records]
        results[label] = scores
        print(f"\n{label}: {scores['n']} galaxies, measure {seconds:.0f} s"
              + (f", mixture on {scores['shards_with_mixture']} of {len(shards)} shards "
                 f"(components {scores['components']})" if mode == "calibrate_mixture" else ""))
        for name in CLASSES:
            c = scores[name]
            print(f"  B/T {name:13s} n={c['n']:4d}  rms {c['bt_rms']:.3f}  "
                  f"|err| > 0.1: {100 * c['bt_over_0.1']:.1f}%")
        print(f"  B/T singles rms {scores['singles_bt_rms']:.3f}, > 0.1: "
              f"{100 * scores['singles_bt_over_0.1']:.1f}%, within bulge_to_total_err: "
              f"{100 * scores['singles_bt_err_coverage']:.0f}% (68% expected)")
        print(f"  r50_mass median |err|/truth {100 * scores['r50_mass_median_rel']:.2f}%")
    print(json.dumps({"source": source_name, "modes": results}))


if __name__ == "__main__":
    main()
