"""galcat.parallel: block order, progress lines and no barrier between blocks."""

from __future__ import annotations

import logging
import time

import pytest

from galcat.parallel import map_blocks_of_objects, object_blocks


def _positions(block: slice) -> list[int]:
    return list(range(block.start, block.stop))


def _timed_block(block: slice) -> tuple[int, float, float]:
    """Block 0 sleeps 1.5 s, every other block 0.05 s; returns (first, start, end)."""
    start = time.time()
    time.sleep(1.5 if block.start == 0 else 0.05)
    return block.start, start, time.time()


@pytest.mark.parametrize("scheduler,workers", [("synchronous", 1), ("threads", 2),
                                               ("processes", 2)])
def test_results_come_back_in_block_order_whatever_the_scheduler(scheduler, workers):
    blocks = map_blocks_of_objects(_positions, 23, objects_per_task=4, scheduler=scheduler,
                                   workers=workers)
    assert [i for block in blocks for i in block] == list(range(23))


def test_progress_is_logged_once_per_block_up_to_every_object(caplog):
    with caplog.at_level(logging.INFO, logger="galcat.progress"):
        map_blocks_of_objects(_positions, 10, objects_per_task=3, scheduler="threads",
                              workers=2, label="measure s000007")
    counts = [int(r.getMessage().split(": ")[1].split("/")[0]) for r in caplog.records]
    # blocks of 3, 3, 3 and 1 objects finish in any order: a line before any and one per block
    assert len(counts) == 5 and counts[0] == 0 and counts[-1] == 10
    assert all(b - a in (1, 3) for a, b in zip(counts[:-1], counts[1:], strict=True))
    assert caplog.records[-1].getMessage().startswith("measure s000007: 10/10 objects")


def test_a_slow_block_holds_up_no_other_block():
    """With 2 workers, the other worker runs every other block while block 0 sleeps:
    no block waits for a wave of blocks to finish (waves cost ~10% of the speed-up)."""
    results = map_blocks_of_objects(_timed_block, 16, objects_per_task=1,
                                    scheduler="processes", workers=2)
    first, start0, end0 = results[0]
    assert first == 0
    later_starts = [start for i, start, _ in results[1:] if i >= 8]
    assert max(later_starts) < end0, "blocks 8-15 waited for block 0"


def test_object_blocks_refuses_an_empty_block_size():
    with pytest.raises(ValueError, match="objects_per_task must be >= 1; got 0"):
        object_blocks(5, 0)


def _has_colorsys(block: slice) -> bool:
    import sys

    return "colorsys" in sys.modules


@pytest.mark.parametrize("preload", [(), ("colorsys",)])
def test_workers_inherit_the_preloaded_modules(preload):
    """A module named in ``preload`` is imported once by the job, before its worker
    processes start; they find it already loaded (on Linux, where they are forked)."""
    import sys

    sys.modules.pop("colorsys", None)
    found = map_blocks_of_objects(_has_colorsys, 4, objects_per_task=2, scheduler="processes",
                                  workers=2, preload=preload)
    assert found == [bool(preload)] * 2


def test_a_job_never_imports_dask_distributed():
    """Given a scheduler's name, dask.compute imports distributed (~0.45 s, tornado
    with it) to look for a client; galcat hands it the scheduler function."""
    import subprocess
    import sys

    code = ("import sys; from galcat.parallel import map_blocks_of_objects as m; "
            "f = lambda block: block.stop - block.start; "
            "m(f, 4, objects_per_task=2, scheduler='synchronous'); "
            "m(f, 4, objects_per_task=2, scheduler='threads', workers=2); "
            "print('distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
