"""Training one model: the entry point of the ``train`` rule.

`train_model` splits the objects by a hash of ``object_id``, fits the input
normalisation and target scaling on the training split, and runs Lightning's
Trainer: a checkpoint every epoch (``checkpoints/last.ckpt``, with optimiser,
scheduler, early-stopping and RNG state), resumption from it after a killed job,
early stopping and learning rate reduced on a validation plateau, mixed
precision on a GPU (``bf16`` where supported, else ``16``), 32-bit and
deterministic algorithms on a CPU. On several GPUs Lightning's ``auto`` strategy
is DDP; under SLURM, Lightning's SLURM environment requeues a job that receives
the pre-timeout signal. The test split is touched only by the final test loss.

Outputs in ``out_dir``: ``model.pt`` (the best epoch's weights with the
normalisation and settings; load it with `galcat.models.predict.load_model`),
``splits.parquet`` (object_id, split), ``history.csv``, ``learning_curve.png``
and ``train.json`` (epochs, losses, timings, device).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galcat.atomic import atomic_file
from galcat.labels import ERROR_COLUMN, VOTES_COLUMN, label_table
from galcat.models.data import (
    ChunkBatchSampler,
    CutoutDataset,
    ShardIndex,
    assign_splits,
    fit_normalisation,
    input_side,
    join_measured,
    make_loader,
    object_inputs,
    read_labels,
    required_inputs,
    residual_channels,
    split_arrays,
)
from galcat.models.injections import INJECTION_BAND, write_injections
from galcat.models.registry import get_family
from galcat.store import CutoutReader, ResidualMapReader
from galcat.tables import write_table

__all__ = ["MODEL_FORMAT", "loader_workers", "save_model", "train_model"]

log = logging.getLogger("galcat.models.train")

#: Version tag of ``model.pt``.
MODEL_FORMAT = "galcat.model/1"
#: Training objects the input statistics are fitted on.
NORMALISATION_OBJECTS = 2000
#: Largest gradient norm of a step (Lightning's gradient clipping).
GRADIENT_CLIP = 1.0
#: The share of a Gaussian's mass within one standard deviation.
COVERAGE_68 = 0.6827
#: Fewest validation truths of an output to calibrate its std on.
CALIBRATION_MIN_OBJECTS = 20
#: The cutout shard of a model's single-Sérsic injections, in its directory while it trains.
INJECTIONS_SHARD = "injections.zarr"


def _device_kind() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def _precision() -> str:
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def loader_workers(threads: int) -> int:
    """DataLoader worker processes of a training job with ``threads`` cores.

    Half the job's cores load data, the rest train (on a GPU the main process
    mostly waits for the device); 0 (load in the main process) on one core.
    """
    return min(8, max(0, int(threads) // 2))


def save_model(path: os.PathLike | str, payload: Mapping) -> Path:
    """Write ``model.pt`` atomically (plain tensors and JSON types only)."""
    final = Path(path)
    tmp = atomic_file(final)
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _checkpoint_dir(out: Path, fingerprint: Mapping) -> Path:
    """``out/checkpoints``, emptied if its checkpoints were made with other settings.

    A killed job resumes from ``last.ckpt`` only when the model's settings, split
    and data are those the checkpoint was made with.
    """
    ckpt_dir = out / "checkpoints"
    stamp = out / "checkpoints.json"
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    if ckpt_dir.exists() and (not stamp.exists() or stamp.read_text() != text):
        log.warning("discarding checkpoints in %s: made with other settings or data", ckpt_dir)
        shutil.rmtree(ckpt_dir)
        stamp.unlink(missing_ok=True)
    if not stamp.exists():
        tmp = atomic_file(stamp)
        tmp.write_text(text)
        os.replace(tmp, stamp)
    return ckpt_dir


def _write_curve(history: list[dict], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    epochs = [h["epoch"] + 1 for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = atomic_file(path)
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _json(path: Path, value: Mapping) -> None:
    tmp = atomic_file(path)
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)


def train_model(
    name: str,
    settings: Mapping,
    *,
    training: Mapping,
    objects: os.PathLike | str | Sequence[os.PathLike | str],
    cutouts: Sequence[os.PathLike | str],
    out_dir: os.PathLike | str,
    threads: int = 1,
    labels: Mapping | None = None,
    init_model: os.PathLike | str | None = None,
    synthetic: Mapping | None = None,
    features: Sequence[os.PathLike | str] | None = None,
    residuals: Sequence[os.PathLike | str] | None = None,
) -> Path:
    """Train model ``name``; write its directory; return the path of ``model.pt``.

    Parameters
    ----------
    name : str
        The model's name (its ``models`` key).
    settings : mapping
        Its config entry: ``family``, ``architecture``, ``width``, ``bands`` (None:
        all), ``bin``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``lr_schedule`` (absent: plateau), ``lr_factor`` and
        ``lr_patience`` (plateau only), ``early_stopping_patience``, ``ema_epochs``
        (`galcat.models.averaging.EMAWeights`; absent or 0: none), ``seed``.
    training : mapping
        The shared ``training`` section: ``validation_fraction``, ``test_fraction``,
        ``split_seed``.
    objects : path-like or sequence of path-like
        Object table(s) with the family's label columns (`galcat.models.data.read_labels`).
    cutouts : sequence of path-like
        The shards' cutout groups; objects of the table that are in none of them are
        left out.
    out_dir : path-like
        The model's directory; ``checkpoints/last.ckpt`` in it is resumed from.
    threads : int
        CPU threads of the job (torch threads and data-loader workers).
    labels : mapping, optional
        Where the survey keeps the family's labels and the quality cuts
        (`galcat.labels.label_spec`); None: the family's own columns, uncut.
    init_model : path-like, optional
        A ``model.pt`` of the same family (the synthetic survey's) to start from:
        its weights are loaded, the input normalisation and target scaling are
        refitted on this survey's training split (fine-tuning).
    synthetic : mapping, optional
        The config's ``synthetic`` section, which the single-Sérsic injections of
        ``settings['injections']`` (`galcat.models.injections`) are drawn with;
        required when that is > 0.
    features : sequence of path-like, optional
        `measure`'s features tables of the shards: required when ``settings['inputs']``
        holds a measured input (`galcat.models.data.MEASURED_INPUTS`).
    residuals : sequence of path-like, optional
        `measure`'s residual significance maps of the shards, in the order of
        ``cutouts``: required when ``settings['residual_map']`` is true (one more channel
        after the bands).

    Notes
    -----
    Cost on 2 CPU cores: about 4 ms per 64x64x5 image and epoch for the default
    ``small_cnn`` of width 16; a GPU is ~100 times faster.
    """
    from galcat.models._torch_compat import import_lightning

    L = import_lightning()
    t_start = time.perf_counter()
    settings = dict(settings)
    family = get_family(settings["family"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(threads)))
    L.seed_everything(int(settings["seed"]), workers=True, verbose=False)

    data = _prepare_data(name, settings, training, family, objects, cutouts, out, labels,
                         synthetic, features, residuals)
    module = _build_module(family, settings, data)
    if init_model is not None:
        _load_initial_weights(module, init_model, name=name)
    ckpt_dir = _checkpoint_dir(out, {"name": name, "settings": settings, "bands": data.bands,
                                     "training": dict(training), "labels": data.labels,
                                     "init_model": None if init_model is None else str(init_model),
                                     "objects": [int(v.size) for v in data.members.values()]})
    trainer, checkpoint = _trainer(settings, ckpt_dir, out)
    workers = loader_workers(threads)

    def loader(stage: str, *, shuffle: bool):
        ds = data.datasets[stage]
        sampler = ChunkBatchSampler(
            ds.index.chunk_key(), ds.index.object_id, batch_size=int(settings["batch_size"]),
            shuffle=shuffle, augment=shuffle, seed=int(settings["seed"]),
            epoch=lambda: trainer.current_epoch, rank=trainer.global_rank,
            world_size=trainer.world_size)
        return make_loader(ds, sampler, workers=workers)

    resume = ckpt_dir / "last.ckpt"
    log.info("train %s (%s): %d train, %d validation, %d test objects; bands %s; %s%s",
             name, family.name, *(data.members[s].size for s in ("train", "validation", "test")),
             data.bands, _device_kind(), f"; resuming from {resume}" if resume.exists() else "")
    t_fit = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader("train", shuffle=True),
                val_dataloaders=loader("validation", shuffle=False),
                ckpt_path=str(resume) if resume.exists() else None, weights_only=True)
    fit_seconds = time.perf_counter() - t_fit

    best = checkpoint.best_model_path or str(resume)
    best_state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(module.fill_refitted_buffers(best_state))
    calibration = _calibrate_std(name, family, module.net, data,
                                 loader("validation", shuffle=False))
    test_loss = float("nan")
    if data.members["test"].size:  # the test split's only use in training: a final loss
        result = trainer.test(module, dataloaders=loader("test", shuffle=False), verbose=False)
        test_loss = float(result[0]["test_loss"]) if result else float("nan")
    if trainer.global_rank != 0:
        return out / "model.pt"
    summary = {
        "model": name, "family": family.name, "device": _device_kind(),
        "precision": _precision(), "threads": int(threads), "loader_workers": workers,
        "n_objects": {s: int(v.size) for s, v in data.members.items()},
        "best_val_loss": None if checkpoint.best_model_score is None
        else float(checkpoint.best_model_score),
        "test_loss": test_loss, "fit_seconds": fit_seconds, "labels": data.labels,
        "std_calibration": None if calibration is None else calibration[0],
        "std_calibration_tta": None if calibration is None else calibration[1],
        "init_model": None if init_model is None else str(init_model),
        "total_seconds": time.perf_counter() - t_start,
    }
    path = _write_outputs(name, family, settings, module, data, summary, out)
    # Checkpoints exist to resume a killed job; a finished model needs none, and a
    # forced rerun should start afresh.
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    (out / "checkpoints.json").unlink(missing_ok=True)
    shutil.rmtree(out / INJECTIONS_SHARD, ignore_errors=True)  # redrawn by any rerun
    return path


@dataclass
class _Data:
    """The objects of a training run: labels, splits, targets and their datasets."""

    table: pd.DataFrame
    targets: np.ndarray
    members: dict[str, np.ndarray]
    bands: list[str]
    size: int
    datasets: dict[str, CutoutDataset]
    labels: dict
    inputs: np.ndarray | None = None


def _prepare_data(name: str, settings: Mapping, training: Mapping, family, objects, cutouts,
                  out: Path, labels: Mapping | None = None,
                  synthetic: Mapping | None = None, features=None, residuals=None) -> _Data:
    """Labels of the objects in the shards (survey columns, quality cuts), the hash split
    (written; every object of the shards is in it, labelled or not), the datasets."""
    readers = [CutoutReader(p) for p in cutouts]
    maps = _residual_readers(name, settings, residuals, len(readers))
    table = read_labels(objects)
    if labels is None:
        family.check_labels(table, source=str(objects))
    table, label_summary = label_table(table, labels, family.label_columns,
                                       source=str(objects))
    in_shards = np.isin(table["object_id"].to_numpy(),
                        np.concatenate([r.object_id for r in readers]))
    table = table.loc[in_shards].reset_index(drop=True)
    names = list(settings.get("inputs") or ())
    table = join_measured(table, features, names)
    n_injections = int(settings.get("injections") or 0)
    if n_injections:
        injected = _write_injections(name, settings, family, synthetic, readers, out,
                                     n_injections)
        readers.append(CutoutReader(out / INJECTIONS_SHARD))
        table = pd.concat([table, injected], ignore_index=True)
        label_summary["injections"] = n_injections
    split = assign_splits(table["object_id"].to_numpy(),
                          validation_fraction=float(training["validation_fraction"]),
                          test_fraction=float(training["test_fraction"]),
                          seed=int(training["split_seed"]))
    targets = family.targets(table)
    sources = ", ".join(str(p) for p in (objects, *(features or ())))
    inputs = object_inputs(table, names, source=sources) if names else None
    usable = family.labelled(table)
    if inputs is not None:
        # an object whose input is unknown can be neither trained on nor scored
        known = np.isfinite(inputs[:, required_inputs(names)]).all(axis=1)
        label_summary["unknown_inputs"] = int((usable & ~known).sum())
        usable = usable & known
    members = dict(split_arrays(split, usable))
    trained = np.zeros(len(table), bool)
    trained[members["train"]] = True
    write_table(pd.DataFrame({"object_id": table["object_id"], "split": split,
                              "trained": trained}),
                out / "splits.parquet",
                descriptions={"split": "train, validation or test (hash of object_id)",
                              "trained": "in the training split with a label that passed the "
                                         "quality cuts (galcat.labels): trained on"},
                metadata={"model": name, **{k: training[k] for k in
                          ("validation_fraction", "test_fraction", "split_seed")}})
    if members["train"].size == 0:
        raise ValueError(f"model {name!r}: the training split has no objects with a finite "
                         f"target among {len(table)} objects; add objects or change the split")
    if members["validation"].size == 0:
        # only a toy survey has none: the training objects stand in, so early
        # stopping and the learning-rate plateau then watch the training loss
        log.warning("model %s: the validation split is empty among %d objects; validating on "
                    "the training split", name, len(table))
        members["validation"] = members["train"]
    bands = list(settings.get("bands") or readers[0].bands)
    # dict.get: 1 is left out of the train params (keys_training_ignores)
    crop = float(dict.get(settings, "crop", 1.0))
    index = ShardIndex.build(readers, table["object_id"].to_numpy())
    datasets = {}
    for stage, sel in members.items():
        sub = ShardIndex(index.readers, index.shard[sel], index.row[sel], index.object_id[sel])
        extras = {c: table[c].to_numpy()[sel] for c in (VOTES_COLUMN, ERROR_COLUMN)}
        datasets[stage] = CutoutDataset(sub, targets[sel], bands=bands, bin=int(settings["bin"]),
                                        crop=crop, pixel_arrays=family.pixel_arrays,
                                        extras=extras, residuals=maps,
                                        inputs=None if inputs is None else inputs[sel])
    size = input_side(readers[0].shape[-1], bin=int(settings["bin"]), crop=crop)
    label_summary["trained_on"] = {s: int(v.size) for s, v in members.items()}
    return _Data(table, targets, members, bands, size, datasets, label_summary, inputs)


def _residual_readers(name: str, settings: Mapping, residuals, n_shards: int
                      ) -> list[ResidualMapReader] | None:
    """The residual maps' readers of a ``residual_map`` model, one per cutout shard; a
    `ConfigError` naming the key where they cannot be had."""
    from galcat.config import RESIDUAL_MAP_BESIDE_INJECTIONS, ConfigError

    if not residual_channels(settings):
        return None
    if int(settings.get("injections") or 0):  # a config that did not pass load_config
        raise ConfigError(f"config key models.{name}.residual_map: "
                          + RESIDUAL_MAP_BESIDE_INJECTIONS.format(name=name))
    if not residuals or len(residuals) != n_shards:
        raise ConfigError(f"config key models.{name}.residual_map is true: give the residual "
                          f"maps of all {n_shards} shards (--residuals; got "
                          f"{len(residuals or ())})")
    return [ResidualMapReader(p) for p in residuals]


@torch.no_grad()
def _calibrate_std(name: str, family, net, data: _Data,
                   batches) -> tuple[list[float], list[float]] | None:
    """Scale each output's std so that 68.27% of the validation truths lie within it.

    A Gaussian std fitted by likelihood matches the residuals' variance; residuals
    with heavier tails than a Gaussian's then fall within one std more often than
    68% (a Laplace distribution's: 76%). The factor per output is the 68.27%
    quantile of |truth − mean| / std on the validation split (best weights),
    stored in the network and applied by `GalaxyNet.to_fit_space`. Two sets, as
    ``tta`` is chosen at prediction time: for one transform (``std_calibration``)
    and for `Family.combine` of the 8 dihedral transforms (``std_calibration_tta``),
    whose mean is closer to the truth and whose std holds the transforms' spread:
    the one-transform factors left the tta intervals too wide (the survey Sérsic
    n's covered 76.9%). None (no factors) for a family that does not calibrate
    (`Family.calibrates_std`), for labels with errors of their own, or with fewer
    than `CALIBRATION_MIN_OBJECTS` validation truths of an output (factor 1 there).
    Under DDP each rank sees its part of the split; rank 0's factors are saved.
    """
    errors = data.table[ERROR_COLUMN].to_numpy(np.float64) if ERROR_COLUMN in data.table else ()
    if not family.calibrates_std or np.isfinite(errors).any():
        return None
    device = net.target_std.device
    was_training = net.training
    net.eval()
    single, mixture = [], []
    for batch in batches:
        image = batch["image"].to(device)
        inputs = None if batch.get("inputs") is None else batch["inputs"].to(device)
        outs = [out for out, _ in net.forward_dihedral(image, inputs)]
        target = net.standardise(batch["target"].to(device))
        for ratios, out in ((single, outs[0]), (mixture, family.combine(outs))):
            ratios.append(((target - out["mean"]).abs() / out["std"]).float().cpu().numpy())
    net.train(was_training)
    factors = (_quantile_factors(single, net.target_std.numel()),
               _quantile_factors(mixture, net.target_std.numel()))
    net.std_calibration.copy_(torch.as_tensor(factors[0], dtype=torch.float32))
    net.std_calibration_tta.copy_(torch.as_tensor(factors[1], dtype=torch.float32))
    log.info("model %s: std calibrated on %d validation objects: factors %s (tta: %s)", name,
             sum(map(len, single)), *(", ".join(f"{f:.3f}" for f in fs) for fs in factors))
    return factors


def _quantile_factors(ratios: list[np.ndarray], n_targets: int) -> list[float]:
    """Per output, the 68.27% quantile of the finite ratios (1 with too few)."""
    ratios = np.concatenate(ratios) if ratios else np.zeros((0, n_targets))
    factors = []
    for k in range(ratios.shape[1]):
        r = ratios[:, k][np.isfinite(ratios[:, k])]
        factors.append(float(np.quantile(r, COVERAGE_68)) if r.size >= CALIBRATION_MIN_OBJECTS
                       else 1.0)
    return factors


def _write_injections(name: str, settings: Mapping, family, synthetic: Mapping | None,
                      readers: list[CutoutReader], out: Path, n: int) -> pd.DataFrame:
    """Draw the model's single-Sérsic injections into ``out``; their label rows."""
    key = f"config key models.{name}.injections"
    if family.injection_labels is None:
        raise ValueError(f"{key}: family {family.name!r} cannot train on single-Sersic "
                         "injections (only a family with exact labels for them can: sersic)")
    if synthetic is None:
        raise ValueError(f"{key}: the injections are drawn with the synthetic survey's "
                         "settings, and none were given")
    if settings.get("inputs"):
        raise ValueError(f"{key}: injections have no redshift and no measure features, and "
                         f"the model takes inputs {list(settings['inputs'])}; set one of "
                         "them empty")
    if list(settings.get("bands") or ()) != [INJECTION_BAND]:
        raise ValueError(f"{key}: injections are drawn in the {INJECTION_BAND} band alone; "
                         f"set models.{name}.bands to [{INJECTION_BAND}] (it is "
                         f"{settings.get('bands')})")
    side = int(synthetic["cutout_size"])
    if readers and readers[0].shape[-1] != side:
        raise ValueError(f"{key}: the injections are {side} pixels a side and the survey's "
                         f"cutouts {readers[0].shape[-1]} ({readers[0].path})")
    log.info("model %s: drawing %d single-Sersic injections", name, n)
    return write_injections(out / INJECTIONS_SHARD, n, synthetic, seed=int(settings["seed"]),
                            labels=family.injection_labels)


def _load_initial_weights(module, path: os.PathLike | str, *, name: str) -> None:
    """Start ``module`` from the weights of ``path`` (fine-tuning), keeping the input
    normalisation and target scaling fitted on this survey's training split."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    own = module.net.state_dict()
    keep = {k for k in own if k.startswith("normalise.") or k.startswith("target_")
            or k.startswith("input_") or k.startswith("std_calibration")
            or k.startswith("photometry.") or k == "loss_scale"}
    if payload.get("family") != module.family.name:
        raise ValueError(f"model {name!r}: initial weights {str(path)!r} are of family "
                         f"{payload.get('family')!r}, not {module.family.name!r}")
    state = payload["state_dict"]
    bad = sorted(k for k in own if k not in keep
                 and (k not in state or tuple(state[k].shape) != tuple(own[k].shape)))
    if bad:
        raise ValueError(f"model {name!r}: initial weights {str(path)!r} do not fit this "
                         f"network (bands, width, architecture or size differ): {bad[:4]}")
    module.net.load_state_dict({k: (own[k] if k in keep else state[k]) for k in own})


def _build_module(family, settings: dict, data: _Data):
    """The LightningModule with the normalisation and target scaling of the training split."""
    from galcat.models.module import GalaxyModule

    norm = fit_normalisation(data.datasets["train"], max_objects=NORMALISATION_OBJECTS,
                             scaling=settings.get("scaling", "asinh"))
    y = data.targets[data.members["train"]]
    k = data.targets.shape[1]
    if family.standardise_targets:
        mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
        std, loss_scale = np.where(std > 0, std, 1.0), 1.0
    else:
        # one number for all outputs: their relative weights stay those of plain
        # least squares (the Kaggle RMSE for the vote fractions)
        mean, std = np.zeros(k), np.ones(k)
        loss_scale = float(np.sqrt(np.nanmean(np.nanvar(y, axis=0)))) or 1.0
    module = GalaxyModule(family=family.name, settings=settings,
                          n_bands=len(data.bands) + residual_channels(settings),
                          n_targets=k, size=data.size)
    module.net.normalise.set(norm["scale"], norm["mean"], norm["std"])
    module.net.set_target_scaling(mean, std, loss_scale)
    if data.inputs is not None:
        values = data.inputs[data.members["train"]]
        # a measured input may be NaN (imputed by this mean in the network)
        mean, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        module.net.set_input_scaling(np.nan_to_num(mean),
                                     np.where(spread > 0, spread, 1.0))
    if module.net.photometry is not None:
        train = data.datasets["train"]
        sample = train.read_images(np.arange(min(len(train), NORMALISATION_OBJECTS)))
        module.net.photometry.fit(torch.from_numpy(sample), module.net.normalise.scale)
    return module


def _trainer(settings: Mapping, ckpt_dir: Path, out: Path):
    """Lightning's Trainer with a checkpoint every epoch and early stopping."""
    from galcat.models._torch_compat import import_lightning

    L = import_lightning()
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss",
                                 mode="min", save_top_k=1, save_last=True, every_n_epochs=1)
    stopping = EarlyStopping(monitor="val_loss", mode="min",
                             patience=int(settings["early_stopping_patience"]))
    callbacks = [checkpoint, stopping]
    # absent from the settings when 0 (`galcat.config.keys_training_ignores`)
    ema_epochs = float(settings.get("ema_epochs") or 0)
    if ema_epochs > 0:
        from galcat.models.averaging import EMAWeights

        callbacks.append(EMAWeights(epochs=ema_epochs))
    trainer = L.Trainer(
        max_epochs=int(settings["epochs"]), accelerator="auto", devices="auto", strategy="auto",
        precision=_precision(),
        # a rare outlier with a small predicted sigma must not throw the weights off
        gradient_clip_val=GRADIENT_CLIP,
        # CUDA has no deterministic backward for some pooling layers: warn there, enforce on CPU
        deterministic=True if not torch.cuda.is_available() else "warn",
        callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        default_root_dir=str(out),
    )
    return trainer, checkpoint


def _write_outputs(name: str, family, settings: dict, module, data: _Data, summary: dict,
                   out: Path) -> Path:
    """history.csv, learning_curve.png, train.json and model.pt."""
    history = module.history
    pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", "lr"]).to_csv(
        out / "history.csv", index=False)
    _write_curve(history, out / "learning_curve.png", title=f"{name} ({family.name})")
    epochs = len(history)
    summary.update(
        epochs_run=epochs,
        best_epoch=int(np.nanargmin([h["val_loss"] for h in history])) if history else None,
        train_images_per_second=(epochs * data.members["train"].size / summary["fit_seconds"]
                                 if summary["fit_seconds"] > 0 else None))
    _json(out / "train.json", summary)
    net = module.net
    return save_model(out / "model.pt", {
        "format": MODEL_FORMAT, "name": name, "family": family.name, "settings": settings,
        "bands": list(data.bands), "n_targets": int(data.targets.shape[1]), "size": data.size,
        "state_dict": net.state_dict(), "normalisation": net.normalise.as_dict(),
        "target_scaling": {"mean": net.target_mean.tolist(), "std": net.target_std.tolist()},
    })
