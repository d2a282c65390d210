"""The one LightningModule every family trains in: a shared train/validation/test step.

`GalaxyModule` wraps a family's `GalaxyNet`; its single `step` computes the
family's loss on a batch for training, validation and test alike. The optimiser
is AdamW; the learning rate is reduced on a validation-loss plateau, or along a
cosine over the epochs (``lr_schedule``). The module
keeps its own per-epoch history (train and validation loss, learning rate) and
the torch RNG state in every checkpoint, so a resumed run continues exactly
where the killed one stopped, and the learning curve survives the kill.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from galcat.models._torch_compat import import_lightning
from galcat.models.registry import build_net, get_family

L = import_lightning()

__all__ = ["GalaxyModule"]


class GalaxyModule(L.LightningModule):
    """Training of one model.

    Parameters
    ----------
    family : str
        Registered family name.
    settings : dict
        The model's config entry (plain JSON types; saved as hyper-parameters).
    n_bands, n_targets : int
    size : int
        Side of the (binned) cutouts in pixels.
    """

    def __init__(self, *, family: str, settings: dict, n_bands: int, n_targets: int,
                 size: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.family = get_family(family)
        self.settings = settings
        self.net = build_net(family, settings, n_bands=n_bands, n_targets=n_targets, size=size)
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, inputs: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        return self.net(x, inputs)

    # ------------------------------------------------------------------ the step
    def step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The family's loss on ``batch``; the same for train, validation and test."""
        out = self.net(batch["image"], batch.get("inputs"))
        target = batch["target"]
        if self.family.standardise_targets:
            target = self.net.standardise(target)
        loss = self.family.loss(out, target, batch, self.net)
        n = torch.tensor(float(len(batch["image"])), device=loss.device)
        total, count = self._sums.get(stage, (torch.zeros((), device=loss.device),) * 2)
        self._sums[stage] = (total + loss.detach() * n, count + n)
        return loss

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.step(batch, "test")

    def _epoch_mean(self, stage: str) -> float:
        total, count = self._sums.pop(stage, (torch.zeros(()), torch.zeros(())))
        total = self.trainer.strategy.reduce(total.to(self.device), reduce_op="sum")
        count = self.trainer.strategy.reduce(count.to(self.device), reduce_op="sum")
        return float(total / count) if float(count) > 0 else float("nan")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._sums.pop("val", None)
            return
        val = self._epoch_mean("val")
        train = self._epoch_mean("train")
        self.log("val_loss", val, sync_dist=False)
        lr = float(self.optimizers().param_groups[0]["lr"])
        # Stepped here, before the epoch's checkpoint is written (Lightning steps
        # plateau schedulers after it, and not at all on the epoch it resumes at).
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val)
        else:
            scheduler.step()
        self.history.append({"epoch": int(self.current_epoch), "train_loss": train,
                             "val_loss": val, "lr": lr})

    def on_test_epoch_end(self) -> None:
        self.log("test_loss", self._epoch_mean("test"))

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Lightning's own stepping is replaced by the one in `on_validation_epoch_end`."""

    def configure_optimizers(self):
        s = self.settings
        opt = torch.optim.AdamW(self.parameters(), lr=float(s["learning_rate"]),
                                weight_decay=float(s["weight_decay"]))
        if dict.get(s, "lr_schedule", "plateau") == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(s["epochs"]))
        else:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=float(s["lr_factor"]), patience=int(s["lr_patience"]))
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    # ------------------------------------------------------------------ checkpoints
    def fill_refitted_buffers(self, state_dict: dict) -> dict:
        """Add to ``state_dict``, in place, the std factors a checkpoint lacks.

        The factors (``net.std_calibration*``) are fitted after training, so a
        checkpoint's values are never used; one written before a factor existed
        (``std_calibration_tta`` came in f5136ec) takes the module's own
        value and resumes, where a strict load would stop on the missing key.
        """
        for key, value in self.state_dict().items():
            if key.startswith("net.std_calibration"):
                state_dict.setdefault(key, value)
        return state_dict

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["galcat_history"] = [dict(h) for h in self.history]
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["galcat_rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.fill_refitted_buffers(checkpoint["state_dict"])
        self.history = [dict(h) for h in checkpoint.get("galcat_history", [])]
        rng = checkpoint.get("galcat_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
