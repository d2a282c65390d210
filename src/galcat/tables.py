"""Parquet tables with units, descriptions and UCDs that pandas, pyarrow and astropy read.

Every galcat table (objects, features, catalogue) is written here, atomically,
so a column's unit travels with it into the catalogue and the FITS header. The
metadata is written twice in the one file: in the Arrow field metadata (``unit``,
``description``, ``ucd``; what galcat reads) and as astropy's own serialized table
header (``table_meta_yaml``), so that ``astropy.table.Table.read("x.parquet")``
gets the same units, descriptions and UCDs (``column.meta['ucd']``) and the
table-level metadata (provenance) in ``Table.meta``.
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

__all__ = [
    "TableWriter",
    "column_descriptions",
    "column_names",
    "column_ucds",
    "column_units",
    "read_table",
    "table_metadata",
    "table_schema",
    "write_table",
]


def write_table(
    df: pd.DataFrame,
    path: os.PathLike | str,
    *,
    units: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    ucds: Mapping[str, str] | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``df`` to Parquet atomically, with a unit, description and UCD per column.

    Parameters
    ----------
    df : DataFrame
        Written without its index.
    path : path-like
    units, descriptions, ucds : mapping of column to str, optional
        Stored as field metadata ``unit`` (``''``: declared dimensionless),
        ``description`` and ``ucd``, and in astropy's table header.
    metadata : mapping, optional
        Table-level metadata (provenance), stored as JSON under ``galcat`` and as
        astropy's ``Table.meta``.
    """
    schema = table_schema(df, units=units, descriptions=descriptions, ucds=ucds,
                          metadata=metadata)
    with TableWriter(path, schema) as writer:
        writer.write(df)
    return Path(path)


def table_schema(
    df: pd.DataFrame,
    *,
    units: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    ucds: Mapping[str, str] | None = None,
    metadata: Mapping[str, object] | None = None,
    string_lengths: Mapping[str, int] | None = None,
) -> pa.Schema:
    """The Arrow schema `write_table` writes ``df`` with: its columns' types, the field
    metadata and the table metadata (pandas', ``galcat`` provenance, astropy's header).

    ``df`` may be one part of a table written in parts (`TableWriter`): the types are
    its, and ``string_lengths`` (column -> longest value in the whole table) stand in
    for the lengths of its own string columns in astropy's header.
    """
    units = units or {}
    descriptions = descriptions or {}
    ucds = ucds or {}
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for field in table.schema:
        meta = {}
        for key, values in ((b"unit", units), (b"description", descriptions), (b"ucd", ucds)):
            if field.name in values:
                meta[key] = str(values[field.name]).encode()
        fields.append(field.with_metadata(meta) if meta else field)
    schema_meta = dict(table.schema.metadata or {})
    if metadata:
        schema_meta[b"galcat"] = json.dumps(metadata, sort_keys=True, default=str).encode()
    schema_meta.update(_astropy_header(table, units, descriptions, ucds, metadata or {},
                                       string_lengths))
    return pa.schema(fields, metadata=schema_meta)


class TableWriter:
    """A galcat Parquet table written in parts, atomically (a temporary sibling renamed
    into place when the ``with`` block ends without an error).

    ``TableWriter(path, schema)`` with a `table_schema`; each `write` appends a
    DataFrame cast to the schema, so the file reads back as if `write_table` had written
    the concatenated parts.

    Parameters
    ----------
    path : path-like
    schema : pyarrow.Schema
    row_group_rows : int, optional
        Rows per Parquet row group: parts are held (as Arrow tables) until this many
        rows are pending, then written as one row group. Default None: one row group per
        `write`. Every row group costs the writer about 1 kB of footer per column, kept
        in memory until the file closes, so a table written in many small parts grows
        the writer's memory with its length; this bounds the row groups to
        ``rows / row_group_rows`` at the price of holding that many rows.
    """

    def __init__(self, path: os.PathLike | str, schema: pa.Schema, *,
                 row_group_rows: int | None = None) -> None:
        if row_group_rows is not None and row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1 or None; got {row_group_rows}")
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self.row_group_rows = row_group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def __enter__(self) -> TableWriter:
        self._replacing = replacing_file(self.path)
        tmp = self._replacing.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema)
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (its columns in the schema's order and types)."""
        table = pa.Table.from_pandas(df, preserve_index=False).cast(self.schema)
        self.rows += len(df)
        if self.row_group_rows is None:
            self._writer.write_table(table)
            return
        self._pending.append(table)
        self._pending_rows += len(table)
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending),
                                     row_group_size=self._pending_rows)
        self._pending, self._pending_rows = [], 0

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._flush()
            self._writer.close()
        finally:
            self._replacing.__exit__(*exc)


def _astropy_header(table: pa.Table, units, descriptions, ucds, metadata,
                    string_lengths=None) -> dict[bytes, bytes]:
    """astropy's Parquet header (what ``Table.write(format='parquet')`` stores) for
    ``table``: the serialized column attributes and the length of each string column
    (``string_lengths[name]`` where given, else the longest in ``table``)."""
    import warnings

    import numpy as np
    import pyarrow.compute as pc
    from astropy.table import Column, Table
    from astropy.table import meta as astropy_meta

    columns, header = [], {}
    for field in table.schema:
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if string_lengths is not None and field.name in string_lengths:
                longest = string_lengths[field.name]
            else:
                lengths = pc.utf8_length(table[field.name])
                longest = pc.max(lengths).as_py() if len(lengths) else None
            header[f"table::len::{field.name}".encode()] = str(max(longest or 0, 1)).encode()
            dtype = np.dtype("U1")
        else:
            try:
                dtype = np.dtype(field.type.to_pandas_dtype())
            except (NotImplementedError, TypeError):
                dtype = np.dtype(object)
        with warnings.catch_warnings():  # a non-astropy unit is kept as its text
            warnings.simplefilter("ignore")
            col = Column(name=field.name, dtype=dtype, length=0,
                         unit=units.get(field.name) or None,
                         description=descriptions.get(field.name))
        if field.name in ucds:
            col.meta["ucd"] = ucds[field.name]
        columns.append(col)
    empty = Table(columns, meta=json.loads(json.dumps(dict(metadata), default=str)))
    header[b"table_meta_yaml"] = "\n".join(astropy_meta.get_yaml_from_table(empty)).encode()
    return header


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


def column_ucds(path: os.PathLike | str) -> dict[str, str]:
    """The UCD of every column of a galcat Parquet table that has one."""
    return _field_metadata(path, b"ucd")


def column_names(path: os.PathLike | str) -> list[str]:
    """The columns of a Parquet table, in order (reads the schema only)."""
    return list(pq.read_schema(path).names)


def table_metadata(path: os.PathLike | str) -> dict:
    """The table-level metadata (provenance) a galcat table was written with."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"galcat")
    return json.loads(raw) if raw else {}
