"""Parquet tables with units and descriptions in the Arrow field metadata.

Every galcat table (objects, features, catalogue) is written here, atomically,
so a column's unit travels with it into the catalogue and the FITS header.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galcat.atomic import replacing_file

__all__ = ["column_units", "read_table", "write_table"]


def write_table(
    df: pd.DataFrame,
    path: os.PathLike | str,
    *,
    units: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``df`` to Parquet atomically, with a unit and description per column.

    Parameters
    ----------
    df : DataFrame
        Written without its index.
    path : path-like
    units, descriptions : mapping of column to str, optional
        Stored as field metadata ``unit`` and ``description``.
    metadata : mapping, optional
        Table-level metadata (provenance), stored as JSON under ``galcat``.
    """
    units = units or {}
    descriptions = descriptions or {}
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for field in table.schema:
        meta = {}
        if field.name in units:
            meta[b"unit"] = str(units[field.name]).encode()
        if field.name in descriptions:
            meta[b"description"] = str(descriptions[field.name]).encode()
        fields.append(field.with_metadata(meta) if meta else field)
    schema_meta = dict(table.schema.metadata or {})
    if metadata:
        schema_meta[b"galcat"] = json.dumps(metadata, sort_keys=True, default=str).encode()
    table = table.cast(pa.schema(fields, metadata=schema_meta))
    final = Path(path)
    with replacing_file(final) as tmp:
        pq.write_table(table, tmp)
    return final


def read_table(path: os.PathLike | str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a galcat Parquet table; a clear error names a missing file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {str(path)!r} does not exist")
    return pq.read_table(path, columns=columns).to_pandas()


def _field_metadata(path: os.PathLike | str, key: bytes) -> dict[str, str]:
    return {
        f.name: f.metadata[key].decode()
        for f in pq.read_schema(path)
        if f.metadata and key in f.metadata
    }


def column_units(path: os.PathLike | str) -> dict[str, str]:
    """The unit of every column of a galcat Parquet table that has one."""
    return _field_metadata(path, b"unit")


def column_descriptions(path: os.PathLike | str) -> dict[str, str]:
    """The description of every column of a galcat Parquet table that has one."""
    return _field_metadata(path, b"description")


def table_metadata(path: os.PathLike | str) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"galcat")
    return json.loads(raw) if raw else {}
