"""The data side of the platform: splits, chunked reads, batches, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from galcat.models.data import (
    ChunkBatchSampler,
    CutoutDataset,
    ShardIndex,
    assign_splits,
    bin_images,
    crop_side,
    dihedral_codes,
    fit_normalisation,
    prepare_images,
)
from galcat.models.nets import DIHEDRAL, dihedral, dihedral_inverse, dihedral_numpy
from galcat.store import CutoutReader, read_cutouts

SPLIT = {"validation_fraction": 0.15, "test_fraction": 0.15, "seed": 0}


def test_splits_are_a_fixed_function_of_the_object_id():
    ids = np.arange(1, 20001)
    split = assign_splits(ids, **SPLIT)
    frac = {s: float(np.mean(split == s)) for s in ("train", "validation", "test")}
    assert frac["test"] == pytest.approx(0.15, abs=0.01)
    assert frac["validation"] == pytest.approx(0.15, abs=0.01)
    # an object's split never depends on which other objects exist (nightly growth,
    # another shard size): no object can move from test into training
    sub = ids[::7][::-1]
    np.testing.assert_array_equal(assign_splits(sub, **SPLIT), split[sub - 1])
    other = assign_splits(ids, **{**SPLIT, "seed": 1})
    assert np.mean(other != split) > 0.3


def test_split_fractions_are_checked():
    with pytest.raises(ValueError, match="validation 0.6, test 0.5"):
        assign_splits(np.arange(5), validation_fraction=0.6, test_fraction=0.5)


def test_dihedral_transforms_are_the_eight_distinct_symmetries_and_invert():
    import torch

    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    seen = {dihedral_numpy(x, c).tobytes() for c in range(DIHEDRAL)}
    assert len(seen) == DIHEDRAL
    t = torch.from_numpy(x)
    for c in range(DIHEDRAL):
        np.testing.assert_array_equal(dihedral(t, c).numpy(), dihedral_numpy(x, c))
        assert torch.equal(dihedral_inverse(dihedral(t, c), c), t)
    codes = dihedral_codes(np.arange(4000), seed=3, epoch=2)
    assert set(codes.tolist()) == set(range(DIHEDRAL))
    assert not np.array_equal(codes, dihedral_codes(np.arange(4000), seed=3, epoch=3))


def test_bin_images_averages_blocks_and_names_a_bad_factor():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(bin_images(x, 2)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="5x5 pixels cannot be binned by 2"):
        bin_images(np.zeros((1, 1, 5, 5)), 2)


def test_binning_by_two_equals_the_mean_of_each_block_bit_for_bit():
    # the fast path for factor 2 must give the values the models were trained on
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_cauchy((3, 5, 16, 16)) * 1e3).astype(dtype)
        mean = x.reshape(3, 5, 8, 2, 8, 2).mean(axis=(-3, -1))
        binned = bin_images(x, 2)
        assert binned.dtype == mean.dtype
        np.testing.assert_array_equal(binned, mean)
    np.testing.assert_allclose(bin_images(np.ones((1, 1, 8, 8)), 4), np.ones((1, 1, 2, 2)))


def test_a_crop_keeps_the_centre_then_bins_and_commutes_with_the_rotations():
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(prepare_images(x, crop=0.5), x[..., 8:24, 8:24])
    np.testing.assert_array_equal(prepare_images(x, bin=2, crop=0.5),
                                  bin_images(x[..., 8:24, 8:24], 2))
    np.testing.assert_array_equal(prepare_images(x, bin=2), bin_images(x, 2))
    # whatever the fraction, the margin is even: the crop is centred exactly, so a
    # rotated or flipped cutout gives the rotated or flipped crop (augmentation, tta)
    for crop in (0.3, 0.5, 0.61, 0.9):
        kept = prepare_images(x[0], crop=crop)
        assert (32 - kept.shape[-1]) % 2 == 0 and kept.shape[-1] == crop_side(32, crop=crop)
        for code in range(DIHEDRAL):
            np.testing.assert_array_equal(prepare_images(dihedral_numpy(x[0], code), crop=crop),
                                          dihedral_numpy(kept, code))


def test_the_crop_side_is_the_nearest_centred_whole_number_of_blocks():
    assert crop_side(64, crop=0.5) == 32 and crop_side(64, bin=2, crop=0.5) == 32
    assert crop_side(64, bin=4, crop=0.3) == 20      # 19.2 -> whole 4-pixel blocks
    assert crop_side(63, crop=0.5) == 31             # 31.5 -> an odd side, as 63 is
    assert crop_side(64, crop=0.01) == 2             # at least one centred block
    assert crop_side(64, bin=2, crop=1.0) == 64
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=f"crop must be in .*got {bad}"):
            crop_side(64, crop=bad)
    with pytest.raises(ValueError, match="no centred crop of whole 2x2 blocks"):
        crop_side(63, bin=2, crop=0.5)
    with pytest.raises(ValueError, match="square cutouts; got 32x16"):
        prepare_images(np.zeros((1, 32, 16)), crop=0.5)


def _dataset(survey, ids, **kw):
    readers = [CutoutReader(p) for p in survey["cutouts"]]
    index = ShardIndex.build(readers, np.asarray(ids))
    return CutoutDataset(index, np.asarray(ids, float)[:, None], **kw)


def test_dataset_reads_the_objects_asked_for_in_any_order(tiny_survey):
    ids = np.array([40, 3, 33, 17, 64])
    ds = _dataset(tiny_survey, ids, bands=["i", "g"])
    batch = ds.batch([(0, 0), (1, 5), (4, 0)])
    shard1 = read_cutouts(tiny_survey["cutouts"][1])
    shard0 = read_cutouts(tiny_survey["cutouts"][0])
    np.testing.assert_array_equal(batch["image"][0].numpy(),
                                  shard1.image[40 - 33][[shard1.bands.index("i"),
                                                        shard1.bands.index("g")]])
    np.testing.assert_array_equal(batch["image"][1].numpy(),
                                  dihedral_numpy(shard0.image[2][[3, 1]], 5))
    assert float(batch["target"][2, 0]) == 64.0 and int(batch["index"][2]) == 4


def _collated_by_hand(survey, ids, items, *, bands, bin, extras, inputs, crop=1.0):
    """What the loader must give for ``items``: each object read whole from its shard
    with `read_cutouts`, transformed alone, then stacked by torch's `default_collate`."""
    import torch
    from torch.utils.data import default_collate

    shards = [read_cutouts(p) for p in survey["cutouts"]]

    def sample(i, code):
        shard = next(s for s in shards if ids[i] in s.object_id)
        row = int(np.flatnonzero(shard.object_id == ids[i])[0])
        pick = [shard.bands.index(b) for b in bands]
        image = shard.image[row][pick].astype(np.float32)
        if crop != 1.0:  # the central half of a 32-pixel cutout, cut by hand
            image = image[..., 8:24, 8:24]
        image = bin_images(image, bin)

        def pixels(a):
            return dihedral_numpy(a[..., 8:24, 8:24] if crop != 1.0 else a, code)

        return {"image": torch.from_numpy(dihedral_numpy(image, code)),
                "target": torch.tensor([float(ids[i])], dtype=torch.float32),
                "index": i,
                **{k: torch.tensor(np.float32(v[i])) for k, v in extras.items()},
                "inputs": torch.from_numpy(inputs[i].astype(np.float32)),
                "mask": torch.from_numpy(pixels(shard.mask[row][pick])),
                "sigma": torch.from_numpy(pixels(shard.sigma[row][pick]))}

    return default_collate([sample(i, c) for i, c in items])


