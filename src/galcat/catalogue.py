"""The published catalogue: objects joined with features (and predictions).

Written twice from the same table: Parquet (units in the field metadata) and
FITS (an astropy Table with units, and a header recording provenance).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd

from galcat import __version__
from galcat.atomic import replacing_file
from galcat.tables import column_descriptions, column_units, read_table, write_table

__all__ = ["build_catalogue", "provenance", "write_fits"]

PROVENANCE_PACKAGES = ("numpy", "astropy", "photutils", "statmorph", "galsim", "zarr", "snakemake")


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
        "galcat_version": __version__,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "packages": versions,
    }


def build_catalogue(
    objects: os.PathLike | str,
    features: Sequence[os.PathLike | str],
    *,
    config_hash: str,
    survey: str,
    output_parquet: os.PathLike | str,
    output_fits: os.PathLike | str,
) -> pd.DataFrame:
    """Join the object table with every shard's features; write Parquet and FITS."""
    obj = read_table(objects)
    units = column_units(objects)
    descriptions = column_descriptions(objects)
    parts = []
    for path in features:
        parts.append(read_table(path))
        units.update(column_units(path))
        descriptions.update(column_descriptions(path))
    feat = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"object_id": []})
    clash = (set(feat.columns) & set(obj.columns)) - {"object_id"}
    if clash:
        raise ValueError(f"feature columns {sorted(clash)} clash with object-table columns")
    cat = obj.merge(feat, on="object_id", how="left", validate="one_to_one")
    cat = cat.sort_values("object_id").reset_index(drop=True)
    prov = provenance(config_hash, survey=survey)
    write_table(cat, output_parquet, units=units, descriptions=descriptions, metadata=prov)
    write_fits(cat, output_fits, units=units, descriptions=descriptions, provenance=prov)
    return cat


def write_fits(
    cat: pd.DataFrame,
    path: os.PathLike | str,
    *,
    units: dict[str, str],
    descriptions: dict[str, str],
    provenance: dict,
) -> Path:
    """Write ``cat`` as a FITS binary table with units and a provenance header."""
    from astropy import units as u
    from astropy.table import Table

    table = Table()
    verbatim_units = {}  # units FITS cannot express (dex, nanomaggy): written as text
    for name in cat.columns:
        values = cat[name].to_numpy()
        if values.dtype == object:
            values = np.asarray([("" if v is None else str(v)) for v in values])
        unit = units.get(name) or None
        table[name] = values
        if unit:
            try:
                table[name].unit = u.Unit(u.Unit(unit).to_string("fits"), format="fits")
            except (ValueError, TypeError):
                verbatim_units[name] = unit
        if name in descriptions:
            table[name].description = descriptions[name]
    meta = table.meta
    meta["EXTNAME"] = "CATALOG"
    meta["SURVEY"] = provenance["survey"]
    meta["CONFHASH"] = (provenance["config_hash"], "sha256 of the parsed config (16 hex)")
    meta["GALCATV"] = (provenance["galcat_version"], "galcat version")
    meta["CREATED"] = (provenance["created_utc"], "UTC creation time")
    meta["PYTHONV"] = provenance["python"]
    for i, (pkg, version) in enumerate(sorted(provenance["packages"].items())):
        meta[f"PKG{i}"] = f"{pkg}={version}"
    final = Path(path)
    with replacing_file(final) as tmp:
        table.write(tmp, format="fits", overwrite=True)
        if verbatim_units:
            from astropy.io import fits

            with fits.open(tmp, mode="update") as hdul:
                header = hdul[1].header
                for i, name in enumerate(table.colnames, start=1):
                    if name in verbatim_units:
                        header[f"TUNIT{i}"] = verbatim_units[name]
    return final
