"""Throughput of segment and measure on one synthetic shard, and our wrapper's overhead.

Three figures (issue 3):

1. **Galaxies per second per core** of `segment_shard` (each method) and of
   `measure_shard` (default config: statmorph + half-mass radius), run serially
   (``synchronous`` scheduler): galaxies / CPU seconds of this process, so that other
   load on the machine does not count; wall seconds are printed too.
2. **Speed-up of measure from 1 to 2 Dask workers** on the same shard (goal >= 1.8x):
   wall time of ``measure_shard`` with 1 worker over 2 workers, for the ``threads``
   and ``processes`` schedulers as `galcat.parallel.map_blocks_of_objects` runs them,
   each the best of ``--repeat`` interleaved rounds. Two more rows try fixes: dask's
   multiprocessing scheduler hands ready tasks to workers in chunks of
   ``dask.config['chunksize']`` = 6, so a wave of 8 blocks goes 6 to one worker and 2 to
   the other; ``processes chunksize=1`` runs `measure_shard` unchanged under
   ``dask.config.set(chunksize=1)``, and ``processes chunksize=1+zarr`` also lets each
   block read only its objects from the shard's Zarr group (`galcat.store.read_cutouts`
   with ``objects=``) instead of receiving the whole pickled shard with every task. CPU time (this process + its worker processes) over
   wall time says how many cores were actually busy. Wall-clock speed-ups need two idle
   cores: the load average is printed before and after.
3. **Per-galaxy overhead of `galcat.morphology.measure_object`** over statmorph alone,
   like for like: our wrapper with ``measure.half_mass`` and ``measure.sersic_refine``
   off and ``measure.r50_model = sersic`` (no bulge + disc fit) (checks, optional background, one ``statmorph.SourceMorphology`` of label 1,
   column conversion and flags) against ``statmorph.source_morphology`` called directly
   on the very arrays the wrapper handed statmorph (recorded by standing in for
   `morphology.run_statmorph`): image, sigma map, normalised PSF and mask (bad pixels +
   neighbours), with a segmap holding only label 1 so that it measures only the central
   galaxy as our wrapper does; the columns of both are checked to be identical. CPU time
   per call (`time.process_time`), galaxy by galaxy. Also printed: the overhead over the
   statmorph call inside the wrapper. The cost of the optional extras (half-mass radius,
   Sérsic refit, bulge + disc fit) shows in the serial rows of item 1 ("ring colours +
   Sersic r50" is the default without the bulge + disc fit). Goal <= 10%.

Prints a table, then ONE line of JSON.

    .venv/bin/python bench/measure_throughput.py [--n 128] [--overhead-n 60] [--repeat 2]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from galcat import morphology, photometry
from galcat.config import load_config
from galcat.parallel import map_blocks_of_objects
from galcat.segment import METHODS, segment_shard
from galcat.store import CutoutBatch, read_cutouts, write_cutouts
from galcat.surveys import synthetic

GOAL_SPEEDUP = 1.8
GOAL_OVERHEAD = 0.10


def _cpu_all() -> float:
    """CPU seconds of this process plus its finished (reaped) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Timer:
    def __enter__(self):
        self.wall, self.cpu, self.cpu_all = time.perf_counter(), time.process_time(), _cpu_all()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.cpu_all = _cpu_all() - self.cpu_all


def _measure_zarr_block(path: str, segmap_path: str, settings: dict, block: slice) -> list:
    """One block of objects read from the Zarr shard in the worker (no pickled shard)."""
    batch = read_cutouts(path, objects=block)
    segmap = np.load(segmap_path, mmap_mode="r")[block]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [morphology.measure_object(batch, i, np.asarray(segmap[i]), settings=settings)
                for i in range(batch.n_objects)]


def _head(batch: CutoutBatch, k: int) -> CutoutBatch:
    """The first ``k`` objects of a batch."""
    per_object = {name: getattr(batch, name)[:k]
                  for name in ("cut_size", "cut_origin", "cut_wcs")
                  if getattr(batch, name) is not None}
    return dataclasses.replace(
        batch, object_id=batch.object_id[:k], image=batch.image[:k], sigma=batch.sigma[:k],
        mask=batch.mask[:k], extras={key: a[:k] for key, a in batch.extras.items()},
        **per_object,
    )


def _quiet() -> None:
    warnings.simplefilter("ignore")
    from astropy import log as astropy_log

    astropy_log.setLevel("ERROR")


