"""The archive clients against the fake archive: the real code paths, offline.

Each survey runs query -> cutouts -> galcat.store.write_cutouts into Zarr
through astroquery (SDSS SQL, MAST portal) and galcat's own transport.
"""

from __future__ import annotations

import math
import warnings
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest

from galcat.sharding import assign_shards
from galcat.store import read_cutouts, write_cutouts
from galcat.surveys import get_survey
from galcat.surveys._cutting import ZEROPOINT, gaussian_psf, stamp
from galcat.surveys._http import ArchiveError, EmptyResultError

CONTRACT = ["object_id", "ra", "dec", "z", "shard"]


def centroid(image: np.ndarray, x0: float, y0: float, radius: float = 3.0) -> tuple[float, float]:
    """Windowed centroid (SExtractor XWIN): Gaussian-weighted first moments, iterated.

    Unbiased for a symmetric profile, unlike a hard-edged aperture on pixels.
    """
    img = np.nan_to_num(image - np.nanmedian(image))
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    x, y = x0, y0
    for _ in range(50):
        w = img * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))
        dx = 2 * (w * (xx - x)).sum() / w.sum()
        dy = 2 * (w * (yy - y)).sum() / w.sum()
        x, y = x + dx, y + dy
        if abs(dx) < 1e-4 and abs(dy) < 1e-4:
            break
    return float(x), float(y)


