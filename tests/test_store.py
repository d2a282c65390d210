"""The Zarr layout: round trip, attributes, atomic writes and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from galcat.store import (
    LAYOUT_VERSION,
    CutoutBatch,
    LayoutError,
    read_cutouts,
    read_segmaps,
    write_cutouts,
    write_segmaps,
)


def make_batch(n=5, bands=("g", "r", "i"), size=16, seed=1) -> CutoutBatch:
    rng = np.random.default_rng(seed)
    shape = (n, len(bands), size, size)
    return CutoutBatch(
        object_id=np.arange(1, n + 1),
        image=rng.normal(size=shape),
        sigma=np.ones(shape),
        mask=np.zeros(shape, bool),
        psf=np.full((len(bands), 5, 5), 1 / 25),
        bands=list(bands),
        pixel_scale=0.396,
        zeropoints=[22.5] * len(bands),
        extras={"truth_class": rng.integers(0, 4, size=(n, size, size)).astype(np.uint8)},
    )


def test_round_trip_keeps_arrays_and_attributes(tmp_path):
    batch = make_batch()
    path = write_cutouts(tmp_path / "s000000.zarr", batch, shard="s000000")
    back = read_cutouts(path)
    for name in ("object_id", "image", "sigma", "mask", "psf"):
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name))
    np.testing.assert_array_equal(back.extras["truth_class"], batch.extras["truth_class"])
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["bands"] == ["g", "r", "i"]
    assert group.attrs["pixel_scale_arcsec"] == pytest.approx(0.396)
    assert group.attrs["layout_version"] == LAYOUT_VERSION
    assert group.attrs["flux_unit"] == "nanomaggy"
    assert "galcat_version" in group.attrs
    # chunks hold whole objects
    assert group["image"].chunks[1:] == batch.image.shape[1:]
    assert group.info  # readable metadata
    assert zarr.open_group(str(path), mode="r").metadata.zarr_format == 3


def test_slice_read_touches_only_requested_objects(tmp_path):
    batch = make_batch(n=7)
    path = write_cutouts(tmp_path / "a.zarr", batch, shard="s000000")
    part = read_cutouts(path, objects=slice(2, 4))
    np.testing.assert_array_equal(part.object_id, [3, 4])
    np.testing.assert_array_equal(part.image, batch.image[2:4])


def test_failed_write_leaves_no_output_and_no_temporary(tmp_path):
    batch = make_batch()
    batch.extras["bad"] = np.array([object()] * batch.n_objects)  # zarr cannot store it
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the write
        write_cutouts(tmp_path / "s000001.zarr", batch, shard="s000001")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_whole_group(tmp_path):
    path = tmp_path / "s.zarr"
    write_cutouts(path, make_batch(n=5, seed=1), shard="s")
    write_cutouts(path, make_batch(n=3, seed=2), shard="s")
    back = read_cutouts(path)
    assert back.n_objects == 3
    np.testing.assert_array_equal(back.image, make_batch(n=3, seed=2).image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(bands=["g", "r"]), "bands"),
        (dict(object_id=np.array([1, 1, 2, 3, 4])), "unique and ascending"),
        (dict(psf=np.ones((2, 5, 5))), "psf"),
        (dict(zeropoints=[22.5]), "zeropoints"),
    ],
)
def test_bad_batch_is_a_clear_error(change, message):
    good = make_batch()
    kwargs = {k: getattr(good, k) for k in (
        "object_id", "image", "sigma", "mask", "psf", "bands", "pixel_scale", "zeropoints")}
    kwargs.update(change)
    with pytest.raises(LayoutError, match=message):
        CutoutBatch(**kwargs)


def test_missing_band_error_names_band():
    with pytest.raises(LayoutError, match="'z'"):
        make_batch().band_index("z")


def test_segmaps_round_trip_and_shape_check(tmp_path):
    seg = np.zeros((3, 8, 8), np.int32)
    seg[:, 3:5, 3:5] = 1
    path = write_segmaps(tmp_path / "m.zarr", seg, np.array([1, 2, 3]), shard="s", method="x")
    ids, back = read_segmaps(path)
    np.testing.assert_array_equal(ids, [1, 2, 3])
    np.testing.assert_array_equal(back, seg)
    with pytest.raises(LayoutError, match="n = 2"):
        write_segmaps(tmp_path / "n.zarr", seg, np.array([1, 2]), shard="s", method="x")


def test_reading_a_missing_group_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        read_cutouts(tmp_path / "nope.zarr")


def test_leftovers_of_a_killed_write_are_cleared(tmp_path):
    stale = tmp_path / ".s.zarr.tmp-deadbeef"
    (stale / "image").mkdir(parents=True)
    write_cutouts(tmp_path / "s.zarr", make_batch(), shard="s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_reader_reads_whole_chunks_lazily_and_matches_read_cutouts(tmp_path):
    import pickle

    from galcat.store import OBJECTS_PER_CHUNK, CutoutReader

    batch = make_batch(n=OBJECTS_PER_CHUNK + 5)
    path = write_cutouts(tmp_path / "s000000.zarr", batch, shard="s000000")
    reader = CutoutReader(path)
    assert reader.n_objects == batch.n_objects and reader.bands == ["g", "r", "i"]
    chunks = reader.chunks()
    assert chunks == [slice(0, OBJECTS_PER_CHUNK), slice(OBJECTS_PER_CHUNK, batch.n_objects)]
    # a reader travels to worker processes by pickling and reopens its arrays there
    reader = pickle.loads(pickle.dumps(reader))
    part = reader.read("image", chunks[1], bands=["i", "g"])
    np.testing.assert_array_equal(part, batch.image[chunks[1]][:, [2, 0]])
    np.testing.assert_array_equal(
        reader.read("truth_class", chunks[0]), batch.extras["truth_class"][chunks[0]]
    )


def test_reader_names_a_missing_band_or_array(tmp_path):
    from galcat.store import CutoutReader

    reader = CutoutReader(write_cutouts(tmp_path / "s.zarr", make_batch(), shard="s"))
    with pytest.raises(LayoutError, match=r"no band\(s\) \['z'\].*\['g', 'r', 'i'\]"):
        reader.read("image", slice(0, 2), bands=["z"])
    with pytest.raises(LayoutError, match="no array 'ivar'"):
        reader.read("ivar", slice(0, 2))
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        CutoutReader(tmp_path / "missing.zarr")


def _codecs(path, name) -> list[str]:
    """The codecs an array's metadata names (``zarr.json``), as on disk."""
    import json

    meta = json.loads((path / name / "zarr.json").read_text())
    return [c["name"] + (f":{c['configuration']['cname']}" if c["name"] == "blosc" else "")
            for c in meta["codecs"]]


