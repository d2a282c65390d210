"""The networks' building blocks: input normalisation, encoders and the whole net.

Every family's network is ``GalaxyNet(normalise, encoder, head)``: the per-band
normalisation fitted on the training split lives inside the network as buffers,
so a saved model carries it and inference cannot use another; the head is the
family's. Encoders (`build_encoder`):

``small_cnn``
    The small convolutional network of the seed papers (Dieleman et al. 2015;
    Kim et al. for sizes; Wu & Boada 2019 for metallicity): a stem and three
    stages that halve the resolution and double the channels, two 3x3
    convolutions each, batch normalisation and ReLU, then global average
    pooling. ``width`` sets the stem's channels (16: about 0.2 M parameters).
``resnet18``
    torchvision's ResNet-18 (He et al. 2016), random initialisation (no weights
    can be downloaded), its first convolution taking the cutout's bands.

Also here: the 8 dihedral transforms (4 rotations by 90 degrees, with and without
a flip) used for augmentation and test-time averaging, in torch and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "DIHEDRAL",
    "AperturePhotometry",
    "ConvDecoder",
    "GalaxyNet",
    "Normalise",
    "UNet",
    "build_encoder",
    "dihedral",
    "dihedral_inverse",
    "dihedral_numpy",
    "dihedral_view",
]

#: Number of dihedral transforms of a square image: rotations by 0, 90, 180, 270
#: degrees (codes 0-3) and the same after a left-right flip (codes 4-7).
DIHEDRAL = 8
ARCHITECTURES = ("small_cnn", "resnet18")


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """Transform ``code`` (0-7) of the last two axes of ``x``: rotate, then flip."""
    out = torch.rot90(x, code % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if code >= 4 else out


def dihedral_inverse(x: torch.Tensor, code: int) -> torch.Tensor:
    """Undo `dihedral` ``code`` (for per-pixel outputs of transformed inputs)."""
    out = torch.flip(x, dims=(-1,)) if code >= 4 else x
    return torch.rot90(out, -(code % 4), dims=(-2, -1))


def dihedral_view(x: np.ndarray, code: int) -> np.ndarray:
    """`dihedral` of a NumPy array as a view (no copy): assigning it into a batch
    array is the data loader's one copy of an image."""
    k = code % 4
    if k == 1:
        x = np.swapaxes(x[..., ::-1], -2, -1)
    elif k == 2:
        x = x[..., ::-1, ::-1]
    elif k == 3:
        x = np.swapaxes(x, -2, -1)[..., ::-1]
    return x[..., ::-1] if code >= 4 else x


def dihedral_numpy(x: np.ndarray, code: int) -> np.ndarray:
    """`dihedral` for numpy arrays; a contiguous copy."""
    return np.ascontiguousarray(dihedral_view(x, code))


#: Input scalings of `Normalise` (``models.<name>.scaling``).
SCALINGS = ("asinh", "unit_flux")
#: Radius of the aperture of `Normalise`'s unit-flux scaling, as a fraction of the side.
UNIT_FLUX_RADIUS = 0.1875


