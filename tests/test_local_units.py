"""Your own images in any common unit, masks, local sky, per-object cutout sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from galcat.config import load_config
from galcat.store import read_cutouts, write_cutouts
from galcat.surveys import local
from galcat.surveys._cutting import NANOMAGGY_JY, pixel_unit
from galcat.validation.mosaic import UNITS, synthetic_mosaic, write_mosaic

SCALE = 0.05  # arcsec per pixel


def header(**cards) -> fits.Header:
    h = fits.Header()
    h.update(cards)
    return h


@pytest.mark.parametrize(("cards", "factor", "source"), [
    ({"BUNIT": "nanomaggy"}, 1.0, "BUNIT"),
    ({"BUNIT": "nJy"}, 1 / 3631.0, "BUNIT"),
    ({"BUNIT": "uJy"}, 1e3 / 3631.0, "BUNIT"),
    ({"BUNIT": "MJy/sr"}, 1e15 * (SCALE / 206264.806) ** 2 / 3631.0, "BUNIT"),
    # HST: PHOTFLAM/PHOTPLAM give the AB zero point of one electron/s; PHOTZPT (the ST
    # magnitude's -21.1) is not an AB zero point and is ignored beside them
    ({"BUNIT": "ELECTRONS/S", "PHOTFLAM": 7.0e-20, "PHOTPLAM": 8000.0, "PHOTZPT": -21.1},
     10 ** (-0.4 * (-2.5 * math.log10(7.0e-20) - 5 * math.log10(8000.0) - 2.408 - 22.5)),
     "PHOTFLAM/PHOTPLAM"),
    # counts per exposure: divided by EXPTIME first
    ({"BUNIT": "COUNTS", "PHOTFLAM": 7.0e-20, "PHOTPLAM": 8000.0, "EXPTIME": 100.0},
     10 ** (-0.4 * (-2.5 * math.log10(7.0e-20) - 5 * math.log10(8000.0) - 2.408
                    + 2.5 * math.log10(100.0) - 22.5)), "PHOTFLAM/PHOTPLAM"),
    ({"BUNIT": "ADU", "MAGZERO": 27.5}, 10 ** (-0.4 * 5.0), "MAGZERO"),
    ({"FLUXMAG0": 1e11}, 10 ** (-0.4 * (27.5 - 22.5)), "FLUXMAG0"),
    ({"PHOTZPT": 28.0}, 10 ** (-0.4 * 5.5), "PHOTZPT"),
    ({"BUNIT": "DN/s", "PHOTMJSR": 2.0}, 2e15 * (SCALE / 206264.806) ** 2 / 3631.0,
     "PHOTMJSR"),
])
def test_pixel_units_from_the_header(cards, factor, source):
    unit = pixel_unit(header(**cards), pixel_scale=SCALE, what="test")
    assert unit.factor == pytest.approx(factor, rel=1e-8)
    assert source in unit.source


def test_electrons_per_unit_give_the_poisson_noise():
    assert pixel_unit(header(BUNIT="e-/s", MAGZERO=25, EXPTIME=500.0), pixel_scale=SCALE,
                      what="t").electrons == 500.0
    assert pixel_unit(header(BUNIT="COUNTS", MAGZERO=25, GAIN=2.0), pixel_scale=SCALE,
                      what="t").electrons == 2.0
    assert pixel_unit(header(BUNIT="nJy"), pixel_scale=SCALE, what="t").electrons is None
    # the config's zero point wins over the header
    unit = pixel_unit(header(BUNIT="nJy"), pixel_scale=SCALE, zeropoint=22.5, what="t")
    assert unit.factor == 1.0 and unit.source == "local.zeropoint"


@pytest.mark.parametrize(("cards", "message"), [
    ({"BUNIT": "ELECTRONS/S"}, r"flux unit 'ELECTRONS/S' and no zero point in the header: set "
                               r"local.zeropoint .* or add PHOTFLAM and PHOTPLAM"),
    ({}, "no BUNIT and no zero point in the header: set local.zeropoint"),
    ({"BUNIT": "ELECTRONS/S", "PHOTFLAM": 1e-19}, "no PHOTPLAM .* add PHOTPLAM or set "
                                                  "local.zeropoint"),
    ({"BUNIT": "COUNTS", "PHOTFLAM": 1e-19, "PHOTPLAM": 5000.0}, "no EXPTIME: add EXPTIME"),
    ({"BUNIT": "furlongs"}, "not understood .* set local.zeropoint"),
])
def test_a_unit_without_a_zero_point_says_what_to_set(cards, message):
    with pytest.raises(ValueError, match=message):
        pixel_unit(header(**cards), pixel_scale=SCALE, what="test")


@pytest.fixture(scope="module")
def mosaic():
    return synthetic_mosaic((200, 200), n_galaxies=4, n_stars=2, bands=("g", "r"), seed=6,
                            dim_max=0.5, min_separation=50.0, redshift=(0.2, 0.4),
                            mag_limit=20.5, star_mag=(17.0, 18.0))


def inner_star(mosaic) -> int:
    """The star farthest from the mosaic's edges."""
    t = mosaic.truth
    margin = np.minimum.reduce([t["x"], t["y"], 199 - t["x"], 199 - t["y"]])
    return int(np.argmax(np.where(t["kind"] == "star", margin, -1)))


