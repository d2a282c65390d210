"""Stable assignment of objects to shards.

A shard is a block of consecutive object ids: ``shard = (object_id - 1) // size``.
Objects added later (larger ids) land in new shards, so finished shards are
left untouched by a nightly run that grows the survey.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["shard_name", "shard_names", "shard_of"]

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
