"""Dask over the objects of one shard, with progress written to the job log.

A shard is split into blocks of ``objects_per_task`` objects; each block is one
Dask task (so that a task lasts well over 100 ms), and blocks are concatenated
in object order, so serial and parallel runs give identical results.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import dask
import dask.multiprocessing
import dask.threaded
from dask.callbacks import Callback
from dask.local import get_sync
from threadpoolctl import threadpool_limits

__all__ = ["dask_options", "map_blocks_of_objects", "object_blocks"]

log = logging.getLogger("galcat.progress")
T = TypeVar("T")


def dask_options(config: Mapping | None, *, threads: int | None = None) -> dict:
    """Keyword arguments of `map_blocks_of_objects` from a config's ``dask`` section.

    Parameters
    ----------
    config : mapping or None
        A galcat config (or the part of one that holds ``dask``); missing keys
        take the schema defaults.
    threads : int, optional
        The cores of the job running this (a Snakemake rule's threads, set by
        the profile): they decide the number of workers inside the job.
    """
    from galcat.config import settings

    section = settings(config, "dask")
    return {
        "objects_per_task": section["objects_per_task"],
        "scheduler": section["scheduler"],
        "workers": int(threads) if threads else section["workers"],
        "slurm_cluster": dict(section["slurm_cluster"]),
    }


def object_blocks(n_objects: int, objects_per_task: int) -> list[slice]:
    """Slices that cover ``range(n_objects)`` in blocks of ``objects_per_task``."""
    if objects_per_task < 1:
        raise ValueError(f"objects_per_task must be >= 1; got {objects_per_task}")
    return [
        slice(start, min(start + objects_per_task, n_objects))
        for start in range(0, n_objects, objects_per_task)
    ]


def map_blocks_of_objects(
    func: Callable[[slice], T],
    n_objects: int,
    *,
    objects_per_task: int = 8,
    scheduler: str = "threads",
    workers: int = 1,
    label: str = "objects",
    slurm_cluster: dict | None = None,
    preload: Sequence[str] = (),
) -> list[T]:
    """Run ``func(block)`` over blocks of objects with Dask; results in block order.

    Progress ("label: k/n objects") is logged as blocks finish, so a user tailing
    the log of a cluster job sees it move.

    Parameters
    ----------
    func : callable
        Takes a ``slice`` of object positions and returns that block's result.
    n_objects : int
    objects_per_task : int, optional
        Objects per Dask task. Default 8.
    scheduler : {'threads', 'processes', 'synchronous', 'slurm'}, optional
        ``slurm`` starts a dask-jobqueue ``SLURMCluster`` for very large shards.
    workers : int, optional
        Number of Dask workers. Default 1.
    label : str, optional
        Name used in progress lines.
    slurm_cluster : dict, optional
        With ``scheduler='slurm'``: ``jobs`` plus SLURMCluster keywords (cores,
        memory, walltime, queue, account).
    preload : sequence of str, optional
        Modules that ``func`` imports when it runs. With ``processes`` they are
        imported here before the pool starts its workers, which (forked, as on
        Linux) inherit them instead of each importing them again: statmorph costs
        ~1 s of CPU per worker, a good part of a short job. Default none.
    """
    blocks = object_blocks(n_objects, objects_per_task)
    if scheduler == "slurm":
        return _map_on_slurm(func, blocks, n_objects, label, dict(slurm_cluster or {}))
    if scheduler not in {"threads", "processes", "synchronous"}:
        raise ValueError(f"unknown dask scheduler {scheduler!r}")
    serial = scheduler == "synchronous" or workers <= 1
    progress = _Progress(label, blocks, n_objects)
    log.info("%s: 0/%d objects", label, n_objects)
    # One dask.compute over every block, progress from a Dask callback as each
    # block finishes. Handing blocks out in waves (a compute per wave) put a
    # barrier after each wave: the faster worker idled until the slower one
    # finished its last block, which cost ~10% of the 2-worker speed-up.
    # One BLAS thread per worker: the parallelism is over objects. OpenBLAS otherwise
    # starts a thread per core in every worker of every job on a node (with a
    # seven-column Sérsic Jacobian, since reverted, a serial measure used 1.8 cores and
    # 2 workers ran slower than 1).
    with _pool(scheduler, workers, serial, func, preload) as pool, progress, \
            threadpool_limits(limits=1, user_api="blas"):
        # With processes, ``func`` (and the shard it closes over) is shipped once
        # per worker process by the pool's initializer; each task carries only
        # its slice, so a task costs no more than its own objects.
        task_func = _call_installed if scheduler == "processes" and not serial else func
        tasks = [
            dask.delayed(task_func, pure=False)(block, dask_key_name=progress.key(i))
            for i, block in enumerate(blocks)
        ]
        results = dask.compute(*tasks, scheduler=_scheduler(scheduler, serial, pool))
    return list(results)


def _scheduler(name: str, serial: bool, pool) -> Callable:
    """Dask's scheduler function itself, not its name.

    Given a name, ``dask.compute`` imports ``distributed`` (~0.45 s of CPU, with
    tornado) to look for a client, in every job, every time; a function skips that.
    """
    if serial:
        return get_sync
    if name == "processes":
        # chunksize=1: one block per hand-out, or dask's default (6) gives one
        # worker most of the blocks and leaves the other idle
        return functools.partial(dask.multiprocessing.get, pool=pool, chunksize=1)
    return functools.partial(dask.threaded.get, pool=pool)


class _Progress(Callback):
    """Logs "label: k/n objects (s, objects/s)" as blocks finish, in the scheduler's thread."""

    def __init__(self, label: str, blocks: Sequence[slice], n_objects: int):
        super().__init__()
        self.label, self.n_objects = label, n_objects
        self.sizes = {self.key(i): b.stop - b.start for i, b in enumerate(blocks)}
        self.done = 0
        self.started = time.perf_counter()

    def key(self, i: int) -> str:
        return f"{self.label}-block-{i}"

    def _posttask(self, key, result, dsk, state, worker_id):
        if key not in self.sizes:
            return
        self.done += self.sizes[key]
        elapsed = time.perf_counter() - self.started
        log.info("%s: %d/%d objects (%.1f s, %.2f objects/s)", self.label, self.done,
                 self.n_objects, elapsed, self.done / elapsed if elapsed else 0.0)


