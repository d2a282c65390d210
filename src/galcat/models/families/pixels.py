"""``pixels``: multi-band cutout -> a class for every pixel, a U-Net in the spirit of
Morpheus (Hausen & Robertson 2020).

Classes are those of the synthetic survey's per-pixel truth maps
(`galcat.surveys.TRUTH_CLASSES`: 0 background, 1 disc, 2 spheroid
(bulge), 3 companion; the component that dominates each pixel's flux). Morpheus
runs on four fixed HST bands; this network takes the bands of its ``bands``
setting (all of the survey's by default). The loss is the pixel cross-entropy
plus a soft Dice loss per class (Milletari et al. 2016), so that the small
classes (spheroid cores, companions) weigh as much as the sky in the IoU the
model is scored by.

Inference writes the class maps of every shard (`galcat.store.write_pixelmaps`,
``pixelmaps/{model}/{shard}.zarr``) and per-object columns derived from them:

``spheroid_share``
    flux-weighted share of spheroid pixels among the central object's (disc or
    spheroid) pixels, in the ``TRUTH_CLASS_BAND`` band (r) when the model sees it,
    else in the sum of its bands: an object-level morphology, B/T-like;
``central_area``
    pixels of the deblended central-object mask (disc or spheroid);
``companion_share``
    flux share of companion pixels among all non-background pixels.

Scores: intersection-over-union of every class and their mean over the test
objects' pixels; on blended pairs (merger or projection), the IoU of the central
object's mask against the truth beside that of the `segment` stage's label 1
(the baseline); Spearman rho of ``spheroid_share`` with the true B/T.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galcat.models.nets import UNet
from galcat.models.registry import Family, Output, register
from galcat.surveys import TRUTH_CLASS_BAND, TRUTH_CLASSES

__all__ = ["CENTRAL", "PIXEL_CLASSES", "Pixels", "object_columns", "pixel_scores"]

#: Codes of the per-pixel classes (those of the synthetic truth maps).
PIXEL_CLASSES = dict(TRUTH_CLASSES)
N_CLASSES = len(PIXEL_CLASSES)
#: Codes that make up the central object (disc, spheroid).
CENTRAL = (1, 2)
_SPHEROID, _COMPANION = 2, 3


class LogitsHead(nn.Module):
    """The U-Net's per-pixel logits as the family's output ``{"logits": (n, c, y, x)}``."""

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": features}


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the soft Dice coefficient, averaged over the classes present in the batch."""
    prob = F.softmax(logits, dim=1)
    onehot = F.one_hot(target, N_CLASSES).permute(0, 3, 1, 2).to(prob.dtype)
    inter = (prob * onehot).sum((0, 2, 3))
    total = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1.0) / (total + 1.0)
    return 1.0 - dice[present].mean()


def object_columns(classes: np.ndarray, flux: np.ndarray) -> dict[str, np.ndarray]:
    """Per-object columns from class maps ``(n, y, x)`` and a flux image ``(n, y, x)``."""
    f = np.clip(np.asarray(flux, np.float64), 0.0, None)
    central = np.isin(classes, CENTRAL)
    f_central = np.where(central, f, 0.0).sum((1, 2))
    f_sph = np.where(classes == _SPHEROID, f, 0.0).sum((1, 2))
    f_comp = np.where(classes == _COMPANION, f, 0.0).sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(f_central > 0, f_sph / f_central, np.nan)
        comp = np.where(f_central + f_comp > 0, f_comp / (f_central + f_comp), np.nan)
    return {"spheroid_share": share, "central_area": central.sum((1, 2)).astype(np.float64),
            "companion_share": comp}


def flux_band(images: np.ndarray, bands: list[str]) -> np.ndarray:
    """The flux the object columns weigh by: the truth maps' band, else the band sum."""
    if TRUTH_CLASS_BAND in bands:
        return images[:, bands.index(TRUTH_CLASS_BAND)]
    return images.sum(1)


