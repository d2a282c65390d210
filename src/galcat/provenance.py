"""What produced an output: the code version and the settings of its stage.

Every per-shard table (segmentation, features, predictions) records, in its
Parquet metadata, the galcat version that wrote it and the hash of the settings
its stage ran with. `shard_status` reads them back, so a catalogue that mixes
shards measured by two versions says so, and ``galcat status --outdated`` names
the files to rerun (``snakemake -R $(galcat status --outdated)``).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pandas as pd

from galcat import __version__
from galcat.config import config_hash

__all__ = ["code_version", "shard_status", "stage_metadata"]

#: Per-shard tables whose provenance `shard_status` reads, by stage.
STAGE_TABLES = {"segment": "segmaps/{shard}.parquet", "measure": "features/{shard}.parquet"}


@functools.cache
def code_version() -> str:
    """galcat's version, with the commit when it runs from a git checkout.

    ``0.1.0`` from the package metadata; ``0.1.0+g1a2b3c4`` from a clean checkout
    and ``0.1.0+g1a2b3c4.dirty`` from one with uncommitted changes, so that two
    runs of different code never record the same version.
    """
    source = Path(__file__).resolve().parent
    try:
        top = _git(source, "rev-parse", "--show-toplevel")
        if not (Path(top) / "src" / "galcat").resolve() == source:
            return __version__  # an installed galcat inside someone else's repository
        commit = _git(source, "rev-parse", "--short=10", "HEAD")
        dirty = _git(Path(top), "status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    ).stdout.strip()


def stage_metadata(stage: str, shard: str, config: dict) -> dict:
    """Table metadata of one stage's output for ``shard``: code version and settings hash.

    ``config`` is what the stage ran with (its rule's params): execution settings
    (``dask``) do not change the output and are left out of the hash.
    """
    settings = {k: v for k, v in config.items() if k != "dask"}
    return {
        "stage": stage,
        "shard": shard,
        "galcat_version": code_version(),
        "settings_hash": config_hash(settings),
    }


def shard_status(results: os.PathLike | str) -> pd.DataFrame:
    """One row per shard and stage: the version and settings hash its table records.

    Parameters
    ----------
    results : path-like
        ``results/{survey}`` of a run.

    Returns
    -------
    DataFrame
        ``shard``, ``stage``, ``path``, ``galcat_version``, ``settings_hash`` and
        ``outdated`` (written by another version than this one; a table written
        before versions were recorded counts as outdated).
    """
    from galcat.tables import table_metadata

    results = Path(results)
    rows = []
    for stage, pattern in STAGE_TABLES.items():
        folder = results / Path(pattern).parent
        for path in sorted(folder.glob(Path(pattern).name.replace("{shard}", "s*"))):
            meta = table_metadata(path)
            rows.append({
                "shard": path.stem,
                "stage": stage,
                "path": str(path),
                "galcat_version": meta.get("galcat_version"),
                "settings_hash": meta.get("settings_hash"),
            })
    table = pd.DataFrame(rows, columns=["shard", "stage", "path", "galcat_version",
                                        "settings_hash"])
    table["outdated"] = table["galcat_version"] != code_version()
    return table