_INSTALLED: list[Callable] = []


def _install(pickled: bytes) -> None:
    import cloudpickle

    threadpool_limits(limits=1, user_api="blas")  # as in map_blocks_of_objects
    _INSTALLED[:] = [cloudpickle.loads(pickled)]


def _call_installed(block: slice):
    return _INSTALLED[0](block)


def _pool(scheduler: str, workers: int, serial: bool, func: Callable, preload: Sequence[str]):
    if serial:
        return contextlib.nullcontext()
    if scheduler == "processes":
        import cloudpickle

        for name in preload:
            importlib.import_module(name)

        return concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, initializer=_install, initargs=(cloudpickle.dumps(func),)
        )
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers)


def _map_on_slurm(
    func: Callable[[slice], T], blocks: list[slice], n_objects: int, label: str, options: dict
) -> list[T]:
    """Run the blocks on Dask workers that are themselves SLURM jobs."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client, as_completed

    jobs = int(options.pop("jobs", 1))
    worker_wait_s = float(options.pop("worker_wait_s", 600))
    options = {k: v for k, v in options.items() if v not in (None, "")}
    # Worker job logs go next to the other logs, not into the working directory.
    options.setdefault("log_directory", os.path.join("logs", "dask-slurm"))
    start = time.perf_counter()
    hint = (f"check `squeue`, the sbatch errors logged above and the worker job logs "
            f"in {options['log_directory']!r}")
    try:
        with SLURMCluster(**options) as cluster, Client(cluster) as client:
            cluster.scale(jobs=jobs)
            log.info("%s: SLURMCluster with %d job(s): %s", label, jobs, cluster.job_script())
            try:
                client.wait_for_workers(1, timeout=worker_wait_s)
            except TimeoutError as exc:
                raise RuntimeError(
                    f"{label}: no Dask worker joined within {worker_wait_s:.0f} s; {hint}"
                ) from exc
            futures = client.map(func, blocks, pure=False)
            position = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(blocks)
            done = 0
            log.info("%s: 0/%d objects", label, n_objects)
            for fut in as_completed(futures):
                i = position[fut.key]
                results[i] = fut.result()
                done += blocks[i].stop - blocks[i].start
                log.info("%s: %d/%d objects (%.1f s)", label, done, n_objects,
                         time.perf_counter() - start)
    except RuntimeError:
        raise
    except Exception as exc:  # dask reports a failed sbatch only as a bad cluster state
        raise RuntimeError(f"{label}: the Dask SLURMCluster failed ({exc!r}); {hint}") from exc
    return results
