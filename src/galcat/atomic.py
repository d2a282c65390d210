"""Atomic writes: an output appears whole under its final name, or not at all.

Every galcat output (Zarr groups, Parquet and FITS tables, the report, releases) is
written to a temporary sibling of its final path and renamed into place only when
complete (``os.replace`` is atomic within one file system), so a job killed half-way
never leaves a truncated file that a rerun would take for finished.

`replacing_file` and `replacing_directory` are the context managers to use; the
lower-level `atomic_file`, `atomic_directory` and `commit_directory` serve writers
that decide after writing whether to keep the result (e.g. only when it changed).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_directory",
    "atomic_file",
    "commit_directory",
    "replacing_directory",
    "replacing_file",
]


def atomic_file(final: os.PathLike | str) -> Path:
    """A temporary sibling path for a single file (parent created); rename it with
    ``os.replace`` when written."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def atomic_directory(final: os.PathLike | str) -> Path:
    """A fresh temporary sibling path of ``final`` to write a directory into, then pass
    to `commit_directory`. Leftovers of a killed earlier attempt at the same output are
    removed: one writer owns an output at a time (Snakemake guarantees it)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def commit_directory(tmp: os.PathLike | str, final: os.PathLike | str) -> None:
    """Rename the written directory ``tmp`` to ``final``, replacing an old one.

    An old output (a rerun) is moved aside first and deleted after, so readers never
    see a mixture of old and new files.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextmanager
def replacing_file(final: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path to write ``final``'s content to; on success it replaces
    ``final``, on an exception it is deleted and ``final`` is left as it was."""
    final = Path(final)
    tmp = atomic_file(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def replacing_directory(final: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary directory path (not created) to write ``final`` into; on success
    it replaces ``final`` (`commit_directory`), on an exception it is deleted."""
    final = Path(final)
    tmp = atomic_directory(final)
    try:
        yield tmp
        commit_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
