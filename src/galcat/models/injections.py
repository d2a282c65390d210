"""Single-Sérsic injections as training objects (``models.<name>.injections``).

The synthetic survey's galaxies are a bulge plus a disc, so their Sérsic index is a
convention (``truth_sersic_n``: the index with the same r80/r20 concentration), while
an injected single Sérsic has an exact one. A model of a family that declares
`Family.injection_labels` may add ``injections`` such galaxies to its training: they
are drawn by `galcat.surveys.single_sersic.render_single_sersic` with the synthetic
survey's r-band PSF, pixel scale and sky noise, written as one more cutout shard
(Zarr, the survey's layout) beside the model, split by the same hash of their ids,
and trained on with the survey's galaxies. Their ids are negative (-n … -1), so they
never meet a survey object in the splits, the predictions or the scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from galcat.store import CutoutBatch, write_cutouts

__all__ = ["INJECTION_BAND", "TRAINING_SNR", "write_injections"]

#: The one band the injections are drawn in.
INJECTION_BAND = "r"
#: Matched-filter S/N range of the training injections: down to the survey's faint
#: galaxies, where the fit of `measure` fails most.
TRAINING_SNR = (10.0, 400.0)
#: Seed salt of the training injections (the recovery benchmark draws with its own).
_SALT = 0x1A7E


def write_injections(path: os.PathLike | str, n: int, synthetic_config: Mapping, *,
                     seed: int, labels: Mapping[str, str]) -> pd.DataFrame:
    """Draw ``n`` single-Sérsic galaxies into a cutout shard at ``path``; their labels.

    Parameters
    ----------
    path : path-like
        The ``.zarr`` group to write (replaced whole, atomically).
    n : int
        Galaxies to draw (> 0).
    synthetic_config : mapping
        The config's ``synthetic`` section (cutout size, pixel scale, PSF, sky).
    seed : int
        The model's seed: the same seed draws the same galaxies (a resumed job trains on
        the same ones).
    labels : mapping of str to str
        Label column of the family -> truth column of
        `galcat.surveys.single_sersic.render_single_sersic` (`Family.injection_labels`).

    Returns
    -------
    DataFrame
        ``object_id`` (-n … -1, ascending, as the shard) and the family's label columns.

    Notes
    -----
    Cost: ~3 ms per 64 x 64 galaxy to draw, one float32 image per galaxy on disk.
    """
    from galcat.surveys import synthetic
    from galcat.surveys.single_sersic import render_single_sersic

    if int(n) <= 0:
        raise ValueError(f"injections must be a positive number of galaxies; got {n!r}")
    rng = np.random.default_rng([int(seed), _SALT])
    truth, images, sky = render_single_sersic(int(n), synthetic_config, rng=rng,
                                              snr=TRAINING_SNR)
    object_id = np.arange(-int(n), 0, dtype=np.int64)
    cfg = {"synthetic": dict(synthetic_config)}
    batch = CutoutBatch(
        object_id=object_id, image=images.astype(np.float32),
        sigma=np.full(images.shape, sky, np.float32), mask=np.zeros(images.shape, bool),
        psf=synthetic.psf_image(cfg, INJECTION_BAND)[None].astype(np.float32),
        bands=[INJECTION_BAND], pixel_scale=float(synthetic_config["pixel_scale"]),
        zeropoints=[22.5], survey="injections",
    )
    write_cutouts(Path(path), batch, shard="injections")
    return pd.DataFrame({"object_id": object_id,
                         **{label: truth[column].to_numpy() for label, column in labels.items()}})
