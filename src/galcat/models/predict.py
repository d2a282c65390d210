"""Inference: a trained model over every cutout of a shard, the ``predict`` rule.

The network runs in ``eval()`` mode (batch normalisation uses its running
statistics) with the normalisation saved in ``model.pt``, on the GPU when there
is one. Inputs are read a storage chunk at a time and fed to the network in
blocks of exactly `FORWARD_BLOCK` objects, the last one padded: every object's
result then comes from the same computation whatever the ``batch_size`` (the
number of objects read and prepared at once), so a shard's predictions do not
depend on it. With ``tta`` the 8 dihedral transforms of every cutout are
averaged (the family's `~galcat.models.registry.Family.combine`).

Predictions are a Parquet table keyed by ``object_id``: one column per output,
named ``nn_{model}_{output}``, an ``_err`` (1 sigma) beside every regression
output, and ``nn_{model}_split`` (the object's training split), each with its
unit and description.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galcat.models.data import (
    OBJECT_INPUTS,
    input_side,
    join_measured,
    measured_input_names,
    object_inputs,
    prepare_images,
    required_inputs,
    residual_channels,
    with_residual_channel,
)
from galcat.models.nets import DIHEDRAL, GalaxyNet, dihedral_inverse
from galcat.models.registry import Family, build_net, get_family
from galcat.models.train import MODEL_FORMAT
from galcat.store import CutoutReader, ResidualMapReader, write_pixelmaps
from galcat.tables import column_names, read_table, write_table

__all__ = ["FORWARD_BLOCK", "LoadedModel", "load_model", "output_columns", "predict_shard"]

log = logging.getLogger("galcat.models.predict")

#: Objects per forward pass of the network (fixed: see the module docstring).
FORWARD_BLOCK = 32


class LoadedModel:
    """A trained model ready for inference (see `load_model`).

    Attributes
    ----------
    name : str
    family : Family
    settings : dict
    bands : list of str
    net : GalaxyNet
        In ``eval()`` mode, on ``device``.
    device : torch.device
    size : int or None
        Side in pixels of the images the network was trained on (after ``crop`` and
        ``bin``); None: not checked.
    """

    def __init__(self, name: str, family: Family, settings: dict, bands: list[str],
                 net: GalaxyNet, device: torch.device, size: int | None = None) -> None:
        self.name, self.family, self.settings, self.bands = name, family, settings, bands
        self.net, self.device, self.size = net, device, size
        #: per-object inputs the network takes beside the image (`object_inputs`)
        self.inputs = list(settings.get("inputs") or ())

    def _blocks(self, images: np.ndarray, inputs: np.ndarray | None = None):
        """``(x, inputs, n_real)`` tensors of exactly `FORWARD_BLOCK` objects (the last
        padded); ``inputs`` is None for a network without per-object inputs."""
        for lo in range(0, len(images), FORWARD_BLOCK):
            n_real = min(FORWARD_BLOCK, len(images) - lo)
            extra = None if inputs is None else self._padded(inputs[lo : lo + n_real])
            yield self._padded(images[lo : lo + n_real]), extra, n_real

    def _padded(self, rows: np.ndarray) -> torch.Tensor:
        block = np.zeros((FORWARD_BLOCK, *rows.shape[1:]), np.float32)
        block[: len(rows)] = rows
        return torch.from_numpy(block).to(self.device)

    def _known_inputs(self, n: int, inputs: np.ndarray | None
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(inputs with unknown values zeroed, unknown rows)``; (None, None) for a
        network without per-object inputs."""
        if not self.inputs:
            return None, None
        if inputs is None:
            raise ValueError(f"model {self.name!r} takes the per-object inputs {self.inputs} "
                             "beside each image; pass inputs (galcat.models.data.object_inputs)")
        inputs = np.asarray(inputs, np.float32).reshape(n, len(self.inputs))
        # a missing measured input stays NaN: the network imputes its training mean
        unknown = ~np.isfinite(inputs[:, required_inputs(self.inputs)]).all(axis=1)
        return np.where(unknown[:, None], np.float32(0.0), inputs), unknown

    @torch.no_grad()
    def predict_images(self, images: np.ndarray, *, tta: bool,
                       inputs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Output columns (without prefix) for binned images ``(n, band, y, x)``.

        ``inputs`` ``(n, k)``: the per-object inputs of a model that takes them
        (`galcat.models.data.object_inputs`); an object with a NaN object-table
        input gets NaN outputs, a NaN measured input is imputed by the network. A
        family whose network reconstructs its input (an ``recon`` output) also gets
        ``recon_mse``, the per-object reconstruction error averaged over the
        transforms.
        """
        if self.family.pixel_output:
            return self.predict_pixels(images, tta=tta)[0]
        inputs, unknown = self._known_inputs(len(images), inputs)
        means, stds, mses = [], [], []
        codes = range(DIHEDRAL) if tta else (0,)
        for x, extra, n_real in self._blocks(images, inputs):
            views = self.net.forward_dihedral(x, extra, codes=codes)
            outs = [out for out, _ in views]
            out = self.family.combine(outs)
            mean, std = self.net.to_fit_space(out["mean"].float(), out["std"].float(),
                                              tta=bool(tta))
            means.append(mean.cpu().numpy()[:n_real])
            stds.append(std.cpu().numpy()[:n_real])
            if "recon" in outs[0]:
                mse = torch.stack([_recon_mse(o["recon"], z) for o, z in views]).mean(0)
                mses.append(mse.float().cpu().numpy()[:n_real])
        k = self.net.target_mean.numel()
        mean = np.concatenate(means) if means else np.zeros((0, k))
        std = np.concatenate(stds) if stds else np.zeros((0, k))
        if unknown is not None:  # an unknown input gives no prediction, never a guess
            mean[unknown], std[unknown] = np.nan, np.nan
        cols = self.family.decode(mean.astype(np.float64), std.astype(np.float64))
        if mses:
            cols["recon_mse"] = np.concatenate(mses).astype(np.float64)
        return cols

    @torch.no_grad()
    def predict_pixels(self, images: np.ndarray, *, tta: bool) -> tuple[dict[str, np.ndarray],
                                                                        np.ndarray]:
        """Per-object columns and class maps ``(n, y, x)`` uint8 of a per-pixel family.

        With ``tta`` the class probabilities of the 8 transforms, each mapped back
        to the cutout's frame, are averaged before the most probable class is taken.
        """
        maps = []
        codes = range(DIHEDRAL) if tta else (0,)
        for x, _, n_real in self._blocks(images):
            views = self.net.forward_dihedral(x, codes=codes)
            prob = sum(dihedral_inverse(torch.softmax(out["logits"].float(), dim=1), c)
                       for (out, _), c in zip(views, codes, strict=True))
            maps.append(prob.argmax(1).to(torch.uint8).cpu().numpy()[:n_real])
        classes = (np.concatenate(maps) if maps
                   else np.zeros((0, *images.shape[2:]), np.uint8))
        return self.family.pixel_columns(classes, images, self.bands), classes


def _recon_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((recon.float() - target.float()) ** 2).flatten(1).mean(1)


def load_model(path: os.PathLike | str, *, device: str | torch.device | None = None) -> LoadedModel:
    """Load ``model.pt`` (with ``weights_only=True``) into an eval-mode network.

    Raises
    ------
    ValueError
        If the file is not a galcat model of this format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{str(path)!r} is not a galcat model ({MODEL_FORMAT}); found {found!r}")
    settings = dict(payload["settings"])
    bands = list(payload["bands"])
    net = build_net(payload["family"], settings, n_bands=len(bands) + residual_channels(settings),
                    n_targets=int(payload["n_targets"]), size=int(payload["size"]))
    state = dict(payload["state_dict"])
    # a model saved before its std was calibrated keeps its std as it was
    state.setdefault("std_calibration", torch.ones_like(net.std_calibration))
    # one saved before tta had its own factors used the one-transform factors for both
    state.setdefault("std_calibration_tta", state["std_calibration"])
    net.load_state_dict(state)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available()
                                                           else "cpu")
    net.to(dev).eval()
    return LoadedModel(payload["name"], get_family(payload["family"]), settings, bands, net, dev,
                       size=int(payload["size"]))


