"""``survey: local``: a mosaic with a WCS, separate cutouts, and the clear errors."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from galcat.store import read_cutouts, write_cutouts
from galcat.surveys import get_survey
from galcat.surveys.local import LocalDataError
from tests.archive.test_archive_clients import centroid, check_contract, fwhm_of

SIZE = 32
CENTRE = (SIZE - 1) / 2


def expected(pixel: float) -> float:
    """Where Cutout2D puts a source at ``pixel``: its window starts at ceil(p - size / 2)."""
    return pixel - math.ceil(pixel - SIZE / 2)


def assert_centred(image, pixel, tol=0.3):
    """Centroid where the WCS puts the object, and that is within 0.5 px of the centre."""
    ex, ey = expected(pixel[0]), expected(pixel[1])
    assert abs(ex - CENTRE) <= 0.5 and abs(ey - CENTRE) <= 0.5
    cx, cy = centroid(image, ex, ey, radius=4)
    assert cx == pytest.approx(ex, abs=tol) and cy == pytest.approx(ey, abs=tol)

NJY_PER_NMGY = 3631.0


def test_local_mosaic_with_wcs(local_config, truth, tmp_path):
    config = local_config()
    local = get_survey("local")
    df = local.query(config)
    check_contract(df, local, extra=["name"])
    assert df["object_id"].tolist() == [1, 2, 3]
    assert df["z"].tolist() == pytest.approx([0.05, 0.10, 0.15])
    assert df["name"].tolist() == ["gal1", "gal2", "gal3"]
    assert df["shard"].tolist() == ["s000000", "s000000", "s000001"]
    for shard, rows in df.groupby("shard"):
        batch = local.cutouts(rows, config)
        path = write_cutouts(tmp_path / f"{shard}.zarr", batch, shard=shard)
        back = read_cutouts(path)
        assert back.survey == "local" and back.bands == ["g", "r"]
        assert back.pixel_scale == pytest.approx(0.2)
        for i, oid in enumerate(back.object_id):
            for j in range(2):
                assert_centred(back.image[i, j], truth["local"]["objects"][str(oid)]["pixel"])
        # nJy -> nanomaggies; the noise map (2 nJy) went through the same factor
        assert np.nansum(back.image[0, 1]) == pytest.approx(3200 / NJY_PER_NMGY, rel=0.1)
        assert np.median(back.sigma[:, 0]) == pytest.approx(2.0 / NJY_PER_NMGY, rel=1e-4)
        assert not back.mask.any()
        assert fwhm_of(back.psf[0]) * 0.2 == pytest.approx(0.9, rel=0.05)


def test_local_pixel_columns(local_config, truth):
    config = local_config(x_column="x", y_column="y")
    df = get_survey("local").query(config)
    for _, row in df.iterrows():
        t = truth["local"]["objects"][str(row["object_id"])]
        assert row["ra"] == pytest.approx(t["ra"], abs=1e-9)
        assert row["dec"] == pytest.approx(t["dec"], abs=1e-9)


def test_local_separate_cutouts(local_config, local_dir, truth):
    pattern = str(local_dir / "cutouts" / "{object_id}_{band}.fits")
    config = local_config(images={"kind": "cutouts", "pattern": pattern}, noise={},
                          psf={"fwhm_arcsec": {"g": 0.9, "r": 0.9}})
    local = get_survey("local")
    df = local.query(config)
    with pytest.warns(UserWarning, match="sky's scatter"):
        batch = local.cutouts(df, config)
    for i, oid in enumerate(batch.object_id):
        x, y = truth["local"]["objects"][str(oid)]["pixel"]
        # the 40-pixel files start at round(p) - 20 on the mosaic
        for j in range(2):
            assert_centred(batch.image[i, j], (x - round(x) + 20, y - round(y) + 20))
    assert (batch.sigma > 0).all()
    # a cube per object without a WCS: used as delivered, with the configured pixel scale
    cubes = str(local_dir / "cutouts" / "cube_{object_id}.fits")
    config = local_config(images={"kind": "cutouts", "pattern": cubes}, noise={},
                          psf={"fwhm_arcsec": 0.9}, pixel_scale=0.2,
                          zeropoint=31.4)
    with pytest.warns(UserWarning):
        batch = local.cutouts(df, config)
    assert batch.image.shape == (3, 2, 32, 32) and batch.pixel_scale == pytest.approx(0.2)
    cx, cy = centroid(batch.image[0, 1], 16.0, 16.0, radius=4)  # object 1 at cube pixel 16
    assert cx == pytest.approx(16.0, abs=0.3) and cy == pytest.approx(16.0, abs=0.3)


def test_local_file_without_wcs(local_config, local_dir, truth):
    config = local_config(images={"kind": "mosaic",
                                  "files": {"g": str(local_dir / "nowcs_g.fits"),
                                            "r": str(local_dir / "nowcs_r.fits")}})
    local = get_survey("local")
    df = local.query(config)
    with pytest.raises(LocalDataError, match=r"nowcs_g\.fits.*has no celestial WCS: set "
                                             r"local.pixel_scale"):
        local.cutouts(df, config)
    # pixel columns without a WCS: the message says what to set ...
    pixels = local_config(x_column="x", y_column="y", images=config["local"]["images"])
    with pytest.raises(LocalDataError, match="has no celestial WCS: set local.pixel_scale"):
        local.query(pixels)
    # ... and with it the run works in pixels: RA/Dec NaN, cutouts centred on x/y
    pixels["local"].update(pixel_scale=0.2, zeropoint=31.4)  # nJy; these files have no BUNIT
    df = local.query(pixels)
    assert df["ra"].isna().all() and df["dec"].isna().all()
    batch = local.cutouts(df, pixels)
    assert batch.pixel_scale == pytest.approx(0.2)
    assert np.isnan(batch.cut_wcs).all() and np.isfinite(batch.cut_origin).all()
    for i, oid in enumerate(batch.object_id):
        assert_centred(batch.image[i, 1], truth["local"]["objects"][str(oid)]["pixel"])


def test_local_band_missing(local_config, local_dir):
    config = local_config(bands=["g", "r", "i"])
    local = get_survey("local")
    df = local.query(config)
    with pytest.raises(LocalDataError, match=r"band 'i' has no file"):
        local.cutouts(df, config)
    cube = local_config(bands=["g", "r", "i"], images={"kind": "mosaic",
                                                        "cube": str(local_dir / "psf_cube.fits")})
    with pytest.raises(LocalDataError, match=r"band 'i' is plane 2 but .* has only 2 planes"):
        local.cutouts(df, cube)


def test_local_object_off_the_image(local_config, local_dir):
    config = local_config(objects=str(local_dir / "objects_off.csv"))
    local = get_survey("local")
    df = local.query(config)
    with pytest.raises(LocalDataError, match=r"local object 9 .* lies wholly off"):
        local.cutouts(df, config)
    config["archive"]["off_image"] = "mask"
    batch = local.cutouts(df, config)
    assert batch.mask[list(batch.object_id).index(9)].all()
    assert not batch.mask[list(batch.object_id).index(1)].any()


def test_local_missing_file_and_bad_ids(local_config, local_dir, tmp_path):
    with pytest.raises(LocalDataError, match="does not exist"):
        get_survey("local").query(local_config(objects=str(tmp_path / "nope.csv")))
    dup = tmp_path / "dup.csv"
    shutil.copy(local_dir / "objects.csv", dup)
    dup.write_text(dup.read_text() + dup.read_text().splitlines()[1] + "\n")
    with pytest.raises(LocalDataError, match="not unique"):
        get_survey("local").query(local_config(objects=str(dup)))
    # string ids become stable integers; the original is kept
    df = get_survey("local").query(local_config(id_column="name"))
    again = get_survey("local").query(local_config(id_column="name"))
    assert df["object_id"].tolist() == again["object_id"].tolist()
    assert sorted(df["source_id"]) == ["gal1", "gal2", "gal3"]


def test_truncated_cutout_names_the_object_and_file(local_config, local_dir, tmp_path):
    """A file cut short fails when its data are read: the error says which and why
    (``local.bad_object: error``; the default keeps the object masked,
    tests/faults/test_input_files.py)."""
    cut = tmp_path / "cutouts"
    shutil.copytree(local_dir / "cutouts", cut)
    broken = cut / "2_r.fits"
    broken.write_bytes(broken.read_bytes()[:-2880 - 1000])
    pattern = str(cut / "{object_id}_{band}.fits")
    config = local_config(images={"kind": "cutouts", "pattern": pattern}, noise={},
                          psf={"fwhm_arcsec": 0.9}, bad_object="error")
    local = get_survey("local")
    with pytest.raises(LocalDataError) as err, pytest.warns(UserWarning):
        local.cutouts(local.query(config), config)
    msg = str(err.value)
    assert "local object 2 (r band," in msg and "2_r.fits" in msg and "truncated" in msg


def test_cutout_without_wcs_never_borrows_another_objects_scale(local_config, local_dir,
                                                                tmp_path):
    """Object 2's files lose their WCS: without local.pixel_scale it is an error naming
    it, even though object 1 (read first) has a WCS; with it, that scale is used."""
    from astropy.io import fits

    cut = tmp_path / "cutouts"
    shutil.copytree(local_dir / "cutouts", cut)
    for band in ("g", "r"):
        with fits.open(cut / f"2_{band}.fits", mode="update") as hdul:
            for hdu in hdul:
                for key in [k for k in hdu.header if k.startswith(("CTYPE", "CRVAL", "CRPIX",
                                                                    "CD", "CDELT", "PC"))]:
                    del hdu.header[key]
    pattern = str(cut / "{object_id}_{band}.fits")
    config = local_config(images={"kind": "cutouts", "pattern": pattern}, noise={},
                          psf={"fwhm_arcsec": 0.9}, bad_object="error")
    local = get_survey("local")
    df = local.query(config)
    with pytest.raises(LocalDataError, match="local object 2 .*no WCS and local.pixel_scale"):
        local.cutouts(df, config)
    config["local"]["pixel_scale"] = 0.25  # not the 0.2 of the others' WCS
    with pytest.raises(LocalDataError, match="pixel scale 0.25 arcsec differs"):
        local.cutouts(df, config)
