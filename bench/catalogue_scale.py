"""Catalogue build at survey scale: time and peak memory for 10⁴, 10⁵ and 10⁶ galaxies.

Issue 15: the catalogue (objects ⋈ features + stellar masses, published as Parquet,
FITS and VOTable; `galcat.catalogue.build_catalogue`) streams over the shards, so its
peak memory must stay flat (within 20%) from 10⁴ to 10⁶ rows and its time grow
linearly.

For each size the script writes synthetic inputs the way the workflow does: an object
table with every column of the synthetic survey (rows of a real `synthetic.query`
repeated with new ids, units and descriptions as ``query_catalog`` writes them) and
one features table per shard of ``sharding.objects_per_shard`` objects (default 200:
5000 files for 10⁶) with every column ``measure`` writes (segment, morphology and model
photometry columns with their metadata; random values in the ranges they take). Then
it builds the catalogue in a fresh subprocess and reports that process's wall and CPU
time and its peak resident memory (``VmHWM``), and the catalogue's size on disk.

Prints a table, then ONE line of JSON.

    .venv/bin/python bench/catalogue_scale.py [--sizes 10000 100000 1000000]
        [--objects-per-shard 200] [--batch-rows 8192] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

GOAL_MEMORY_SPREAD = 0.20
#: Linear time: the CPU per extra row between successive sizes agrees within this.
GOAL_TIME_SPREAD = 0.20
#: Objects generated per chunk while writing the inputs (memory of the generator only).
CHUNK = 50_000


def _object_template():
    """Rows of the synthetic survey and the metadata query_catalog writes them with."""
    from galcat.config import load_config
    from galcat.surveys import synthetic

    cfg = load_config(overrides={"synthetic": {"n_objects": 2000}})
    rows = synthetic.query(cfg).reset_index(drop=True)
    return rows, synthetic.COLUMN_UNITS, synthetic.COLUMN_DESCRIPTIONS


def _feature_template(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, dict, dict]:
    """``n`` rows with every column measure writes (values in their usual ranges)."""
    from galcat import photometry
    from galcat.morphology import FEATURE_DESCRIPTIONS, FEATURE_UNITS, MEASURE_COLUMNS
    from galcat.segment import SEGMENT_COLUMN_DESCRIPTIONS, SEGMENT_COLUMNS, segment_column_units

    int_columns = {"statmorph_flag", "sersic_flag", "r50_mass_flag", "flag"}
    data = {}
    for name in SEGMENT_COLUMNS:
        if name != "object_id":
            data[name] = (rng.integers(0, 8, n) if name.endswith(("flag", "sources", "area"))
                          else rng.normal(1.0, 0.3, n))
    for name in MEASURE_COLUMNS:
        data[name] = rng.integers(0, 4, n) if name in int_columns else rng.lognormal(0, 0.5, n)
    mags = photometry.column_names(["r", "g"])
    for name in mags:
        data[name] = rng.normal(0.02, 0.005, n) if "_err_" in name else rng.normal(17.5, 1.0, n)
    df = pd.DataFrame(data)
    mag_units, mag_descriptions = photometry.column_docs(mags)
    units = {**segment_column_units("nanomaggy"), **FEATURE_UNITS, **mag_units}
    descriptions = {**SEGMENT_COLUMN_DESCRIPTIONS, **FEATURE_DESCRIPTIONS, **mag_descriptions}
    return df, units, descriptions


def make_inputs(directory: Path, n: int, objects_per_shard: int, seed: int = 15) -> list[Path]:
    """objects.parquet and features/s*.parquet for ``n`` objects; returns the features."""
    from galcat.sharding import shard_name
    from galcat.tables import TableWriter, table_schema

    rng = np.random.default_rng(seed)
    template, units, descriptions = _object_template()
    directory.mkdir(parents=True, exist_ok=True)
    schema = None
    writer = None
    try:
        for start in range(0, n, CHUNK):
            ids = np.arange(start + 1, min(start + CHUNK, n) + 1, dtype=np.int64)
            rows = template.iloc[(ids - 1) % len(template)].reset_index(drop=True)
            rows["object_id"] = ids
            rows["shard"] = [shard_name(int(k)) for k in (ids - 1) // objects_per_shard]
            if schema is None:
                schema = table_schema(rows, units=units, descriptions=descriptions,
                                      metadata={"survey": "synthetic"},
                                      string_lengths={"shard": 7, "truth_type": 5})
                writer = TableWriter(directory / "objects.parquet", schema).__enter__()
            writer.write(rows)
    finally:
        if writer is not None:
            writer.__exit__(None, None, None)
    feat, f_units, f_desc = _feature_template(objects_per_shard, rng)
    features_dir = directory / "features"
    features_dir.mkdir(exist_ok=True)
    paths = []
    f_schema = None
    for k, start in enumerate(range(0, n, objects_per_shard)):
        size = min(objects_per_shard, n - start)
        part = feat.iloc[:size].copy()
        part.insert(0, "object_id", np.arange(start + 1, start + size + 1, dtype=np.int64))
        if f_schema is None:
            f_schema = table_schema(part, units=f_units, descriptions=f_desc,
                                    metadata={"stage": "measure", "shard": "bench"})
        path = features_dir / f"{shard_name(k)}.parquet"
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False).cast(f_schema), path)
        paths.append(path)
    return paths


def _peak_rss_kib() -> float:
    """This process's peak resident memory (KiB): ``VmHWM``, the high-water mark of its
    own address space. Not ``ru_maxrss``: Linux carries that over ``execve`` from the
    forked parent, so a child started by a parent that had just written 10⁵ rows of
    inputs reported the parent's peak (374 MiB for every size from 10⁵ up)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _child(directory: Path, batch_rows: int) -> None:
    """Build the catalogue of ``directory`` in this process; print its costs as JSON."""
    from galcat.catalogue import build_catalogue

    features = sorted((directory / "features").glob("*.parquet"))
    wall, cpu = time.perf_counter(), time.process_time()
    summary = build_catalogue(
        directory / "objects.parquet", features, config_hash="0" * 16, survey="synthetic",
        output_parquet=directory / "catalogue.parquet",
        output_fits=directory / "catalogue.fits", output_votable=directory / "catalogue.vot",
        batch_rows=batch_rows)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kib = _peak_rss_kib()
    print(json.dumps({"rows": summary.rows, "columns": len(summary.columns), "wall_s": wall,
                      "cpu_s": cpu, "peak_rss_mib": peak_kib / 1024.0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--objects-per-shard", type=int, default=200)
    parser.add_argument("--batch-rows", type=int, default=None,
                        help="objects per batch of the build (default galcat's BATCH_ROWS)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the inputs and catalogues here (kept); default a temp dir")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from galcat.catalogue import BATCH_ROWS

    batch_rows = args.batch_rows or BATCH_ROWS
    if args.child is not None:
        _child(args.child, batch_rows)
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="catalogue_scale_"))
    results = []
    try:
        for n in args.sizes:
            directory = root / f"n{n}"
            t0 = time.perf_counter()
            n_files = len(make_inputs(directory, n, args.objects_per_shard))
            made = time.perf_counter() - t0
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(directory),
                 "--batch-rows", str(batch_rows)],
                capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"catalogue build of {n} rows failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            sizes = {s: (directory / f"catalogue.{s}").stat().st_size / 2**20
                     for s in ("parquet", "fits", "vot")}
            row.update(n=n, feature_files=n_files, inputs_s=made,
                       output_mib={k: round(v, 1) for k, v in sizes.items()})
            results.append(row)
            print(f"  {n:>9} rows: {row['wall_s']:.1f} s wall, {row['cpu_s']:.1f} s CPU, "
                  f"peak {row['peak_rss_mib']:.0f} MiB", flush=True)
            if args.keep is None:
                shutil.rmtree(directory)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    peaks = np.array([r["peak_rss_mib"] for r in results])
    spread = float(peaks.max() / peaks.min() - 1.0)
    per_row = [r["cpu_s"] / r["n"] * 1e6 for r in results]
    # linear time = a constant cost per extra row; the build's fixed cost (imports done,
    # headers, the first batch) makes the average per row fall with size instead
    marginal = [1e6 * (b["cpu_s"] - a["cpu_s"]) / (b["n"] - a["n"])
                for a, b in zip(results, results[1:], strict=False)]
    linear = float(max(marginal) / min(marginal) - 1.0) if len(marginal) > 1 else 0.0
    print(f"\ncatalogue build (galcat.catalogue.build_catalogue, batch {batch_rows} objects; "
          f"{args.objects_per_shard} objects per features file; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"{'rows':>9} {'files':>6} {'wall s':>8} {'CPU s':>8} {'us/row CPU':>11} "
          f"{'peak MiB':>9} {'parquet MiB':>12} {'fits MiB':>9} {'vot MiB':>8}")
    for r, us in zip(results, per_row, strict=True):
        print(f"{r['n']:>9} {r['feature_files']:>6} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
              f"{us:11.1f} {r['peak_rss_mib']:9.0f} {r['output_mib']['parquet']:12.1f} "
              f"{r['output_mib']['fits']:9.1f} {r['output_mib']['vot']:8.1f}")
    print(f"peak memory spread (max/min - 1): {100 * spread:.1f}% (goal <= "
          f"{100 * GOAL_MEMORY_SPREAD:.0f}%); CPU per extra row between sizes: "
          f"{', '.join(f'{m:.0f}' for m in marginal)} us, spread {100 * linear:.1f}% (goal <= "
          f"{100 * GOAL_TIME_SPREAD:.0f}%: linear time)")
    print(json.dumps({
        "benchmark": "catalogue_scale", "sizes": [r["n"] for r in results],
        "batch_rows": batch_rows, "objects_per_shard": args.objects_per_shard,
        "columns": results[0]["columns"] if results else None,
        "wall_s": [round(r["wall_s"], 2) for r in results],
        "cpu_s": [round(r["cpu_s"], 2) for r in results],
        "cpu_us_per_row": [round(x, 2) for x in per_row],
        "peak_rss_mib": [round(float(p), 1) for p in peaks],
        "peak_memory_spread": round(spread, 4), "goal_memory_spread": GOAL_MEMORY_SPREAD,
        "pass_memory": bool(spread <= GOAL_MEMORY_SPREAD),
        "cpu_us_per_extra_row": [round(x, 2) for x in marginal],
        "marginal_cpu_spread": round(linear, 4),
        "goal_marginal_cpu_spread": GOAL_TIME_SPREAD,
        "pass_linear_time": bool(linear <= GOAL_TIME_SPREAD),
        "output_mib": [r["output_mib"] for r in results],
    }))


if __name__ == "__main__":
    main()
