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

import ctypes
import errno
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


def _clear_leftovers(final: Path) -> None:
    """Remove what a killed earlier attempt at ``final`` left (a part-written temporary,
    an old output moved aside): one writer owns an output at a time (Snakemake
    guarantees it), so they are nobody's."""
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def atomic_file(final: os.PathLike | str) -> Path:
    """A temporary sibling path for a single file (parent created, a killed attempt's
    leftovers removed); rename it with ``os.replace`` when written."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final)
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def atomic_directory(final: os.PathLike | str) -> Path:
    """A fresh temporary sibling path of ``final`` to write a directory into, then pass
    to `commit_directory` (parent created, a killed attempt's leftovers removed)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final)
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system cannot."""
    global _RENAMEAT2
    if _RENAMEAT2 is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _RENAMEAT2 = libc.renameat2
            _RENAMEAT2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                   ctypes.c_char_p, ctypes.c_uint]
        except (OSError, AttributeError):
            _RENAMEAT2 = False
    if not _RENAMEAT2:
        return False
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    done = _RENAMEAT2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0
    if not done and ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    return done


_RENAMEAT2 = None


def commit_directory(tmp: os.PathLike | str, final: os.PathLike | str) -> None:
    """Rename the written directory ``tmp`` to ``final``, replacing an old one.

    An old output (a rerun) is swapped with the new one in one atomic step where the
    system can (Linux), so ``final`` is never missing and never mixed; elsewhere it is
    moved aside first, which leaves a moment without ``final`` (never a mixture).
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        os.replace(tmp, final)
        return
    if _exchange(tmp, final):  # tmp now holds the old output
        shutil.rmtree(tmp, ignore_errors=True)
        return
    trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(final, trash)
    os.replace(tmp, final)
    shutil.rmtree(trash, ignore_errors=True)


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
