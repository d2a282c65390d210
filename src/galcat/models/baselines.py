"""The baselines every network is scored against, on the same test objects.

* `mean_predictor` — the training split's mean of each target (the "mean-vote"
  predictor of Galaxy Zoo 2).
* `random_forest` — scikit-learn's random forest on the `measure` features and the
  isophotal photometry of every band (`feature_table`), fitted on the training split.
* `mzr_at_mass` — the mass–metallicity relation of `galcat.relations` at a mass.
* A family's traditional measurement (``r50_mass`` of `measure`) is read from the
  features table by the family itself.

`isophotal_photometry` measures what the random forest needs beyond `measure`'s
columns: the flux, AB magnitude and S/N of the central object's segment in every
band (the colours).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from galcat import relations
from galcat.store import read_cutouts, read_segmaps

__all__ = [
    "RF_EXCLUDED",
    "feature_table",
    "isophotal_photometry",
    "mean_predictor",
    "mzr_at_mass",
    "random_forest",
]

#: Feature-table columns the random forest does not use: keys, flag words, the
#: orientation (an angle in the image frame carries no physics) and the measurement's
#: own errors (of the exposure, not the galaxy).
RF_EXCLUDED = ("object_id", "flag", "seg_flag", "statmorph_flag", "sersic_flag",
               "r50_mass_flag", "orientation_deg", "seg_background", "seg_background_rms",
               "seg_bad_fraction", "sersic_n_err")


def isophotal_photometry(
    cutouts: Sequence[os.PathLike | str], segmaps: Sequence[os.PathLike | str]
) -> pd.DataFrame:
    """Flux, AB magnitude and S/N of label 1 of the segmentation map, in every band.

    Parameters
    ----------
    cutouts, segmaps : sequences of path-like
        The cutout and segmentation groups of the same shards, in the same order.

    Returns
    -------
    DataFrame
        ``object_id``, then per band ``b``: ``iso_flux_{b}`` (the cutout's flux unit),
        ``iso_mag_{b}`` (AB; NaN for a flux <= 0) and ``iso_snr_{b}``
        (``flux / sqrt(sum sigma^2)`` over the segment's good pixels). Cost: one read
        of every shard's image and sigma, ~1 ms per object.
    """
    parts = []
    for cut, seg in zip(cutouts, segmaps, strict=True):
        batch = read_cutouts(cut)
        ids, segmap = read_segmaps(seg)
        if not np.array_equal(ids, batch.object_id):
            raise ValueError(f"segmentation maps {str(seg)!r} do not match the objects of {str(cut)!r}")
        good = (segmap == 1)[:, None] & ~batch.mask
        flux = np.where(good, batch.image, 0.0).sum(axis=(2, 3), dtype=np.float64)
        var = np.where(good, batch.sigma.astype(np.float64) ** 2, 0.0).sum(axis=(2, 3))
        cols: dict[str, np.ndarray] = {"object_id": batch.object_id}
        for j, band in enumerate(batch.bands):
            f = flux[:, j]
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"iso_flux_{band}"] = f
                cols[f"iso_mag_{band}"] = np.where(
                    f > 0, batch.zeropoints[j] - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)
                cols[f"iso_snr_{band}"] = np.where(var[:, j] > 0, f / np.sqrt(var[:, j]), np.nan)
        parts.append(pd.DataFrame(cols))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"object_id": []})


def feature_table(features: pd.DataFrame, photometry: pd.DataFrame) -> pd.DataFrame:
    """The random forest's inputs by object_id: numeric `measure` features, magnitudes
    and the colours of consecutive bands (``colour_{a}_{b}`` = mag_a - mag_b)."""
    keep = [c for c in features.columns
            if c not in RF_EXCLUDED and pd.api.types.is_numeric_dtype(features[c])]
    table = features[["object_id", *keep]].merge(
        photometry[["object_id", *[c for c in photometry.columns if c.startswith("iso_mag_")]]],
        on="object_id", how="left", validate="one_to_one")
    mags = [c for c in table.columns if c.startswith("iso_mag_")]
    for a, b in zip(mags, mags[1:], strict=False):
        table[f"colour_{a[8:]}_{b[8:]}"] = table[a] - table[b]
    return table


def mean_predictor(y_train: np.ndarray, n: int) -> np.ndarray:
    """The training mean of each target column, repeated for ``n`` objects."""
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    return np.tile(np.nanmean(y_train, axis=0), (n, 1))


def random_forest(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int,
    threads: int = 1,
    n_estimators: int = 200,
) -> np.ndarray:
    """Random-forest regression of ``y`` on features; NaN features imputed by the median.

    Parameters
    ----------
    x_train, x_test : ndarray, shape (n, f)
    y_train : ndarray, shape (n,) or (n, k)
    seed : int
    threads : int
        Trees built in parallel.
    n_estimators : int
        Trees (default 200; with ``min_samples_leaf`` 3 and a third of the features
        per split, the usual choice for tabular regression). Cost: ~1 s per 1,000
        training objects and 30 features on one core.

    Returns
    -------
    ndarray, shape (len(x_test), k) (k = 1 for a 1-D ``y_train``).
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    y = np.asarray(y_train, dtype=np.float64)
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=3, max_features=0.33,
                              random_state=seed, n_jobs=threads),
    )
    model.fit(np.asarray(x_train, np.float64), y if y.ndim == 1 or y.shape[1] > 1 else y[:, 0])
    pred = model.predict(np.asarray(x_test, np.float64))
    return pred.reshape(len(x_test), -1)


def mzr_at_mass(log_mass: np.ndarray, *, relation: str = "tremonti2004") -> np.ndarray:
    """12 + log(O/H) of the mass–metallicity relation ``relation`` at ``log_mass``."""
    mzr = relations.get(relations.MZR, relation, "mzr")
    return np.asarray(mzr(np.asarray(log_mass, dtype=np.float64)), dtype=np.float64)
