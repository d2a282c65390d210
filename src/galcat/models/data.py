"""Training data straight from the Zarr shards: splits, dataset, batches, normalisation.

* **Splits** (`assign_splits`): train / validation / test fixed by a hash of
  ``object_id`` (SplitMix64 with a seed), so an object keeps its split when the
  survey grows or shards change, and every model of a run has the same test set.
* **Dataset** (`CutoutDataset`): the objects of one split, read from the shards
  through `galcat.store.CutoutReader` (no copy of the survey into another
  format). A batch is built by one DataLoader worker with `CutoutDataset.batch`,
  which reads every storage chunk the batch touches once, as a whole, and copies
  each image once, from its decoded chunk into its transformed place in the batch.
* **Batches** (`ChunkBatchSampler`): storage chunks in a random order per epoch,
  objects shuffled within windows of ``window_chunks`` chunks, so a batch spans a
  few chunks and each chunk is read about ``window_chunks * 16 / batch_size``
  times per epoch. The order and each object's dihedral augmentation depend only
  on (seed, epoch, object_id): a resumed run sees the batches an uninterrupted one
  would, whatever the number of workers.
* **Normalisation** (`fit_normalisation`): per-band sky scale and the mean and std
  of the stretched pixels, from the training split only.
* **Per-object inputs** (`object_inputs`): values given to the head beside the
  image features. From the object table, what an image cannot hold: the redshift
  (as log10 z) lets a network turn fluxes into luminosities; without it a
  metallicity network cannot tell a massive distant galaxy from a nearby dwarf and
  pulls its predictions towards the mean metallicity. From ``measure``'s features
  tables (`join_measured`), a traditional estimate of the network's own target:
  the network then learns a correction to it, and keeps the fit's precision on
  bright galaxies where an image-only network of this size does not reach it.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from galcat.models.nets import DIHEDRAL, Normalise, dihedral_view
from galcat.store import CutoutReader, ResidualMapReader
from galcat.tables import column_names, read_table

__all__ = [
    "SPLITS",
    "ChunkBatchSampler",
    "CutoutDataset",
    "ShardIndex",
    "assign_splits",
    "bin_images",
    "crop_side",
    "input_side",
    "prepare_images",
    "OBJECT_INPUTS",
    "fit_normalisation",
    "MEASURED_INPUTS",
    "ModelInput",
    "input_column",
    "join_measured",
    "measured_input_names",
    "required_inputs",
    "residual_channels",
    "with_residual_channel",
    "make_loader",
    "object_inputs",
    "read_labels",
]

SPLITS = ("train", "validation", "test")

class ModelInput(NamedTuple):
    """A per-object input of a network: the table column it reads, whether the
    network sees its log10 (then a value <= 0 is unknown), what it is, the range
    it is clipped to (a colour of a component with almost no flux in a band can be
    tens of magnitudes; unclipped, it would set the input's standardisation) and,
    for a colour, the column subtracted from ``column``."""

    column: str
    log: bool
    description: str
    limits: tuple[float, float] | None = None
    minus: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every table column the input reads."""
        return (self.column,) if self.minus is None else (self.column, self.minus)


#: Per-object inputs a model may take (``models.<name>.inputs``) from the object table.
OBJECT_INPUTS = {"z": ModelInput("z", True, "log10 of the redshift (z <= 0: unknown)")}
#: Per-object inputs read from `measure`'s features tables (``features/{shard}.parquet``).
#: Where `measure` found none (NaN) the network sees the training split's mean
#: (`GalaxyNet` imputes it), so the object is still trained on and predicted: a bad
#: fit loses no network prediction.
MEASURED_INPUTS = {
    "r50_mass": ModelInput("r50_mass", True, "log10 of measure's half-stellar-mass radius "
                           "(colour -> M/L), arcsec"),
    "r50_psf_corrected": ModelInput("r50_psf_corrected", True, "log10 of measure's "
                                    "PSF-corrected half-light radius, arcsec"),
    "sersic_n": ModelInput("sersic_n", True, "log10 of the Sersic index"),
    "sersic_q": ModelInput("sersic_q", False, "axis ratio b/a of the Sersic fit"),
    "bulge_to_total": ModelInput("bulge_to_total", False, "B/T of the bulge + disc fit"),
    "bulge_q": ModelInput("bulge_q", False, "axis ratio of the bulge + disc fit's bulge"),
    "disc_q": ModelInput("disc_q", False, "axis ratio of the bulge + disc fit's disc"),
    "asymmetry": ModelInput("asymmetry", False, "rotational asymmetry A"),
    "concentration": ModelInput("concentration", False, "concentration C"),
    "seg_n_sources": ModelInput("seg_n_sources", False, "sources the segmentation found in "
                                "the cutout (companions)"),
    "sn_per_pixel": ModelInput("sn_per_pixel", True, "log10 of the mean S/N per pixel of the "
                               "central segment: how far the measurements can be trusted"),
    "bulge_colour": ModelInput("bulge_colour", False, "colour of the bulge + disc fit's "
                               "bulge, mag, clipped to [-1, 3]", (-1.0, 3.0)),
    "disc_colour": ModelInput("disc_colour", False, "colour of the bulge + disc fit's "
                              "disc, mag, clipped to [-1, 3]", (-1.0, 3.0)),
    "neighbour_flux_ratio": ModelInput("neighbour_flux_ratio", True, "log10 of the "
                                       "brightest neighbour's flux over the galaxy's"),
    "neighbour_colour_offset": ModelInput("neighbour_colour_offset", False, "the brightest "
                                          "neighbour's colour minus the galaxy's, mag, "
                                          "clipped to [-2, 2]", (-2.0, 2.0)),
    "neighbour_separation": ModelInput("neighbour_separation", True, "log10 of the "
                                       "brightest neighbour's distance in half-light radii"),
    "neighbour_size_ratio": ModelInput("neighbour_size_ratio", True, "log10 of the brightest "
                                       "neighbour's half-light radius over the galaxy's"),
    # statmorph's shape statistics: what the forest baseline reads beyond the columns above
    "gini": ModelInput("gini", False, "Gini coefficient of the light (Lotz et al. 2004)"),
    "m20": ModelInput("m20", False, "M20, the second moment of the brightest 20% of the light"),
    "smoothness": ModelInput("smoothness", False, "clumpiness S (Conselice 2003), clipped "
                             "to [-0.5, 0.5]", (-0.5, 0.5)),
    "shape_asymmetry": ModelInput("shape_asymmetry", False, "asymmetry of the segment's "
                                  "shape (Pawlik et al. 2016): tidal features"),
    "multimode": ModelInput("multimode", False, "multimode M (Freeman et al. 2013): a "
                            "second bright clump"),
    "intensity": ModelInput("intensity", False, "intensity I (Freeman et al. 2013)"),
    "deviation": ModelInput("deviation", False, "deviation D (Freeman et al. 2013)"),
    "ellipticity": ModelInput("ellipticity", False, "ellipticity 1 - b/a of the light's "
                              "second moments"),
    # the galaxy's colour says quenched or star-forming: gz2 gained from it as a column
    # although the aperture photometry already gives the head fluxes per band
    "colour_g_r": ModelInput("mag_model_g", False, "g - r of the bulge + disc fit's model "
                             "photometry, mag, clipped to [-1, 3]", (-1.0, 3.0), "mag_model_r"),
    "colour_r_i": ModelInput("mag_model_r", False, "r - i of the bulge + disc fit's model "
                             "photometry, mag, clipped to [-1, 3]", (-1.0, 3.0), "mag_model_i"),
    # how far B/T and the axis ratios can be trusted, galaxy by galaxy: the fit's own errors
    "bulge_to_total_err": ModelInput("bulge_to_total_err", True, "log10 of the 1-sigma "
                                     "error of the bulge + disc fit's B/T"),
    "bulge_q_err": ModelInput("bulge_q_err", True, "log10 of the 1-sigma error of the "
                              "bulge's axis ratio"),
    "disc_q_err": ModelInput("disc_q_err", True, "log10 of the 1-sigma error of the "
                             "disc's axis ratio"),
    "residual_flux_fraction": ModelInput("residual_flux_fraction", False, "light the "
                                         "bulge + disc fit leaves unexplained (tidal tails, "
                                         "a lopsided disc), clipped to [-0.05, 0.2]",
                                         (-0.05, 0.2)),
}
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a fast, well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _hash(object_id: np.ndarray, *salts: int) -> np.ndarray:
    h = np.asarray(object_id).astype(np.int64).view(np.uint64)
    for s in salts:
        h = _splitmix64(h ^ _splitmix64(np.full(h.shape, s, dtype=np.uint64)))
    return _splitmix64(h)


def assign_splits(
    object_id: np.ndarray, *, validation_fraction: float, test_fraction: float, seed: int = 0
) -> np.ndarray:
    """The split of every object: ``"train"``, ``"validation"`` or ``"test"``.

    Parameters
    ----------
    object_id : array of int
    validation_fraction, test_fraction : float
        Expected fractions (each in [0, 1), sum < 1).
    seed : int
        Salt of the hash; the same seed gives the same split.

    Returns
    -------
    ndarray of str (object dtype), one per object. Cost: O(n), ~50 ns per object.
    """
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1
            and validation_fraction + test_fraction < 1):
        raise ValueError(
            f"split fractions must be in [0, 1) with a sum < 1; got validation "
            f"{validation_fraction}, test {test_fraction}"
        )
    u = (_hash(object_id, int(seed), 0x53504C54) >> np.uint64(11)).astype(np.float64) / 2.0**53
    out = np.full(u.shape, "train", dtype=object)
    out[u < test_fraction + validation_fraction] = "validation"
    out[u < test_fraction] = "test"
    return out


