"""Time `snakemake -n` (DAG planning) for surveys of growing size.

The job count must grow with the number of shards, never with galaxies.
Prints a table, then one line of JSON with the figures.

    .venv/bin/python bench/dag_plan.py --objects 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def plan(n_objects: int, objects_per_shard: int, workdir: Path) -> dict:
    cfg = {
        "synthetic": {"n_objects": n_objects},
        "sharding": {"objects_per_shard": objects_per_shard},
        "results": "results",
    }
    cfg_path = workdir / f"plan_{n_objects}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(ROOT / "config" / "config.yaml"), str(cfg_path),
        "--cores", "1", "-n", "--quiet", "rules",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"snakemake -n failed for {n_objects} objects")
    counts = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    n_shards = -(-n_objects // objects_per_shard)
    total = counts.pop("total", sum(counts.values()))
    return {
        "objects": n_objects,
        "objects_per_shard": objects_per_shard,
        "shards": n_shards,
        "jobs": total,
        "jobs_per_shard": total / n_shards,
        "plan_seconds": round(elapsed, 2),
        "jobs_by_rule": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--objects-per-shard", type=int, default=None,
                        help="shard size; default: the one in config/config.yaml")
    args = parser.parse_args()
    if args.objects_per_shard is None:
        default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        args.objects_per_shard = default["sharding"]["objects_per_shard"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.objects:
            rows.append(plan(n, args.objects_per_shard, Path(tmp)))
    print(f"{'objects':>10} {'shards':>8} {'jobs':>8} {'jobs/shard':>10} {'plan [s]':>9}")
    for r in rows:
        print(f"{r['objects']:>10} {r['shards']:>8} {r['jobs']:>8} "
              f"{r['jobs_per_shard']:>10.3f} {r['plan_seconds']:>9.2f}")
    largest = max(rows, key=lambda r: r["objects"])
    summary = {
        "benchmark": "dag_plan",
        "rows": rows,
        "largest_objects": largest["objects"],
        "largest_plan_seconds": largest["plan_seconds"],
        "goal_plan_seconds": 60,
        "meets_goal": largest["plan_seconds"] < 60,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
