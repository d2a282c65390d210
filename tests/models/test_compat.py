"""torchvision, Lightning and torchmetrics import through galcat.models beside the CPU torch."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_ecosystem_imports_and_resnet18_builds():
    import torch

    from galcat.models import _torch_compat
    from galcat.models.nets import resnet18

    torchvision = _torch_compat.import_torchvision()  # the shim, before Lightning
    import lightning
    import torchmetrics

    TORCHVISION_SHIM = _torch_compat.TORCHVISION_SHIM

    net, n_features = resnet18(5)
    assert net(torch.zeros(2, 5, 32, 32)).shape == (2, n_features) == (2, 512)
    assert lightning.__version__ and torchmetrics.__version__
    # the shim is needed exactly where torchvision's compiled operators are missing
    has_ops = hasattr(torch.ops.torchvision, "nms") and torchvision.__version__
    assert has_ops
    if TORCHVISION_SHIM:
        assert "+cpu" in torch.__version__


def test_resnet18_takes_groupnorm_and_models_saved_before_keep_batchnorm():
    import pytest
    import torch

    from galcat.config import keys_training_ignores
    from galcat.models.nets import build_encoder

    def norms(net):
        return {type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__}

    group, _ = build_encoder({"architecture": "resnet18", "resnet_norm": "group"}, 3)
    assert norms(group) == {"GroupNorm"}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained_mode = group.train()(x)
        inference_mode = group.eval()(x)
    torch.testing.assert_close(trained_mode, inference_mode)  # no running statistics
    # a model saved before resnet_norm existed was built, and must be rebuilt, with these
    old, _ = build_encoder({"architecture": "resnet18"}, 3)
    assert norms(old) == {"BatchNorm2d"}
    with pytest.raises(ValueError, match="resnet_norm must be one of .*; got 'layer'"):
        build_encoder({"architecture": "resnet18", "resnet_norm": "layer"}, 3)
    # only a resnet18 entry's train job reads it
    entry = {"point_estimate": "mean", "architecture": "small_cnn"}
    assert "resnet_norm" in keys_training_ignores(entry)
    assert "resnet_norm" not in keys_training_ignores({**entry, "architecture": "resnet18"})


def test_torch_threads_wait_passively_unless_the_user_chose():
    code = "import os, galcat.models; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE", out.stderr[-2000:]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE", out.stderr[-2000:]


def test_a_predict_job_starts_without_torchvision_or_lightning():
    """Importing torchvision costs a second (it loads torch._dynamo), and the
    renderer half a second (galsim): most of a short predict or evaluate job.
    Neither is needed to run a small network, so neither is imported."""
    code = ("import sys, galcat.models.stages, galcat.models.predict, galcat.models.evaluate; "
            "print(sorted(m for m in ('torchvision', 'lightning', 'torchmetrics', 'galsim') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
