"""The stages of the galcat DAG as plain functions.

Each Snakemake rule calls one of these through the ``galcat`` command line; they
take the config sections the rule passes in its ``params`` and explicit paths, so
they can be run, tested and reused without Snakemake.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import atomic_file, replacing_file
from galcat.config import ConfigError, settings
from galcat.parallel import dask_options, map_blocks_of_objects
from galcat.provenance import stage_metadata
from galcat.store import (
    CutoutBatch,
    read_cutouts,
    read_segmaps,
    write_cutouts,
    write_residual_maps,
    write_segmaps,
)
from galcat.surveys import get_survey
from galcat.tables import column_descriptions, column_units, read_table, write_table

__all__ = [
    "concat_batches",
    "read_shard_rows",
    "run_catalogue",
    "run_defaults",
    "run_detect",
    "run_fetch",
    "run_local_config",
    "run_measure",
    "run_plan_shards",
    "run_query",
    "run_release",
    "run_report",
    "run_segment",
    "run_status",
    "run_validate_config",
]

log = logging.getLogger("galcat.stages")


class EmptyShardError(RuntimeError):
    """A shard named in the DAG has no objects in the object table."""


def _with_execution(config: dict, dask: dict | None, threads: int | None) -> dict:
    """The rule's params plus the job's execution settings (never part of the params).

    How a job runs (Dask scheduler, workers, the job's threads) changes no output
    (serial output equals parallel output, by test), so it reaches the stage
    beside the params and an edit of it reruns nothing.
    """
    execution = dict(settings({"dask": dask}, "dask"))
    if threads:  # the job's cores (set by the profile) decide its Dask workers
        execution["workers"] = int(threads)
    return {**config, "dask": execution}


def check_object_table(df: pd.DataFrame, *, source: str) -> None:
    """Raise a clear error if the object table breaks the contract."""
    missing = [c for c in ("object_id", "ra", "dec", "z", "shard") if c not in df.columns]
    if missing:
        raise ValueError(f"object table from {source} lacks columns {missing}")
    if df.empty:
        raise ValueError(f"object table from {source} is empty: the query matched no objects")
    dup = df["object_id"][df["object_id"].duplicated()]
    if len(dup):
        raise ValueError(f"object table from {source} repeats object_id {dup.iloc[0]}")
    bad = df[(df["dec"].abs() > 90) | (df["ra"] < 0) | (df["ra"] >= 360)]
    if len(bad):
        raise ValueError(
            f"object {bad['object_id'].iloc[0]} from {source} has coordinates out of range"
        )


def run_query(
    config: dict,
    output: os.PathLike | str,
    shard_map: os.PathLike | str | None = None,
    detections: os.PathLike | str | None = None,
) -> Path:
    """Query the survey and write the object table.

    ``shard_map`` (archive and local surveys): the map of every object ever planned to
    its shard, kept beside the results; known objects keep their shard, new ones go to
    new shards (`galcat.sharding.stable_shards`). The synthetic survey's ids are dense
    and grow at the end, so its shards are id blocks and it needs no map.
    ``detections``: the detection table (`run_detect`) that ``local.objects: detect``
    reads instead of a user's table.
    """
    survey = get_survey(config["survey"])
    log.info("query_catalog: survey %s", config["survey"])
    extra = {"detections": detections} if detections is not None else {}
    df = survey.query(config, **extra).sort_values("object_id").reset_index(drop=True)
    if shard_map is not None and config["survey"] != "synthetic":
        from galcat.sharding import stable_shards

        per_shard = settings(config, "sharding")["objects_per_shard"]
        df = stable_shards(df, per_shard, shard_map)
    check_object_table(df, source=f"survey {config['survey']!r}")
    n_shards = df["shard"].nunique()
    log.info("query_catalog: %d objects in %d shards", len(df), n_shards)
    units = dict(column_units(detections)) if detections is not None else {}
    descriptions = dict(column_descriptions(detections)) if detections is not None else {}
    return write_table(
        df,
        output,
        units={**units, **getattr(survey, "COLUMN_UNITS", {})},
        descriptions={**descriptions, **getattr(survey, "COLUMN_DESCRIPTIONS", {})},
        metadata={"survey": config["survey"]},
    )


def run_detect(
    config: dict,
    output: os.PathLike | str,
    *,
    dask: dict | None = None,
    threads: int | None = None,
) -> Path:
    """Detect the objects of the local mosaics (``local.objects: detect``); write their table."""
    from galcat.detection import detect_mosaic, detection_units

    config = _with_execution(config, dask, threads)
    table = detect_mosaic(config, label="detect")
    units, descriptions = detection_units(list(settings(config, "local")["bands"]))
    log.info("detect: %d objects, %d of them point sources", len(table),
             int(table["point_source"].sum()) if len(table) else 0)
    return write_table(table, output, units=units, descriptions=descriptions,
                       metadata=stage_metadata("detect", "mosaic", config))


def run_plan_shards(
    objects: os.PathLike | str, output: os.PathLike | str, shard_dir: os.PathLike | str
) -> Path:
    """List the shards of the object table and write each shard's rows.

    ``shard_dir/{shard}.parquet`` is rewritten only when that shard's rows
    changed, so Snakemake refetches exactly the shards whose objects changed
    (a nightly query that adds objects leaves finished shards alone).
    """
    df = read_table(objects)
    units, descriptions = column_units(objects), column_descriptions(objects)
    shards = sorted(df["shard"].unique())
    if not shards:
        raise EmptyShardError(f"object table {str(objects)!r} has no shards")
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    changed = 0
    for name, rows in df.groupby("shard", sort=True):
        final = shard_dir / f"{name}.parquet"
        tmp = write_table(rows.sort_values("object_id"), atomic_file(final),
                          units=units, descriptions=descriptions)
        if final.exists() and final.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            changed += 1
    final = Path(output)
    with replacing_file(final) as tmp:
        tmp.write_text("".join(f"{s}\n" for s in shards))
    log.info("plan_shards: %d shards, %d new or changed", len(shards), changed)
    return final


def read_shard_rows(objects: os.PathLike | str, shard: str) -> pd.DataFrame:
    """The rows of ``shard`` in the object table, ascending object_id."""
    import pyarrow.parquet as pq

    table = pq.read_table(objects, filters=[("shard", "==", shard)])
    rows = table.to_pandas().sort_values("object_id").reset_index(drop=True)
    if rows.empty:
        raise EmptyShardError(f"shard {shard!r} has no objects in {str(objects)!r}")
    return rows


def concat_batches(batches: list[CutoutBatch]) -> CutoutBatch:
    """Join cutout batches of the same survey and bands, in order, on the stamp side of
    the largest (objects cut at their own sizes keep them)."""
    side = max(b.image.shape[-1] for b in batches)
    batches = [b.padded(side) for b in batches]
    first = batches[0]
    extras = {
        key: np.concatenate([b.extras[key] for b in batches]) for key in first.extras
    }
    return CutoutBatch(
        object_id=np.concatenate([b.object_id for b in batches]),
        image=np.concatenate([b.image for b in batches]),
        sigma=np.concatenate([b.sigma for b in batches]),
        mask=np.concatenate([b.mask for b in batches]),
        psf=first.psf,
        bands=first.bands,
        pixel_scale=first.pixel_scale,
        zeropoints=first.zeropoints,
        flux_unit=first.flux_unit,
        survey=first.survey,
        extras=extras,
        **{name: np.concatenate([getattr(b, name) for b in batches])
           for name in ("cut_size", "cut_origin", "cut_wcs")},
    )


def run_fetch(
    config: dict,
    objects: os.PathLike | str | None,
    shard: str,
    output: os.PathLike | str,
    *,
    dask: dict | None = None,
    threads: int | None = None,
) -> Path:
    """Stage the cutouts of one shard into Zarr.

    ``objects`` is the shard's own object table (archive surveys); a survey that
    can make its rows alone (synthetic: ``shard_rows``) is called with None.
    """
    config = _with_execution(config, dask, threads)
    survey = get_survey(config["survey"])
    if objects is None:
        rows = survey.shard_rows(config, shard)
    else:
        rows = read_shard_rows(objects, shard)
    blocks = map_blocks_of_objects(
        lambda sl: survey.cutouts(rows.iloc[sl], config),
        len(rows),
        label=f"fetch_cutouts {shard}",
        **dask_options(config),
    )
    batch = concat_batches(blocks)
    return write_cutouts(output, batch, shard=shard)


def run_segment(
    config: dict,
    cutouts: os.PathLike | str,
    shard: str,
    output_maps: os.PathLike | str,
    output_table: os.PathLike | str,
    *,
    dask: dict | None = None,
    threads: int | None = None,
) -> None:
    """Segment every object of a shard; write the maps (Zarr) and flags (Parquet)."""
    from galcat.segment import SEGMENT_COLUMN_DESCRIPTIONS, segment_shard

    config = _with_execution(config, dask, threads)
    batch = read_cutouts(cutouts)
    result = segment_shard(batch, config=config, label=f"segment {shard}")
    write_segmaps(
        output_maps,
        result.segmap,
        batch.object_id,
        shard=shard,
        method=settings(config, "segment")["method"],
    )
    write_table(result.table, output_table, units=result.units,
                descriptions=SEGMENT_COLUMN_DESCRIPTIONS,
                metadata=stage_metadata("segment", shard, config))


def run_measure(
    config: dict,
    cutouts: os.PathLike | str,
    segmaps: os.PathLike | str,
    segment_table: os.PathLike | str,
    shard: str,
    output: os.PathLike | str,
    *,
    dask: dict | None = None,
    threads: int | None = None,
    residuals: os.PathLike | str | None = None,
) -> Path:
    """Measure every object of a shard; write features keyed by object_id, and with
    ``residuals`` the objects' residual significance maps there (Zarr)."""
    from galcat import photometry
    from galcat.morphology import (
        FEATURE_DESCRIPTIONS,
        FEATURE_UNITS,
        RESIDUAL_THRESHOLD,
        measure_shard,
    )

    config = _with_execution(config, dask, threads)
    batch = read_cutouts(cutouts)
    object_id, segmap = read_segmaps(segmaps)
    if not np.array_equal(object_id, batch.object_id):
        raise ValueError(
            f"segmentation maps {str(segmaps)!r} do not match the objects of {str(cutouts)!r}"
        )
    features = measure_shard(batch, segmap, config=config, label=f"measure {shard}",
                             residual_maps=residuals is not None)
    if residuals is not None:
        features, maps = features
        # written first: the features table is the rule's sign that the job finished
        write_residual_maps(residuals, maps, batch.object_id, shard=shard, attrs={
            "units": "noise sigmas above the threshold", "threshold": RESIDUAL_THRESHOLD,
            "kernel": "the detection band's PSF", "model": "bulge + disc"})
    seg = read_table(segment_table)
    table = seg.merge(features, on="object_id", how="outer", validate="one_to_one")
    mag_units, mag_descriptions = photometry.column_docs(features.columns)
    return write_table(
        table,
        output,
        units={**column_units(segment_table), **FEATURE_UNITS, **mag_units},
        descriptions={**column_descriptions(segment_table), **FEATURE_DESCRIPTIONS,
                      **mag_descriptions},
        metadata={**stage_metadata("measure", shard, config),
                  "priors": features.attrs.get("priors")},
    )


def run_catalogue(
    config: dict,
    objects: os.PathLike | str,
    features: list[os.PathLike | str],
    config_hash: str,
    output_parquet: os.PathLike | str,
    output_fits: os.PathLike | str,
    output_votable: os.PathLike | str | None = None,
    predictions: list[os.PathLike | str] | None = None,
) -> None:
    """Join the object table, every shard's features and the models' predictions."""
    from galcat.catalogue import build_catalogue

    build_catalogue(
        objects, features, config_hash=config_hash, survey=config["survey"],
        output_parquet=output_parquet, output_fits=output_fits, output_votable=output_votable,
        mass_to_light=settings(config, "measure")["mass_to_light"],
        predictions=predictions or (),
    )


def run_report(
    config: dict,
    catalogue: os.PathLike | str,
    output: os.PathLike | str,
    figures: list[os.PathLike | str] = (),
    analysis_dir: os.PathLike | str | None = None,
) -> None:
    """Write the HTML report of the catalogue (and the figures Snakemake's report shows)."""
    from galcat.report import write_report

    write_report(catalogue, output, config=config, figures=list(figures),
                 analysis_dir=analysis_dir)


def run_release(
    releases_dir: os.PathLike | str,
    date: str,
    catalogue: os.PathLike | str,
    files: list[os.PathLike | str],
) -> None:
    """Write the dated release ``date`` and switch ``latest`` to it."""
    from galcat.release import make_release

    make_release(releases_dir, date, files, catalogue=catalogue)


def run_validate_config(configs: list[os.PathLike | str]) -> None:
    """Validate YAML config files (merged in order on the defaults) against the schema."""
    from galcat.config import load_config

    load_config(*configs)
    print("config is valid")


def _pairs(items, what: str, cast=str) -> dict | None:
    """``band=value`` strings as a dict (None for none; one bare value: itself)."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return cast(items[0])
    out = {}
    for item in items:
        band, sep, value = item.partition("=")
        if not sep or not band or not value:
            raise ConfigError(f"{what}: {item!r} is not BAND=VALUE")
        out[band] = cast(value)
    return out


def run_local_config(
    images: list[str],
    output: os.PathLike | str,
    *,
    psf_fwhm: list[str] | None = None,
    psf: list[str] | None = None,
    pixel_scale: float | None = None,
    zeropoint: list[str] | None = None,
    noise: list[str] | None = None,
    noise_kind: str = "sigma",
    mask: str | None = None,
    mask_kind: str = "bad",
    detect_band: str = "auto",
    results: str = "results",
) -> Path:
    """Write a config that detects and measures the objects of FITS mosaics (checked:
    `galcat.surveys.local.mosaic_config`), ready for ``snakemake --configfile``."""
    import yaml

    from galcat.config import load_config
    from galcat.surveys.local import LocalDataError, mosaic_config

    try:
        config = mosaic_config(
            _pairs(images, "mosaics"), psf_fwhm=_pairs(psf_fwhm, "--psf-fwhm", float),
            psf=_pairs(psf, "--psf"), pixel_scale=pixel_scale,
            zeropoint=_pairs(zeropoint, "--zeropoint", float), noise=_pairs(noise, "--noise"),
            noise_kind=noise_kind, mask=mask, mask_kind=mask_kind, detect_band=detect_band,
            results=results)
    except LocalDataError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(config["local"]["images"]["files"], str):
        raise ConfigError("mosaics: give each as BAND=PATH")
    load_config(overrides=config)  # the whole config, validated as the run will
    final = Path(output)
    with replacing_file(final) as tmp:
        tmp.write_text("# galcat on your own mosaics: detection, cutouts, measurement.\n"
                       f"#   snakemake --cores 8 --configfile {final.name}\n"
                       + yaml.safe_dump(config, sort_keys=False))
    print(f"wrote {final}: {len(config['local']['bands'])} band(s); run "
          f"`snakemake --cores 8 --configfile {final}`")
    return final


def run_defaults() -> None:
    """Print the default configuration, the text of ``config/config.yaml``."""
    from galcat.config import default_config_yaml

    print(default_config_yaml(), end="")


def run_status(results: os.PathLike | str, outdated: bool = False) -> None:
    """Print each shard's recorded galcat version (or, with ``outdated``, only the
    paths written by another version, for ``snakemake -R $(galcat status --outdated)``)."""
    from galcat.provenance import code_version, shard_status

    table = shard_status(results)
    if outdated:
        for path in table.loc[table["outdated"], "path"]:
            print(path)
        return
    print(f"galcat {code_version()}; {len(table)} shard tables under {results}")
    if len(table):
        print(table.drop(columns="path").to_string(index=False))
    stale = int(table["outdated"].sum())
    if stale:
        print(f"{stale} written by another version: "
              f"snakemake -R $(galcat status --outdated --results {results}) reruns them")
