"""The science analyses on a catalogue the workflow wrote: issue 12's must-show checks.

Runs every analysis of `galcat.analysis` (as the workflow's rules do, through the
``galcat`` command line) on a catalogue, into a directory, timing each one (wall and
CPU), then prints the merger fraction per bin (observed, corrected, true, and whether
the true fraction lies in the corrected 95% interval), the MZR coefficients from the
predicted and the true metallicities against the measured masses with their pulls
against the input relation, the scatter ratio, and the seed papers' table; then one
line of JSON.

    .venv/bin/python bench/science_analyses.py \\
        [--catalogue results/synthetic/catalogue.parquet] [--configfile config/science.yaml]
        [--cutouts results/synthetic/cutouts] [--output /tmp/analysis]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pandas as pd
import yaml

from galcat import cli
from galcat.analysis import FIGURES
from galcat.config import deep_merge, load_config


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_all(catalogue: Path, config: dict, out: Path, cutouts: list[str]) -> dict[str, dict]:
    """Run every analysis; {name: {"wall_s", "cpu_s"}}."""
    timing = {}
    for name, figures in FIGURES.items():
        argv = [name.replace("_", "-"), "--config-json", json.dumps(config),
                "--catalogue", str(catalogue), "--output-json", str(out / f"{name}.json")]
        if figures:
            argv += ["--output-png", *(str(out / f"{f}.png") for f in figures)]
        if name == "r50_validation" and cutouts:
            argv += ["--cutouts", *cutouts]
        if name == "seed_papers":
            argv += ["--analyses", *(str(out / f"{n}.json") for n in FIGURES if n != name)]
        wall, cpu = time.perf_counter(), _cpu()
        assert cli.main(argv) == 0, name
        timing[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu}
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", default="results/synthetic/catalogue.parquet")
    parser.add_argument("--configfile", nargs="*", default=[])
    parser.add_argument("--cutouts", default=None, help="directory of the run's Zarr shards")
    parser.add_argument("--output", default="/tmp/galcat_bench_analysis")
    args = parser.parse_args()
    # galcat's own loader refuses YAML merge keys (config/science.yaml has them): read
    # the files with PyYAML and let load_config validate and fill the defaults
    merged: dict = {}
    for path in args.configfile:
        merged = deep_merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    config = load_config(overrides=merged)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cutouts = sorted(str(p) for p in Path(args.cutouts).glob("*.zarr")) if args.cutouts else []
    timing = run_all(Path(args.catalogue), config, out, cutouts)
    doc = {name: json.loads((out / f"{name}.json").read_text()) for name in FIGURES}

    print("time per analysis:")
    print(pd.DataFrame(timing).T.round(2).to_string())
    merger = doc["merger_fraction"]
    summary: dict = {"catalogue": args.catalogue, "n_objects": merger["n_objects"],
                     "cpu_s_total": round(sum(t["cpu_s"] for t in timing.values()), 2)}
    for route, res in merger["routes"].items():
        print(f"\nmerger fraction, route {route} (selected {res['n_selected']}, purity "
              f"{res.get('purity')}, completeness {res.get('completeness')}):")
        for key in ("redshift", "mass", "all"):
            print(pd.DataFrame(res[key]).round(4).to_string(index=False))
        summary[f"merger_{route}_corrected_agrees_every_bin"] = res.get(
            "corrected_agrees_in_every_bin")
        summary[f"merger_{route}_observed_agrees_every_bin"] = res.get(
            "observed_agrees_in_every_bin")
    summary["merger_balanced_threshold"] = merger.get("balanced_threshold")
    summary["merger_test_split"] = merger.get("test_split")
    mzr = doc["mzr"]
    print(f"\nMZR ({mzr['fit']}, {mzr['split']} split, {mzr['n_objects']} objects):")
    if not mzr["fits"]:
        print(f"  {mzr.get('status')}")
    for name, fit in mzr["fits"].items():
        rel = fit.get("input_relation", {})
        print(f"  {name:9s} coefficients {[round(c, 3) for c in fit['coefficients']]} "
              f"+- {[round(e, 3) for e in fit['errors']]}; pulls "
              f"{[round(p, 2) for p in rel.get('pulls', [])]}, p = {rel.get('p_value')}, "
              f"recovered {rel.get('recovered')}; scatter {fit['scatter_rms']:.4f} dex")
        ols = fit["ordinary_least_squares"].get("input_relation", {})
        print(f"            ordinary least squares: pulls "
              f"{[round(p, 2) for p in ols.get('pulls', [])]}, recovered {ols.get('recovered')}")
        summary[f"mzr_{name}_recovered"] = rel.get("recovered")
        summary[f"mzr_{name}_scatter_dex"] = round(fit["scatter_rms"], 4)
    powered = mzr.get("prediction_powered")
    if powered:
        rel = powered.get("input_relation", {})
        print(f"  prediction-powered (bias from {powered['n_calibration']} labelled validation "
              f"galaxies): coefficients {[round(c, 3) for c in powered['coefficients']]} +- "
              f"{[round(e, 3) for e in powered['errors']]}; pulls "
              f"{[round(p, 2) for p in rel.get('pulls', [])]}, p = {rel.get('p_value')}, "
              f"recovered {rel.get('recovered')}")
        summary["mzr_prediction_powered_recovered"] = rel.get("recovered")
    if "scatter_ratio" in mzr:
        print(f"  scatter ratio predicted / true = {mzr['scatter_ratio']:.3f} "
              "(Wu & Boada 2019: 0.877)")
        summary["mzr_scatter_ratio"] = round(mzr["scatter_ratio"], 4)
        summary["metallicity_rmse_dex"] = round(mzr["metallicity_rmse"], 4)
    print("\nseed papers:")
    print(pd.DataFrame(doc["seed_papers"]["table"]).to_string(index=False))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
