"""Dated, immutable catalogue releases with a manifest and a ``latest`` pointer.

A nightly run writes ``releases/YYYY-MM-DD/`` (catalogue, report, manifest). The
directory is assembled under a temporary name and renamed into place, and only
then is ``latest`` switched (an atomic symlink replace), so a night that fails at
any point leaves the previous release as ``latest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galcat import __version__
from galcat.atomic import replacing_directory
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
    """Assemble ``releases_dir/date`` from ``files`` and switch ``latest`` to it.

    Parameters
    ----------
    releases_dir : path-like
    date : str
        ``YYYY-MM-DD``; anything else is refused (it becomes a path).
    files : paths
        Copied into the release as they are (catalogue, FITS, report).
    catalogue : path-like
        The Parquet catalogue among ``files``, read for counts and changes.
    """
    if not DATE.match(date):
        raise ValueError(f"release date {date!r} is not YYYY-MM-DD")
    releases = Path(releases_dir)
    releases.mkdir(parents=True, exist_ok=True)
    final = releases / date
    latest = releases / "latest"
    previous = latest.resolve() if latest.is_symlink() else None
    if previous is not None and previous.name == date:
        previous = None  # rebuilding today's release: compare with nothing older
    cat = pd.read_parquet(catalogue)
    with replacing_directory(final) as tmp:
        tmp.mkdir()
        checksums = {}
        for src in map(Path, files):
            shutil.copy2(src, tmp / src.name)
            checksums[src.name] = sha256_file(tmp / src.name)
        meta = table_metadata(catalogue)
        manifest = {
            "release": date,
            "galcat_version": __version__,
            "config_hash": meta.get("config_hash"),
            "survey": meta.get("survey"),
            "created_utc": meta.get("created_utc"),
            "n_objects": int(len(cat)),
            "n_shards": int(cat["shard"].nunique()) if "shard" in cat else None,
            "sha256": checksums,
            "changes": _changes(previous, cat),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    # Switch the pointer only now that the release is complete.
    pointer = releases / f".latest.tmp-{os.getpid()}"
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    pointer.symlink_to(date)
    os.replace(pointer, latest)
    return final