def _same_tensor(a, b) -> bool:
    """Same dtype, shape and values."""
    return a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("crop", [1.0, 0.5])
def test_a_batch_is_its_objects_read_one_by_one_and_collated_dtypes_included(tiny_survey,
                                                                               crop):
    from galcat.models.data import make_loader

    ids = np.array([40, 3, 33, 17, 64, 5, 18, 2])
    extras = {"n_votes": np.arange(8.0) * 3}
    inputs = np.arange(16.0).reshape(8, 2)
    index = ShardIndex.build([CutoutReader(p) for p in tiny_survey["cutouts"]], ids)
    ds = CutoutDataset(index, ids[:, None].astype(float), bands=["i", "g"], bin=1, crop=crop,
                       pixel_arrays=("mask", "sigma"), extras=extras, inputs=inputs)
    items = [(0, 3), (5, 7), (2, 0), (1, 4), (7, 1), (6, 2), (4, 5), (3, 6)]
    want = _collated_by_hand(tiny_survey, ids, items, bands=["i", "g"], bin=1,
                             extras=extras, inputs=inputs, crop=crop)
    assert want["image"].shape[-1] == (16 if crop == 0.5 else 32)
    got = ds.batch(items)
    assert list(got) == list(want)
    for key in want:
        assert _same_tensor(got[key], want[key]), key
    # one item is the batch's row, its index a plain int as before
    one = ds[5]
    assert one["index"] == 5 and np.array_equal(one["image"].numpy(), ds.batch([5])["image"][0])

    # a worker process builds the same batches as the main process
    sampler = ChunkBatchSampler(index.chunk_key(), ids, batch_size=3, shuffle=True,
                                augment=True, seed=2)
    serial, parallel = (list(make_loader(ds, sampler, workers=w)) for w in (0, 1))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel, strict=True):
        assert all(_same_tensor(a[k], b[k]) for k in want)