def cutouts_of(section: dict, mosaic, **extra):
    keep = [c for c in ("x", "y", "radius_pix") if c in mosaic.truth]
    rows = mosaic.truth[keep].assign(object_id=np.arange(1, len(mosaic.truth) + 1))
    if "ra" in mosaic.truth:
        rows["ra"], rows["dec"] = mosaic.truth["ra"], mosaic.truth["dec"]
    else:
        rows["ra"] = rows["dec"] = np.nan
    section = {**section, "objects": "unused.csv", "cutout_size": 48, **extra}
    config = load_config(overrides={"survey": "local", "local": section})
    return local.cutouts(rows, config)


def test_every_unit_gives_the_same_cutouts(mosaic, tmp_path):
    """The same mosaic written in each unit (nanomaggy, nJy, MJy/sr, electron/s with
    PHOTFLAM/PHOTPLAM, counts with MAGZERO) stages the same nanomaggies."""
    batches = {unit: cutouts_of(write_mosaic(mosaic, tmp_path / unit.replace("/", "_"),
                                             unit=unit, noise_maps=True), mosaic)
               for unit in UNITS}
    ref = batches["nanomaggy"]
    for unit, batch in batches.items():
        np.testing.assert_allclose(batch.image, ref.image, rtol=1e-4, atol=1e-6, err_msg=unit)
        np.testing.assert_allclose(batch.sigma, ref.sigma, rtol=1e-4, err_msg=unit)
    # and that is the truth: a star's flux in its cutout, the sky subtracted
    star = inner_star(mosaic)
    yy, xx = np.mgrid[0:48, 0:48]
    near = np.hypot(xx - 23.5, yy - 23.5) < 10  # ~99% of the PSF
    flux = np.nansum(ref.image[star, 1][near])
    noise = np.sqrt(np.nansum(ref.sigma[star, 1][near] ** 2))
    assert abs(flux - mosaic.truth["flux_r"][star]) < 3 * noise + 0.03 * flux
    assert np.isfinite(ref.cut_wcs).all()
    assert NANOMAGGY_JY == 3.631e-6


def test_without_noise_maps_the_noise_is_the_sky_and_the_poisson_noise(mosaic, tmp_path):
    true = cutouts_of(write_mosaic(mosaic, tmp_path / "a", unit="electron/s",
                                   noise_maps=True), mosaic)
    with pytest.warns(UserWarning, match="sky's scatter"):
        estimated = cutouts_of(write_mosaic(mosaic, tmp_path / "b", unit="electron/s"), mosaic)
    star = inner_star(mosaic)
    c = 24
    # sky: the mesh RMS; the star's peak: Poisson noise from EXPTIME (electrons)
    assert np.median(estimated.sigma[:, 1, :4]) == pytest.approx(
        np.median(true.sigma[:, 1, :4]), rel=0.1)
    assert estimated.sigma[star, 1, c, c] == pytest.approx(true.sigma[star, 1, c, c], rel=0.1)
    assert estimated.sigma[star, 1, c, c] > 2 * np.median(estimated.sigma[star, 1])