def _measure(batch, segmap, cfg, scheduler, workers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return morphology.measure_shard(batch, segmap, config=cfg, scheduler=scheduler,
                                        workers=workers, label=f"measure[{scheduler}]")


class _Recorder:
    """Stands in for `morphology.run_statmorph`: runs it, keeps its inputs and CPU time."""

    def __init__(self, original):
        self.original = original
        self.calls: list[tuple[tuple, float]] = []

    def __call__(self, image, segmap, sigma, mask, psf, **options):
        c0 = time.process_time()
        morph = self.original(image, segmap, sigma, mask, psf, **options)
        self.calls.append(((image, segmap, sigma, mask, psf), time.process_time() - c0))
        return morph


def _direct(inputs, pixel_scale):
    """statmorph.source_morphology on the inputs our wrapper gave statmorph, label 1 only."""
    import statmorph

    image, segmap, sigma, mask, psf = inputs
    (morph,) = statmorph.source_morphology(
        image, (np.asarray(segmap) == 1).astype(np.int64), mask=mask, weightmap=sigma, psf=psf
    )
    morphology.statmorph_columns(morph, pixel_scale)  # what our columns read
    return morph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="galaxies in the shard (128)")
    parser.add_argument("--overhead-n", type=int, default=60,
                        help="galaxies for the wrapper-overhead comparison (60)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of the 1- and 2-worker runs; the best wall time counts (2)")
    parser.add_argument("--objects-per-task", type=int, default=None,
                        help="Dask block size (default: the config's, 8)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _quiet()

    overrides = {"synthetic": {"n_objects": args.n}}
    if args.objects_per_task:
        overrides["dask"] = {"objects_per_task": args.objects_per_task}
    cfg = load_config(overrides=overrides)
    rows = synthetic.query(cfg).copy()
    load_before = os.getloadavg()
    with _Timer() as t_render:
        batch = synthetic.cutouts(rows, cfg)
    n = batch.n_objects
    size = batch.image.shape[-1]
    report: dict = {"benchmark": "measure_throughput", "n_galaxies": n,
                    "cutout": f"{len(batch.bands)}x{size}x{size}", "cpu_count": os.cpu_count(),
                    "load_before": [round(x, 2) for x in load_before]}

    # 1. serial throughput -----------------------------------------------------------
    seg_rows = []
    segmaps = {}
    for method in METHODS:
        mcfg = copy.deepcopy(cfg)
        mcfg["segment"]["method"] = method
        mcfg["dask"]["scheduler"] = "synchronous"
        segment_shard(_head(batch, 4), config=mcfg)  # warm-up: imports, kernels
        with _Timer() as t:
            segmaps[method] = segment_shard(batch, config=mcfg).segmap
        seg_rows.append((f"segment[{method}]", t))
    segmap = segmaps[cfg["segment"]["method"]]
    # warm-up (imports, statmorph's and GalSim's caches) outside the timed runs
    _measure(_head(batch, 2), segmap[:2], cfg, "synchronous", 1)

    ring_routes = copy.deepcopy(cfg)  # the ring-colour half-mass and single-Sersic r50
    ring_routes["measure"].update(half_mass_colour_model="gradient", r50_model="sersic")
    with _Timer() as t_rings:
        _measure(batch, segmap, ring_routes, "synchronous", 1)
    half_off = copy.deepcopy(cfg)
    half_off["measure"]["half_mass"] = False
    with _Timer() as t_no_half:
        _measure(batch, segmap, half_off, "synchronous", 1)
    t_sm_only = None
    if "sersic_refine" in morphology.DEFAULTS and morphology.measure_settings(cfg)[
            "sersic_refine"]:
        half_off["measure"]["sersic_refine"] = False
        with _Timer() as t_sm_only:
            _measure(batch, segmap, half_off, "synchronous", 1)

    # 2. speed-up 1 -> 2 workers: rounds of (serial, threads, processes, processes+zarr),
    # the best wall time of each over --repeat rounds (other load only ever slows a run)
    settings = morphology.measure_settings(cfg, batch.bands)
    runs: dict[str, list[tuple[_Timer, pd.DataFrame]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        zpath = str(Path(tmp) / "shard.zarr")
        write_cutouts(zpath, batch, shard="bench")
        spath = str(Path(tmp) / "segmap.npy")
        np.save(spath, segmap)

        def chunk1(run):
            def wrapped():
                with dask.config.set({"chunksize": 1}):
                    return run()
            return wrapped

        def zarr_run() -> pd.DataFrame:
            blocks = map_blocks_of_objects(
                functools.partial(_measure_zarr_block, zpath, spath, settings), n,
                objects_per_task=int(cfg["dask"]["objects_per_task"]),
                scheduler="processes", workers=2, label="measure[processes+zarr]",
            )
            columns = ["object_id", *morphology.MEASURE_COLUMNS, *photometry.column_names(
                morphology.photometry_bands(settings, batch.bands))]
            return pd.DataFrame.from_records([r for b in blocks for r in b], columns=columns)

        variants = {
            "serial": lambda: _measure(batch, segmap, cfg, "synchronous", 1),
            "threads": lambda: _measure(batch, segmap, cfg, "threads", 2),
            "processes": lambda: _measure(batch, segmap, cfg, "processes", 2),
            "processes chunksize=1": chunk1(
                lambda: _measure(batch, segmap, cfg, "processes", 2)),
            "processes chunksize=1+zarr": chunk1(zarr_run),
        }
        for _ in range(max(1, args.repeat)):
            for name, run in variants.items():
                with _Timer() as t:
                    table = run()
                runs.setdefault(name, []).append((t, table))
    t_serial, serial_table = min(runs.pop("serial"), key=lambda r: r[0].wall)
    speed = {}
    for name, results in runs.items():
        t, table = min(results, key=lambda r: r[0].wall)
        table = table.astype(serial_table.dtypes.to_dict())
        speed[name] = (t, table.equals(serial_table))

    # 3. wrapper overhead ---------------------------------------------------------------
    bare = copy.deepcopy(cfg)
    bare["measure"]["half_mass"] = False
    bare["measure"]["r50_model"] = "sersic"  # no bulge + disc fit: an optional extra
    if "sersic_refine" in morphology.DEFAULTS:
        bare["measure"]["sersic_refine"] = False
    settings_bare = morphology.measure_settings(bare, batch.bands)
    m = min(args.overhead_n, n)
    t_wrap, t_inside, t_direct, mismatches, usable = [], [], [], 0, 0
    recorder = _Recorder(morphology.run_statmorph)
    morphology.run_statmorph = recorder
    try:
        for i in range(n):
            if usable >= m:
                break
            if not (segmap[i] == 1).any():
                continue
            before = len(recorder.calls)
            c0 = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = morphology.measure_object(batch, i, segmap[i], settings=settings_bare)
            wrap = time.process_time() - c0
            if len(recorder.calls) != before + 1:
                continue  # statmorph was not run (flagged before it)
            usable += 1
            inputs, inside = recorder.calls[-1]
            c0 = time.process_time()
            morph = _direct(inputs, batch.pixel_scale)
            t_direct.append(time.process_time() - c0)
            t_wrap.append(wrap)
            t_inside.append(inside)
            cols, _ = morphology.statmorph_columns(morph, batch.pixel_scale)
            for k in ("r50", "gini", "asymmetry", "sersic_n"):
                if not np.isclose(row[k], cols[k], rtol=1e-9, atol=0.0, equal_nan=True):
                    mismatches += 1
                    break
    finally:
        morphology.run_statmorph = recorder.original
    t_wrap, t_inside, t_direct = np.array(t_wrap), np.array(t_inside), np.array(t_direct)
    overhead_total = t_wrap.sum() / t_direct.sum() - 1.0
    overhead_median = float(np.median(t_wrap - t_direct) / np.median(t_direct))
    overhead_inside = t_wrap.sum() / t_inside.sum() - 1.0
    load_after = os.getloadavg()

    # ---------------------------------------------------------------- printed table
    print(f"measure throughput: one synthetic shard of {n} galaxies "
          f"({len(batch.bands)} bands, {size}x{size}); {os.cpu_count()} cores; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; rendering took "
          f"{t_render.wall:.1f} s")
    print(f"\n{'step (serial)':<34} {'wall s':>8} {'CPU s':>8} {'gal/s/core':>11} "
          f"{'ms/gal CPU':>11}")
    serial_rows = [*seg_rows, ("measure (default config)", t_serial),
                   ("measure, ring colours + Sersic r50", t_rings),
                   ("measure, half_mass off", t_no_half)]
    if t_sm_only is not None:
        serial_rows.append(("measure, half_mass off, statmorph Sersic", t_sm_only))
    for name, t in serial_rows:
        print(f"{name:<34} {t.wall:8.2f} {t.cpu:8.2f} {n / t.cpu:11.2f} {1e3 * t.cpu / n:11.1f}")
    print(f"\n{'measure_shard, 2 workers':<28} {'wall s':>8} {'speed-up':>9} {'CPU s (all)':>12} "
          f"{'busy cores':>11} {'CPU-bound':>10} {'same table':>11} {'goal':>5}")
    print(f"{'1 worker (synchronous)':<28} {t_serial.wall:8.2f} {1.0:9.2f} "
          f"{t_serial.cpu_all:12.2f} {t_serial.cpu_all / t_serial.wall:11.2f} {'-':>10} {'-':>11}")
    speedups, bounds = {}, {}
    for name, (t, same) in speed.items():
        s = t_serial.wall / t.wall
        speedups[name] = s
        # with 2 idle cores and evenly split work, processes could reach this wall speed-up
        bound = 2 * t_serial.cpu_all / t.cpu_all if name.startswith("proc") else math.nan
        bounds[name] = bound
        print(f"{name:<28} {t.wall:8.2f} {s:9.2f} {t.cpu_all:12.2f} "
              f"{t.cpu_all / t.wall:11.2f} {bound:10.2f} {str(same):>11} {GOAL_SPEEDUP:5.1f}")
    print("(busy cores = CPU of this process and its workers / wall; CPU-bound = 2 x serial CPU /"
          " parallel CPU, the wall speed-up 2 idle cores would give with evenly split work; "
          "threads: n/a, the GIL serialises them)")
    print(f"\nwrapper overhead on {usable} galaxies: measure_object (half_mass and "
          "sersic_refine off) vs statmorph.source_morphology on the very inputs the wrapper "
          "gave statmorph (label-1 segmap, same mask, weight map and PSF), CPU time")
    print(f"{'':<36} {'median ms':>10} {'total s':>8}")
    print(f"{'statmorph.source_morphology direct':<36} {1e3 * np.median(t_direct):10.1f} "
          f"{t_direct.sum():8.2f}")
    print(f"{'statmorph inside measure_object':<36} {1e3 * np.median(t_inside):10.1f} "
          f"{t_inside.sum():8.2f}")
    print(f"{'galcat measure_object':<36} {1e3 * np.median(t_wrap):10.1f} {t_wrap.sum():8.2f}")
    print(f"overhead vs direct: {100 * overhead_total:+.1f}% of total CPU, "
          f"{100 * overhead_median:+.1f}% per galaxy (median); vs the statmorph call inside: "
          f"{100 * overhead_inside:+.1f}%; goal <= {100 * GOAL_OVERHEAD:.0f}%; galaxies whose "
          f"columns differ from the direct call: {mismatches}")

    report.update({
        "load_after": [round(x, 2) for x in load_after],
        "segment_galaxies_per_s_per_core": {name.split("[")[1][:-1]: round(n / t.cpu, 2)
                                            for name, t in seg_rows},
        "measure_galaxies_per_s_per_core": round(n / t_serial.cpu, 3),
        "measure_ring_colours_sersic_r50_galaxies_per_s_per_core": round(n / t_rings.cpu, 3),
        "measure_no_halfmass_galaxies_per_s_per_core": round(n / t_no_half.cpu, 3),
        "measure_statmorph_only_galaxies_per_s_per_core":
            round(n / t_sm_only.cpu, 3) if t_sm_only is not None else None,
        "measure_serial_wall_s": round(t_serial.wall, 2),
        "speedup_2_workers": {k: round(x, 3) for k, x in speedups.items()},
        "speedup_cpu_bound_estimate": {k: round(x, 3) for k, x in bounds.items()
                                       if np.isfinite(x)},
        "busy_cores": {k: round(t.cpu_all / t.wall, 2) for k, (t, _) in speed.items()},
        "speedup_same_table": {k: bool(same) for k, (_, same) in speed.items()},
        "goal_speedup": GOAL_SPEEDUP,
        "pass_speedup": {k: bool(x >= GOAL_SPEEDUP) for k, x in speedups.items()},
        # galcat as it is: the better of its threads and processes schedulers
        "pass_speedup_galcat": bool(max(speedups["threads"], speedups["processes"])
                                    >= GOAL_SPEEDUP),
        "pass_speedup_with_chunksize_1": bool(speedups["processes chunksize=1"]
                                              >= GOAL_SPEEDUP),
        "wrapper_overhead": round(float(overhead_total), 4),
        "wrapper_overhead_median": round(overhead_median, 4),
        "wrapper_overhead_vs_inner_call": round(float(overhead_inside), 4),
        "wrapper_overhead_galaxies": usable,
        "wrapper_result_mismatches": mismatches,
        "goal_overhead": GOAL_OVERHEAD,
        "pass_overhead": bool(overhead_total <= GOAL_OVERHEAD),
        "timing": "per-core rates and overhead: CPU time (process_time); speed-ups: wall time",
    })
    print(json.dumps(report))


if __name__ == "__main__":
    main()
