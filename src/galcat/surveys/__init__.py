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

__all__ = ["SURVEYS", "get_survey"]

SURVEYS = ("synthetic", "sdss", "manga", "jades", "local")


def get_survey(name: str) -> ModuleType:
    """Import the survey module ``name``; a clear error names the unknown survey."""
    if name not in SURVEYS:
        raise ValueError(f"unknown survey {name!r}; known surveys: {', '.join(SURVEYS)}")
    return importlib.import_module(f"galcat.surveys.{name}")
