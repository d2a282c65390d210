"""Survey modules. Each has two verbs sharing one output contract:

``query(config) -> pandas.DataFrame``
    One row per object: ``object_id`` (int64, unique, >= 1), ``ra``/``dec`` in
    degrees, ``z``, ``shard``, then the survey's labels.
``cutouts(rows, config) -> galcat.store.CutoutBatch``
    The cutouts of ``rows`` (ascending ``object_id``) in every configured band.

``synthetic`` renders its galaxies; ``sdss``, ``manga`` and ``jades`` are archive
clients (astroquery for the requests, :mod:`galcat.surveys._http` for retries,
back-off, the on-disk cache and validation, :mod:`galcat.surveys._cutting` for
WCS cutting and flux units); ``local`` reads the user's own table and FITS
images. Archive ids are not dense, so the archive and local modules set
``shard`` by the rank of the id (:func:`galcat.sharding.assign_shards`):
the ``shard`` column of the object table is the one to use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["SURVEYS", "SYNTHETIC_BAND_SETS", "TRUTH_CLASSES", "TRUTH_CLASS_BAND",
           "configured_bands", "get_survey"]

SURVEYS = ("synthetic", "sdss", "manga", "jades", "local")

#: Band names of the synthetic survey's band sets (their physics: `synthetic.BAND_SETS`).
SYNTHETIC_BAND_SETS: dict[str, tuple[str, ...]] = {
    "sdss": ("u", "g", "r", "i", "z"),
    "wide12": ("NUV", "u", "g", "r", "i", "z", "y", "J", "H", "K", "W1", "W2"),
}

#: Codes of the synthetic survey's per-pixel truth map ``truth_class``: the component
#: that dominates each pixel's flux. Here, not in `synthetic`, so that the per-pixel
#: network reads them without importing the renderer (galsim: half a second a job).
TRUTH_CLASSES = {0: "background", 1: "disc", 2: "bulge", 3: "companion"}
#: Band of the per-pixel truth map ``truth_class``.
TRUTH_CLASS_BAND = "r"


def configured_bands(config: dict) -> list[str]:
    """The band names the configured survey stages, from the config alone (cheap).

    Used to check band settings (``detect_band``) before any job runs.
    """
    survey = config["survey"]
    section = config.get(survey) or {}
    if survey == "synthetic":
        return list(SYNTHETIC_BAND_SETS[section["band_set"]])
    if survey == "jades":
        return [f.upper() for f in section["filters"]]
    return list(section["bands"])


def get_survey(name: str) -> ModuleType:
    """Import the survey module ``name``; a clear error names the unknown survey."""
    if name not in SURVEYS:
        raise ValueError(f"unknown survey {name!r}; known surveys: {', '.join(SURVEYS)}")
    return importlib.import_module(f"galcat.surveys.{name}")