class Pixels(Family):
    name = "pixels"
    summary = "multi-band cutout -> class of every pixel (U-Net, Morpheus-style)"
    label_columns = ()
    standardise_targets = False
    pixel_arrays = ("truth_class",)
    pixel_output = True
    #: The class codes of the maps (written into the pixel-map groups).
    codes = PIXEL_CLASSES

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        # the labels are the per-pixel truth maps of the cutouts (pixel_arrays)
        return np.zeros((len(table), 1))

    def encoder(self, settings: Mapping, n_bands: int, size: int) -> tuple[nn.Module, int]:
        # dict.get: crop 1 is left out of the train params (keys_training_ignores)
        crop = dict.get(settings, "crop", 1)
        if int(settings["bin"]) != 1 or crop != 1 or size % 8:
            raise ValueError(
                f"family 'pixels' classifies every pixel of the truth maps: it needs bin 1, "
                f"crop 1 and a cutout side that is a multiple of 8; got bin "
                f"{settings['bin']}, crop {crop}, side {size * int(settings['bin'])}")
        return UNet(n_bands, N_CLASSES, width=int(settings["width"])), N_CLASSES

    def head(self, n_features: int, n_targets: int, **shape) -> nn.Module:
        return LogitsHead()

    def loss(self, out, target, batch, net) -> torch.Tensor:
        truth = batch["truth_class"].long()
        return F.cross_entropy(out["logits"], truth) + dice_loss(out["logits"], truth)

    def outputs(self, settings=None) -> list[Output]:
        return [
            Output("spheroid_share", "", "flux-weighted share of spheroid pixels among the "
                   "central object's (disc or spheroid) pixels of the network's pixel map, "
                   "in the r band (else the sum of the model's bands): a B/T-like "
                   "morphology; NaN without central pixels", error=False, required=False),
            Output("central_area", "pix", "pixels of the central object's deblended mask "
                   "(disc or spheroid pixels of the network's pixel map)", error=False),
            Output("companion_share", "", "flux share of companion pixels among the "
                   "non-background pixels of the network's pixel map; NaN without any",
                   error=False, required=False),
        ]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        raise TypeError("family 'pixels' has no Gaussian outputs; see object_columns")

    def pixel_columns(self, classes: np.ndarray, images: np.ndarray,
                      bands: list[str]) -> dict[str, np.ndarray]:
        """Per-object columns of class maps ``(n, y, x)`` of binned ``images``."""
        return object_columns(classes, flux_band(images, bands))

    # ------------------------------------------------------------------ evaluation
    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        # the baseline (segment's map) is scored on pixels, in `score`
        return {}

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        from scipy.stats import spearmanr

        test = data.table.loc[data.test]
        out = pixel_scores(test, data.cutouts, data.segmaps, data.pixelmaps)
        share = np.asarray(predictions["model"]["spheroid_share"], np.float64)
        bt = test["truth_bt"].to_numpy(np.float64)
        ok = np.isfinite(share) & np.isfinite(bt)
        out["model"]["spheroid_share_vs_bt_spearman"] = (
            float(spearmanr(share[ok], bt[ok]).statistic) if ok.sum() > 2 else None)
        out["model"]["spheroid_share_defined"] = int(ok.sum())
        return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def pixel_scores(test: pd.DataFrame, cutouts, segmaps, pixelmaps) -> dict:
    """IoU per class and their mean; central-object IoU on blended pairs, network and
    `segment`; over the objects of ``test`` (read shard by shard)."""
    from galcat.store import CutoutReader, read_pixelmaps, read_segmaps

    ids = set(test["object_id"].tolist())
    blended = set(test.loc[test["truth_merger"].astype(bool)
                           | test["truth_projection"].astype(bool), "object_id"].tolist())
    confusion = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    central = {"model": [], "segment": []}
    for cut, seg, pix in zip(cutouts, segmaps, pixelmaps, strict=True):
        reader = CutoutReader(cut)
        pid, classes = read_pixelmaps(pix)
        sid, segmap = read_segmaps(seg)
        if not (np.array_equal(pid, reader.object_id) and np.array_equal(sid, reader.object_id)):
            raise ValueError(f"pixel maps {str(pix)!r} and segmentation maps {str(seg)!r} do "
                             f"not hold the objects of {str(cut)!r}")
        rows = np.flatnonzero(np.isin(reader.object_id, list(ids)))
        if not rows.size:
            continue
        truth = reader.read("truth_class", slice(None))[rows]
        pred = classes[rows]
        confusion += np.bincount(truth.ravel().astype(np.int64) * N_CLASSES + pred.ravel(),
                                 minlength=N_CLASSES**2).reshape(N_CLASSES, N_CLASSES)
        for j, row in enumerate(rows):
            if reader.object_id[row] in blended:
                t = np.isin(truth[j], CENTRAL)
                central["model"].append(_iou(np.isin(pred[j], CENTRAL), t))
                central["segment"].append(_iou(segmap[row] == 1, t))
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    mean_iou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return {
        "n_pixels": int(confusion.sum()),
        "blended_pairs": len(central["model"]),
        "model": {"iou": {PIXEL_CLASSES[c]: float(iou[c]) for c in range(N_CLASSES)},
                  "mean_iou": mean_iou,
                  "pixel_accuracy": float(inter.sum() / max(confusion.sum(), 1)),
                  "central_iou_blended": _mean(central["model"])},
        "segment": {"central_iou_blended": _mean(central["segment"])},
    }


def _mean(values: list[float]) -> float | None:
    v = np.asarray(values, np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


register(Pixels())