def fwhm_of(psf: np.ndarray) -> float:
    """FWHM in pixels of a unit-sum PSF from its second moment (Gaussian)."""
    yy, xx = np.mgrid[: psf.shape[0], : psf.shape[1]]
    cx, cy = (psf * xx).sum(), (psf * yy).sum()
    var = (psf * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum() / 2
    return 2.3548 * math.sqrt(var)


def check_contract(df: pd.DataFrame, module, extra=()) -> None:
    assert list(df.columns[:5]) == CONTRACT
    assert df["object_id"].dtype == np.int64
    assert df["object_id"].is_unique and (df["object_id"] >= 1).all()
    assert df["object_id"].is_monotonic_increasing
    assert df["shard"].str.fullmatch(r"s\d{6}").all()
    for col in df.columns:
        if col in extra:
            continue
        assert col in module.COLUMN_UNITS, f"{col} has no unit entry"
        assert col in module.COLUMN_DESCRIPTIONS, f"{col} has no description"


def write_and_read(tmp_path, df, module, config):
    """Cut every shard, write it to Zarr, read it back; {shard: batch}."""
    out = {}
    for shard, rows in df.groupby("shard"):
        batch = module.cutouts(rows, config)
        path = write_cutouts(tmp_path / "cutouts" / f"{shard}.zarr", batch, shard=shard)
        out[shard] = read_cutouts(path)
    return out


# --------------------------------------------------------------------------- SDSS


def test_sdss_query_cutouts_zarr(fake, make_config, truth, tmp_path):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    check_contract(df, sdss)
    assert len(df) == 4
    assert df["object_id"].tolist() == sorted(int(k) for k in truth["sdss"]["objects"])
    assert df["shard"].tolist() == ["s000000", "s000000", "s000001", "s000001"]
    # batched: 3 rows, then the rest after the last objID, each a POST form
    sql = fake.hits("x_results.aspx")
    assert [h["method"] for h in sql] == ["POST", "POST"]
    form = parse_qs(sql[1]["body"].decode())
    assert form["format"] == ["csv"] and form["searchtool"] == ["SQL"]
    assert f"p.objID > {df['object_id'].iloc[2]} " in form["cmd"][0]
    # the eBOSS spectrum's id (over 2**63) is exact; the DR7 ones too
    assert df["specobjid"].dtype == np.uint64
    assert [str(v) for v in df["specobjid"]] == [
        truth["sdss"]["specobjid"][str(o)] for o in df["object_id"]]
    assert int(df["specobjid"].iloc[3]) > 2**63
    # MPA-JHU missing values are NaN, not -9999
    assert np.isnan(df["log_mass"].iloc[3]) and df["log_mass"].iloc[0] == pytest.approx(10.2)
    assert df["oh_12"].iloc[0] == pytest.approx(8.9)
    # Galaxy Zoo 2 in the Kaggle weighting
    row = df.iloc[0]
    assert row["gz2_class1_1"] == pytest.approx(0.15)
    assert row["gz2_class2_1"] == pytest.approx(0.80 * 0.10)
    assert row["gz2_class3_1"] == pytest.approx(0.80 * 0.90 * 0.30)
    assert row["gz2_class7_2"] == pytest.approx(0.15 * 0.60)
    assert row["gz2_class6_1"] + row["gz2_class6_2"] == pytest.approx(1.0)
    q8 = sum(row[f"gz2_class8_{a}"] for a in range(1, 8))
    assert q8 == pytest.approx(row["gz2_class6_1"])
    assert len([c for c in df.columns if c.startswith("gz2_class")]) == 37
    from galcat import gz2

    votes = df[gz2.column_names("gz2_")].to_numpy()
    worst = gz2.check_sum_rules(votes[:3])
    assert max(worst.values()) < 1e-9, worst  # object 1's unnormalised fractions too
    # object 3 (an eBOSS spectrum) is in neither Galaxy Zoo 2 nor MPA-JHU: NaN, not 0
    assert np.isnan(votes[3]).all() and np.isnan(df["gz2_total_classifications"].iloc[3])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shards = write_and_read(tmp_path, df, sdss, config)
    edge = truth["sdss"]["edge_object"]
    partial = [str(w.message) for w in caught if "partly off" in str(w.message)]
    assert len(partial) == 1 and edge in partial[0]
    batch = shards["s000001"]
    assert batch.bands == ["u", "g", "r", "i", "z"]
    assert batch.survey == "sdss" and batch.flux_unit == "nanomaggy"
    assert batch.zeropoints == [ZEROPOINT] * 5
    assert batch.pixel_scale == pytest.approx(0.396)
    assert batch.image.shape == (2, 5, 32, 32)
    i_edge = list(batch.object_id).index(int(edge))
    assert batch.mask[i_edge].any() and not batch.mask[1 - i_edge].any()
    assert np.isnan(batch.image[i_edge][batch.mask[i_edge]]).all()
    # psField reconstruction: the fixture's PSF is a 1.4-arcsec Gaussian
    r = batch.band_index("r")
    assert fwhm_of(batch.psf[r]) * 0.396 == pytest.approx(1.4, rel=0.05)
    assert batch.psf[r].sum() == pytest.approx(1.0, rel=1e-5)
    # the noise model matches the pixel-to-pixel scatter (robust to the smooth galaxy light)
    ok = shards["s000000"]
    yy, xx = np.mgrid[:32, :30]
    outer = np.hypot(xx - 14.5, yy - 15.5) > 8
    for j in range(5):
        img, sig = ok.image[:, j].astype(float), ok.sigma[:, j].astype(float)
        second = img[:, :, 2:] - 2 * img[:, :, 1:-1] + img[:, :, :-2]  # kills gradients
        z = (second / (sig[:, :, 1:-1] * math.sqrt(6)))[:, outer]
        scatter = 1.4826 * np.median(np.abs(z - np.median(z)))
        assert scatter == pytest.approx(1.0, abs=0.15), j


def test_sdss_wcs_round_trip(fake, make_config, truth):
    """Every fixture galaxy is within 0.5 px of the cutout centre, where its WCS puts it."""
    config = make_config("sdss", sdss={"psf": "gaussian"})
    sdss = get_survey("sdss")
    df = sdss.query(config)
    inside = df[df["object_id"] != int(truth["sdss"]["edge_object"])]
    batch = sdss.cutouts(inside, config)
    centre = (32 - 1) / 2
    for i, oid in enumerate(batch.object_id):
        for b in ("g", "r", "i"):
            j = batch.band_index(b)
            cx, cy = centroid(batch.image[i, j], centre, centre)
            assert abs(cx - centre) <= 0.5 + 0.05 and abs(cy - centre) <= 0.5 + 0.05, (oid, b)
            # and exactly where the frame's WCS says (Cutout2D starts at ceil(p - size / 2))
            px, py = truth["sdss"]["objects"][str(oid)][f"pixel_{b}"]
            ex, ey = px - math.ceil(px - 16), py - math.ceil(py - 16)
            assert cx == pytest.approx(ex, abs=0.1) and cy == pytest.approx(ey, abs=0.1)
    # gaussian PSF mode: FWHM from Field.psfWidth
    assert fwhm_of(batch.psf[batch.band_index("r")]) * 0.396 == pytest.approx(1.4, rel=0.05)


def test_sdss_cache_resumes_without_refetching(fake, make_config):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    sdss.cutouts(df.iloc[:2], config)
    n_frames = len(fake.hits("/frames/"))
    assert n_frames == 5
    fake.reset()
    df2 = sdss.query(config)  # within query_cache_ttl_hours: from the cache
    sdss.cutouts(df2.iloc[:2], config)
    assert fake.hits("/") == []
    pd.testing.assert_frame_equal(df, df2)


# --------------------------------------------------------------------------- faults


def test_503_then_success_is_retried(fake, make_config):
    fake.add_fault("x_results.aspx", "503", "500")
    df = get_survey("sdss").query(make_config("sdss"))
    assert len(df) == 4
    assert len(fake.hits("x_results.aspx")) == 4  # 503, 500, ok, then the second batch


@pytest.mark.parametrize("faults,ok", [(("timeout",), True), (("timeout",) * 3, False)])
def test_timeout_retried_then_clear_error(fake, make_config, faults, ok):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    fake.add_fault("frame-r-", *faults)
    if ok:
        batch = sdss.cutouts(df.iloc[:1], config)
        assert np.isfinite(batch.image[0, batch.band_index("r")]).all()
        return
    with pytest.raises(ArchiveError) as err:
        sdss.cutouts(df.iloc[:1], config)
    msg = str(err.value)
    assert "gave up after 3 attempts" in msg and "timed out" in msg
    assert f"SDSS object {df['object_id'].iloc[0]}" in msg and "frame-r-003704-3-0091" in msg


def test_truncated_fits_names_object_and_url(fake, make_config):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    fake.add_fault("frame-g-", "truncate")
    with pytest.raises(ArchiveError) as err:
        sdss.cutouts(df.iloc[:1], config)
    msg = str(err.value)
    assert f"SDSS object {df['object_id'].iloc[0]}" in msg
    assert "frame-g-003704-3-0091.fits.bz2" in msg and "truncated" in msg
    # nothing bad was cached: the next run fetches the file again and works
    batch = sdss.cutouts(df.iloc[:1], config)
    assert np.isfinite(batch.image).all()


def test_truncated_uncompressed_fits(fake, make_config):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    fake.add_fault("psField-", "truncate")
    with pytest.raises(ArchiveError, match=r"psField.*truncated|truncated.*psField"):
        sdss.cutouts(df.iloc[:1], config)


def test_html_error_page_is_an_error(fake, make_config):
    fake.add_fault("x_results.aspx", "html")
    with pytest.raises(ArchiveError, match="HTML page") as err:
        get_survey("sdss").query(make_config("sdss"))
    assert "x_results.aspx" in str(err.value) and "SDSS SQL query, batch 1" in str(err.value)


def test_html_instead_of_fits_names_object_and_url(fake, make_config):
    config = make_config("sdss")
    sdss = get_survey("sdss")
    df = sdss.query(config)
    fake.add_fault("psField-", "html")
    with pytest.raises(ArchiveError, match="HTML page") as err:
        sdss.cutouts(df.iloc[:1], config)
    assert f"SDSS object {df['object_id'].iloc[0]}" in str(err.value)
    assert "psField-003704-3-0091.fit" in str(err.value)


def test_backoff_doubles_up_to_the_cap(fake, tmp_path):
    from galcat.surveys._http import ArchiveSession, HTTPSettings

    session = ArchiveSession(HTTPSettings(retries=4, backoff_s=0.5, backoff_max_s=1.5,
                                          timeout_s=2), cache_dir=tmp_path / "c")
    delays: list[float] = []
    session.sleep = delays.append
    fake.add_fault("drpall", "503", "502", "500", "503")
    url = f"{fake.url}/sas/dr17/manga/spectro/redux/v3_1_1/drpall-v3_1_1.fits"
    assert session.fetch(url, what="DRPall").status_code == 200
    assert delays == [0.5, 1.0, 1.5, 1.5]
    fake.add_fault("drpall", *["503"] * 5)
    with pytest.raises(ArchiveError, match=r"gave up after 5 attempts \(HTTP 503\)"):
        session.fetch(url + "?v=2", what="DRPall")


def test_client_error_is_not_retried(fake, make_config):
    config = make_config("manga", manga={"drpver": "v9_9_9"})
    with pytest.raises(ArchiveError, match=r"HTTP 404 .*drpall-v9_9_9\.fits"):
        get_survey("manga").query(config)
    assert len(fake.hits("drpall-v9_9_9")) == 1


def test_empty_result_is_a_clear_error(fake, make_config):
    fake.add_fault("x_results.aspx", "empty")
    with pytest.raises(EmptyResultError, match="matched no object"):
        get_survey("sdss").query(make_config("sdss"))


def test_dropped_connection_is_retried(fake, make_config):
    fake.add_fault("drpall", "drop")
    df = get_survey("manga").query(make_config("manga"))
    assert len(df) == 2


def test_connection_dropped_mid_body_is_retried(fake, make_config):
    """urllib3 2 raises a dropped body as ChunkedEncodingError, not a ConnectionError."""
    fake.add_fault("x_results.aspx", "cut", "cut")
    df = get_survey("sdss").query(make_config("sdss"))
    assert len(df) > 0  # before the fix: ChunkedEncodingError after the first attempt


# --------------------------------------------------------------------------- SQL safety


INJECTIONS = [
    {"sdss": {"selection": {"spec_class": "GALAXY' OR 1=1 --"}}},
    {"sdss": {"extra_columns": ["p.ra; DROP TABLE PhotoObj"]}},
    {"sdss": {"selection": {"z": {"min": "0; DROP TABLE SpecObj"}}}},
    {"sdss": {"data_release": "17; DROP TABLE Field"}},
    {"sdss": {"skyserver_url": "https://skyserver.sdss.org/x?cmd=';DROP"}},
    {"sdss": {"gz2_fraction": "debiased, (SELECT password FROM users)"}},
    {"jades": {"field": "goods-s/../../etc"}},
    {"local": {"objects": "x.csv", "bands": ["g"], "images": {}, "id_column": "id; DROP"}},
]


@pytest.mark.parametrize("override", INJECTIONS)
def test_schema_rejects_injection(make_config, override):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError):
        make_config("sdss", **override)