def test_arrays_that_compress_are_written_with_lz4_noise_raw_and_old_stores_still_read(
        tmp_path):
    from galcat.store import OBJECTS_PER_CHUNK, CutoutReader

    batch = make_batch(n=OBJECTS_PER_CHUNK + 3)
    batch.image = batch.image.astype(np.float32)
    batch.sigma = batch.sigma.astype(np.float32)
    path = write_cutouts(tmp_path / "s000000.zarr", batch, shard="s000000")
    # pure noise gains nothing from compression; the constant sigma and the masks do
    assert _codecs(path, "image") == ["bytes"]
    assert _codecs(path, "sigma") == _codecs(path, "mask") == ["bytes", "blosc:lz4"]
    np.testing.assert_array_equal(read_cutouts(path).image, batch.image)
    # an image with wide empty borders (a mosaic's edge) is compressed
    bordered = make_batch(n=OBJECTS_PER_CHUNK)
    bordered.image[:, :, :4] = 0.0  # a quarter of the rows empty: saves a quarter
    other = write_cutouts(tmp_path / "s000001.zarr", bordered, shard="s000001")
    assert _codecs(other, "image") == ["bytes", "blosc:lz4"]
    np.testing.assert_array_equal(read_cutouts(other).image, bordered.image)
    # a shard staged by earlier versions: Zarr's default codec (Zstandard)
    old = zarr.open_group(str(path), mode="a").create_array(
        "image", shape=batch.image.shape, dtype=batch.image.dtype, overwrite=True,
        chunks=(OBJECTS_PER_CHUNK, *batch.image.shape[1:]))
    old[...] = batch.image
    assert _codecs(path, "image") == ["bytes", "zstd"]
    np.testing.assert_array_equal(read_cutouts(path).image, batch.image)
    np.testing.assert_array_equal(CutoutReader(path).read("image", slice(0, 4), bands=["r"]),
                                  batch.image[:4, [1]])
