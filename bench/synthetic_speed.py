"""Speed of the synthetic survey: query (population + truth) and cutout rendering.

Targets: query of 1,000,000 objects < 60 s; 200 cutouts (5 bands, 64x64) < 30 s
on one core. Prints a table, then one line of JSON.

    .venv/bin/python bench/synthetic_speed.py [--objects 1000000] [--cutouts 200]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from galcat.config import load_config
from galcat.surveys import synthetic as syn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--cutouts", type=int, default=200)
    args = parser.parse_args()

    cfg = load_config(overrides={"synthetic": {"n_objects": args.objects}})
    start = time.perf_counter()
    table = syn.query(copy.deepcopy(cfg))
    query_s = time.perf_counter() - start
    assert len(table) == args.objects

    small = load_config(overrides={"synthetic": {"n_objects": args.cutouts + 2}})
    rows = syn.query(small)
    syn.cutouts(rows.iloc[:2], small)  # GalSim's Sérsic tables and PSFs warm up once
    start = time.perf_counter()
    batch = syn.cutouts(rows.iloc[2 : 2 + args.cutouts], small)
    render_s = time.perf_counter() - start
    n, n_bands, ny, nx = batch.image.shape

    print(f"{'step':<28} {'count':>10} {'seconds':>9} {'per second':>11} {'goal [s]':>9}")
    print(f"{'query (population, truth)':<28} {args.objects:>10} {query_s:>9.2f} "
          f"{args.objects / query_s:>11.0f} {60:>9}")
    print(f"{f'cutouts ({n_bands} bands, {ny}x{nx})':<28} {n:>10} {render_s:>9.2f} "
          f"{n / render_s:>11.1f} {30:>9}")
    print(json.dumps({
        "benchmark": "synthetic_speed",
        "query_objects": args.objects, "query_seconds": round(query_s, 2),
        "cutouts": n, "bands": n_bands, "cutout_seconds": round(render_s, 2),
        "galaxies_per_second_render": round(n / render_s, 2),
        "meets_goals": query_s < 60 and render_s < 30 * n / 200,
    }))


if __name__ == "__main__":
    main()