class _CountingReader(CutoutReader):
    """A real reader that counts its reads (chunks asked of the Zarr store)."""

    reads = 0

    def read(self, name, objects, *, bands=None):
        type(self).reads += 1
        return super().read(name, objects, bands=bands)


def test_the_chunk_cache_gives_the_same_batches_and_decodes_each_chunk_once(tiny_survey):
    import pickle

    from galcat.models.data import make_loader

    ids = np.arange(1, 65)
    readers = [_CountingReader(p) for p in tiny_survey["cutouts"]]

    def epoch_batches(cache_chunks):
        ds = CutoutDataset(ShardIndex.build(readers, ids), ids[:, None].astype(float),
                           bands=["g", "r"], bin=2, cache_chunks=cache_chunks)
        sampler = ChunkBatchSampler(ds.index.chunk_key(), ids, batch_size=8, shuffle=True,
                                    augment=True, seed=5, window_chunks=2)
        _CountingReader.reads = 0
        batches = list(make_loader(ds, sampler, workers=0))
        return batches, _CountingReader.reads, ds

    plain, plain_reads, _ = epoch_batches(0)
    cached, cached_reads, ds = epoch_batches(32)
    assert len(plain) == len(cached) == 8
    for a, b in zip(plain, cached, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
    # 4 storage chunks of 16 objects; batches of 8 shuffled within 2-chunk windows
    # touch each chunk twice or more without the cache, once with it
    assert cached_reads == 4 and plain_reads >= 8
    # a worker process gets the dataset without the parent's decoded chunks
    assert len(ds._cache) == 4 and len(pickle.loads(pickle.dumps(ds))._cache) == 0


def test_an_object_in_no_shard_or_an_unknown_band_is_named(tiny_survey):
    readers = [CutoutReader(p) for p in tiny_survey["cutouts"]]
    with pytest.raises(KeyError, match=r"objects \[999\]"):
        ShardIndex.build(readers, np.array([1, 999]))
    with pytest.raises(Exception, match=r"no band\(s\) \['Y'\]"):
        _dataset(tiny_survey, [1, 2], bands=["Y"])


def test_batches_cover_each_object_once_in_a_seeded_order_of_few_chunks(tiny_survey):
    ids = np.arange(1, 65)
    ds = _dataset(tiny_survey, ids, bands=None)
    epoch = {"n": 0}

    def sampler(**kw):
        return ChunkBatchSampler(ds.index.chunk_key(), ids, batch_size=8, shuffle=True,
                                 augment=True, seed=5, epoch=lambda: epoch["n"],
                                 window_chunks=2, **kw)

    first = [b for b in sampler()]
    flat = [i for b in first for i, _ in b]
    assert sorted(flat) == list(range(64))
    assert [b for b in sampler()] == first  # same seed and epoch: same batches
    epoch["n"] = 1
    assert [b for b in sampler()] != first  # a new epoch reshuffles
    # a batch spans at most window_chunks + 1 storage chunks of 16 objects
    keys = ds.index.chunk_key()
    assert max(len({keys[i] for i, _ in b}) for b in first) <= 3
    # DDP: the ranks take disjoint batches, as many each
    r0, r1 = list(sampler(rank=0, world_size=2)), list(sampler(rank=1, world_size=2))
    assert len(r0) == len(r1) == 4
    assert not {i for b in r0 for i, _ in b} & {i for b in r1 for i, _ in b}


def test_normalisation_is_fitted_on_the_dataset_it_is_given(tiny_survey):
    train = _dataset(tiny_survey, np.arange(1, 33), bands=["r"])
    norm = fit_normalisation(train)
    image = read_cutouts(tiny_survey["cutouts"][0]).image[:, 2]
    mad = 1.4826 * np.median(np.abs(image - np.median(image)))
    assert norm["scale"][0] == pytest.approx(mad, rel=1e-5)
    stretched = np.arcsinh(image / mad)
    assert norm["mean"][0] == pytest.approx(stretched.mean(), rel=1e-5)
    assert norm["std"][0] == pytest.approx(stretched.std(), rel=1e-5)
    other = fit_normalisation(_dataset(tiny_survey, np.arange(33, 65), bands=["r"]))
    assert other["mean"][0] != norm["mean"][0]
