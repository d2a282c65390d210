"""Remote FITS reads against the three ways a download endpoint answers ``Range``:
206 (honoured), 200 (ignored: the whole file, streamed to disk once, in bounded
memory) and a redirect (to a copy that honours Range, or not, or whose link expires)."""

from __future__ import annotations

import tracemalloc
from urllib.parse import quote

import numpy as np
import pytest
from astropy.io import fits

from galcat.surveys._http import ArchiveError, ArchiveSession, HTTPSettings, RemoteFITS, request_key

BIG_URI = "mast:HLSP/jades/big/goods-s/images/hlsp_jades_jwst_nircam_goods-s_f200w_v9.9_drz.fits"
BIG_SHAPE = (3000, 3500)  # float32 SCI: 42 MB, large next to what a cutout needs


@pytest.fixture(scope="module")
def big_mosaic(archive_files):
    """A 42 MB mosaic (SCI then ERR) in the fake archive; (uri, SCI pixels [1000:1010, 20:30])."""
    root = archive_files[0]
    path = root / "mast" / BIG_URI.removeprefix("mast:")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.arange(BIG_SHAPE[0], dtype=np.float32)[:, None]
    sci = rows * 1e-3 + np.arange(BIG_SHAPE[1], dtype=np.float32)[None, :]
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                  fits.ImageHDU(np.ones((8, 8), np.float32), name="ERR")]).writeto(path,
                                                                                 overwrite=True)
    return BIG_URI, sci[1000:1010, 20:30].astype(np.float64), path.stat().st_size


def session(tmp_path, **settings) -> ArchiveSession:
    defaults = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.05}
    return ArchiveSession(HTTPSettings(**{**defaults, **settings}), cache_dir=tmp_path / "cache")


def url_of(fake, uri: str) -> str:
    return f"{fake.url}/api/v0.1/Download/file?uri={quote(uri, safe=':/')}"


def test_range_honoured_reads_only_the_rows_needed(fake, big_mosaic, tmp_path):
    uri, expected, size = big_mosaic
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
    np.testing.assert_array_equal(pixels, expected)
    assert remote.range_supported is True and remote.redirected_to is None
    assert remote.size == size
    hits = fake.hits("Download/file")
    assert hits and all(h["range"] for h in hits)
    # the section is 10 rows of 3500 float32: 140 kB of a 42 MB file
    first, last = (int(x) for x in hits[-1]["range"].removeprefix("bytes=").split("-"))
    assert last - first + 1 == 10 * BIG_SHAPE[1] * 4


def test_range_ignored_streams_to_disk_once_in_bounded_memory(fake, big_mosaic, tmp_path):
    """A 200 to a Range request is saved to disk as it arrives: never held in memory."""
    uri, expected, size = big_mosaic
    fake.set_mode("v9.9_drz", "norange")
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    tracemalloc.start()
    try:
        pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\npeak Python memory reading a {size / 2**20:.1f} MiB mosaic whose server ignores "
          f"Range: {peak / 2**20:.2f} MiB")
    np.testing.assert_array_equal(pixels, expected)
    assert remote.range_supported is False
    assert peak < size / 8, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"
    # one request: the probe's own answer was saved, never downloaded a second time
    assert len(fake.hits("v9.9_drz")) == 1
    cached = remote.session.cache.path(request_key("GET", url_of(fake, uri)))
    assert cached is not None and cached.stat().st_size == size
    # a later reader (another shard) reads the cached copy without asking again
    again = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    np.testing.assert_array_equal(again.read_section("SCI", slice(1000, 1010), slice(20, 30)),
                                  expected)
    assert len(fake.hits("v9.9_drz")) == 1


def test_size_is_checked_before_the_body_is_read(fake, big_mosaic, tmp_path):
    uri, _, size = big_mosaic
    fake.set_mode("v9.9_drz", "norange")
    s = session(tmp_path, max_download_mb=4)
    remote = RemoteFITS(s, url_of(fake, uri), what="JADES F200W mosaic")
    with pytest.raises(ArchiveError, match=r"JADES F200W mosaic: .* is 4\d MiB, over "
                                           r"archive.max_download_mb = 4"):
        remote.read_section("SCI", slice(0, 2), slice(0, 2))
    partial = tmp_path / "cache" / "partial"
    assert not partial.exists() or not any(partial.iterdir())
    assert len(fake.hits("v9.9_drz")) == 1


def test_redirect_then_range_goes_straight_to_the_target(fake, big_mosaic, tmp_path):
    uri, expected, _ = big_mosaic
    fake.set_mode("Download/file", "redirect")
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
    np.testing.assert_array_equal(pixels, expected)
    assert remote.range_supported is True
    assert remote.redirected_to is not None and "/cloud/mast/HLSP/jades/big/" in \
        remote.redirected_to
    assert len(fake.hits("Download/file")) == 1  # the probe; the rest went to the target
    cloud = fake.hits("/cloud/")
    assert len(cloud) >= 3 and all(h["range"] for h in cloud)


def test_redirect_to_a_copy_that_ignores_range_streams_once(fake, big_mosaic, tmp_path):
    uri, expected, size = big_mosaic
    fake.set_mode("Download/file", "redirect")
    fake.set_mode("/cloud/", "norange")
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    tracemalloc.start()
    try:
        pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(pixels, expected)
    assert remote.range_supported is False and peak < size / 8
    assert len(fake.hits("Download/file")) == 1 and len(fake.hits("/cloud/")) == 1


def test_expired_redirect_target_is_probed_again(fake, big_mosaic, tmp_path):
    uri, expected, _ = big_mosaic
    fake.set_mode("Download/file", "redirect")
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    remote.hdus()
    fake.add_fault("/cloud/", "403")  # the signed link has expired
    pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
    np.testing.assert_array_equal(pixels, expected)
    assert len(fake.hits("Download/file")) == 2  # the first probe, and the one after the 403


def test_a_refusal_without_redirect_is_a_clear_error(fake, big_mosaic, tmp_path):
    uri, _, _ = big_mosaic
    fake.add_fault("v9.9_drz", "403")
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    with pytest.raises(ArchiveError, match=r"big mosaic: HTTP 403 .*AccessDenied"):
        remote.hdus()


def test_broken_range_answer_is_retried(fake, big_mosaic, tmp_path):
    uri, expected, _ = big_mosaic
    remote = RemoteFITS(session(tmp_path), url_of(fake, uri), what="big mosaic")
    remote.hdus()
    fake.add_fault("v9.9_drz", "drop", "503")
    pixels = remote.read_section("SCI", slice(1000, 1010), slice(20, 30))
    np.testing.assert_array_equal(pixels, expected)
