"""The models' stages of the DAG: ``train[model]``, ``predict[model, shard]``, ``evaluate[model]``.

Called by the ``galcat train|predict|evaluate`` commands (`galcat.cli`), which the
rules of ``workflow/rules/train.smk`` and ``predict.smk`` run. Each reads the
config sections its rule passes in its params through `galcat.config.settings`
and hands plain values to `train_model`, `predict_shard` and `evaluate_model`.

What each rule's params hold (so that an edit reruns exactly what it changes):
``train`` the model's entry without the keys it does not read (listed, and when, by
`galcat.config.keys_training_ignores`), the split settings, the survey and the
quality cuts of the family's labels that apply on it (`galcat.labels.cut_keys`), and
the ``synthetic`` section where the model draws injections
(`galcat.config.injection_survey`);
``predict`` the model's ``tta``;
``evaluate`` the model's ``family``, ``seed``, ``bands``, ``bin``, ``inputs``,
``scaling`` and ``crop`` unless 1 (`galcat.config.keys_evaluation_reads`), the
detection band, the survey and its label cuts and, for the synthetic survey, its MZR.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from galcat.config import (
    injection_survey,
    keys_evaluation_reads,
    keys_training_ignores,
    model_entry,
    setting,
    settings,
)

__all__ = ["SPLIT_KEYS", "labels_of", "run_evaluate", "run_predict", "run_train"]

#: Keys of the ``training`` section that decide the split (train and evaluate read them).
SPLIT_KEYS = ("validation_fraction", "test_fraction", "split_seed")


def labels_of(config: dict, family: str) -> dict:
    """`galcat.labels.label_spec` of ``family`` on the config's survey, with its cuts."""
    from galcat.config import ConfigError
    from galcat.labels import cut_keys, label_spec

    survey = setting(config, "survey")
    keys = cut_keys(survey, family)
    # a family's cut section is read only where its survey applies cuts: elsewhere it
    # is no param of the job, and editing it reruns nothing
    cuts = settings(config, "labels")[family] if keys else {}
    spec = label_spec(survey, family, cuts)
    if spec is None:
        raise ConfigError(f"model family {family!r}: survey {survey!r} provides no labels "
                          "for it (galcat.labels.SURVEY_LABELS)")
    return spec


def run_train(
    config: dict, model: str, objects: Sequence[os.PathLike | str],
    cutouts: Sequence[os.PathLike | str],
    output_dir: os.PathLike | str, threads: int | None = None,
    init_model: os.PathLike | str | None = None,
    features: Sequence[os.PathLike | str] | None = None,
    residuals: Sequence[os.PathLike | str] | None = None,
) -> Path:
    """Train ``model``; write its directory (``model.pt``, ``splits.parquet``...).

    ``init_model``: the synthetic survey's ``model.pt`` of the same name, required
    when the entry's ``init`` is ``synthetic`` (fine-tuning) and refused otherwise.
    ``features``: the shards' features tables, which a model with measured inputs
    (`galcat.models.data.MEASURED_INPUTS`) reads them from; ``residuals``: the shards'
    residual maps, in the order of ``cutouts`` (``residual_map``).
    """
    from galcat.config import ConfigError
    from galcat.models.train import train_model

    entry = model_entry(config, model)
    ignored = keys_training_ignores(entry)
    train_settings = {k: entry[k] for k in entry if k not in ignored}
    if (entry["init"] == "synthetic") != (init_model is not None):
        raise ConfigError(f"config key models.{model}.init = {entry['init']!r} "
                          f"{'needs' if init_model is None else 'takes no'} initial weights "
                          f"(--init-model {init_model})")
    training = settings(config, "training")
    return train_model(model, train_settings, training={k: training[k] for k in SPLIT_KEYS},
                       objects=objects, cutouts=cutouts, out_dir=output_dir,
                       threads=threads or 1, labels=labels_of(config, entry["family"]),
                       init_model=init_model, synthetic=injection_survey(config, model),
                       features=features or None, residuals=residuals or None)


def run_predict(
    config: dict, model: str, model_file: os.PathLike | str, splits: os.PathLike | str,
    cutouts: os.PathLike | str, output: os.PathLike | str, batch_size: int | None = None,
    threads: int | None = None, pixelmaps: os.PathLike | str | None = None,
    objects: Sequence[os.PathLike | str] | None = None,
    features: Sequence[os.PathLike | str] | None = None,
    residuals: Sequence[os.PathLike | str] | None = None,
) -> None:
    """Predictions of ``model`` for one shard (and its pixel maps, per-pixel families);
    ``objects``: the object table(s) a model with per-object inputs reads them from;
    ``features``: the shard's features table, for measured inputs; ``residuals``: the
    shard's residual maps, for a ``residual_map`` model."""
    from galcat.models.predict import predict_shard

    entry = model_entry(config, model)
    predict_shard(model_file, cutouts, output, splits=splits, tta=bool(entry["tta"]),
                  objects=objects or None, batch_size=batch_size or 256,
                  threads=threads or 1, pixelmaps=pixelmaps, features=features or None,
                  residuals=residuals[0] if residuals else None)


def run_evaluate(
    config: dict, model: str, objects: Sequence[os.PathLike | str],
    features: Sequence[os.PathLike | str],
    cutouts: Sequence[os.PathLike | str], segmaps: Sequence[os.PathLike | str],
    predictions: Sequence[os.PathLike | str], splits: os.PathLike | str,
    output: os.PathLike | str, pixelmaps: Sequence[os.PathLike | str] | None = None,
    threads: int | None = None,
) -> None:
    """``metrics.json`` of ``model``: test-split scores of the model and its baselines."""
    from galcat.models.evaluate import evaluate_model

    entry = model_entry(config, model)
    context = {}
    if setting(config, "survey") == "synthetic":
        mzr = settings(config, "synthetic")["mzr"]
        context = {"mzr_relation": mzr["relation"], "mzr_scatter_dex": mzr["scatter_dex"]}
    evaluate_model(model, {k: entry[k] for k in keys_evaluation_reads(entry)}, objects=objects,
                   features=features, cutouts=cutouts, segmaps=segmaps, predictions=predictions,
                   splits=splits, output=output, pixelmaps=pixelmaps or (), context=context,
                   labels=labels_of(config, entry["family"]),
                   detect_band=setting(config, "detect_band"),
                   threads=threads or 1)
