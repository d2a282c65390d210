"""Detection on whole mosaics (``local.objects: detect``): tiles, ids, units, masks, stars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galcat.config import load_config
from galcat.detection import Tile, detect_mosaic, psf_half_light_radius, tiles
from galcat.flags import DetectFlag
from galcat.surveys import local as local_survey
from galcat.validation.mosaic import match_sources, synthetic_mosaic, write_mosaic

SHAPE = (240, 240)


@pytest.fixture(scope="module")
def mosaic():
    """Bright galaxies and stars, two bands, a sky pedestal to remove."""
    return synthetic_mosaic(SHAPE, n_galaxies=8, n_stars=4, seed=11, dim_max=1.0,
                            star_mag=(17.0, 19.0), min_separation=30.0)


def config_for(section: dict, **detection) -> dict:
    section = {**section, "detection": {**section.get("detection", {}), **detection}}
    return load_config(overrides={"survey": "local", "local": section,
                                  "dask": {"scheduler": "synchronous"}})


@pytest.fixture(scope="module")
def one_tile(mosaic, tmp_path_factory):
    section = write_mosaic(mosaic, tmp_path_factory.mktemp("mosaic"), unit="electron/s")
    section["detection"] = {"background_box": 24}
    return section, detect_mosaic(config_for(section))


def test_tiles_cover_the_mosaic_once_and_read_a_bounded_area():
    parts = tiles((1000, 700), 256, 32)
    cover = np.zeros((1000, 700), int)
    for t in parts:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        r0, r1, s0, s1 = t.read
        assert r0 <= y0 and r1 >= y1 and s0 <= x0 and s1 >= x1
        assert t.pixels <= (256 + 2 * 32) ** 2
    assert (cover == 1).all()
    assert Tile((0, 1, 0, 1), (0, 3, 0, 2)).pixels == 6


def test_every_source_is_found_where_it_is(mosaic, one_tile):
    _, found = one_tile
    truth = mosaic.truth
    idx = match_sources(truth[["x", "y"]].to_numpy(), found[["x", "y"]].to_numpy(), 3.0)
    assert (idx >= 0).all(), truth[idx < 0]
    stars = (truth["kind"] == "star").to_numpy()
    offsets = np.hypot(*(found[["x", "y"]].to_numpy()[idx] - truth[["x", "y"]].to_numpy()).T)
    assert np.median(offsets[stars]) < 0.1 and np.median(offsets[~stars]) < 0.5
    # RA/Dec through the mosaic's WCS, ids from them, fluxes in nanomaggies per band
    sky = np.hypot((found["ra"].to_numpy()[idx] - truth["ra"]) * np.cos(np.radians(2.2)),
                   found["dec"].to_numpy()[idx] - truth["dec"]) * 3600 / mosaic.pixel_scale
    assert np.allclose(sky, offsets, atol=0.01)  # the offsets, on the sky
    assert found["object_id"].is_unique and (found["object_id"] > 0).all()
    for band in ("g", "r"):
        ratio = found[f"flux_{band}"].to_numpy()[idx][stars] / truth[f"flux_{band}"][stars]
        assert np.median(ratio) == pytest.approx(1.0, abs=0.05)  # the Kron aperture holds a star
    # stars are point sources, galaxies are not
    point = found["point_source"].to_numpy()[idx]
    assert point[stars].all() and not point[~stars].any()
    assert set(found.columns) >= {"kron_radius", "radius_pix", "snr_detect", "det_flag"}


def test_tiles_change_nothing_and_objects_on_borders_are_kept_once(mosaic, one_tile,
                                                                  monkeypatch):
    section, whole = one_tile
    largest = []
    original = local_survey._Plane.__getitem__

    def spy(self, key):  # records every read, reads as before
        out = original(self, key)
        largest.append(out.size)
        return out

    monkeypatch.setattr(local_survey._Plane, "__getitem__", spy)
    tiled = detect_mosaic(config_for(section, tile_size=72, tile_overlap=48,
                                     background_box=24))
    assert max(largest) <= (72 + 2 * 48) ** 2 < SHAPE[0] * SHAPE[1] / 2
    assert len(tiled) == len(whole)
    # the same objects, measured alike (background meshes differ a little per tile, so
    # the ids, hashes of the positions, are only stable for one config)
    idx = match_sources(whole[["x", "y"]].to_numpy(), tiled[["x", "y"]].to_numpy(), 0.1)
    assert sorted(idx) == list(range(len(whole)))
    assert np.allclose(tiled["x"].to_numpy()[idx], whole["x"], atol=0.05)
    assert np.allclose(tiled["flux_r"].to_numpy()[idx], whole["flux_r"], rtol=0.03)


def test_ids_are_stable_and_pixel_only_mosaics_work(mosaic, one_tile, tmp_path):
    section, found = one_tile
    again = detect_mosaic(config_for(section))
    pd.testing.assert_frame_equal(again, found)
    pixels = write_mosaic(mosaic, tmp_path, unit="nanomaggy", wcs=False)
    assert "pixel_scale" in pixels
    pixels["detection"] = section["detection"]
    bare = detect_mosaic(config_for(pixels))
    assert bare["ra"].isna().all() and bare["source_id"].str.startswith("X").all()
    assert len(bare) == len(found)
    assert np.allclose(np.sort(bare["x"]), np.sort(found["x"]), atol=0.05)
    # the same fluxes from nanomaggies as from electron/s with PHOTFLAM/PHOTPLAM
    assert np.allclose(np.sort(bare["flux_r"]), np.sort(found["flux_r"]), rtol=1e-3)


def test_masked_pixels_make_no_sources(mosaic, tmp_path):
    section = write_mosaic(mosaic, tmp_path, unit="nanomaggy", mask=True)
    section["detection"] = {"background_box": 24}
    masked = detect_mosaic(config_for(section))
    col = SHAPE[1] // 3  # a hot column 3 pixels wide, in the mask

    def on_column(table):
        return ((table["x"] > col - 0.5) & (table["x"] < col + 2.5)).to_numpy()

    assert not on_column(masked).any()
    # a galaxy that touches it says so
    flagged = (masked["det_flag"].to_numpy() & int(DetectFlag.MASKED)) > 0
    near = ((masked["x"] > col - 20) & (masked["x"] < col + 22)).to_numpy()
    assert (flagged <= near).all()
    del section["mask"]  # the same hot column unmasked: a source all along it
    unmasked = detect_mosaic(config_for(section))
    assert (on_column(unmasked) & (unmasked["area_detect"] > SHAPE[0])).any()


def test_sum_of_the_bands_detects_alike(mosaic, one_tile):
    section, found = one_tile
    summed = detect_mosaic(load_config(overrides={
        "survey": "local", "detect_band": "sum", "local": section,
        "dask": {"scheduler": "synchronous"}}))
    idx = match_sources(found[["x", "y"]].to_numpy(), summed[["x", "y"]].to_numpy(), 2.0)
    assert (idx >= 0).all()
    # forced photometry: each band's flux in the sum's apertures
    assert np.allclose(summed["flux_g"].to_numpy()[idx], found["flux_g"], rtol=0.1)


def test_psf_half_light_radius_of_a_gaussian():
    from galcat.surveys._cutting import gaussian_psf

    psf = gaussian_psf(1.0, 0.1, 61)  # sigma 4.25 px: r50 = 1.1774 sigma
    assert psf_half_light_radius(psf) == pytest.approx(1.1774 * 4.2466, rel=0.05)


def test_detection_needs_mosaics():
    with pytest.raises(Exception, match="local.objects: detect finds objects on mosaics"):
        load_config(overrides={"survey": "local", "local": {
            "objects": "detect", "bands": ["r"],
            "images": {"kind": "cutouts", "pattern": "{object_id}.fits"}}})
