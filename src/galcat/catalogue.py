"""The published catalogue: objects joined with features (and predictions), with masses.

`build_catalogue` joins the object table, every shard's features and any extra
per-object tables keyed by ``object_id`` (the models' predictions), adds the
photometric stellar mass (`galcat.stellar_mass`: it needs the features' model
magnitudes and the objects' redshift, which meet first here), and publishes the one
table three times from the same columns and metadata:

* ``catalogue.parquet`` — units, descriptions and UCDs in the Arrow field metadata and
  in astropy's table header (``Table.read`` gets them), provenance as table metadata;
* ``catalogue.fits`` — a binary table: ``TUNITn`` (FITS units), ``TCOMMn`` (the
  description, what TOPCAT shows), ``TUCDn`` (the UCD, as STIL writes it), and a header
  that records the config hash, code version, input versions and creation time;
* ``catalogue.vot`` — a VOTable (BINARY) with unit, UCD and DESCRIPTION per FIELD.

The build streams: objects are read in batches of `BATCH_ROWS` in ``object_id``
order, each batch joined with the rows of the per-shard tables in its id range (found
from the Parquet row-group statistics), given its masses and published units, and
appended to all three files (Parquet row groups, FITS rows, VOTable BINARY stream), so
its memory does not grow with the survey (`bench/catalogue_scale.py`: 10⁴ to 10⁶ rows).
A first pass over the ids and string columns fixes what the files declare before any
row is written: the string widths, whether a joined column has rows without a match
(ints become floats, as a whole-table join would make them) and that no id repeats.
The files hold what a whole-table join would publish.

Every galcat column comes with a declared unit (``''`` dimensionless) and a
description. A column without them can only be a user's own (``local.columns``, carried
along from their table): it is published as `UNDOCUMENTED` (the table it came from
named, unit unknown) and logged as a warning, never fatal; the tests check that no
galcat column is. Units are published as `galcat.columns.published_unit` says
(nanomaggy columns are converted to nJy; log columns are dimensionless with the quantity
named in the description).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import os
import platform
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galcat import stellar_mass
from galcat.atomic import replacing_file
from galcat.columns import published_unit, ucd_for
from galcat.flags import flag_metadata
from galcat.provenance import code_version
from galcat.tables import (
    TableWriter,
    column_descriptions,
    column_units,
    table_metadata,
    table_schema,
)

__all__ = [
    "BATCH_ROWS",
    "UNDOCUMENTED",
    "CatalogueColumns",
    "CatalogueSummary",
    "build_catalogue",
    "physical_radii",
    "provenance",
    "publish_columns",
    "write_fits",
    "write_votable",
]

log = logging.getLogger("galcat.catalogue")

#: Description of a column that came without one (``{source}``: the table it came from).
UNDOCUMENTED = "(undocumented: carried from {source}; unit unknown)"

#: Objects per batch of the streamed build: its memory is about this many rows of every
#: column a few times over (join, published copy, FITS and VOTable encodings).
BATCH_ROWS = 4096
#: Rows per row group of the Parquet catalogue: the writer keeps ~1 kB of footer per
#: row group and column until it closes (~45 MiB at 10⁶ rows in 4096-row groups), and
#: holds the pending rows (~13 MiB for 8192); bench/catalogue_scale.py chose the size.
ROW_GROUP_ROWS = 8192
#: Read buffer of the object table: its row groups are decoded page by page through
#: it instead of being fetched whole (a 50 000-row group of the object table is ~60 MiB).
READ_BUFFER_BYTES = 1 << 20

PROVENANCE_PACKAGES = ("numpy", "astropy", "photutils", "statmorph", "galsim", "zarr", "snakemake")


def shard_provenance(paths: Sequence[os.PathLike | str]) -> list[dict]:
    """What wrote each per-shard input: its stage, shard, galcat version and settings
    hash (`galcat.provenance.stage_metadata`), so that a catalogue mixing shards of two
    versions says so."""
    keys = ("stage", "shard", "galcat_version", "settings_hash")
    rows = []
    for path in paths:
        meta = table_metadata(path)
        rows.append({"path": Path(path).name, **{k: meta.get(k) for k in keys}})
    return rows


def provenance(config_hash: str, *, survey: str) -> dict:
    """What produced a catalogue: config hash, code and input versions, time."""
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "survey": survey,
        "config_hash": config_hash,
        "galcat_version": code_version(),
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "packages": versions,
    }


@dataclass(frozen=True)
class CatalogueColumns:
    """The published metadata of every column: unit (``''`` dimensionless), description
    and UCD (absent where the IVOA has none)."""

    units: dict[str, str]
    descriptions: dict[str, str]
    ucds: dict[str, str]


def _join(cat: pd.DataFrame, part: pd.DataFrame, *, what: str) -> pd.DataFrame:
    clash = (set(part.columns) & set(cat.columns)) - {"object_id"}
    if clash:
        raise ValueError(f"{what} columns {sorted(clash)} clash with columns already in the "
                         "catalogue")
    return cat.merge(part, on="object_id", how="left", validate="one_to_one")


def publish_columns(cat: pd.DataFrame, units: Mapping[str, str],
                    descriptions: Mapping[str, str], *,
                    sources: Mapping[str, str] | None = None, warn: bool = True
                    ) -> tuple[pd.DataFrame, CatalogueColumns]:
    """Convert ``cat`` to its published units and collect every column's metadata.

    Returns the converted table (a copy where a column is rescaled) and its
    `CatalogueColumns`.

    A column without a declared unit or description gets `UNDOCUMENTED` (warned,
    unless ``warn`` is false: the later batches of a streamed build).

    Raises
    ------
    galcat.columns.ColumnMetadataError
        A unit astropy cannot parse, naming the column.
    """
    sources = sources or {}
    missing = [name for name in cat.columns
               if name not in units or not str(descriptions.get(name, "")).strip()]
    if missing and warn:
        log.warning("catalogue columns without a declared unit or a description: %s",
                    "; ".join(f"{n} (from {sources.get(n, 'galcat')})" for n in missing))
    out = cat.copy(deep=False)  # only rescaled columns are new arrays
    pub = CatalogueColumns({}, {}, {})
    for name in cat.columns:
        if name in missing:
            pub.units[name] = ""
            pub.descriptions[name] = UNDOCUMENTED.format(source=sources.get(name, "galcat"))
            continue
        unit, scale, note = published_unit(units[name], column=name)
        if scale != 1.0:
            out[name] = cat[name].to_numpy(dtype=np.float64) * scale
        description = str(descriptions[name]).strip()
        if note and note not in description:
            description = f"{description} [{note}]"
        pub.units[name] = unit
        pub.descriptions[name] = description
        ucd = ucd_for(name)
        if ucd:
            pub.ucds[name] = ucd
    return out, pub


def physical_radii(cat: pd.DataFrame, units: dict[str, str],
                   descriptions: dict[str, str]) -> pd.DataFrame:
    """``{radius}_kpc`` of every measured radius in arcsec (`galcat.morphology.RADIUS_COLUMNS`)
    at the object's redshift (Planck18, proper kpc; NaN without a redshift), keyed by
    ``object_id``; their units and descriptions are added to ``units`` and
    ``descriptions``."""
    from galcat.morphology import RADIUS_COLUMNS

    scale = stellar_mass.kpc_per_arcsec(cat["z"].to_numpy()) if "z" in cat else np.nan
    out = {"object_id": cat["object_id"].to_numpy()}
    for name in RADIUS_COLUMNS:
        if name in cat and units.get(name) == "arcsec":
            out[f"{name}_kpc"] = cat[name].to_numpy(dtype=np.float64) * scale
            units[f"{name}_kpc"] = "kpc"
            descriptions[f"{name}_kpc"] = (f"{name} in proper kpc at the redshift z (Planck18); "
                                           "NaN without a redshift")
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- inputs
class _PerObject:
    """Per-object tables (the features of every shard, or one extra table) as a whole,
    read by ``object_id`` range.

    The ``object_id`` range of every row group comes from the Parquet statistics (the
    ids are read where a writer left none), so the rows of a range cost only the row
    groups that can hold them; the last few decoded row groups are kept, because
    consecutive batches of the build ask for neighbouring ranges.
    """

    def __init__(self, paths: Sequence[os.PathLike | str], what: str, *, cache: int = 8):
        self.paths = [Path(p) for p in paths]
        self.what = what
        self.columns: list[str] = []
        self.types: dict[str, pa.DataType] = {}
        self.groups: list[tuple[int, int, int, int]] = []  # (id min, id max, path, group)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache
        for k, path in enumerate(self.paths):
            if not path.exists():
                raise FileNotFoundError(f"table {str(path)!r} does not exist")
            meta = pq.ParquetFile(path).metadata
            schema = pq.read_schema(path)
            if "object_id" not in schema.names:
                raise ValueError(f"{what} table {str(path)!r} has no object_id column")
            for name in schema.names:
                if name not in self.types:
                    self.columns.append(name)
                    self.types[name] = schema.field(name).type
            column = schema.names.index("object_id")
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                if group.num_rows == 0:
                    continue
                stats = group.column(column).statistics
                if stats is not None and stats.has_min_max:
                    lo, hi = int(stats.min), int(stats.max)
                else:
                    ids = pq.ParquetFile(path).read_row_group(g, columns=["object_id"])
                    lo, hi = int(pa.compute.min(ids[0]).as_py()), int(pa.compute.max(ids[0]).as_py())
                self.groups.append((lo, hi, k, g))
        self._lo = np.array([g[0] for g in self.groups], dtype=np.int64)
        self._hi = np.array([g[1] for g in self.groups], dtype=np.int64)

    def _group(self, k: int, g: int) -> pa.Table:
        key = (k, g)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        table = pq.ParquetFile(self.paths[k]).read_row_group(g)
        self._cache[key] = table
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return table

    def rows(self, lo: int, hi: int, *, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows with ``lo <= object_id <= hi`` (every column unless ``columns``),
        in the order of the files and row groups."""
        parts = []
        for j in np.flatnonzero((self._lo <= hi) & (self._hi >= lo)):
            _, _, k, g = self.groups[j]
            table = self._group(k, g)
            ids = table["object_id"]
            keep = pa.compute.and_(pa.compute.greater_equal(ids, lo),
                                   pa.compute.less_equal(ids, hi))
            part = table.filter(keep)
            # a column a file lacks is null there, as a concatenation of the tables
            for name in self.columns:
                if name not in part.column_names:
                    part = part.append_column(name, pa.nulls(len(part), self.types[name]))
            parts.append(part.select(list(columns or self.columns)))
        if not parts:
            names = list(columns or self.columns)
            return pa.table({n: pa.array([], type=self.types[n]) for n in names})
        return pa.concat_tables(parts, promote_options="permissive")