def test_sql_built_from_allow_lists_only():
    from galcat.surveys.sdss import build_sql

    sql = build_sql({"selection": {"z": {"min": 0.02, "max": 0.1}, "spec_class": "GALAXY"},
                     "extra_columns": ["fracdev_r"]}, after_objid=5, top=10)
    assert "s.z >= 0.02" in sql and "s.z <= 0.1" in sql and "p.objID > 5" in sql
    assert "p.fracDeV_r AS fracdev_r" in sql and "SELECT TOP 10" in sql
    for bad in ({"extra_columns": ["p.ra; DROP TABLE x"]},
                {"selection": {"spec_class": "GALAXY'--"}},
                {"selection": {"z": {"min": "0 OR 1=1"}}},
                {"selection": {"z": {"min": float("nan")}}}):
        with pytest.raises(ValueError):
            build_sql(bad)


# --------------------------------------------------------------------------- MaNGA


def test_manga_query_cutouts_zarr(fake, make_config, truth, tmp_path):
    config = make_config("manga")
    manga = get_survey("manga")
    df = manga.query(config)
    check_contract(df, manga)
    assert df["object_id"].tolist() == [848501901, 848512701]
    assert df["plateifu"].tolist() == ["8485-1901", "8485-12701"]
    assert df["log_mass_nsa"].iloc[0] == pytest.approx(math.log10(5e9) - 2 * math.log10(0.7))
    shards = write_and_read(tmp_path, df, manga, config)
    batch = shards["s000000"]
    assert batch.bands == ["g", "r", "i", "z"] and batch.pixel_scale == 0.5
    centre = (32 - 1) / 2
    for i, oid in enumerate(batch.object_id):
        cx, cy = centroid(batch.image[i, 1], centre, centre)
        assert abs(cx - centre) <= 0.55 and abs(cy - centre) <= 0.55, oid
        # the r-band fixture galaxy has 100 nanomaggies; ~90% fall in the 16-arcsec cutout
        assert 80 < np.nansum(batch.image[i, 1]) < 102
    assert (batch.sigma[~batch.mask] > 0).all()
    assert fwhm_of(batch.psf[1]) * 0.5 == pytest.approx(2.5, rel=0.05)
    # the LOGCUBE was deleted once its images were extracted (keep_cubes: false)
    cache = tmp_path / "cache" / "manga"
    assert not [p for p in cache.rglob("*.body") if p.stat().st_size > 200_000]
    assert list((cache / "images").glob("*.npz"))


