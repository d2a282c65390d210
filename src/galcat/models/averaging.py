"""An exponential moving average of the weights, trained beside them and kept instead.

Labels as noisy as volunteer votes make the last step's weights wander around the
minimum from batch to batch; their running average sits nearer its centre (Polyak
& Juditsky 1992). `EMAWeights` is Lightning's `WeightAveraging` with the average's
time constant stated in epochs, so one value means the same for any survey size or
batch size. The average is what validation sees (early stopping, the learning-rate
plateau and the best checkpoint judge it) and what the checkpoints hold as
``state_dict``; Lightning keeps the live weights beside it in the checkpoint, so a
killed job resumes both.
"""

from __future__ import annotations

import math

import torch

from galcat.models._torch_compat import import_lightning

import_lightning()
from lightning.pytorch.callbacks import WeightAveraging  # noqa: E402

__all__ = ["EMAWeights"]


class EMAWeights(WeightAveraging):
    """Exponential moving average of a module's parameters and float buffers.

    Parameters
    ----------
    epochs : float
        Time constant of the average in epochs: after each optimiser step the
        average moves ``1 - exp(-1 / (epochs * steps_per_epoch))`` of the way to the
        live weights. Must be positive.

    Notes
    -----
    A buffer that training does not change (the input normalisation, the target
    scaling) stays bit-identical in the average: the update is written as
    ``average + w (live - average)``, which adds exactly zero where the two agree.
    Integer buffers (BatchNorm's batch counter) are copied. Cost: one extra copy of
    the weights in memory and one pass over them per step.
    """

    def __init__(self, *, epochs: float) -> None:
        epochs = float(epochs)
        if not (epochs > 0 and math.isfinite(epochs)):
            raise ValueError(f"the average's time constant must be a positive number of "
                             f"epochs; got {epochs!r}")
        super().__init__(use_buffers=True, avg_fn=self._update)
        self.epochs = epochs
        self.weight: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # batches per epoch are known only once the training loader is set up
        steps = max(1.0, float(trainer.num_training_batches)
                    / max(1, int(trainer.accumulate_grad_batches)))
        self.weight = -math.expm1(-1.0 / (self.epochs * steps))

    def _update(self, average: torch.Tensor, live: torch.Tensor,
                n_averaged: torch.Tensor) -> torch.Tensor:
        if not live.is_floating_point():
            return live
        return average + self.weight * (live - average)
