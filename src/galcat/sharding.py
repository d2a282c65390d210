"""Stable assignment of objects to shards.

Dense ids (the synthetic survey's ``1 .. n``): a shard is a block of consecutive object
ids, ``shard = (object_id - 1) // size`` (`shard_of`). Objects added later (larger ids)
land in new shards, so finished shards are left untouched by a nightly run that grows
the survey.

Sparse ids (SDSS ``objID`` ~1.2e18, MaNGA plate-IFU codes, JADES ids, a user's own
table) would scatter over millions of empty shards that way. `assign_shards` shards by
the *row order of the ascending-sorted id* instead: shard ``k`` holds the ids of rank
``k*size .. (k+1)*size - 1``. A nightly run whose new objects all have larger ids than
the old ones (the common case when an archive grows by appending) only adds shards at
the end and leaves finished shards untouched. When new ids fall *between* old ones, the
ranks after them shift; pass the previous object table as ``previous`` to keep every
known object in its old shard and put only the new ones into new shards at the end.
`stable_shards` does that with the *shard map* kept beside the results
(``results/{survey}/shard_map.parquet``: every object ever planned and its shard), so an
object keeps its shard for life, whatever ids arrive later.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "assign_shards",
    "read_shard_map",
    "shard_name",
    "shard_names",
    "shard_of",
    "stable_shards",
    "write_shard_map",
]

SHARD_DIGITS = 6


def shard_name(index: int) -> str:
    """The file-safe name of shard ``index``: ``s000042``."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0; got {index}")
    return f"s{index:0{SHARD_DIGITS}d}"


def shard_of(object_id: np.ndarray, objects_per_shard: int) -> np.ndarray:
    """Shard index of each object id (ids start at 1)."""
    object_id = np.asarray(object_id, dtype=np.int64)
    if np.any(object_id < 1):
        raise ValueError("object ids must be >= 1")
    return (object_id - 1) // int(objects_per_shard)


def shard_names(n_objects: int, objects_per_shard: int) -> list[str]:
    """Names of the shards that hold object ids ``1 .. n_objects``."""
    n_shards = math.ceil(n_objects / objects_per_shard)
    return [shard_name(i) for i in range(n_shards)]


def assign_shards(df: pd.DataFrame, objects_per_shard: int, *,
                  previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sort by ``object_id`` and add ``shard`` by rank (see the module docstring).

    Parameters
    ----------
    df : DataFrame with a unique int64 ``object_id`` (>= 1).
    objects_per_shard : int
    previous : DataFrame with ``object_id`` and ``shard``, optional
        An earlier object table: its objects keep their shard, new objects fill
        new shards after the last old one, ascending by id.
    """
    if "object_id" not in df:
        raise ValueError("assign_shards needs an object_id column")
    ids = df["object_id"].to_numpy()
    if np.any(ids < 1):
        raise ValueError("object ids must be >= 1")
    if len(np.unique(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()[:5]
        raise ValueError(f"object ids must be unique; duplicated: {list(dup)}")
    size = int(objects_per_shard)
    if size < 1:
        raise ValueError("objects_per_shard must be >= 1")
    out = df.sort_values("object_id", kind="stable").reset_index(drop=True)
    out["object_id"] = out["object_id"].astype(np.int64)
    if previous is None or len(previous) == 0:
        rank = np.arange(len(out))
        out["shard"] = [shard_name(int(k)) for k in rank // size]
        return out
    old = dict(zip(previous["object_id"].astype(np.int64), previous["shard"].astype(str),
                   strict=True))
    known = out["object_id"].map(old)
    first_new = 1 + max(int(s.lstrip("s")) for s in old.values())
    new_rank = np.cumsum(known.isna().to_numpy()) - 1
    new_shards = [shard_name(first_new + int(r) // size) for r in new_rank]
    out["shard"] = np.where(known.isna(), new_shards, known.fillna(""))
    return out


def read_shard_map(path: os.PathLike | str, objects_per_shard: int) -> pd.DataFrame | None:
    """The shard map at ``path`` (``object_id``, ``shard``), or None when there is none
    or it was planned with another ``objects_per_shard`` (then every shard is new anyway:
    the shard size is a setting of every per-shard job)."""
    path = Path(path)
    if not path.exists():
        return None
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"galcat", b"{}"))
    if meta.get("objects_per_shard") != int(objects_per_shard):
        return None
    return table.to_pandas()


def write_shard_map(path: os.PathLike | str, assigned: pd.DataFrame,
                    previous: pd.DataFrame | None, objects_per_shard: int) -> Path:
    """Write the map: ``previous`` entries (objects gone from the survey keep theirs, so
    their shard names are never reused) plus the shards of ``assigned``; atomically."""
    from galcat.atomic import replacing_file

    current = assigned[["object_id", "shard"]]
    table = current if previous is None else pd.concat(
        [previous[~previous["object_id"].isin(current["object_id"])], current])
    table = table.sort_values("object_id").reset_index(drop=True)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {b"galcat": json.dumps({"objects_per_shard": int(objects_per_shard)}).encode()}
    path = Path(path)
    with replacing_file(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    return path


def stable_shards(df: pd.DataFrame, objects_per_shard: int,
                  shard_map: os.PathLike | str) -> pd.DataFrame:
    """`assign_shards` that keeps every object the map knows in its old shard.

    New objects (ids the map has never seen, wherever they fall among the old ones)
    go to new shards after the last one, so a finished shard is never rewritten
    because of its neighbours. The map is updated (atomically) with the result.
    """
    previous = read_shard_map(shard_map, objects_per_shard)
    out = assign_shards(df.drop(columns="shard", errors="ignore"), objects_per_shard,
                        previous=previous)
    write_shard_map(shard_map, out, previous, objects_per_shard)
    return out
