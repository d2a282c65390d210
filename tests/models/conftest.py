"""A tiny rendered survey for the model tests: real Zarr shards with truths.

64 synthetic galaxies at 32x32 pixels in two shards (rendered once per session,
~5 s), the object table with every truth column, and tiny model settings that
train in a second or two on a CPU.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from galcat.config import MEASURED_MODEL_INPUTS, load_config

#: The survey of the model tests: small cutouts, two shards of 32.
SURVEY = {"synthetic": {"n_objects": 64, "cutout_size": 32},
          "sharding": {"objects_per_shard": 32}}


def tiny_settings(config: dict, name: str, **changes) -> dict:
    """``config['models'][name]`` shrunk to a tiny network and two short epochs, without
    single-Sérsic injections (their own tests add them) and without the inputs read from
    `measure`'s features (the platform's tests train on the survey alone; those inputs
    have their own tests and the tiny DAG run trains with the defaults)."""
    settings = copy.deepcopy(config["models"][name])
    settings["inputs"] = [n for n in settings["inputs"] if n not in MEASURED_MODEL_INPUTS]
    settings.update({"width": 4, "epochs": 2, "batch_size": 16, "bin": 1, "tta": False,
                     "injections": 0, **changes})
    return settings


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return load_config(overrides=SURVEY)


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory, tiny_config) -> dict:
    """``{"objects": path, "cutouts": [paths], "dir": path}`` of the rendered survey."""
    from galcat.stages import run_fetch, run_query

    root = tmp_path_factory.mktemp("model_survey")
    objects = run_query(tiny_config, root / "objects.parquet")
    dask = {**tiny_config["dask"], "scheduler": "synchronous"}
    cutouts = [run_fetch({**tiny_config, "shard_size": 32}, None, shard, root / f"{shard}.zarr",
                         dask=dask)
               for shard in ("s000000", "s000001")]
    return {"objects": Path(objects), "cutouts": [Path(c) for c in cutouts], "dir": root}


@pytest.fixture(scope="session")
def tiny_measured(tiny_survey, tiny_config) -> dict:
    """Segmentation maps, `measure` features and residual maps of the tiny survey (~30 s)."""
    from galcat.stages import run_measure, run_segment

    root, dask = tiny_survey["dir"], {**tiny_config["dask"], "scheduler": "synchronous"}
    out = {"segmaps": [], "features": [], "residuals": []}
    for cut in tiny_survey["cutouts"]:
        shard = cut.stem
        maps, table = root / f"seg_{shard}.zarr", root / f"seg_{shard}.parquet"
        run_segment(tiny_config, cut, shard, maps, table, dask=dask)
        residuals = root / f"residuals_{shard}.zarr"
        out["features"].append(run_measure(tiny_config, cut, maps, table, shard,
                                           root / f"features_{shard}.parquet", dask=dask,
                                           residuals=residuals))
        out["segmaps"].append(maps)
        out["residuals"].append(residuals)
    return out
