"""Scoring a trained model and its baselines on the test split: ``metrics.json``.

`evaluate_model` joins the object table (truths), the `measure` features, the
isophotal photometry of every band (`galcat.models.baselines`) and the model's
predictions, takes the test split the model was trained with (``splits.parquet``),
computes the family's baselines (fitted on the training split where they learn),
and scores the model and every baseline **on the same objects**: the test objects
with a finite truth where every one of them gives a finite prediction. How many
test objects each baseline failed on is reported beside.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.atomic import atomic_file
from galcat.bands import AUTO, resolve_detect_band
from galcat.labels import label_table
from galcat.models import baselines as _baselines
from galcat.models.data import input_column, read_labels
from galcat.models.registry import Family, get_family
from galcat.tables import read_table

__all__ = ["EvalData", "evaluate_model"]


@dataclass
class EvalData:
    """What a family's `~galcat.models.registry.Family.baselines` and ``score`` see.

    Attributes
    ----------
    table : DataFrame
        Objects joined with features and photometry (and ``split``), by object_id.
    train, test : ndarray of bool
        Rows of the training split and of the scored test objects.
    features : list of str
        The random forest's input columns of ``table``.
    snr_column : str
        Column of the isophotal S/N in the detection band.
    context : dict
        Survey facts the scores need (``mzr_relation``, ``mzr_scatter_dex``).
    seed, threads : int
    cutouts, segmaps, pixelmaps : list of path-like
        Every shard's cutout and segmentation groups, and the model's pixel maps
        (families with ``pixel_output``), for scores that need the pixels.
    bands : list of str or None
        The model's bands (None: all); ``bin`` its binning, ``crop`` the central
        fraction of the cutout it sees (`galcat.models.data.prepare_images`);
        ``scaling`` the stretch of its input (`galcat.models.nets.Normalise`).
    """

    table: pd.DataFrame
    train: np.ndarray
    test: np.ndarray
    features: list[str]
    snr_column: str
    context: dict = field(default_factory=dict)
    seed: int = 0
    threads: int = 1
    cutouts: list = field(default_factory=list)
    segmaps: list = field(default_factory=list)
    pixelmaps: list = field(default_factory=list)
    bands: list | None = None
    bin: int = 1
    crop: float = 1.0
    scaling: str = "asinh"

    def random_forest(self, y_train: np.ndarray) -> np.ndarray:
        """`galcat.models.baselines.random_forest` of ``y_train`` (training rows) -> test rows."""
        x = self.table[self.features].to_numpy(np.float64)
        y = np.asarray(y_train, np.float64).reshape(int(self.train.sum()), -1)
        ok = np.all(np.isfinite(y), axis=1)
        return _baselines.random_forest(x[self.train][ok], y[ok], x[self.test],
                                         seed=self.seed, threads=self.threads)


    def normalised_images(self, rows: np.ndarray) -> np.ndarray:
        """Images of ``table`` rows ``rows`` (a boolean mask) as the network sees them.

        The model's bands and binning, normalised by `galcat.models.nets.Normalise`
        with the statistics `galcat.models.data.fit_normalisation` gives on the
        training split (the values saved with the model). ``(n, band, y, x)`` float64.
        Cost: one read of those objects.
        """
        from galcat.models.data import (
            CutoutDataset,
            ShardIndex,
            fit_normalisation,
            stretch_images,
        )
        from galcat.store import CutoutReader

        readers = self.context.setdefault("_readers", [CutoutReader(p) for p in self.cutouts])

        def dataset(mask: np.ndarray) -> CutoutDataset:
            ids = self.table.loc[mask, "object_id"].to_numpy()
            return CutoutDataset(ShardIndex.build(readers, ids), np.zeros((len(ids), 1)),
                                 bands=self.bands, bin=self.bin, crop=self.crop)

        if "_norm" not in self.context:
            from galcat.models.train import NORMALISATION_OBJECTS

            self.context["_norm"] = fit_normalisation(dataset(self.train),
                                                      max_objects=NORMALISATION_OBJECTS,
                                                      scaling=self.scaling)
        norm = self.context["_norm"]
        ds = dataset(np.asarray(rows, bool))
        x = np.concatenate([ds.read_images(np.arange(i, min(i + 256, len(ds))))
                            for i in range(0, len(ds), 256)]) if len(ds) else np.zeros((0,))
        x = stretch_images(x.astype(np.float64), norm["scale"], scaling=self.scaling)
        return (x - norm["mean"][None, :, None, None]) / norm["std"][None, :, None, None]


def _read_all(paths: Sequence[os.PathLike | str]) -> pd.DataFrame:
    return pd.concat([read_table(p) for p in paths], ignore_index=True)


def _primary(family: Family, settings: Mapping) -> list[str]:
    return [o.name for o in family.outputs(settings) if o.required]


def _finite_rows(pred: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.all([np.isfinite(np.asarray(pred[n], np.float64)) for n in names], axis=0)


def evaluate_model(
    name: str,
    settings: Mapping,
    *,
    objects: os.PathLike | str | Sequence[os.PathLike | str],
    features: Sequence[os.PathLike | str],
    cutouts: Sequence[os.PathLike | str],
    segmaps: Sequence[os.PathLike | str],
    predictions: Sequence[os.PathLike | str],
    splits: os.PathLike | str,
    output: os.PathLike | str,
    pixelmaps: Sequence[os.PathLike | str] = (),
    context: Mapping | None = None,
    detect_band: str = "r",
    threads: int = 1,
    labels: Mapping | None = None,
) -> dict:
    """Test-split scores of model ``name`` and its family's baselines; write ``output``.

    Parameters
    ----------
    name : str
    settings : mapping
        The model's config entry (``family``, ``seed``; ``bands``, ``bin`` and
        ``crop`` (absent: 1) for scores that read the images).
    objects, features, cutouts, segmaps, predictions, splits : paths
        Object table; every shard's features, cutouts, segmentation maps and this
        model's predictions; the model's ``splits.parquet``.
    output : path-like
        ``metrics.json`` (written atomically).
    pixelmaps : sequence of path-like
        The model's pixel maps of every shard (families with ``pixel_output``).
    context : mapping, optional
        Survey facts the family scores with (``mzr_relation``, ``mzr_scatter_dex``).
    detect_band : str
        Band whose isophotal S/N bins the scores (``sum``, ``auto`` or a band the
        cutouts lack: the middle band, as ``auto`` resolves it).
    threads : int
        Cores for the random forests.
    labels : mapping, optional
        `galcat.labels.label_spec` of the family on the survey (columns, quality
        cuts); None: the family's own columns, uncut. Objects whose labels fail a
        cut are not scored; the cuts and their counts are written as ``labels``.

    Returns
    -------
    dict written as JSON. Cost: one read of every shard (~1 ms per object) and the
    random forests (seconds per thousand training objects).
    """
    family = get_family(settings["family"])
    table, label_summary = label_table(read_labels(objects), labels, family.label_columns,
                                       source=str(objects))
    feats = _read_all(features)
    phot = _baselines.isophotal_photometry(cutouts, segmaps)
    rf_table = _baselines.feature_table(feats, phot)
    clash = (set(feats.columns) | set(phot.columns)) & set(table.columns) - {"object_id"}
    table = table.drop(columns=sorted(clash))
    table = table.merge(feats, on="object_id", how="inner", validate="one_to_one")
    table = table.merge(phot, on="object_id", how="left", validate="one_to_one")
    rf_cols = [c for c in rf_table.columns if c != "object_id"]
    # the forest sees what the network sees beside the image (the redshift, a
    # measured radius)
    rf_cols += [col for col in (input_column(n) for n in settings.get("inputs") or ())
                if col in table.columns and col not in rf_cols]
    table = table.merge(rf_table[["object_id", *[c for c in rf_cols if c not in table.columns]]],
                        on="object_id", how="left", validate="one_to_one")
    sp = read_table(splits)
    table = table.merge(sp, on="object_id", how="inner", validate="one_to_one")
    pred = _read_all(predictions)
    prefix = f"nn_{name}_"
    pred = pred[["object_id", *[c for c in pred.columns if c.startswith(prefix)]]]
    pred = pred.rename(columns={c: c[len(prefix):] for c in pred.columns if c != "object_id"})
    table = table.merge(pred.drop(columns=["split"], errors="ignore").add_prefix("model:")
                        .rename(columns={"model:object_id": "object_id"}),
                        on="object_id", how="left", validate="one_to_one")
    table = table.sort_values("object_id").reset_index(drop=True)

    truth_ok = family.labelled(table)
    test_all = (table["split"].to_numpy() == "test") & truth_ok
    # S/N bins in the detection band; `sum` and `auto` mean the survey's middle band here
    snr_bands = [c[len("iso_snr_"):] for c in table.columns if c.startswith("iso_snr_")]
    snr_band = (detect_band if detect_band in snr_bands
                else resolve_detect_band(AUTO, snr_bands) if snr_bands else detect_band)
    data = EvalData(table=table, train=(table["split"].to_numpy() == "train"), test=test_all,
                    features=rf_cols, snr_column=f"iso_snr_{snr_band}",
                    context=dict(context or {}), seed=int(settings["seed"]), threads=threads,
                    cutouts=list(cutouts), segmaps=list(segmaps), pixelmaps=list(pixelmaps),
                    bands=settings.get("bands"), bin=int(settings.get("bin", 1)),
                    crop=float(settings.get("crop", 1.0)),
                    scaling=settings.get("scaling", "asinh"))
    if not test_all.any():
        return _write(output, {"model": name, "family": family.name, "settings": dict(settings),
                               "labels": label_summary,
                               "n_objects": {"train": int(data.train.sum()), "test": 0,
                                             "scored": 0},
                               "failed_on_test": {}, "scores": {}})
    model_cols = [c for c in table.columns if c.startswith("model:")]
    preds = {"model": {c[6:]: table.loc[test_all, c].to_numpy() for c in model_cols}}
    preds.update(family.baselines(data))
    names = _primary(family, settings)
    ok = np.ones(int(test_all.sum()), bool)
    failed = {}
    for key, p in preds.items():
        finite = _finite_rows(p, [n for n in names if n in p])
        failed[key] = int((~finite).sum())
        ok &= finite
    scored = test_all.copy()
    scored[test_all] = ok
    data.test = scored
    scores = family.score(data, {k: {c: np.asarray(v)[ok] for c, v in p.items()}
                                 for k, p in preds.items()})
    result = {
        "model": name, "family": family.name, "settings": dict(settings),
        "labels": label_summary,
        "n_objects": {"train": int(data.train.sum()), "test": int(test_all.sum()),
                      "scored": int(ok.sum())},
        "failed_on_test": failed,
        "scores": scores,
    }
    return _write(output, result)


def _write(output: os.PathLike | str, result: dict) -> dict:
    final = Path(output)
    tmp = atomic_file(final)
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, final)
    return result
