"""Photometric stellar mass of a catalogue against the synthetic truth.

Goal (issue 12): median |Δ log M*| ≤ 0.1 dex on the default run. Reads the catalogue
the workflow wrote (run ``make run`` first) and prints, overall and per bin of type,
redshift, model S/N and neighbours, the number of galaxies, the median Δ (bias), the
median |Δ|, the NMAD scatter and the fraction of galaxies within their 1-sigma error;
then one line of JSON.

    .venv/bin/python bench/stellar_mass.py [--catalogue results/synthetic/catalogue.parquet]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from galcat.report import STELLAR_MASS_GOAL_DEX, truth_comparisons
from galcat.tables import read_table, table_metadata

PAIR = [("log_mass_phot", "truth_log_mass", "log M*", "difference")]


def _row(label: str, cat: pd.DataFrame) -> dict:
    scored = truth_comparisons(cat, pairs=PAIR).iloc[0]
    delta = cat["log_mass_phot"] - cat["truth_log_mass"]
    inside = (delta.abs() <= cat["log_mass_phot_err"])[delta.notna()]
    return {"bin": label, "n": int(scored["n"]), "median_delta": scored["median_bias"],
            "median_abs_delta": scored["median_abs_error"], "nmad": scored["scatter_nmad"],
            "within_1sigma": float(inside.mean()) if len(inside) else np.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", default="results/synthetic/catalogue.parquet")
    args = parser.parse_args()
    cat = read_table(args.catalogue)
    relation = table_metadata(args.catalogue).get("mass_to_light", "?")
    ok = cat["log_mass_phot_flag"] == 0
    snr = 1.0857 / cat["mag_model_err_r"]
    neighbour = cat["truth_merger"] | cat["truth_projection"]
    bins = [("all with a mass", cat), ("flag = 0", cat[ok]),
            ("early type", cat[cat["truth_type"] == "early"]),
            ("late type", cat[cat["truth_type"] == "late"]),
            ("z < 0.08", cat[cat["z"] < 0.08]), ("z >= 0.08", cat[cat["z"] >= 0.08]),
            ("model S/N (r) < 50", cat[snr < 50]), ("model S/N (r) >= 50", cat[snr >= 50]),
            ("merger or projection", cat[neighbour]), ("isolated", cat[~neighbour])]
    rows = [_row(label, part) for label, part in bins if len(part)]
    print(f"{len(cat)} galaxies, relation {relation}; {int(cat['log_mass_phot'].notna().sum())} "
          f"with a mass; flags set: {int((~ok).sum())}")
    print(f"{'bin':<24} {'n':>6} {'median Δ':>9} {'median |Δ|':>11} {'NMAD':>7} {'in 1σ':>7}")
    for r in rows:
        print(f"{r['bin']:<24} {r['n']:>6} {r['median_delta']:>+9.3f} "
              f"{r['median_abs_delta']:>11.3f} {r['nmad']:>7.3f} {r['within_1sigma']:>7.2f}")
    overall = rows[0]
    print(f"goal: median |Δ log M*| <= {STELLAR_MASS_GOAL_DEX} dex")
    print(json.dumps({
        "benchmark": "stellar_mass", "catalogue": args.catalogue, "relation": relation,
        "n": overall["n"], "median_delta_dex": round(overall["median_delta"], 4),
        "median_abs_delta_dex": round(overall["median_abs_delta"], 4),
        "nmad_dex": round(overall["nmad"], 4),
        "within_1sigma": round(overall["within_1sigma"], 3),
        "goal_median_abs_delta_dex": STELLAR_MASS_GOAL_DEX,
        "meets_goal": bool(overall["median_abs_delta"] <= STELLAR_MASS_GOAL_DEX),
    }))


if __name__ == "__main__":
    main()
