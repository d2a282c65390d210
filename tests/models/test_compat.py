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


def test_resnet18_stride4_stem_reads_every_pixel_into_the_binned_stem_maps():
    import pytest
    import torch

    from galcat.config import keys_training_ignores
    from galcat.models.nets import build_encoder

    def layer1_side(net, side):
        seen = []
        hook = net.layer1.register_forward_hook(lambda m, i, out: seen.append(out.shape))
        with torch.no_grad():
            net(torch.zeros(1, 3, side, side))
        hook.remove()
        return seen[0][-1]

    resnet = {"architecture": "resnet18", "resnet_norm": "group"}
    stride4, _ = build_encoder({**resnet, "resnet_stem": "stride4"}, 3)
    torchvision, _ = build_encoder(resnet, 3)  # models saved before the key: this stem
    # the residual stages see maps of the same side as bin 2 + torchvision's stem give
    assert layer1_side(stride4, 64) == layer1_side(torchvision, 32) == 8
    # two images whose 2x2 block sums agree: binning makes them one, the stem does not
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[..., 30, 30] += 1.0
    y[..., 30, 31] -= 1.0
    assert torch.equal(torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2))
    with torch.no_grad():
        assert not torch.allclose(stride4.eval()(x), stride4(y))
    with pytest.raises(ValueError, match="resnet_stem must be one of .*; got 'patch'"):
        build_encoder({**resnet, "resnet_stem": "patch"}, 3)
    # read only by a resnet18 entry that changes it: stating the default retrains nothing
    entry = {"point_estimate": "mean", "architecture": "resnet18"}
    assert "resnet_stem" in keys_training_ignores(entry)
    assert "resnet_stem" in keys_training_ignores({**entry, "resnet_stem": "torchvision"})
    assert "resnet_stem" not in keys_training_ignores({**entry, "resnet_stem": "stride4"})
    assert "resnet_stem" in keys_training_ignores(
        {**entry, "architecture": "small_cnn", "resnet_stem": "stride4"})


def test_resnet18_unpooled_stem_gives_the_residual_stages_maps_twice_the_side():
    import torch

    from galcat.config import keys_training_ignores
    from galcat.models.nets import build_encoder

    def sides(net, side):
        seen = {}
        hooks = [getattr(net, name).register_forward_hook(
            lambda m, i, out, name=name: seen.update({name: out.shape[-1]}))
            for name in ("layer1", "layer4")]
        with torch.no_grad():
            features = net(torch.zeros(1, 3, side, side))
        for hook in hooks:
            hook.remove()
        return seen["layer1"], seen["layer4"], features.shape[-1]

    resnet = {"architecture": "resnet18", "resnet_norm": "group"}
    pooled, n_pooled = build_encoder({**resnet, "resnet_stem": "stride4"}, 3)
    unpooled, n_unpooled = build_encoder({**resnet, "resnet_stem": "stride4_unpooled"}, 3)
    # on a 64-pixel cutout: 8x8 -> 1x1 pooled, 16x16 -> 2x2 without the pooling
    assert sides(pooled, 64) == (8, 1, 512)
    assert sides(unpooled, 64) == (16, 2, 512)
    assert n_pooled == n_unpooled == 512
    # the pooling has no parameters: both stems build the same weights
    assert [p.shape for p in pooled.parameters()] == [p.shape for p in unpooled.parameters()]
    entry = {"point_estimate": "mean", "architecture": "resnet18"}
    assert "resnet_stem" not in keys_training_ignores({**entry, "resnet_stem": "stride4_unpooled"})


def test_only_a_cosine_schedule_reaches_the_train_params_and_it_drops_the_plateaus_keys():
    from galcat.config import keys_training_ignores

    entry = {"point_estimate": "mean", "architecture": "small_cnn"}
    for plateau in (entry, {**entry, "lr_schedule": "plateau"}):
        unread = keys_training_ignores(plateau)
        assert "lr_schedule" in unread
        assert "lr_factor" not in unread and "lr_patience" not in unread
    unread = keys_training_ignores({**entry, "lr_schedule": "cosine"})
    assert "lr_schedule" not in unread
    assert "lr_factor" in unread and "lr_patience" in unread


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