class Normalise(nn.Module):
    """Per-band input normalisation ``(stretch(x) - mean) / std``.

    ``scaling`` chooses the stretch:

    * ``asinh`` (default): ``asinh(x / scale)``, with ``scale`` the band's sky noise:
      linear below it and logarithmic above, so faint outskirts and bright cores
      both stay in range, and the brightness of a galaxy is kept.
    * ``unit_flux``: ``x / F``, with ``F`` the object's flux summed over the bands in
      a central circle of radius `UNIT_FLUX_RADIUS` x the side (12 pixels of 64),
      floored at that aperture's sky noise: every galaxy at the same total light, so
      that its light profile and colours, not its brightness, are what varies
      (a latent space of shapes: family ``vae``).

    ``scale``, ``mean`` and ``std`` are fitted on the training split
    (`galcat.models.data.fit_normalisation`) and stored as buffers, so they are
    saved and loaded with the weights; the scaling is a setting of the model.

    Parameters
    ----------
    n_bands : int
    scaling : str
        One of `SCALINGS`.
    """

    def __init__(self, n_bands: int, *, scaling: str = "asinh") -> None:
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
        self.scaling = scaling
        self.register_buffer("scale", torch.ones(n_bands))
        self.register_buffer("mean", torch.zeros(n_bands))
        self.register_buffer("std", torch.ones(n_bands))

    def set(self, scale: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        """Store fitted values (one per band)."""
        for name, value in (("scale", scale), ("mean", mean), ("std", std)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))

    def stretch(self, x: torch.Tensor) -> torch.Tensor:
        """The stretch alone (the normalisation's fit statistics use it)."""
        if self.scaling == "asinh":
            return torch.asinh(x / self.scale[None, :, None, None])
        side = x.shape[-1]
        centre = (side - 1) / 2.0
        yy, xx = torch.meshgrid(torch.arange(x.shape[-2], device=x.device, dtype=x.dtype),
                                torch.arange(side, device=x.device, dtype=x.dtype),
                                indexing="ij")
        inside = torch.hypot(xx - centre, yy - centre) < UNIT_FLUX_RADIUS * side
        flux = (x * inside).sum(dim=(1, 2, 3))
        # a galaxy fainter than its aperture's noise is scaled as that noise
        floor = self.scale.sum() * inside.sum().to(x.dtype).sqrt()
        return x / torch.clamp(flux, min=float(floor))[:, None, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stretch(x) - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    def as_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("scale", "mean", "std")}


def _conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, c_out // 4), c_out),
        nn.ReLU(inplace=True),
    ]


def small_cnn(in_channels: int, *, width: int = 16) -> tuple[nn.Module, int]:
    """The seed papers' small CNN; returns ``(encoder, n_features)``.

    A 3x3 stride-2 stem (the PSF spans >= 2 pixels per FWHM in the surveys galcat
    reads, so a learned stride-2 filter keeps what a full-resolution layer would
    see, at a quarter of the cost), then three stages of two 3x3 convolutions
    that halve the resolution and double the channels, and global average
    pooling. Cost: about 12 M multiply-adds per 64x64x5 image at ``width`` 16,
    four times that at 32.
    """
    layers = _conv(in_channels, width, stride=2)
    c = width
    for _ in range(3):
        layers += _conv(c, 2 * c, stride=2) + _conv(2 * c, 2 * c)
        c *= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c


RESNET_NORMS = ("group", "batch")
#: the ResNet-18's stem per ``resnet_stem``: its first convolution's (kernel, stride,
#: padding), and whether torchvision's 3x3 stride-2 max pooling follows it
RESNET_STEMS = {"torchvision": (7, 2, 3, True), "stride4": (8, 4, 2, True),
                "stride4_unpooled": (8, 4, 2, False)}


def resnet18(in_channels: int, *, norm: str = "group",
             stem: str = "torchvision") -> tuple[nn.Module, int]:
    """torchvision's ResNet-18, random init, ``in_channels`` bands; ``(encoder, 512)``.

    ``norm="group"`` swaps its BatchNorm layers for GroupNorm (32 groups): the same
    computation in training and inference. BatchNorm's running statistics made the
    validation loss of the science gz2 ResNet jump by orders of magnitude between epochs
    (as they did for the small CNN before it took GroupNorm). ``"batch"`` keeps
    torchvision's layers, as models saved before the choice existed have them.

    ``stem="stride4"`` replaces the 7x7 stride-2 first convolution by an 8x8 stride-4
    one (overlapping by half a filter): on unbinned pixels the residual stages then get
    the maps that 2x2 binning and torchvision's stem give them, but from learned filters
    over every pixel rather than from block averages.

    ``stem="stride4_unpooled"`` is that convolution without the max pooling after it:
    the residual stages work on maps twice the side (16x16 from a 64-pixel cutout, so
    the last stage sees 2x2 rather than 1x1), at the resolution the small CNN's second
    stage has. On the science gz2 ResNet it took the RMSE over the label-noise floor
    from 1.477x to 1.411x (seed 0) and 1.507x to 1.433x (seed 1) on the validation split.

    Cost: about 150 M multiply-adds per 64x64 image (38 M at 32x32); with the stride4
    stem, that of an image of half the side; stride4_unpooled, 4x stride4's in the
    residual stages, though a training step took only ~1.7x as long on CPU (at 8x8 the
    step is dominated by per-layer overhead).
    """
    from galcat.models._torch_compat import import_torchvision

    if norm not in RESNET_NORMS:
        raise ValueError(f"resnet_norm must be one of {RESNET_NORMS}; got {norm!r}")
    if stem not in RESNET_STEMS:
        raise ValueError(f"resnet_stem must be one of {tuple(RESNET_STEMS)}; got {stem!r}")
    layer = (lambda channels: nn.GroupNorm(32, channels)) if norm == "group" else None
    net = import_torchvision().models.resnet18(weights=None, norm_layer=layer)
    kernel, stride, padding, max_pool = RESNET_STEMS[stem]
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=kernel, stride=stride,
                          padding=padding, bias=False)
    if not max_pool:
        net.maxpool = nn.Identity()
    n_features = net.fc.in_features
    net.fc = nn.Identity()
    return net, n_features