def _check_side(m: LoadedModel, reader: CutoutReader, cutouts, *, bin_: int,
                crop: float) -> None:
    """Refuse a shard whose images reach the network at another side than in training:
    the network would see every galaxy at another scale, or fail deep inside torch."""
    side = reader.shape[-1]
    seen = input_side(side, bin=bin_, crop=crop)
    if m.size is not None and seen != m.size:
        raise ValueError(
            f"model {m.name!r} was trained on {m.size}x{m.size}-pixel inputs, and the "
            f"{side}-pixel cutouts of {str(cutouts)!r} give {seen}x{seen} (bin {bin_}, crop "
            f"{crop}); cut the shard at the training survey's cutout size")


def _residual_reader(m: LoadedModel, reader: CutoutReader, residuals
                     ) -> ResidualMapReader | None:
    """The shard's residual maps for a model trained with ``residual_map``; else None."""
    if not residual_channels(m.settings):
        return None
    if residuals is None:
        raise ValueError(f"model {m.name!r} was trained with models.{m.name}.residual_map: "
                         f"give the residual maps of {str(reader.path)!r} (--residuals)")
    maps = ResidualMapReader(residuals)
    maps.check_matches(reader)
    return maps


def output_columns(model: str, family: Family,
                   settings: dict | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Units and descriptions of the prediction columns of ``model`` (its entry ``settings``)."""
    units, desc = {f"nn_{model}_split": ""}, {}
    desc[f"nn_{model}_split"] = f"split of the object in training model {model!r}: train, " \
        "validation or test (only test predictions are unbiased)"
    for o in family.outputs(settings):
        col = f"nn_{model}_{o.name}"
        units[col], desc[col] = o.unit, f"{o.description} [model {model}]"
        if o.error:
            units[f"{col}_err"] = o.unit
            desc[f"{col}_err"] = f"1-sigma uncertainty of {col}"
    return units, desc


def _shard_inputs(m: LoadedModel, object_id: np.ndarray, objects, cutouts,
                  features=None) -> np.ndarray | None:
    """The per-object inputs of the shard's objects, in cutout order (None: no inputs):
    object-table inputs from ``objects``, measured ones from ``features``."""
    if not m.inputs:
        return None
    rows = pd.DataFrame({"object_id": np.asarray(object_id, np.int64)})
    sources = []
    table_inputs = [n for n in m.inputs if n in OBJECT_INPUTS]
    if table_inputs:
        if objects is None:
            raise ValueError(f"model {m.name!r} takes the per-object inputs {table_inputs}: "
                             f"give predict_shard the object table of {str(cutouts)!r} "
                             "(objects=)")
        paths = [objects] if isinstance(objects, (str, os.PathLike)) else list(objects)
        sources += [str(p) for p in paths]
        # only the columns the inputs read: a synthetic survey's one table holds every object
        wanted = {OBJECT_INPUTS[n].column for n in table_inputs}
        parts = []
        for path in paths:
            names = set(column_names(path)) if Path(path).exists() else set()
            parts.append(read_table(path, columns=["object_id", *sorted(wanted & names)]))
        table = pd.concat(parts, ignore_index=True).drop_duplicates("object_id")
        missing = np.setdiff1d(object_id, table["object_id"].to_numpy())
        if missing.size:
            raise KeyError(f"the object table(s) {[str(p) for p in paths]} lack {missing.size} "
                           f"object(s) of {str(cutouts)!r} (first: {missing[0]}); the inputs "
                           f"{m.inputs} of model {m.name!r} cannot be read")
        rows = rows.merge(table, on="object_id", how="left")
    if measured_input_names(m.inputs):
        rows = join_measured(rows, features, m.inputs)  # names the inputs if none is given
        sources.append(str(features))
    values = object_inputs(rows, m.inputs, source=", ".join(sources))
    finite = np.isfinite(values)
    required = required_inputs(m.inputs)
    unknown = int((~finite[:, required].all(axis=1)).sum())
    if unknown:
        lacking = [n for n, r in zip(m.inputs, required, strict=True) if r]
        log.warning("predict %s: %d object(s) of %s have no %s; their predictions are NaN",
                    m.name, unknown, cutouts, lacking)
    imputed = int((~finite[:, ~required].all(axis=1)).sum())
    if imputed:
        log.info("predict %s: %d object(s) of %s have no measured %s; the network sees its "
                 "training mean", m.name, imputed, cutouts, measured_input_names(m.inputs))
    return values


def predict_shard(
    model: os.PathLike | str | LoadedModel,
    cutouts: os.PathLike | str,
    output: os.PathLike | str,
    *,
    splits: os.PathLike | str | None = None,
    objects: os.PathLike | str | Sequence[os.PathLike | str] | None = None,
    batch_size: int = 256,
    tta: bool | None = None,
    threads: int = 1,
    pixelmaps: os.PathLike | str | None = None,
    features: os.PathLike | str | Sequence[os.PathLike | str] | None = None,
    residuals: os.PathLike | str | None = None,
) -> pd.DataFrame:
    """Predict every object of one cutout shard; write the predictions Parquet.

    Parameters
    ----------
    model : path-like or LoadedModel
        ``model.pt`` of `galcat.models.train.train_model`.
    cutouts : path-like
        The shard's cutout group.
    output : path-like
        Predictions Parquet (written atomically).
    splits : path-like, optional
        The model's ``splits.parquet``: fills ``nn_{model}_split``.
    objects : path-like or sequence of path-like, optional
        Object table(s) holding the shard's objects: required for a model with
        per-object inputs (``inputs``: the redshift), which are read from them.
    batch_size : int
        Objects read and prepared at once (does not change the predictions).
    tta : bool, optional
        Average the 8 dihedral transforms; default: the model's ``tta`` setting.
    threads : int
        torch CPU threads.
    pixelmaps : path-like, optional
        For a per-pixel family (``pixel_output``): the shard's pixel-map group to
        write (`galcat.store.write_pixelmaps`); required for such a family.
    features : path-like or sequence of path-like, optional
        `measure`'s features table of the shard: required for a model with measured
        inputs (`galcat.models.data.MEASURED_INPUTS`).
    residuals : path-like, optional
        `measure`'s residual maps of the shard: required for a model trained with
        ``residual_map``.

    Returns
    -------
    DataFrame written, ``object_id`` ascending. Cost on 2 CPU cores: ~1 ms per 64x64
    image for the default small CNN, 8x with ``tta``.
    """
    torch.set_num_threads(max(1, int(threads)))
    m = model if isinstance(model, LoadedModel) else load_model(model)
    use_tta = bool(m.settings.get("tta", False)) if tta is None else bool(tta)
    reader = CutoutReader(cutouts)
    bin_ = int(m.settings["bin"])
    crop = float(m.settings.get("crop", 1.0))  # models saved before crop: the whole cutout
    step = max(1, int(batch_size))
    if m.family.pixel_output and pixelmaps is None:
        raise ValueError(f"model {m.name!r} (family {m.family.name!r}) writes pixel maps: "
                         "give predict_shard a pixelmaps path")
    _check_side(m, reader, cutouts, bin_=bin_, crop=crop)
    maps_reader = _residual_reader(m, reader, residuals)
    inputs = _shard_inputs(m, reader.object_id, objects, cutouts, features)
    parts: list[dict[str, np.ndarray]] = []
    maps: list[np.ndarray] = []
    for lo in range(0, reader.n_objects, step):
        sl = slice(lo, min(lo + step, reader.n_objects))
        images = reader.read("image", sl, bands=m.bands).astype(np.float32)
        if maps_reader is not None:
            images = with_residual_channel(images, maps_reader, sl)
        images = prepare_images(images, bin=bin_, crop=crop)
        if m.family.pixel_output:
            cols, classes = m.predict_pixels(images, tta=use_tta)
            parts.append(cols)
            maps.append(classes)
        else:
            parts.append(m.predict_images(images, tta=use_tta,
                                          inputs=None if inputs is None else inputs[sl]))
    names = [n for n in (parts[0] if parts else {})]
    cols = {f"nn_{m.name}_{k}": np.concatenate([p[k] for p in parts]) for k in names}
    df = pd.DataFrame({"object_id": reader.object_id, **cols})
    split_col = f"nn_{m.name}_split"
    if splits is not None:
        sp = read_table(splits)[["object_id", "split"]]
        df = df.merge(sp.rename(columns={"split": split_col}), on="object_id", how="left")
    else:
        df[split_col] = None
    df[split_col] = df[split_col].fillna("none").astype(str)
    units, desc = output_columns(m.name, m.family, m.settings)
    if m.family.pixel_output:
        shape = (0, *reader.shape[2:])
        write_pixelmaps(pixelmaps, np.concatenate(maps) if maps else np.zeros(shape, np.uint8),
                        reader.object_id, shard=Path(cutouts).stem, model=m.name,
                        codes=m.family.codes)
    write_table(df, output, units=units, descriptions=desc,
                metadata={"model": m.name, "family": m.family.name, "tta": use_tta})
    log.info("predict %s: %d objects of %s", m.name, len(df), cutouts)
    return df

