"""Dated, immutable catalogue releases with a manifest and a ``latest`` pointer.

A nightly run writes release ``YYYY-MM-DD`` (catalogue, report, manifest)::

    releases/.store/YYYY-MM-DD.<id>/   the files, assembled under a temporary name
    releases/YYYY-MM-DD -> .store/YYYY-MM-DD.<id>
    releases/latest     -> YYYY-MM-DD
    releases/YYYY-MM-DD.manifest.json  a copy of the manifest, written last

Every name a reader uses is a symbolic link switched by one atomic rename, and
a store directory is complete before any link points at it. So a release killed
at any point leaves ``latest`` (and every dated name) on a complete release: a
rebuild of the same date replaces the old one only once the new one is whole.
The manifest copy beside the links is the workflow's output: Snakemake deletes
an output before rerunning its job, and deleting that copy loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import atomic_directory, atomic_file
from galcat.provenance import code_version
from galcat.tables import table_metadata

__all__ = ["make_release", "sha256_file"]

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def sha256_file(path: os.PathLike | str, *, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _changes(previous: Path | None, catalogue: pd.DataFrame) -> dict:
    """What changed in the catalogue since the previous release."""
    if previous is None or not (previous / "catalogue.parquet").exists():
        return {"previous_release": None, "objects_added": int(len(catalogue))}
    old = pd.read_parquet(previous / "catalogue.parquet")
    old_ids, new_ids = set(old["object_id"]), set(catalogue["object_id"])
    shared = sorted(old_ids & new_ids)
    common_cols = [c for c in catalogue.columns if c in old.columns]
    a = old.set_index("object_id").loc[shared, [c for c in common_cols if c != "object_id"]]
    b = catalogue.set_index("object_id").loc[shared, a.columns]
    differs = ~((a == b) | (a.isna() & b.isna()))
    return {
        "previous_release": previous.name,
        "objects_added": len(new_ids - old_ids),
        "objects_removed": len(old_ids - new_ids),
        "objects_changed": int(np.count_nonzero(differs.any(axis=1).to_numpy())),
        "columns_added": sorted(set(catalogue.columns) - set(old.columns)),
        "columns_removed": sorted(set(old.columns) - set(catalogue.columns)),
    }


def make_release(
    releases_dir: os.PathLike | str,
    date: str,
    files: Sequence[os.PathLike | str],
    *,
    catalogue: os.PathLike | str,
) -> Path:
    """Assemble release ``date`` from ``files`` and switch ``latest`` to it.

    Parameters
    ----------
    releases_dir : path-like
    date : str
        ``YYYY-MM-DD``; anything else is refused (it becomes a path).
    files : paths
        Copied into the release as they are (catalogue, FITS, report).
    catalogue : path-like
        The Parquet catalogue among ``files``, read for counts and changes.

    Returns
    -------
    Path
        ``releases_dir/date.manifest.json``, written last.
    """
    if not DATE.match(date):
        raise ValueError(f"release date {date!r} is not YYYY-MM-DD")
    releases = Path(releases_dir)
    store = releases / STORE
    store.mkdir(parents=True, exist_ok=True)
    latest = releases / "latest"
    previous = (releases / os.readlink(latest)) if latest.is_symlink() else None
    if previous is not None and previous.name == date:
        previous = None  # rebuilding today's release: compare with nothing older
    tmp = atomic_directory(store / date)
    tmp.mkdir()
    try:
        manifest = _assemble(tmp, files, catalogue, date, previous)
        final = store / f"{date}.{uuid.uuid4().hex[:12]}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _switch_link(releases / date, final.relative_to(releases))
    # Switch the pointer only now that the release is complete.
    _switch_link(latest, Path(date))
    _drop_unlinked(releases)
    stamp = releases / f"{date}.manifest.json"
    part = atomic_file(stamp)
    part.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(part, stamp)
    return stamp


#: Directory (inside the releases directory) of the release contents.
STORE = ".store"


def _assemble(tmp: Path, files: Sequence[os.PathLike | str], catalogue: os.PathLike | str,
              date: str, previous: Path | None) -> dict:
    """Copy ``files`` into ``tmp`` and write its manifest; return the manifest."""
    cat = pd.read_parquet(catalogue)
    checksums = {}
    for src in map(Path, files):
        shutil.copy2(src, tmp / src.name)
        checksums[src.name] = sha256_file(tmp / src.name)
    meta = table_metadata(catalogue)
    manifest = {
        "release": date,
        "galcat_version": code_version(),
        "config_hash": meta.get("config_hash"),
        "survey": meta.get("survey"),
        "created_utc": meta.get("created_utc"),
        "n_objects": int(len(cat)),
        "n_shards": int(cat["shard"].nunique()) if "shard" in cat else None,
        "sha256": checksums,
        "changes": _changes(previous, cat),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _switch_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` with one atomic rename (readers never see it missing)."""
    pointer = link.parent / f".{link.name}.tmp-{uuid.uuid4().hex[:8]}"
    pointer.symlink_to(target)
    try:
        if link.exists() and not link.is_symlink():  # a release of an older galcat
            shutil.rmtree(link)
        os.replace(pointer, link)
    except BaseException:
        pointer.unlink(missing_ok=True)
        raise


def _drop_unlinked(releases: Path) -> None:
    """Remove store directories no dated link points at (replaced rebuilds, killed runs)."""
    linked = {
        (releases / os.readlink(p)).name
        for p in releases.iterdir()
        if p.is_symlink() and DATE.match(p.name)
    }
    for entry in (releases / STORE).iterdir():
        if entry.name not in linked and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)
    for stale in releases.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