def build_encoder(settings: Mapping, in_channels: int) -> tuple[nn.Module, int]:
    """The encoder named by ``settings['architecture']``; ``(module, n_features)``."""
    arch = settings["architecture"]
    if arch == "small_cnn":
        return small_cnn(in_channels, width=int(settings["width"]))
    if arch == "resnet18":
        # models saved before the setting existed were built with BatchNorm
        return resnet18(in_channels, norm=settings.get("resnet_norm", "batch"),
                        stem=settings.get("resnet_stem", "torchvision"))
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


class ConvDecoder(nn.Module):
    """A vector -> an image ``(n, n_bands, size, size)``: the mirror of `small_cnn`.

    A linear layer to a ``4 width`` x s x s map (s = ceil(size / 16), the
    encoder's last resolution), then four stages that double the resolution
    (nearest-neighbour upsampling and a 3x3 convolution) and halve the channels,
    a 1x1 convolution to the bands, cropped to ``size``. Used by the families that
    reconstruct their input (``sersic``, ``vae``). Cost: about as many
    multiply-adds as the encoder.

    Parameters
    ----------
    n_in : int
        Length of the input vector (bottleneck features or a latent).
    n_bands, size : int
        Bands and side (pixels) of the reconstructed image.
    width : int
        Sets the channels: ``8 width`` after the projection, halved at each stage.
    """

    def __init__(self, n_in: int, n_bands: int, size: int, *, width: int = 16) -> None:
        super().__init__()
        self.size, self.start = int(size), max(1, math.ceil(size / 16))
        c = 8 * width
        self.c0 = c
        self.project = nn.Sequential(nn.Linear(n_in, c * self.start**2), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv(c, max(c // 2, 4))]
            c = max(c // 2, 4)
        layers.append(nn.Conv2d(c, n_bands, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(len(z), self.c0, self.start, self.start)
        # channels-last: the CPU's nearest upsampling and its convolutions of few
        # channels at full resolution run ~1.3x faster per training step this way
        x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)[..., : self.size, : self.size]


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015) for per-pixel classes, as Morpheus.

    Three stages down (two 3x3 convolutions, then 2x2 max pooling; the channels
    double from ``width``), a bottleneck, three stages up (bilinear upsampling,
    concatenation with the same-resolution encoder map, two convolutions), and a
    1x1 convolution to ``n_classes`` logits per pixel. Works on any side that is
    a multiple of 8. Cost: about 40 M multiply-adds per 64x64x5 image at width 8 (3.5
    times the small CNN at width 16), four times that at width 16.

    Parameters
    ----------
    in_channels, n_classes : int
    width : int
        Channels of the first stage.
    """

    def __init__(self, in_channels: int, n_classes: int, *, width: int = 16) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width]
        self.down = nn.ModuleList()
        c = in_channels
        for w in chans:
            self.down.append(nn.Sequential(*_conv(c, w), *_conv(w, w)))
            c = w
        self.bottom = nn.Sequential(*_conv(c, 2 * c), *_conv(2 * c, c))
        self.up = nn.ModuleList()
        for w in reversed(chans):
            self.up.append(nn.Sequential(*_conv(c + w, w), *_conv(w, w)))
            c = w
        self.out = nn.Conv2d(c, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: its convolutions at full resolution train faster on the CPU
        x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear",
                                          align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)


class AperturePhotometry(nn.Module):
    """Fluxes and colours in concentric circular apertures: a fixed, exact layer.

    A convolutional network estimates colours from noisy pixels; aperture sums
    give the head the integrated colours and the colour and light profiles at
    the precision of the photometry (what the random-forest baseline is given),
    and the encoder adds the spatial detail. The apertures are centred on the
    cutout (where the surveys put the object), of radii 1/16 to 7/8 of its
    half-width, so they are invariant under the dihedral transforms. A flux
    becomes ``asinh(flux / (scale * sqrt(area)))`` (``scale``: the band's sky
    noise from `Normalise`), logarithmic above the aperture's noise like a
    magnitude; the features are these per band and their differences between
    consecutive bands (colours), standardised with the training split's mean
    and std (`fit`), so that colour differences of 0.01 mag are not lost
    against fluxes that span 5 magnitudes.

    Parameters
    ----------
    size : int
        Side of the (binned) cutout in pixels.
    n_bands : int
    """

    FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 7 / 8)

    def __init__(self, size: int, n_bands: int) -> None:
        super().__init__()
        c = (size - 1) / 2
        yy, xx = np.mgrid[:size, :size]
        radius = np.hypot(yy - c, xx - c)
        masks = np.stack([radius <= max(f * size / 2, 1.0) for f in self.FRACTIONS])
        self.register_buffer("masks", torch.as_tensor(masks, dtype=torch.float32))
        self.register_buffer("area", torch.as_tensor(masks.sum(axis=(1, 2)), dtype=torch.float32))
        self.n_features = (2 * n_bands - 1) * len(self.FRACTIONS)
        self.register_buffer("mean", torch.zeros(self.n_features))
        self.register_buffer("std", torch.ones(self.n_features))

    def raw(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Unstandardised features: asinh fluxes, then consecutive-band colours."""
        flux = torch.einsum("nbyx,ryx->nbr", x, self.masks)
        mags = torch.asinh(flux / (scale[None, :, None] * torch.sqrt(self.area)[None, None, :]))
        return torch.cat([mags.flatten(1), (mags[:, :-1] - mags[:, 1:]).flatten(1)], dim=1)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardise with the mean and std of the features of images ``x``."""
        f = self.raw(x, scale)
        self.mean.copy_(f.mean(0))
        self.std.copy_(torch.where(f.std(0) > 0, f.std(0), torch.ones_like(self.std)))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (self.raw(x, scale) - self.mean) / self.std


class GalaxyNet(nn.Module):
    """Normalisation, encoder and a family's head, with the target standardisation.

    ``forward`` takes binned flux images ``(n, band, y, x)`` and returns the head's
    dict of tensors in standardised target units; `to_fit_space` maps a Gaussian
    head's ``mean``/``std`` back to the family's fitting space (e.g. log10 r50).

    Parameters
    ----------
    n_bands : int
    encoder : nn.Module
    head : nn.Module
        Maps the encoder's features (and, for decoders, nothing else) to a dict.
    n_targets : int
        Length of the target standardisation vectors.
    photometry : AperturePhotometry, optional
        Aperture fluxes and colours joined to the encoder's features.
    n_inputs : int
        Per-object values beside the image (`galcat.models.data.OBJECT_INPUTS`, such
        as log10 z), standardised with the training split's mean and std
        (`set_input_scaling`) and joined to the features the head sees; a NaN
        (a measured input `measure` could not make) becomes that mean.
    scaling : str
        The input stretch of `Normalise`.
    point_estimate : str
        What the loss fits the Gaussian means to: ``mean``, ``median`` or ``huber``
        (`galcat.models.registry.regression_loss`); read by the family's loss only.
    huber_delta : float or None
        Where ``huber`` turns from squared to absolute residuals, in target
        spreads (None unless ``point_estimate`` is huber); read by the family's
        loss only.
    """

    def __init__(self, n_bands: int, encoder: nn.Module, head: nn.Module, n_targets: int, *,
                 photometry: AperturePhotometry | None = None, n_inputs: int = 0,
                 scaling: str = "asinh", point_estimate: str = "mean",
                 huber_delta: float | None = None) -> None:
        super().__init__()
        self.point_estimate = point_estimate
        self.huber_delta = huber_delta
        self.normalise = Normalise(n_bands, scaling=scaling)
        self.encoder = encoder
        self.photometry = photometry
        self.head = head
        self.n_inputs = int(n_inputs)
        self.register_buffer("target_mean", torch.zeros(max(n_targets, 1)))
        self.register_buffer("target_std", torch.ones(max(n_targets, 1)))
        # typical spread of the targets the loss sees (1 once standardised)
        self.register_buffer("loss_scale", torch.ones(()))
        # factor of each output's std fitted on the validation split after training
        # (galcat.models.train): 1 while training; one for a single transform of the
        # input, one for the mixture of the 8 (tta), whose mean and spread differ
        self.register_buffer("std_calibration", torch.ones(max(n_targets, 1)))
        self.register_buffer("std_calibration_tta", torch.ones(max(n_targets, 1)))
        if self.n_inputs:
            self.register_buffer("input_mean", torch.zeros(self.n_inputs))
            self.register_buffer("input_std", torch.ones(self.n_inputs))

    def forward(self, x: torch.Tensor, inputs: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """The head's outputs for images ``x`` and, when the net has ``n_inputs``, the
        per-object values ``inputs`` ``(n, n_inputs)`` in their raw units."""
        return self.forward_normalised(self.normalise(x), x, inputs)

    def forward_dihedral(self, x: torch.Tensor, inputs: torch.Tensor | None = None, *,
                         codes: Sequence[int] = tuple(range(DIHEDRAL))
                         ) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """``(outputs, normalised image)`` of each transform ``dihedral(x, code)``.

        The outputs are those of `forward` of the transformed images; the input
        stretch is computed once, as it commutes with the transforms (``asinh`` acts
        per pixel: bitwise the same; ``unit_flux`` divides by an aperture flux the
        transforms keep, summed in another order). In a science predict job on the
        CPU, stretching each transform again was half of the small CNN's inference.
        """
        z = self.normalise(x)
        views = []
        for code in codes:
            z_view = dihedral(z, code)
            x_view = dihedral(x, code) if self.photometry is not None else x
            views.append((self.forward_normalised(z_view, x_view, inputs), z_view))
        return views

    def forward_normalised(self, z: torch.Tensor, x: torch.Tensor,
                           inputs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`forward` given ``z = self.normalise(x)``; ``x`` (raw fluxes) is read by the
        aperture photometry alone."""
        features = self.encoder(z)
        if self.photometry is not None:
            features = torch.cat([features, self.photometry(x, self.normalise.scale)], dim=1)
        if self.n_inputs:
            if inputs is None or tuple(inputs.shape) != (len(x), self.n_inputs):
                got = None if inputs is None else tuple(inputs.shape)
                raise ValueError(f"this network takes {self.n_inputs} per-object input(s) "
                                 f"beside each image; got {got} for {len(x)} images")
            scaled = (inputs.to(features.dtype) - self.input_mean) / self.input_std
            # a measured input `measure` could not make (NaN) is imputed by the training
            # mean; a required one never gets here unknown (objects without are skipped)
            features = torch.cat([features, torch.nan_to_num(scaled, nan=0.0)], dim=1)
        return self.head(features)

    def set_input_scaling(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardisation of the per-object inputs (training split's mean and std)."""
        self.input_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def set_target_scaling(self, mean: np.ndarray, std: np.ndarray, loss_scale: float = 1.0) -> None:
        self.target_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.target_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32))
        self.loss_scale.fill_(float(loss_scale))

    def standardise(self, target: torch.Tensor) -> torch.Tensor:
        return (target - self.target_mean) / self.target_std

    def to_fit_space(self, mean: torch.Tensor, std: torch.Tensor, *, tta: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian outputs in the family's fitting space, the std calibrated for one
        transform of the input, or with ``tta`` for the mixture of the 8."""
        factor = self.std_calibration_tta if tta else self.std_calibration
        return mean * self.target_std + self.target_mean, std * self.target_std * factor