def dihedral_codes(object_id: np.ndarray, *, seed: int, epoch: int) -> np.ndarray:
    """Augmentation code (0-7) of each object in one epoch, from (seed, epoch, id)."""
    return (_hash(object_id, int(seed), int(epoch) + 1) % np.uint64(DIHEDRAL)).astype(np.int64)


def bin_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` pixel blocks of the last two axes (flux per pixel)."""
    if factor == 1:
        return x
    *lead, ny, nx = x.shape
    if ny % factor or nx % factor:
        raise ValueError(f"cutouts of {ny}x{nx} pixels cannot be binned by {factor}")
    if factor == 2:
        # ten times faster than the reshaped mean (whose strided reduction cost as
        # much as reading the chunk), and equal to it bit for bit: NumPy sums each
        # row's pair first, then the two rows (a test holds them equal)
        top = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
        bottom = x[..., 1::2, 0::2] + x[..., 1::2, 1::2]
        return (top + bottom) / x.dtype.type(4)
    return x.reshape(*lead, ny // factor, factor, nx // factor, factor).mean(axis=(-3, -1))


def crop_side(side: int, *, bin: int = 1, crop: float = 1.0) -> int:
    """Pixels a side of the central crop that ``crop`` keeps of a ``side``-pixel cutout.

    ``side x crop`` rounded to the nearest whole number of ``bin`` blocks that leaves
    an even margin, so that the crop is centred exactly and commutes with the 8
    rotations and flips; at least one block. ``crop`` 1 keeps the whole cutout.
    """
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], the fraction of the cutout side kept; "
                         f"got {crop!r}")
    if crop == 1.0:
        return int(side)
    sides = [k for k in range(bin, side + 1, bin) if (side - k) % 2 == 0]
    if not sides:
        raise ValueError(f"a {side}-pixel cutout has no centred crop of whole {bin}x{bin} "
                         f"blocks (crop {crop})")
    # the nearest, the larger of two equally near
    return int(min(sides, key=lambda k: (abs(k - side * crop), -k)))


def input_side(side: int, *, bin: int = 1, crop: float = 1.0) -> int:
    """Pixels a side of the image a network sees of a ``side``-pixel cutout
    (`prepare_images`: the crop, then the binning)."""
    return crop_side(side, bin=bin, crop=crop) // bin


def prepare_images(x: np.ndarray, *, bin: int = 1, crop: float = 1.0) -> np.ndarray:
    """The central `crop_side` pixels of the last two axes, then `bin_images`.

    Cropping keeps the galaxy's pixels at full resolution where binning would average
    them: on a 64-pixel cutout ``crop`` 0.5 feeds a network the same 32 x 32 pixels as
    ``bin`` 2, but the central ones.
    """
    *_, ny, nx = x.shape
    if crop != 1.0:
        if ny != nx:
            raise ValueError(f"crop needs square cutouts; got {ny}x{nx} pixels")
        kept = crop_side(nx, bin=bin, crop=crop)
        lo = (nx - kept) // 2
        x = x[..., lo:lo + kept, lo:lo + kept]
    return bin_images(x, bin)


@dataclass
class ShardIndex:
    """Where the objects of a split are: shard readers and per-object positions.

    Attributes
    ----------
    readers : list of CutoutReader
    shard : ndarray of int, shape (n,)
        Index into ``readers`` of each object.
    row : ndarray of int, shape (n,)
        Row of each object within its shard.
    object_id : ndarray of int64, shape (n,)
    """

    readers: list[CutoutReader]
    shard: np.ndarray
    row: np.ndarray
    object_id: np.ndarray

    @classmethod
    def build(cls, readers: Sequence[CutoutReader], object_id: np.ndarray) -> ShardIndex:
        """Locate ``object_id`` (any order) in ``readers``; a clear error if one is absent."""
        ids = [r.object_id for r in readers]
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        shard = np.concatenate([np.full(len(a), i) for i, a in enumerate(ids)]) if ids else all_ids
        row = np.concatenate([np.arange(len(a)) for a in ids]) if ids else all_ids
        object_id = np.asarray(object_id, np.int64)
        order = np.argsort(all_ids, kind="stable")
        sorted_ids = all_ids[order]
        pos = np.searchsorted(sorted_ids, object_id)
        ok = pos < len(sorted_ids)
        ok[ok] = sorted_ids[pos[ok]] == object_id[ok]
        if not ok.all():
            missing = object_id[~ok]
            raise KeyError(
                f"objects {missing[:5].tolist()} (of {len(missing)}) are in none of the "
                f"cutout shards given: {[str(r.path) for r in readers][:3]}"
            )
        take = order[pos]
        return cls(list(readers), shard[take], row[take], object_id)

    def chunk_key(self) -> np.ndarray:
        """A key per object that is equal for objects of the same storage chunk."""
        per = np.array([r.chunk_objects for r in self.readers])
        return self.shard.astype(np.int64) * (1 << 40) + self.row // per[self.shard]


class CutoutDataset(Dataset):
    """Cutouts (and targets) of a set of objects, read from the shards chunk by chunk.

    Items are dicts: ``image`` float32 ``(band, y, x)`` (binned flux), ``target``
    float32 ``(k,)``, ``index`` (position in the dataset) and one array per name
    in ``pixel_arrays``. Index with ``(index, dihedral_code)`` pairs (as
    `ChunkBatchSampler` yields them) or plain ints (no transform).

    Parameters
    ----------
    index : ShardIndex
    targets : ndarray, shape (n, k)
        Fit-space targets of the objects, in ``index`` order.
    bands : list of str or None
        Bands to read, in this order (None: all of the shard's).
    bin : int
        Pixel binning factor.
    crop : float
        Fraction of the cutout side kept around the centre before binning
        (`prepare_images`; 1: all). Per-pixel arrays are cropped alike.
    pixel_arrays : sequence of str
        Further per-pixel arrays to read and transform with the image.
    extras : mapping of str to ndarray, optional
        Per-object values the loss reads beside the target (the number of votes, a
        label's measurement error: `galcat.labels`), in ``index`` order; item key =
        mapping key, float32 (NaN: unknown).
    inputs : ndarray, shape (n, k), optional
        Per-object inputs of the network (`object_inputs`), in ``index`` order;
        item key ``inputs``.
    residuals : sequence of ResidualMapReader, optional
        One per reader of ``index``, in its order: the residual significance maps
        (`galcat.morphology.residual_significance`, NaN read as 0) become one more
        channel after ``bands`` (``models.<name>.residual_map``).
    cache_chunks : int
        Decoded storage chunks kept per process (least recently used dropped; 0: none).
        Default 32: with `ChunkBatchSampler`'s default window of 8 chunks each chunk
        is decompressed about once per epoch; 32 chunks of 16 objects x 5 bands x
        64 x 64 float32 hold 42 MB.
    """

    def __init__(self, index: ShardIndex, targets: np.ndarray, *, bands: list[str] | None,
                 bin: int = 1, crop: float = 1.0, pixel_arrays: Sequence[str] = (),
                 extras: Mapping[str, np.ndarray] | None = None,
                 inputs: np.ndarray | None = None,
                 residuals: Sequence[ResidualMapReader] | None = None,
                 cache_chunks: int = 32) -> None:
        self.index = index
        self.residuals = None if residuals is None else list(residuals)
        if self.residuals is not None:
            if len(self.residuals) != len(index.readers):
                raise ValueError(f"{len(self.residuals)} residual map stores for "
                                 f"{len(index.readers)} cutout shards")
            for maps, cutouts in zip(self.residuals, index.readers, strict=True):
                maps.check_matches(cutouts)
        self.cache_chunks = int(cache_chunks)
        self._cache: OrderedDict[tuple[int, int, str], np.ndarray] = OrderedDict()
        self.targets = np.asarray(targets, dtype=np.float32).reshape(len(index.object_id), -1)
        self.inputs = (None if inputs is None
                       else np.asarray(inputs, np.float32).reshape(len(index.object_id), -1))
        self.extras = {k: np.asarray(v, np.float32).reshape(len(index.object_id))
                       for k, v in (extras or {}).items()}
        self.bands = bands
        self.bin = int(bin)
        self.crop = float(crop)
        self.pixel_arrays = tuple(pixel_arrays)
        if index.readers:
            index.readers[0].band_indices(bands)  # an unknown band fails here, not in a worker

    def __len__(self) -> int:
        return len(self.index.object_id)

    def __getitem__(self, item) -> dict:
        sample = {key: value[0] for key, value in self.batch([item]).items()}
        sample["index"] = int(sample["index"])
        return sample

    def batch(self, items: Sequence) -> dict[str, torch.Tensor]:
        """The collated batch of ``items`` (``(index, dihedral_code)`` pairs or ints).

        Equal, dtypes included, to ``default_collate`` of the items one by one, and
        built array-wise: each image is copied once, from its decoded chunk straight
        into its transformed place in the batch. Cost: about one memory copy of the
        batch, beside the reads of chunks not in the cache.
        """
        pairs = np.array([(i[0], i[1]) if isinstance(i, (tuple, list)) else (i, 0)
                          for i in items], np.int64).reshape(-1, 2)
        idx, codes = pairs[:, 0], pairs[:, 1]
        loaded = self._read(idx, codes)
        out = {
            "image": torch.from_numpy(loaded["image"]),
            "target": torch.from_numpy(self.targets[idx]),
            "index": torch.from_numpy(idx),
            **{k: torch.from_numpy(v[idx]) for k, v in self.extras.items()},
        }
        if self.inputs is not None:
            out["inputs"] = torch.from_numpy(self.inputs[idx])
        for name in self.pixel_arrays:
            out[name] = torch.from_numpy(loaded[name])
        return out

    def read_images(self, idx: np.ndarray) -> np.ndarray:
        """Binned images ``(len(idx), band, y, x)`` of dataset positions ``idx``."""
        idx = np.asarray(idx)
        return self._read(idx, np.zeros(len(idx), np.int64))["image"]

    def _read(self, idx: np.ndarray, codes: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of the objects at ``idx``, each under its dihedral ``codes``."""
        ix = self.index
        names = ("image", *self.pixel_arrays)
        per = np.array([r.chunk_objects for r in ix.readers])
        shard, row = ix.shard[idx], ix.row[idx]
        chunk = row // per[shard]
        out: dict[str, np.ndarray] = {}
        for s, c in sorted(set(zip(shard.tolist(), chunk.tolist(), strict=True))):
            lo = c * ix.readers[s].chunk_objects
            members = np.flatnonzero((shard == s) & (chunk == c))
            for name in names:
                block = self._chunk(s, c, name)
                if name not in out:
                    out[name] = np.empty((len(idx), *block.shape[1:]), block.dtype)
                for m in members.tolist():
                    out[name][m] = dihedral_view(block[row[m] - lo], codes[m])
        return {n: out.get(n, np.zeros((0,))) for n in names}

    def _chunk(self, shard: int, chunk: int, name: str) -> np.ndarray:
        """Array ``name`` of one whole storage chunk (images binned), through the cache.

        A training batch shuffles the objects of several chunks, so each chunk is
        asked for by a few consecutive batches: keeping the last `cache_chunks`
        decoded chunks makes each one decompressed about once per epoch and process.
        """
        key = (shard, chunk, name)
        block = self._cache.get(key)
        if block is not None:
            self._cache.move_to_end(key)
            return block
        reader = self.index.readers[shard]
        lo = chunk * reader.chunk_objects
        objects = slice(lo, min(lo + reader.chunk_objects, reader.n_objects))
        bands = self.bands if name in ("image", "sigma", "mask") else None
        block = reader.read(name, objects, bands=bands)
        if name == "image":
            block = block.astype(np.float32, copy=False)
            if self.residuals is not None:
                block = with_residual_channel(block, self.residuals[shard], objects)
            block = prepare_images(block, bin=self.bin, crop=self.crop)
        elif self.crop != 1.0:
            block = prepare_images(block, crop=self.crop)
        if self.cache_chunks > 0:
            self._cache[key] = block
            while len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        return block

    def __getstate__(self) -> dict:
        # a worker process starts with an empty cache of its own
        return {**self.__dict__, "_cache": OrderedDict()}


class ChunkBatchSampler(Sampler):
    """Batches of ``(index, dihedral_code)`` that each read a few whole chunks.

    Parameters
    ----------
    chunk_key : ndarray, shape (n,)
        `ShardIndex.chunk_key` of the dataset's objects.
    object_id : ndarray, shape (n,)
    batch_size : int
    shuffle : bool
        Random chunk order and shuffling within windows (training); else dataset order.
    augment : bool
        Draw a dihedral transform per object and epoch; else code 0.
    seed : int
    epoch : callable returning int, optional
        Called when an epoch's iteration starts (the trainer's current epoch).
    window_chunks : int
        Chunks whose objects are shuffled together.
    rank, world_size : int
        Under DDP each process takes every ``world_size``-th batch, the same count each.
    """

    def __init__(self, chunk_key: np.ndarray, object_id: np.ndarray, *, batch_size: int,
                 shuffle: bool, augment: bool, seed: int,
                 epoch: Callable[[], int] | None = None, window_chunks: int = 8,
                 rank: int = 0, world_size: int = 1) -> None:
        self.chunk_key = np.asarray(chunk_key)
        self.object_id = np.asarray(object_id)
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.seed = shuffle, augment, int(seed)
        self.epoch = epoch or (lambda: 0)
        self.window_chunks = int(window_chunks)
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        return math.ceil(len(self.object_id) / self.batch_size) // self.world_size

    def order(self, epoch: int) -> np.ndarray:
        """Dataset positions in the order of ``epoch``."""
        n = len(self.object_id)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, 0x42415443, int(epoch)])
        keys, inverse = np.unique(self.chunk_key, return_inverse=True)
        members = [[] for _ in keys]
        for i, k in enumerate(inverse):
            members[k].append(i)
        chunk_order = rng.permutation(len(keys))
        parts = []
        for w in range(0, len(keys), self.window_chunks):
            window = np.concatenate([members[k] for k in chunk_order[w : w + self.window_chunks]])
            parts.append(rng.permutation(window))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __iter__(self):
        epoch = int(self.epoch())
        order = self.order(epoch)
        codes = (dihedral_codes(self.object_id, seed=self.seed, epoch=epoch) if self.augment
                 else np.zeros(len(order), np.int64))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        n_each = len(batches) // self.world_size
        for b in batches[self.rank :: self.world_size][:n_each]:
            yield [(int(i), int(codes[i])) for i in b]


def with_residual_channel(images: np.ndarray, maps: ResidualMapReader,
                          objects: slice) -> np.ndarray:
    """Float32 ``images`` ``(n, band, y, x)`` of ``objects`` with their residual maps as
    one more band, before binning and cropping (training and prediction alike)."""
    return np.concatenate([images, maps.read(objects)[:, None].astype(np.float32)], axis=1)


def residual_channels(settings: Mapping) -> int:
    """Channels a model's network takes beyond its bands: 1 with
    ``models.<name>.residual_map`` (read with ``dict.get``: false stays out of the train
    params, `galcat.config.keys_training_ignores`), else 0."""
    return int(bool(dict.get(settings, "residual_map", False)))


def stretch_images(images: np.ndarray, scale: np.ndarray, *, scaling: str) -> np.ndarray:
    """`galcat.models.nets.Normalise.stretch` of float64 images ``(n, band, y, x)``
    whose bands have the sky noise ``scale``, as float64 NumPy."""
    if scaling == "asinh":
        return np.arcsinh(images / np.asarray(scale)[None, :, None, None])
    norm = Normalise(images.shape[1], scaling=scaling)
    norm.set(scale, np.zeros_like(scale), np.ones_like(scale))
    with torch.no_grad():
        return norm.stretch(torch.from_numpy(images)).numpy()


def fit_normalisation(dataset: CutoutDataset, *, max_objects: int = 2000,
                      scaling: str = "asinh") -> dict[str, np.ndarray]:
    """Per-band ``scale``, ``mean`` and ``std`` of `galcat.models.nets.Normalise`.

    ``scale`` is the robust pixel noise of the band (1.4826 x the median absolute
    deviation over all pixels; sky pixels dominate a cutout, so it is the sky
    noise), ``mean`` and ``std`` those of the stretched pixels (``scaling``: the
    stretch of `Normalise`, default ``asinh(x / scale)``). Computed from the
    first ``max_objects`` objects of ``dataset`` (the training split) in storage
    order, so the same split gives the same values. Cost: one read of those objects.
    """
    n = min(len(dataset), int(max_objects))
    if n == 0:
        raise ValueError("cannot fit the normalisation: the training split is empty")
    order = np.lexsort((dataset.index.row, dataset.index.shard))[:n]
    images = np.concatenate(
        [dataset.read_images(order[i : i + 256]) for i in range(0, n, 256)]
    ).astype(np.float64)
    pixels = np.moveaxis(images, 1, 0).reshape(images.shape[1], -1)
    med = np.median(pixels, axis=1, keepdims=True)
    scale = 1.4826 * np.median(np.abs(pixels - med), axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    stretched = stretch_images(images, scale, scaling=scaling)
    stretched = np.moveaxis(stretched, 1, 0).reshape(images.shape[1], -1)
    std = stretched.std(axis=1)
    return {"scale": scale, "mean": stretched.mean(axis=1), "std": np.where(std > 0, std, 1.0)}


class _Batches(Dataset):
    """`CutoutDataset` indexed by a whole batch: ``loader_dataset[items]`` is
    `CutoutDataset.batch` (the DataLoader's manual batching, ``batch_size=None``)."""

    def __init__(self, dataset: CutoutDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, items: Sequence) -> dict[str, torch.Tensor]:
        return self.dataset.batch(items)


def make_loader(dataset: CutoutDataset, sampler: ChunkBatchSampler, *, workers: int) -> DataLoader:
    """A DataLoader whose workers each build whole batches (`CutoutDataset.batch`)."""
    # The sampler, in the main process, decides the order and the augmentation, so
    # workers may live across epochs (persistent): no start-up per epoch, and each
    # keeps its cache of decoded chunks. They open their own arrays. A batch comes
    # out of `CutoutDataset.batch` collated: no per-object samples to stack.
    kwargs = {"prefetch_factor": 4, "persistent_workers": True} if workers > 0 else {}
    return DataLoader(_Batches(dataset), sampler=sampler, batch_size=None,
                      num_workers=int(workers), pin_memory=torch.cuda.is_available(), **kwargs)


def object_inputs(table: pd.DataFrame, names: Sequence[str], *, source: str) -> np.ndarray:
    """The per-object inputs ``names`` (`OBJECT_INPUTS`, `MEASURED_INPUTS`) of the rows
    of ``table``, each as the network sees it (log10 where `ModelInput.log`).

    Returns
    -------
    ndarray, shape (len(table), len(names)), float32
        NaN where an object's value is unknown.

    Raises
    ------
    KeyError
        If an input is not one of those, or ``table`` (read from
        ``source``) lacks its column.
    """
    out = np.full((len(table), len(names)), np.nan, np.float32)
    for j, name in enumerate(names):
        spec = _input(name)
        for column in spec.columns:
            if column not in table.columns:
                where = "features table(s)" if name in MEASURED_INPUTS else "object table"
                raise KeyError(f"the model input {name!r} reads column {column!r}, which the "
                               f"{where} {source!r} lacks")
        value = pd.to_numeric(table[spec.column], errors="coerce").to_numpy(np.float64)
        if spec.minus is not None:
            value = value - pd.to_numeric(table[spec.minus], errors="coerce").to_numpy(np.float64)
        if spec.limits is not None:
            value = np.clip(value, *spec.limits)  # NaN stays NaN
        if not spec.log:
            out[:, j] = np.where(np.isfinite(value), value, np.nan)
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = np.where(value > 0, np.log10(value), np.nan)
    return out


def _input(name: str) -> ModelInput:
    known = {**OBJECT_INPUTS, **MEASURED_INPUTS}
    if name not in known:
        raise KeyError(f"unknown per-object input {name!r}; known: {sorted(known)}")
    return known[name]


def input_column(name: str) -> str:
    """The table column the per-object input ``name`` reads; KeyError if unknown."""
    return _input(name).column


def required_inputs(names: Sequence[str]) -> np.ndarray:
    """Which of the inputs ``names`` an object must have to be trained on and predicted
    (the object-table ones); a missing measured input is imputed instead."""
    return np.array([n not in MEASURED_INPUTS for n in names], bool)


def measured_input_names(names: Sequence[str]) -> list[str]:
    """Those of the inputs ``names`` that are read from `measure`'s features tables."""
    return [n for n in names if n in MEASURED_INPUTS]


def join_measured(table: pd.DataFrame, features: Sequence[os.PathLike | str] | None,
                  names: Sequence[str]) -> pd.DataFrame:
    """``table`` with the features-table columns of the measured inputs among ``names``.

    A left join on ``object_id``: an object no features table holds gets NaN (no
    prediction). ``table`` is returned unchanged when no input is a measured one.

    Raises
    ------
    ValueError
        If a measured input is asked for and no features table is given.
    KeyError
        If a features table lacks an input's column.
    """
    wanted = measured_input_names(names)
    if not wanted:
        return table
    paths = [features] if isinstance(features, (str, os.PathLike)) else list(features or ())
    if not paths:
        raise ValueError(f"the model inputs {wanted} are read from measure's features tables; "
                         "none was given (features=, --features)")
    columns = sorted({c for n in wanted for c in MEASURED_INPUTS[n].columns})
    parts = []
    for path in paths:
        have = set(column_names(path))
        lacking = [c for c in columns if c not in have]
        if lacking:
            bands = [c[len("mag_model_"):] for c in lacking if c.startswith("mag_model_")]
            hint = (f"the bulge + disc fit did not fit the band(s) {bands}: add them to "
                    "measure.bulge_disc_extra_bands, or leave out the colour inputs"
                    if bands else "a table measured by an older galcat lacks the newer "
                    "columns: rerun measure, e.g. snakemake --forcerun measure")
            raise KeyError(f"the features table {str(path)!r} lacks the column(s) {lacking} "
                           f"that the model inputs {wanted} read ({hint})")
        parts.append(read_table(path, columns=["object_id", *columns]))
    measured = pd.concat(parts, ignore_index=True).drop_duplicates("object_id")
    clash = [c for c in columns if c in table.columns]
    return table.drop(columns=clash).merge(measured, on="object_id", how="left")


def read_labels(objects: os.PathLike | str | Sequence[os.PathLike | str]) -> pd.DataFrame:
    """The object table(s) the labels come from, one row per object, by object_id.

    ``objects`` is the survey's object table or the per-shard tables of an archive
    survey (concatenated).
    """
    paths = [objects] if isinstance(objects, (str, os.PathLike)) else list(objects)
    table = pd.concat([read_table(p) for p in paths], ignore_index=True)
    dup = table["object_id"].duplicated()
    if dup.any():
        raise ValueError(f"object_id {table['object_id'][dup].iloc[0]} appears twice in the "
                         f"object tables {[str(p) for p in paths][:3]}")
    return table.sort_values("object_id").reset_index(drop=True)


def split_arrays(split: np.ndarray, labelled: np.ndarray) -> Mapping[str, np.ndarray]:
    """Positions of each split's objects that have a label to train on (``labelled``:
    `Family.labelled`, which says whether some or every target must be finite)."""
    usable = np.asarray(labelled, bool)
    return {name: np.flatnonzero((split == name) & usable) for name in SPLITS}