def _strings(values) -> np.ndarray:
    """A column's values as the fixed-width strings FITS and VOTable get (None and
    pd.NA empty, anything else ``str``)."""
    return np.asarray([("" if v is None or v is pd.NA else str(v)) for v in values])


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


@dataclass
class _Plan:
    """What the first pass finds: objects in id order, the per-object tables, the
    metadata every file declares before its rows."""

    objects: Path
    parts: list[tuple[_PerObject, str]]  # (table, what) in join order
    n_rows: int
    units: dict[str, str]
    descriptions: dict[str, str]
    sources: dict[str, str]
    unmatched: dict[int, bool]  # part index -> some object has no row there
    widths: dict[str, int] = field(default_factory=dict)  # text column -> longest value
    temporary: Path | None = None  # an id-sorted copy of the objects, removed after


def _object_batches(path: Path, batch_rows: int, columns=None) -> Iterator[pa.RecordBatch]:
    file = pq.ParquetFile(path, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
    yield from file.iter_batches(batch_size=batch_rows, columns=columns)


def _ids_sorted(path: Path, batch_rows: int) -> bool:
    last = None
    for batch in _object_batches(path, batch_rows, ["object_id"]):
        ids = batch.column(0).to_numpy()
        if ids.size and ((last is not None and ids[0] <= last) or np.any(np.diff(ids) <= 0)):
            return False
        if ids.size:
            last = ids[-1]
    return True


def _sorted_objects(path: Path, output: Path, batch_rows: int) -> Path:
    """An id-sorted copy of an object table whose ids are not ascending: rows go into
    buckets of consecutive id ranges (bounds from a sample of the ids), each bucket
    sorted on its own; memory is one bucket, about ``batch_rows`` rows."""
    meta = pq.ParquetFile(path).metadata
    n = meta.num_rows
    rng = np.random.default_rng(0)
    sample = np.concatenate([b.column(0).to_numpy()[rng.random(b.num_rows) < 0.1]
                             for b in _object_batches(path, batch_rows, ["object_id"])])
    n_buckets = max(1, int(np.ceil(n / batch_rows)))
    bounds = np.unique(np.quantile(sample, np.linspace(0, 1, n_buckets + 1)[1:-1])
                       .astype(np.int64)) if sample.size else np.array([], np.int64)
    scratch = output.with_name(output.name + ".buckets")
    scratch.mkdir(exist_ok=True)
    schema = pq.read_schema(path)
    writers = {}
    try:
        for batch in _object_batches(path, batch_rows):
            table = pa.Table.from_batches([batch])
            which = np.searchsorted(bounds, table["object_id"].to_numpy(), side="right")
            for b in np.unique(which):
                if b not in writers:
                    writers[b] = pq.ParquetWriter(scratch / f"{b:06d}.parquet", schema)
                writers[b].write_table(table.filter(pa.array(which == b)))
        for w in writers.values():
            w.close()
        with pq.ParquetWriter(output, schema) as out:
            for b in sorted(writers):
                table = pq.read_table(scratch / f"{b:06d}.parquet")
                out.write_table(table.sort_by("object_id"))
    finally:
        for f in scratch.glob("*.parquet"):
            f.unlink()
        scratch.rmdir()
    return output


def _plan(objects, features, extra, batch_rows: int, work: Path,
          predictions: Sequence[Sequence[Path]] = ()) -> _Plan:
    """The first pass (see the module docstring); raises before anything is written.
    ``predictions``: one list of per-shard tables per model."""
    objects = Path(objects)
    if not objects.exists():
        raise FileNotFoundError(f"table {str(objects)!r} does not exist")
    units: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    sources: dict[str, str] = {}
    parts = ([(_PerObject(features, "feature"), "feature")] if features else [])
    parts += [(_PerObject([path], str(path)), str(path)) for path in extra]
    parts += [(_PerObject(paths, "prediction"), f"prediction ({paths[0]})")
              for paths in predictions]
    predicted = [path for paths in predictions for path in paths]
    for path in [objects, *features, *extra, *predicted]:  # the first table to describe a column wins
        for collected, found in ((units, column_units(path)),
                                 (descriptions, column_descriptions(path))):
            for name, value in found.items():
                collected.setdefault(name, value)
        for name in pq.read_schema(path).names:
            sources.setdefault(name, str(path))
    columns = list(pq.read_schema(objects).names)
    if "object_id" not in columns:
        raise ValueError(f"object table {str(objects)!r} has no object_id column")
    for part, what in parts:
        clash = (set(part.columns) & set(columns)) - {"object_id"}
        if clash:
            raise ValueError(f"{what} columns {sorted(clash)} clash with columns already in "
                             "the catalogue")
        columns += [c for c in part.columns if c != "object_id"]
    clash = set(stellar_mass.MASS_COLUMNS) & set(columns)
    if clash:
        raise ValueError(f"stellar-mass columns {sorted(clash)} clash with columns already "
                         "in the catalogue")
    temporary = None
    if not _ids_sorted(objects, batch_rows):
        temporary = _sorted_objects(objects, work.with_name(work.name + ".objects.parquet"),
                                    batch_rows)
        objects = temporary
    plan = _Plan(objects, parts, pq.ParquetFile(objects).metadata.num_rows, units,
                 descriptions, sources, dict.fromkeys(range(len(parts)), False),
                 temporary=temporary)
    text_objects = [f.name for f in pq.read_schema(objects)
                    if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    for batch in _object_batches(objects, batch_rows, ["object_id", *text_objects]):
        df = batch.to_pandas()
        ids = df["object_id"].to_numpy()
        if ids.size == 0:
            continue
        if len(np.unique(ids)) != ids.size:
            raise ValueError(f"object table {str(plan.objects)!r}: object_id is not unique")
        _widen(plan.widths, df, text_objects)
        for p, (part, what) in enumerate(parts):
            text = [c for c in part.columns
                    if pa.types.is_string(part.types[c]) or pa.types.is_large_string(part.types[c])]
            rows = part.rows(int(ids[0]), int(ids[-1]), columns=["object_id", *text]).to_pandas()
            found = rows["object_id"].to_numpy()
            if len(np.unique(found)) != found.size:
                dup = pd.Series(found)[pd.Series(found).duplicated()].unique()[:5]
                raise ValueError(f"{what} tables hold object_id {[int(i) for i in dup]} more "
                                 "than once: not one row per object")
            matched = np.isin(found, ids)
            plan.unmatched[p] |= bool(np.count_nonzero(np.isin(ids, found)) < ids.size)
            _widen(plan.widths, rows[matched], text)
    for p, (part, _) in enumerate(parts):
        for name, kind in part.types.items():  # a join with gaps makes a flag text
            if plan.unmatched[p] and pa.types.is_boolean(kind):
                plan.widths[name] = max(plan.widths.get(name, 0), len("False"))
    return plan


def _widen(widths: dict[str, int], df: pd.DataFrame, columns) -> None:
    for name in columns:
        if len(df):
            longest = max((len(v) for v in _strings(df[name].to_numpy())), default=0)
            widths[name] = max(widths.get(name, 0), longest)


# --------------------------------------------------------------------------- batches
def _batches(plan: _Plan, *, mass_to_light: str, batch_rows: int
             ) -> Iterator[tuple[pd.DataFrame, CatalogueColumns]]:
    """The published catalogue in batches of objects, in object_id order."""
    first = True
    for batch in _object_batches(plan.objects, batch_rows):
        cat = batch.to_pandas()
        if cat.empty:
            continue
        lo, hi = int(cat["object_id"].iloc[0]), int(cat["object_id"].iloc[-1])
        for p, (part, what) in enumerate(plan.parts):
            rows = part.rows(lo, hi).to_pandas()
            if plan.unmatched[p]:  # as a join over the whole table would make them
                for name in rows.columns.drop("object_id"):
                    if pd.api.types.is_integer_dtype(rows[name].dtype):
                        rows[name] = rows[name].astype(np.float64)
                    elif pd.api.types.is_bool_dtype(rows[name].dtype):
                        rows[name] = rows[name].astype(object)
            cat = _join(cat, rows, what=what)
        masses = stellar_mass.catalogue_masses(cat, relation=mass_to_light)
        cat = _join(cat, masses, what="stellar-mass")
        units = {**plan.units, **{k: u for k, (u, _) in stellar_mass.MASS_COLUMNS.items()}}
        descriptions = {**plan.descriptions,
                        **{k: d for k, (_, d) in stellar_mass.MASS_COLUMNS.items()}}
        cat = _join(cat, physical_radii(cat, units, descriptions), what="physical-radius")
        cat = cat.sort_values("object_id").reset_index(drop=True)
        yield publish_columns(cat, units, descriptions, sources=plan.sources, warn=first)
        first = False


@dataclass(frozen=True)
class CatalogueSummary:
    """What `build_catalogue` wrote: rows, columns in order, their published metadata."""

    rows: int
    columns: list[str]
    metadata: CatalogueColumns


def build_catalogue(
    objects: os.PathLike | str,
    features: Sequence[os.PathLike | str],
    *,
    config_hash: str,
    survey: str,
    output_parquet: os.PathLike | str,
    output_fits: os.PathLike | str,
    output_votable: os.PathLike | str | None = None,
    extra: Sequence[os.PathLike | str] = (),
    predictions: Sequence[os.PathLike | str] = (),
    mass_to_light: str = "bell2003_gr",
    batch_rows: int = BATCH_ROWS,
) -> CatalogueSummary:
    """Join objects, features and ``extra`` tables; add masses; write every format.

    Parameters
    ----------
    objects : path-like
        The object table (``object_id``, ``z``, survey labels).
    features : sequence of path-like
        Every shard's features table.
    config_hash, survey : str
        Recorded in the provenance.
    output_parquet, output_fits : path-like
    output_votable : path-like, optional
        The VOTable export (skipped when None).
    predictions : sequence of path-like
        The models' per-shard prediction tables (``predict``), grouped by model through
        their columns and left-joined like the features.
    extra : sequence of path-like
        More per-object tables keyed by ``object_id`` (e.g. a model's predictions),
        left-joined in order; their columns must not clash with earlier ones.
    mass_to_light : str
        The colour → M/L relation of the stellar mass (``measure.mass_to_light``).
    batch_rows : int
        Objects per batch (default `BATCH_ROWS`); memory grows with it, not with the
        catalogue.

    Returns
    -------
    CatalogueSummary
        Rows and published columns; the catalogue itself is in the files (read it with
        `galcat.tables.read_table` or in batches with pyarrow).

    Raises
    ------
    ValueError
        Clashing columns, an object without a unique id, a per-object table with an
        object twice; nothing is written then.
    galcat.columns.ColumnMetadataError
        A unit astropy cannot read, naming the column.

    Notes
    -----
    Cost: two passes over the inputs (the first reads ids and string columns only);
    time grows linearly with the number of objects and memory with ``batch_rows``.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1; got {batch_rows}")
    out_parquet, out_fits = Path(output_parquet), Path(output_fits)
    by_model: dict[tuple[str, ...], list[Path]] = {}
    for path in predictions:
        by_model.setdefault(tuple(pq.read_schema(path).names), []).append(Path(path))
    plan = _plan(objects, list(features), list(extra), batch_rows, out_parquet,
                 predictions=list(by_model.values()))
    try:
        prov = provenance(config_hash, survey=survey)
        prov["mass_to_light"] = mass_to_light
        prov["flags"] = flag_metadata()
        prov["shards"] = shard_provenance([*features, *extra])
        return _write_streams(plan, prov, out_parquet, out_fits,
                              None if output_votable is None else Path(output_votable),
                              mass_to_light=mass_to_light, batch_rows=batch_rows)
    finally:
        if plan.temporary is not None:
            plan.temporary.unlink(missing_ok=True)


def _write_streams(plan: _Plan, prov: dict, out_parquet: Path, out_fits: Path,
                   out_votable: Path | None, *, mass_to_light: str, batch_rows: int
                   ) -> CatalogueSummary:
    batches = _batches(plan, mass_to_light=mass_to_light, batch_rows=batch_rows)
    first, columns = next(batches, (None, None))
    if first is None:  # no objects: the (empty) join of the schemas
        raise ValueError(f"object table {str(plan.objects)!r} has no rows")
    widths = {name: max(plan.widths.get(name, 0), 1) for name in first.columns
              if _is_text(first[name])}
    schema = table_schema(first, units=columns.units, descriptions=columns.descriptions,
                          ucds=columns.ucds, metadata=prov, string_lengths=widths)
    with (TableWriter(out_parquet, schema,
                      row_group_rows=max(batch_rows, ROW_GROUP_ROWS)) as parquet,
          _FitsWriter(out_fits, columns, prov, plan.n_rows, widths) as fits_out,
          _VotableWriter(out_votable, prov, widths) as votable):
        for cat, _ in _chain(first, columns, batches):
            parquet.write(cat)
            table = _astropy_table(cat, columns, widths)
            fits_out.write(table)
            votable.write(table)
    if parquet.rows != plan.n_rows:
        raise RuntimeError(f"catalogue wrote {parquet.rows} rows for {plan.n_rows} objects")
    return CatalogueSummary(plan.n_rows, list(first.columns), columns)


def _chain(first, columns, rest):
    yield first, columns
    yield from rest


def _astropy_table(cat: pd.DataFrame, columns: CatalogueColumns,
                   widths: Mapping[str, int] | None = None):
    """The catalogue (or a batch of it) as an astropy Table with published units,
    descriptions and UCDs; text columns fixed-width (``widths``: the whole catalogue's)."""
    from astropy.table import Table

    arrays = []
    for name in cat.columns:
        values = cat[name].to_numpy()
        if _is_text(cat[name]):
            values = _strings(values)
            if widths and name in widths:
                values = values.astype(f"<U{widths[name]}")
        arrays.append(values)
    table = Table(arrays, names=list(cat.columns), copy=False)
    for name in cat.columns:
        table[name].unit = columns.units[name] or None
        table[name].description = columns.descriptions[name]
        if name in columns.ucds:
            table[name].meta["ucd"] = columns.ucds[name]
    return table


_ASCII = {"–": "-", "—": "-", "−": "-", "×": "x", "≤": "<=", "≥": ">=", "≈": "~", "→": "->",
          "²": "^2", "³": "^3", "±": "+/-", "σ": "sigma", "⊗": "*", "ψ": "psi"}


def _ascii(text: str) -> str:
    """FITS header text: accents dropped (é -> e), symbols spelled out."""
    import unicodedata

    text = "".join(_ASCII.get(ch, ch) for ch in str(text))
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _fits_meta(table, provenance: dict) -> None:
    """The provenance keywords of the catalogue HDU, in ``table.meta``."""
    meta = table.meta
    meta["EXTNAME"] = "CATALOG"
    meta["SURVEY"] = provenance["survey"]
    meta["CONFHASH"] = (provenance["config_hash"], "sha256 of the parsed config (16 hex)")
    meta["GALCATV"] = (provenance["galcat_version"], "galcat version")
    meta["CREATED"] = (provenance["created_utc"], "UTC creation time")
    meta["PYTHONV"] = provenance["python"]
    if "mass_to_light" in provenance:
        meta["MLREL"] = (provenance["mass_to_light"], "colour -> M/L relation of log_mass_phot")
    for i, (pkg, version) in enumerate(sorted(provenance["packages"].items())):
        meta[f"PKG{i}"] = f"{pkg}={version}"


def _fits_comments(header, names: Sequence[str], columns: CatalogueColumns) -> None:
    """``TCOMMn`` (description) and ``TUCDn`` (UCD) after each column's ``TFORMn``."""
    for i, name in enumerate(names, start=1):
        header.set(f"TCOMM{i}", _ascii(columns.descriptions[name]), after=f"TFORM{i}")
        if name in columns.ucds:
            header.set(f"TUCD{i}", columns.ucds[name], after=f"TCOMM{i}")


def write_fits(table, path: os.PathLike | str, *, columns: CatalogueColumns,
               provenance: dict) -> Path:
    """Write the catalogue as a FITS binary table with units, comments, UCDs and provenance.

    ``TCOMMn`` holds each column's description and ``TUCDn`` its UCD (the keywords
    TOPCAT/STIL read); astropy also restores descriptions from its own serialized
    header. Long values use the FITS CONTINUE convention. A whole table at once; the
    catalogue build streams its rows through the same header (`_FitsWriter`).
    """
    with _FitsWriter(Path(path), columns, provenance, len(table)) as out:
        out.write(table)
    return Path(path)


class _FitsWriter:
    """A FITS binary table written batch by batch: the header astropy writes for the
    table (its serialized columns, units, the provenance keywords, ``TCOMMn``/``TUCDn``)
    with ``NAXIS2`` the final row count, then each batch's rows as astropy encodes them,
    then the zero padding to a 2880-byte block. Atomic (temporary sibling, renamed)."""

    def __init__(self, path: Path, columns: CatalogueColumns, provenance: dict, rows: int,
                 widths: Mapping[str, int] | None = None) -> None:
        self.path, self.columns, self.provenance = Path(path), columns, provenance
        self.rows, self.written, self._header = rows, 0, None

    def __enter__(self) -> _FitsWriter:
        self._replacing = replacing_file(self.path)
        self._file = open(self._replacing.__enter__(), "wb")  # noqa: SIM115 - closed in __exit__
        return self

    def _start(self, table) -> None:
        """Write the headers astropy writes for ``table`` without rows, ``NAXIS2`` the
        final count, the comments and UCDs added."""
        from astropy.io import fits

        empty = table[:0].copy(copy_data=False)
        _fits_meta(empty, self.provenance)
        buffer = io.BytesIO()
        empty.write(buffer, format="fits")
        buffer.seek(0)
        with fits.open(buffer) as hdul:
            primary, header = hdul[0].header.copy(), hdul[1].header.copy()
        _fits_comments(header, empty.colnames, self.columns)
        header["NAXIS2"] = self.rows
        self._header = header
        self._file.write(primary.tostring().encode("ascii"))
        self._file.write(header.tostring().encode("ascii"))

    def write(self, table) -> None:
        """Append the rows of an astropy Table (the columns and widths of the first), in
        the bytes ``Table.write(format='fits')`` gives them."""
        if self._header is None:
            self._start(table)
        if not len(table):
            return
        size = self._header["NAXIS1"] * len(table)
        buffer = io.BytesIO()
        table.write(buffer, format="fits")
        data = buffer.getbuffer()  # a view: a batch is not copied again
        padded = -(-size // 2880) * 2880
        self._file.write(data[len(data) - padded:len(data) - padded + size])
        del data
        self.written += len(table)

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                if self.written != self.rows:
                    raise RuntimeError(f"FITS table {str(self.path)!r}: {self.written} rows "
                                       f"written for {self.rows} declared")
                size = self._header["NAXIS1"] * self.rows
                self._file.write(b"\0" * (-size % 2880))
        finally:
            self._file.close()
            self._replacing.__exit__(*exc)


def _votable(table, provenance: dict):
    """astropy's VOTable of ``table`` with galcat's FIELD types, name and INFOs."""
    from astropy.io.votable import from_table
    from astropy.io.votable.converters import get_converter
    from astropy.io.votable.tree import Info

    table = table.copy(copy_data=False)
    for name in table.colnames:
        # VOTable has no unsigned 64-bit type, and an SDSS specobjid passes 2**63: the
        # exact digits travel as text (FITS and Parquet keep the uint64)
        if table[name].dtype == np.uint64:
            table[name] = table[name].astype(str)
    votable = from_table(table)
    resource_table = votable.get_first_table()
    for field_ in resource_table.fields:
        # astropy writes a bool column as datatype "bit", which STIL (TOPCAT) reads
        # as a bit array and fails on; "boolean" is the VOTable type of a flag
        if field_.datatype == "bit" and field_.arraysize is None:
            field_.datatype = "boolean"
            field_.converter = get_converter(field_)
    resource_table.name = "catalogue"
    resource_table.description = (f"galcat catalogue of survey {provenance['survey']}: "
                                  "objects, measured features and photometric stellar masses")
    for key in ("survey", "config_hash", "galcat_version", "created_utc", "python",
                "mass_to_light"):
        if key in provenance:
            resource_table.infos.append(Info(name=key, value=str(provenance[key])))
    for pkg, version in sorted(provenance["packages"].items()):
        resource_table.infos.append(Info(name=f"package_{pkg}", value=str(version)))
    return votable


def write_votable(table, path: os.PathLike | str, *, provenance: dict) -> Path:
    """Write the catalogue as a VOTable (BINARY serialization; a missing float is NaN).

    Each FIELD carries its unit (VOUnit), UCD and DESCRIPTION; the provenance is
    written as INFO elements of the table. The rows are encoded column by column with
    NumPy in the bytes astropy's converters give (astropy serialises row by row,
    0.5–0.7 ms a row of 184 columns: 10 minutes for a million galaxies); the catalogue
    build streams them batch by batch (`_VotableWriter`).
    """
    with _VotableWriter(Path(path), provenance) as out:
        out.write(table)
    return Path(path)


#: VOTable datatype -> the big-endian NumPy type of its BINARY encoding.
_VOT_NUMERIC = {"double": ">f8", "float": ">f4", "long": ">i8", "int": ">i4", "short": ">i2",
                "unsignedByte": "u1"}


def _votable_rows(table, fields) -> bytes | None:
    """The BINARY serialisation of ``table``'s rows for ``fields`` (None where a field
    type is not one NumPy encodes here: the caller lets astropy do it)."""
    if getattr(table, "masked", False) or any(getattr(table[c], "mask", None) is not None
                                              and np.any(table[c].mask) for c in table.colnames):
        return None
    dtype, values = [], []
    for name, field_ in zip(table.colnames, fields, strict=True):
        column = np.asarray(table[name])
        size = field_.arraysize
        if field_.datatype in _VOT_NUMERIC and size is None:
            dtype.append((name, _VOT_NUMERIC[field_.datatype]))
            values.append(column)
        elif field_.datatype == "boolean" and size is None:
            dtype.append((name, "S1"))
            values.append(np.where(column, b"T", b"F"))
        elif field_.datatype in ("unicodeChar", "char") and size and size.isdigit():
            encoding, width = (("utf_16_be", 2) if field_.datatype == "unicodeChar"
                               else ("ascii", 1))
            dtype.append((name, f"S{width * int(size)}"))
            values.append(np.char.encode(column.astype(str), encoding))
        else:
            return None
    rows = np.empty(len(table), dtype=dtype)
    for (name, _), value in zip(dtype, values, strict=True):
        rows[name] = value
    return rows.tobytes()


class _VotableWriter:
    """A VOTable (BINARY) written batch by batch: astropy's document for the table
    (FIELDs, INFOs) around one base64 stream of every batch's rows. ``path`` None: a
    writer that writes nothing. Atomic (temporary sibling, renamed)."""

    _TAG = '<STREAM encoding="base64">'

    def __init__(self, path: Path | None, provenance: dict,
                 widths: Mapping[str, int] | None = None) -> None:
        self.path, self.provenance = path, provenance
        self._suffix = None
        self._pending = b""

    def __enter__(self) -> _VotableWriter:
        if self.path is not None:
            self._replacing = replacing_file(self.path)
            self._file = open(self._replacing.__enter__(), "w", encoding="utf-8")  # noqa: SIM115
        return self

    def _encode(self, table, fields) -> bytes:
        rows = _votable_rows(table, fields)
        if rows is None:  # astropy's own, row by row
            buffer = io.BytesIO()
            _votable(table, self.provenance).to_xml(buffer, tabledata_format="binary")
            text = buffer.getvalue().decode("utf-8")
            start = text.index(self._TAG) + len(self._TAG)
            rows = base64.b64decode(text[start:text.index("</STREAM>")].strip())
        return rows

    def _start(self, table) -> None:
        """Write astropy's document for the first row up to its stream; keep the rest."""
        votable = _votable(table[:1], self.provenance)
        self._fields = votable.get_first_table().fields
        buffer = io.BytesIO()
        votable.to_xml(buffer, tabledata_format="binary")
        text = buffer.getvalue().decode("utf-8")
        start = text.index("\n", text.index(self._TAG)) + 1
        end = text.index("</STREAM>")
        if base64.b64decode(text[start:end].strip()) != self._encode(table[:1], self._fields):
            raise RuntimeError("the VOTable rows encode differently from astropy's")
        payload_end = start + len(text[start:end].rstrip())
        self._file.write(text[:start])
        self._suffix = text[payload_end:]

    def write(self, table) -> None:
        """Append the rows of an astropy Table (the columns and widths of the first)."""
        if self.path is None or not len(table):
            return
        if self._suffix is None:
            self._start(table)
        rows = memoryview(self._encode(table, self._fields))
        # base64 of the whole stream = base64 of its 3-byte blocks, written as they fill
        head = (3 - len(self._pending)) % 3 if self._pending else 0
        if len(self._pending) + len(rows) < 3:
            self._pending += bytes(rows)
            return
        if self._pending:
            self._file.write(base64.b64encode(self._pending + bytes(rows[:head])).decode("ascii"))
        rows = rows[head:]
        cut = len(rows) - len(rows) % 3
        for start in range(0, cut, 3 << 20):  # 3 MiB at a time: a small base64 string
            self._file.write(base64.b64encode(rows[start:min(start + (3 << 20), cut)])
                             .decode("ascii"))
        self._pending = bytes(rows[cut:])

    def __exit__(self, *exc) -> None:
        if self.path is None:
            return
        try:
            if exc[0] is None:
                if self._suffix is None:
                    raise RuntimeError(f"VOTable {str(self.path)!r}: no rows")
                self._file.write(base64.b64encode(self._pending).decode("ascii"))
                self._file.write(self._suffix)
        finally:
            self._file.close()
            self._replacing.__exit__(*exc)
