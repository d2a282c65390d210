"""The moving average of the weights (`galcat.models.averaging.EMAWeights`) in a real
Lightning fit: what it averages and what validation and the checkpoint see (a killed
gz2 job that resumes it: `test_resume`; the DAG's params: `test_workflow_models`)."""

from __future__ import annotations

import math

import pytest
import torch

from galcat.models._torch_compat import import_lightning
from galcat.models.averaging import EMAWeights

L = import_lightning()
STEPS_PER_EPOCH = 4
EPOCHS = 3


class _Line(L.LightningModule):
    """y = w x + b with a constant buffer; records its live weights after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.register_buffer("scale", torch.tensor([0.1, 1.0 / 3.0, 7.0]))
        self.live: list[torch.Tensor] = []
        self.validated: list[torch.Tensor] = []

    def _loss(self, batch):
        x, y = batch
        return torch.mean((self.layer(x * self.scale) - y) ** 2)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.live.append(self.layer.weight.detach().clone())

    def validation_step(self, batch, batch_idx):
        self.validated.append(self.layer.weight.detach().clone())
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8 * STEPS_PER_EPOCH, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def test_the_average_is_what_validation_and_the_checkpoint_see(tmp_path):
    torch.manual_seed(0)
    module, epochs = _Line(), 1.5
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(max_epochs=EPOCHS, callbacks=[EMAWeights(epochs=epochs), checkpoint],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, _loader(1), _loader(2))

    w = -math.expm1(-1.0 / (epochs * STEPS_PER_EPOCH))
    expected, averages = None, []
    for step, live in enumerate(module.live):  # the first update copies the live weights
        expected = live if expected is None else expected + w * (live - expected)
        if (step + 1) % STEPS_PER_EPOCH == 0:
            averages.append(expected)
    # validation saw the average of each epoch's end, not the live weights
    seen = module.validated[::STEPS_PER_EPOCH]
    assert len(seen) == EPOCHS
    for got, want, live in zip(seen, averages, module.live[STEPS_PER_EPOCH - 1::STEPS_PER_EPOCH],
                               strict=True):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, live, atol=1e-3), "validation saw the live weights"
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    torch.testing.assert_close(saved["state_dict"]["layer.weight"], averages[-1])
    torch.testing.assert_close(saved["current_model_state"]["layer.weight"], module.live[-1])
    # a buffer training never changes stays bit-identical in the average
    assert torch.equal(saved["state_dict"]["scale"], module.scale)


@pytest.mark.parametrize("epochs", [0, -1.0, float("nan"), float("inf")])
def test_a_time_constant_that_is_not_a_positive_number_is_named(epochs):
    with pytest.raises(ValueError, match=f"positive number of epochs; got {epochs!r}"):
        EMAWeights(epochs=epochs)