def test_the_local_sky_removes_the_pedestal(mosaic, tmp_path):
    section = write_mosaic(mosaic, tmp_path, unit="nanomaggy", noise_maps=True)
    kept = cutouts_of(section, mosaic, sky="none")
    removed = cutouts_of(section, mosaic)
    sky = np.median(mosaic.pedestal["r"])
    corners = (slice(None), 1, slice(0, 6), slice(0, 6))
    assert np.median(kept.image[corners]) == pytest.approx(sky, rel=0.3)
    assert abs(np.median(removed.image[corners])) < 0.1 * sky


def test_masks_and_pixel_only_mode(mosaic, tmp_path):
    section = write_mosaic(mosaic, tmp_path, unit="nanomaggy", wcs=False, mask=True,
                           noise_maps=True)
    truth = mosaic.truth.drop(columns=["ra", "dec"], errors="ignore")
    batch = cutouts_of(section, mosaic.__class__(**{**mosaic.__dict__, "truth": truth}))
    assert np.isnan(batch.cut_wcs).all()
    col = 200 // 3
    for i, x in enumerate(truth["x"].to_numpy()):
        ox = int(batch.cut_origin[i, 0])
        inside = [c - ox for c in range(col, col + 3) if 0 <= c - ox < batch.image.shape[-1]]
        assert batch.mask[i, :, :, inside].all()  # the bad column is masked
        assert batch.cut_origin[i, 0] + 23.5 == pytest.approx(x, abs=0.5)


def test_cutout_sides_from_radii():
    section = load_config(overrides={"survey": "local", "local": {
        "objects": "x.csv", "bands": ["r"], "images": {"files": {"r": "x.fits"}},
        "cutout_bounds": {"min": 31, "max": 101}}})["local"]
    sides = local.cutout_sides(section, np.array([1.0, 5.2, 8.0, 30.0, np.nan]))
    assert sides.tolist() == [32, 42, 64, 100, 64]  # even, within bounds, NaN: cutout_size
    section["cutout_radii"] = 0.0
    assert local.cutout_sides(section, np.array([5.0, 9.0])).tolist() == [64, 64]


def test_objects_of_different_sizes_share_a_shard(mosaic, tmp_path):
    """A shard's stamps take its largest side; each object keeps its own and is
    segmented and measured at it (`CutoutBatch.crop`)."""
    from galcat.morphology import measure_shard
    from galcat.segment import segment_shard

    section = write_mosaic(mosaic, tmp_path, unit="nanomaggy", noise_maps=True)
    radii = np.where(mosaic.truth["kind"] == "star", 3.0, 9.0)
    batch = cutouts_of(section, mosaic.__class__(**{
        **mosaic.__dict__, "truth": mosaic.truth.assign(radius_pix=radii)}))
    assert batch.cut_size.tolist() == [72] * 4 + [32] * 2
    assert batch.image.shape[-1] == 72
    star = 4
    assert batch.mask[star, :, :20].all() and not batch.mask[star, :, 30:42, 30:42].all()
    back = read_cutouts(write_cutouts(tmp_path / "s.zarr", batch, shard="s"))
    np.testing.assert_array_equal(back.cut_size, batch.cut_size)
    np.testing.assert_array_equal(back.cut_wcs, batch.cut_wcs)
    config = {"survey": "local", "detect_band": "r", "dask": {"scheduler": "synchronous"},
              "measure": {"half_mass": False, "r50_model": "sersic"}}
    seg = segment_shard(back, config=config)
    assert not seg.segmap[star, :, :20].any()  # nothing outside the star's own box
    features = measure_shard(back, seg.segmap, config=config)
    alone = measure_shard(back.crop(star), seg.segmap[star:star + 1][:, 20:52, 20:52],
                          config=config)
    assert features.loc[star, "r50"] == alone.loc[0, "r50"]
    # the centroid is where the mosaic has the star, on the mosaic and on the sky
    assert features.loc[star, "x_centroid"] == pytest.approx(mosaic.truth["x"][star], abs=0.1)
    assert features.loc[star, "ra_centroid"] == pytest.approx(mosaic.truth["ra"][star],
                                                              abs=0.1 * 0.396 / 3600)
