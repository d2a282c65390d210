"""Bad pixels: each faulty galaxy is measured beside its clean twin in one shard.

Nothing may be lost (every object has its row in the features table) and nothing may
be silently wrong: the faulty galaxy's radii are those of its twin (within 10%), or a
flag bit its twin lacks says why they are not.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galcat import stages
from galcat.config import load_config
from galcat.flags import FLAG_COLUMNS, describe
from galcat.store import CutoutBatch, read_cutouts, read_segmaps, write_cutouts
from galcat.surveys import synthetic
from galcat.tables import read_table
from tests.faults.scenarios import SCENARIOS

pytestmark = pytest.mark.slow

#: Measurements a fault must not move silently, and the flag columns whose bits may say
#: why one moved (the segmentation's generic BAD_PIXELS does not name the measurement).
KEY_COLUMNS = {"r50_psf_corrected": ("flag",), "r50_mass": ("flag", "r50_mass_flag"),
               "r50": ("flag",)}
TOLERANCE = 0.10
SERIAL = {"scheduler": "synchronous", "objects_per_task": 4, "workers": 1}


def _block(batch, i, value=np.nan, *, masked=False, size=10, offset=(4, 4)):
    ny, nx = batch.image.shape[-2:]
    y0, x0 = ny // 2 + offset[0], nx // 2 + offset[1]
    batch.image[i, :, y0:y0 + size, x0:x0 + size] = value
    if masked:
        batch.mask[i, :, y0:y0 + size, x0:x0 + size] = True


def _band(batch, band):
    return batch.bands.index(band)


def _saturate(batch, i):
    r = _band(batch, "r")
    ny, nx = batch.image.shape[-2:]
    peak = float(np.nanmax(batch.image[i, r]))
    batch.image[i, :, ny // 2 - 1:ny // 2 + 2, nx // 2 - 1:nx // 2 + 2] = 1000 * peak


def _small(batch, i, keep=40):
    ny, nx = batch.image.shape[-2:]
    lo = (ny - keep) // 2
    outside = np.ones((ny, nx), dtype=bool)
    outside[lo:lo + keep, lo:lo + keep] = False
    batch.image[i, :, outside] = np.nan
    batch.mask[i, :, outside] = True


def _edge(batch, i, margin=6):
    ny, nx = batch.image.shape[-2:]
    shift = nx // 2 - margin
    for arr, fill in ((batch.image, np.nan), (batch.sigma, np.nan), (batch.mask, True)):
        moved = np.roll(arr[i], -shift, axis=-1)
        moved[..., nx - shift:] = fill
        arr[i] = moved


FAULTS = {
    "nan_block": lambda b, i: _block(b, i),
    "nan_core": lambda b, i: _block(b, i, size=6, offset=(-3, -3)),
    "masked_block": lambda b, i: _block(b, i, masked=True),
    "inf_pixels": lambda b, i: b.image.__setitem__(
        (i, _band(b, "r"), [20, 21, 40, 44, 50], [22, 45, 19, 41, 30]), np.inf),
    "zero_band": lambda b, i: b.image.__setitem__((i, _band(b, "g")), 0.0),
    "missing_band": lambda b, i: (b.image.__setitem__((i, _band(b, "i")), np.nan),
                                  b.mask.__setitem__((i, _band(b, "i")), True)),
    "saturated": _saturate,
    "zero_sigma": lambda b, i: b.sigma.__setitem__((i, _band(b, "r")), 0.0),
    "small_cutout": _small,
    "edge": _edge,
    "all_nan": lambda b, i: b.image.__setitem__((i,), np.nan),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One shard: for each fault, a clean galaxy (id 2k+1) and its faulty twin (2k+2)."""
    work = tmp_path_factory.mktemp("bad_pixels")
    config = load_config(overrides={"synthetic": {"n_objects": 80}})
    rows = synthetic.query(config)
    quiet = rows[~rows["truth_merger"] & ~rows["truth_projection"]
                 & ~rows["truth_size_clipped"]].nsmallest(4, "mag_r")
    source = synthetic.cutouts(quiet, config)
    n = 2 * len(FAULTS)
    pick = [k % source.n_objects for k in range(len(FAULTS)) for _ in (0, 1)]
    batch = CutoutBatch(
        object_id=np.arange(1, n + 1), image=source.image[pick].copy(),
        sigma=source.sigma[pick].copy(), mask=source.mask[pick].copy(), psf=source.psf,
        bands=source.bands, pixel_scale=source.pixel_scale, zeropoints=source.zeropoints,
        flux_unit=source.flux_unit, survey="synthetic")
    for k, fault in enumerate(FAULTS.values()):
        fault(batch, 2 * k + 1)
    cutouts = write_cutouts(work / "cutouts.zarr", batch, shard="s000000")
    params = {"segment": config["segment"], "measure": config["measure"]}
    stages.run_segment(params, cutouts, "s000000", work / "segmaps.zarr",
                       work / "segmaps.parquet", dask=SERIAL)
    stages.run_measure(params, cutouts, work / "segmaps.zarr", work / "segmaps.parquet",
                       "s000000", work / "features.parquet", dask=SERIAL)
    return work, batch


def _flags(row) -> set[str]:
    out = set()
    for column, cls in FLAG_COLUMNS.items():
        if column in row and pd.notna(row[column]) and int(row[column]) not in (0, -1):
            out |= {f"{column}:{name}" for name in describe(int(row[column]), cls)}
    return out


def _change(faulty: float, clean: float) -> float:
    return (faulty - clean) / clean if clean and math.isfinite(clean) else math.nan


@pytest.mark.parametrize("scenario", list(FAULTS))
def test_a_faulty_galaxy_is_kept_and_flagged_or_unchanged(measured, scenario, reliability):
    work, batch = measured
    features = read_table(work / "features.parquet").set_index("object_id")
    # nothing lost, nothing corrupted: every object has its row, every output reads back
    lost = len(set(batch.object_id) - set(features.index))
    ids, segmap = read_segmaps(work / "segmaps.zarr")
    corrupted = int(not np.array_equal(ids, batch.object_id)) + int(
        not np.array_equal(read_cutouts(work / "cutouts.zarr").object_id, batch.object_id))
    k = list(FAULTS).index(scenario)
    clean, faulty = features.loc[2 * k + 1], features.loc[2 * k + 2]
    added = sorted(_flags(faulty) - _flags(clean))
    changes = {c: _change(float(faulty[c]), float(clean[c])) for c in KEY_COLUMNS}
    explained = {c: [f for f in added if f.split(":")[0] in KEY_COLUMNS[c]]
                 for c in KEY_COLUMNS}
    silent = [c for c, d in changes.items()
              if not (abs(d) <= TOLERANCE or explained[c])]
    moved = ", ".join(f"{c} {d:+.0%}" for c, d in changes.items() if math.isfinite(d))
    nan = [c for c in KEY_COLUMNS if math.isnan(float(faulty[c]))]
    did = ("measured; " if not nan else f"{', '.join(nan)} NaN; ") + (
        f"flags {', '.join(added)}" if added else "no flag") + (f"; {moved}" if moved else "")
    reliability(scenario, did, objects_lost=lost, corrupted=corrupted)
    assert lost == 0 and corrupted == 0
    assert not silent, (
        f"{SCENARIOS[scenario][1]}: {silent} moved beyond {TOLERANCE:.0%} with no flag "
        f"({did})")
