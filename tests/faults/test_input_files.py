"""Files the user brings (survey: local, ready-made cutouts): one object's file is bad.

Nothing may be lost: every object keeps its row through fetch, segment and measure;
the other objects' cutouts are exactly those of the clean run; the faulty object is
either read correctly (a legal FITS encoding) or kept fully masked in that band, with a
warning naming it and its file, and flagged by measure.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits

from galcat import stages
from galcat.flags import FLAG_COLUMNS, describe
from galcat.store import read_cutouts, write_cutouts
from galcat.surveys import get_survey
from galcat.tables import read_table

pytestmark = pytest.mark.slow

FAULTY, BAND = 2, "r"
SERIAL = {"scheduler": "synchronous", "objects_per_task": 4, "workers": 1}
WCS_KEYS = ("CTYPE", "CRVAL", "CRPIX", "CD", "CDELT", "PC", "WCSAXES", "CUNIT")


def _big_endian_int16(path):
    """The same pixels as BITPIX 16 (FITS integers are big-endian) with BSCALE."""
    with fits.open(path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
    hdu = fits.PrimaryHDU(data, header=header)
    hdu.scale("int16", bscale=float(np.nanmax(np.abs(data))) / 30000.0, bzero=0.0)
    hdu.writeto(path, overwrite=True)


def _broken_header(path):
    """A card that is not FITS (lower-case keyword, no '= ', a non-ASCII-safe value)
    written over the card after the WCS, as a damaged transfer leaves it."""
    raw = bytearray(path.read_bytes())
    at = raw.find(b"BUNIT")
    raw[at:at + 80] = b"bunit   nJy but not a card ' unbalanced".ljust(80)
    path.write_bytes(bytes(raw))


def _no_wcs(path):
    with fits.open(path, mode="update") as hdul:
        for key in [k for k in hdul[0].header if k.startswith(WCS_KEYS)]:
            del hdul[0].header[key]


def _truncated(path):
    path.write_bytes(path.read_bytes()[:-2880 - 1000])


FAULTS = {"big_endian_int16": _big_endian_int16, "broken_header": _broken_header,
          "no_wcs": _no_wcs, "truncated_file": _truncated}


def _config(local_config, cutouts):
    pattern = str(cutouts / "{object_id}_{band}.fits")
    return local_config(images={"kind": "cutouts", "pattern": pattern}, noise={},
                        psf={"fwhm_arcsec": 0.9}, bad_object="mask")


@pytest.fixture
def clean(local_config, local_dir, tmp_path):
    cutouts = tmp_path / "clean"
    shutil.copytree(local_dir / "cutouts", cutouts)
    config = _config(local_config, cutouts)
    local = get_survey("local")
    rows = local.query(config)
    return rows, local.cutouts(rows, config)


def _measure(batch, config, work):
    cutouts = write_cutouts(work / "cutouts.zarr", batch, shard="s000000")
    stages.run_segment(config, cutouts, "s000000", work / "segmaps.zarr",
                       work / "segmaps.parquet", dask=SERIAL)
    stages.run_measure(config, cutouts, work / "segmaps.zarr", work / "segmaps.parquet",
                       "s000000", work / "features.parquet", dask=SERIAL)
    return read_table(work / "features.parquet").set_index("object_id"), cutouts


def _flags(row) -> list[str]:
    return sorted(f"{column}:{name}" for column, cls in FLAG_COLUMNS.items()
                  if column in row and int(row[column]) not in (0, -1)
                  for name in describe(int(row[column]), cls))


@pytest.mark.parametrize("scenario", list(FAULTS))
def test_a_bad_file_loses_no_object(scenario, clean, local_config, local_dir, tmp_path,
                                    caplog, reliability):
    rows, reference = clean
    cutouts = tmp_path / "cutouts"
    shutil.copytree(local_dir / "cutouts", cutouts)
    FAULTS[scenario](cutouts / f"{FAULTY}_{BAND}.fits")
    config = _config(local_config, cutouts)
    with caplog.at_level(logging.WARNING, logger="galcat"):
        batch = get_survey("local").cutouts(rows, config)
    features, written = _measure(batch, config, tmp_path)

    lost = len(set(rows["object_id"]) - set(features.index))
    corrupted = int(not np.array_equal(read_cutouts(written).object_id, rows["object_id"]))
    i, j = list(batch.object_id).index(FAULTY), batch.bands.index(BAND)
    others = [k for k in range(batch.n_objects) if k != i]
    assert np.array_equal(batch.image[others], reference.image[others], equal_nan=True)
    assert np.array_equal(batch.mask[others], reference.mask[others])
    # the other band of the faulty object is untouched
    g = batch.bands.index("g")
    assert np.array_equal(batch.image[i, g], reference.image[i, g], equal_nan=True)

    if batch.mask[i, j].all():
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        named = [m for m in warned if f"local object {FAULTY} ({BAND} band, " in m
                 and f"{FAULTY}_{BAND}.fits" in m]
        assert named, warned
        flags = _flags(features.loc[FAULTY])
        assert flags, "a galaxy masked in its detection band must carry a flag"
        did = f"object kept, fully masked in {BAND}; warning names object and file; flags " \
              + ", ".join(f.split(":")[1] for f in flags[:3])
    else:  # read correctly: the same pixels within the integer encoding's step
        step = float(np.nanmax(np.abs(reference.image[i, j]))) / 30000.0 * 2
        assert np.nanmax(np.abs(batch.image[i, j] - reference.image[i, j])) <= step
        assert np.array_equal(batch.mask[i, j], reference.mask[i, j])
        did = "read as the same pixels (BSCALE applied, within one integer step)"
    reliability(scenario, did, objects_lost=lost, corrupted=corrupted)
    assert lost == 0 and corrupted == 0


def test_a_band_where_every_file_fails_stops_the_shard(local_config, local_dir, tmp_path):
    """Every object failing in one band is the configuration's fault, not the objects':
    it stops with the first object's reason, even under bad_object: mask."""
    from galcat.surveys.local import LocalDataError

    cutouts = tmp_path / "cutouts"
    shutil.copytree(local_dir / "cutouts", cutouts)
    for path in cutouts.glob("*_r.fits"):
        _no_wcs(path)
    config = _config(local_config, cutouts)
    local = get_survey("local")
    with pytest.raises(LocalDataError, match=r"every object of this shard failed in band "
                                             r"'r'; the first: local object 1 \(r band, "):
        local.cutouts(local.query(config), config)
