"""The input stretch of a network (``models.<name>.scaling``): asinh keeps a galaxy's
brightness, unit_flux takes it away and keeps its shape and colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galcat.models.data import stretch_images
from galcat.models.nets import DIHEDRAL, Normalise, dihedral
from galcat.models.registry import build_net
from tests.models.conftest import tiny_settings


def _galaxies(rng) -> torch.Tensor:
    """Two 3-band 32x32 exponential discs on noise, float64."""
    yy, xx = np.mgrid[:32, :32]
    disc = np.exp(-np.hypot(xx - 15.5, yy - 15.5) / 3.0)
    x = np.stack([np.stack([f * c * disc for c in (0.5, 1.0, 1.3)]) for f in (50.0, 400.0)])
    return torch.from_numpy(x + rng.normal(0, 0.2, x.shape))


def test_unit_flux_takes_the_brightness_away_and_keeps_shape_and_colour():
    x = _galaxies(np.random.default_rng(1))
    norm = Normalise(3, scaling="unit_flux")
    norm.set(np.full(3, 0.2), np.zeros(3), np.ones(3))
    y = norm(x)
    torch.testing.assert_close(norm(7.0 * x), y)  # any brightness, the same input
    # the colours stay: the band ratios of the centre pixel
    ratio = (y[:, 2, 15, 15] / y[:, 1, 15, 15]).numpy()
    np.testing.assert_allclose(ratio, 1.3, rtol=0.05)
    asinh = Normalise(3)
    asinh.set(np.full(3, 0.2), np.zeros(3), np.ones(3))
    assert not torch.allclose(asinh(7.0 * x), asinh(x))  # asinh keeps the brightness


def test_a_source_fainter_than_its_aperture_noise_is_scaled_by_the_noise():
    noise = torch.from_numpy(np.random.default_rng(2).normal(0, 0.2, (3, 3, 32, 32)))
    norm = Normalise(3, scaling="unit_flux")
    norm.set(np.full(3, 0.2), np.zeros(3), np.ones(3))
    out = norm(noise)
    assert torch.isfinite(out).all() and out.abs().max() < 1.0


def test_the_numpy_stretch_is_the_network_s():
    x = _galaxies(np.random.default_rng(3))
    for scaling in ("asinh", "unit_flux"):
        norm = Normalise(3, scaling=scaling)
        norm.set(np.full(3, 0.2), np.zeros(3), np.ones(3))
        np.testing.assert_allclose(stretch_images(x.numpy(), np.full(3, 0.2), scaling=scaling),
                                   norm.stretch(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="scaling must be one of"):
        Normalise(3, scaling="log")


@pytest.mark.parametrize(("family", "changes", "exact"), [
    ("r50", {"photometry": True}, True),  # asinh; aperture photometry reads the raw view
    ("sersic", {}, True),  # asinh; a decoder whose reconstruction is compared with z
    ("vae", {"scaling": "unit_flux"}, False),  # the aperture flux is summed in another order
    ("pixels", {}, True),  # per-pixel logits
])
def test_the_eight_transforms_stretched_once_give_the_outputs_of_each_transform(
        tiny_config, family, changes, exact):
    name = next(n for n, s in tiny_config["models"].items() if s["family"] == family)
    settings = tiny_settings(tiny_config, name, **changes)
    torch.manual_seed(0)
    net = build_net(family, settings, n_bands=3, n_targets=2, size=32).eval()
    net.normalise.set(np.full(3, 0.2), np.full(3, 0.5), np.full(3, 2.0))
    x = _galaxies(np.random.default_rng(5)).float()
    x = x + torch.rand_like(x)  # no symmetry of the image to hide a wrong transform
    inputs = torch.ones(len(x), net.n_inputs) if net.n_inputs else None
    tolerance = {"rtol": 0, "atol": 0} if exact else {}
    with torch.no_grad():
        views = net.forward_dihedral(x, inputs)
        assert len(views) == DIHEDRAL
        for code, (out, z) in enumerate(views):
            x_view = dihedral(x, code)
            expected = net(x_view, inputs)
            torch.testing.assert_close(z, net.normalise(x_view), **tolerance)
            assert out.keys() == expected.keys()
            for key in out:
                torch.testing.assert_close(out[key], expected[key], **tolerance)