def test_manga_empty_selection(fake, make_config):
    with pytest.raises(EmptyResultError, match="pass the selection"):
        get_survey("manga").query(make_config("manga", manga={"selection": {"z": {"min": 5}}}))


# --------------------------------------------------------------------------- JADES


def test_jades_query_cutouts_zarr(fake, make_config, truth, tmp_path):
    config = make_config("jades")
    jades = get_survey("jades")
    df = jades.query(config)
    check_contract(df, jades)
    assert df["object_id"].tolist() == [101, 205, 310, 415]  # 520 has z = 7.5 > 6
    assert df["jades_id"].tolist() == ["101", "205", "310", "415"]
    assert df["z"].tolist() == pytest.approx([2.1, 3.5, 1.2, 2.8])
    assert df["flux_f200w"].iloc[0] == pytest.approx(3000.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shards = write_and_read(tmp_path, df, jades, config)
    assert any("415" in str(w.message) for w in caught if "partly off" in str(w.message))
    # only byte ranges were read, never a whole file; the portal was asked once per service
    downloads = fake.hits("/api/v0.1/Download/file")
    assert downloads and all(h["range"] for h in downloads)
    # each portal service answered EXECUTING first (long polling), then COMPLETE
    assert len(fake.hits("/api/v0/invoke")) == 4
    batch = shards["s000000"]
    assert batch.bands == ["F115W", "F200W", "F444W"]
    assert batch.pixel_scale == pytest.approx(0.03)
    # MJy/sr -> nanomaggies: object 101 has 3000 nJy in F200W
    assert np.nansum(batch.image[0, 1]) == pytest.approx(3000 / 3631, rel=0.1)
    centre = (32 - 1) / 2
    for i in range(batch.n_objects):
        cx, cy = centroid(batch.image[i, 1], centre, centre, radius=4)
        assert abs(cx - centre) <= 0.55 and abs(cy - centre) <= 0.55
    assert fwhm_of(batch.psf[2]) * 0.03 == pytest.approx(0.140, rel=0.05)
    edge = shards["s000001"]
    assert edge.mask[list(edge.object_id).index(415)].any()


def test_jades_missing_product_is_named(fake, make_config):
    config = make_config("jades", jades={"version": "v9.9"})
    with pytest.raises(ArchiveError, match="v9.9"):
        get_survey("jades").query(config)


# --------------------------------------------------------------------------- helpers


def test_assign_shards_rank_and_previous():
    ids = np.array([10**18 + 5, 10**18 + 1, 10**18 + 9, 10**18 + 3])
    df = assign_shards(pd.DataFrame({"object_id": ids}), 2)
    assert df["object_id"].tolist() == sorted(ids)
    assert df["shard"].tolist() == ["s000000", "s000000", "s000001", "s000001"]
    # nightly growth with an id *between* old ones: old objects keep their shard
    grown = pd.DataFrame({"object_id": np.append(ids, [10**18 + 2, 10**18 + 20])})
    again = assign_shards(grown, 2, previous=df)
    old = dict(zip(df["object_id"], df["shard"], strict=True))
    for oid, shard in zip(again["object_id"], again["shard"], strict=True):
        assert shard == old.get(oid, shard)
    assert set(again.loc[~again["object_id"].isin(ids), "shard"]) == {"s000002"}
    with pytest.raises(ValueError, match="unique"):
        assign_shards(pd.DataFrame({"object_id": [3, 3]}), 2)


def test_psf_stamps_are_unit_sum_and_centred():
    g = gaussian_psf(1.3, 0.4, 24)
    assert g.shape == (25, 25) and g.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(g), g.shape) == (12, 12)
    s = stamp(np.pad(g, ((3, 0), (0, 5))), 11)
    assert s.shape == (11, 11) and np.unravel_index(np.argmax(s), s.shape) == (5, 5)
