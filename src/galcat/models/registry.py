"""The model registry: one `Family` per kind of network, found by name.

A family is everything that makes one kind of model (``families/{name}.py``):
the targets it learns (from the object table), its head and loss, how its raw
outputs become catalogue columns (with units, descriptions and uncertainties),
its baselines and its scores. The platform (data, training loop, inference,
evaluation) is shared and knows families only through this interface, so a new
family is one module and one `register` call.

A *model* is a named entry of the config's ``models`` section: a family plus its
settings (architecture, bands, epochs...); several models may share a family
(the r-band-only r50 beside the multi-band one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galcat.models.nets import AperturePhotometry, GalaxyNet, build_encoder

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from galcat.models.evaluate import EvalData

__all__ = [
    "FAMILIES",
    "Family",
    "GaussianHead",
    "Output",
    "POINT_ESTIMATES",
    "build_net",
    "get_family",
    "mixture_of_gaussians",
    "mlp",
    "register",
    "regression_loss",
    "width_loss",
]


#: What a regression output's central value estimates (`regression_loss`).
POINT_ESTIMATES = ("mean", "median", "huber")


@dataclass(frozen=True)
class Output:
    """One per-object output column of a family (before the model's prefix).

    Attributes
    ----------
    name : str
        Column suffix, e.g. ``"r50_mass"``; the catalogue column is
        ``nn_{model}_{name}``.
    unit : str
        Astropy unit string ("" dimensionless).
    description : str
    error : bool
        True for a regression output: a ``{name}_err`` column (1-sigma, same unit)
        follows it.
    required : bool
        A NaN leaves the object out of the scores (every model and baseline is
        scored on the same objects); False for a value that is undefined for some
        objects by its nature (a share of pixels an object may not have).
    """

    name: str
    unit: str
    description: str
    error: bool = True
    required: bool = True


def mlp(n_in: int, n_out: int, *, hidden: int = 128) -> nn.Module:
    """One hidden layer of ``hidden`` ReLU units."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_out))


class GaussianHead(nn.Module):
    """Mean and standard deviation of ``k`` Gaussian outputs from encoder features.

    Two small MLPs: one for the means, one for softplus-positive standard
    deviations (floored at ``min_std``, in standardised units, so the likelihood
    stays finite). The second sees the features detached: the encoder is trained
    by the means' loss alone, and the widths are fitted on top of it (see
    `regression_loss`). Returns ``{"mean": (n, k), "std": (n, k)}``.
    """

    def __init__(self, n_features: int, k: int, *, min_std: float = 1e-3) -> None:
        super().__init__()
        self.mean = mlp(n_features, k)
        self.std = mlp(n_features, k)
        self.min_std = min_std

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": self.mean(features),
                "std": F.softplus(self.std(features.detach())) + self.min_std}


def regression_loss(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor, *,
                    scale: torch.Tensor | float = 1.0, weight: torch.Tensor | None = None,
                    error: torch.Tensor | None = None,
                    point_estimate: str = "mean", huber_delta: float | None = None) -> torch.Tensor:
    """Least squares (or a robust fit) for the mean plus the Gaussian NLL of the std.

    The standard deviation is fitted by the Gaussian negative log-likelihood of
    the residuals with the mean held fixed (detached), the mean by least squares.
    A plain NLL lets the network inflate the sigma of hard galaxies and so fit
    their means less (Seitzer et al. 2022, "On the pitfalls of heteroscedastic
    uncertainty estimation"); here the two parts have separate gradients (and
    the heads give the std branch detached features): the mean is what a
    least-squares network gives, the std a calibrated Gaussian width about it.
    NaN targets are masked (they add nothing to the loss or its gradient).

    ``scale`` divides the residuals of the least-squares term: the typical spread
    of the targets, so that term is of order one like the likelihood term (1 for
    standardised targets; targets in their own units, such as vote fractions,
    would otherwise give the mean a gradient ~100 times weaker than the std's).

    ``weight`` (``(n,)`` or ``(n, k)``, mean ~1) weights the least-squares term
    per object: the number of volunteer votes behind a vote fraction, whose
    binomial variance falls as 1/votes. ``error`` (``(n,)`` or ``(n, k)``, target
    units, NaN: none) is a measurement error of the label: the likelihood's
    variance is ``std**2 + error**2`` (``std`` is then the scatter of the true
    value about the prediction) and the least-squares term weights each object by
    ``std**2 / (std**2 + error**2)`` (inverse variance relative to the network's
    own width, so 1 for an exact label).

    ``point_estimate`` ``"median"`` fits the central value by least absolute
    deviations instead (the conditional median): a few large residuals (labels
    or inputs with heavy tails) then pull it no harder than small ones, and the
    core of the residuals is fitted more tightly. Median scores reward it, but
    the network also learns less from the large misses. ``"huber"`` (Huber
    1964) squares the residuals up to ``huber_delta`` (in units of ``scale``,
    i.e. of the targets' spread) and takes them absolutely beyond: the core is
    fitted as by least squares, and a large residual pulls with a constant
    force, however large, as for the median. r50 on the science survey, 60
    epochs, validation (2-4 seeds each): median |dr|/r at S/N > 20 2.53-2.66%
    (least squares), 2.50-2.57% (median), 2.38-2.46% (huber, delta 0.25);
    RMSE 0.0254-0.0269, 0.0304, 0.0265-0.0269 dex. The std is fitted by the
    Gaussian likelihood about whichever central value, and calibrated on the
    validation split afterwards.
    """
    if point_estimate not in POINT_ESTIMATES:
        raise ValueError(f"point_estimate must be one of {POINT_ESTIMATES}; got {point_estimate!r}")
    if point_estimate == "huber" and not (huber_delta is not None and huber_delta > 0):
        raise ValueError(f"huber_delta must be positive; got {huber_delta!r}")
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return (mean.sum() + std.sum()) * 0.0
    y = torch.where(ok, target, torch.zeros_like(target))
    resid = (mean.detach() - y) ** 2
    if weight is None and error is None:
        fit = _deviation((mean - y) / scale, point_estimate, huber_delta)[ok].mean()
        return fit + width_loss(mean, std, target)
    n = target.shape[0]
    var = std**2
    w = torch.ones_like(target)
    if weight is not None:
        weight = weight.reshape(n, -1).to(target.dtype)
        w = w * torch.where(torch.isfinite(weight) & (weight > 0), weight, torch.ones_like(weight))
    if error is not None:
        e = error.reshape(n, -1).to(target.dtype)
        e2 = torch.where(torch.isfinite(e), e, torch.zeros_like(e)) ** 2
        w = w * (var.detach() / (var.detach() + e2))
        var = var + e2
    w = torch.where(ok, w, torch.zeros_like(w))
    deviation = _deviation((mean - y) / scale, point_estimate, huber_delta)
    fit = (w * deviation).sum() / w.sum().clamp_min(1e-12)
    nll = 0.5 * (resid / var + torch.log(var))
    return fit + nll[ok].mean()


def width_loss(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Gaussian negative log-likelihood of ``std`` with ``mean`` held fixed
    (detached), averaged over the finite targets: the width part of
    `regression_loss`, for a family whose mean is fitted by another loss."""
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return std.sum() * 0.0
    y = torch.where(ok, target, torch.zeros_like(target))
    nll = 0.5 * ((mean.detach() - y) ** 2 / std**2 + 2.0 * torch.log(std))
    return nll[ok].mean()


def _deviation(residual: torch.Tensor, point_estimate: str,
               huber_delta: float | None) -> torch.Tensor:
    """What the central value minimises: squared (mean), absolute (median) or, for
    huber, squared up to ``huber_delta`` and absolute beyond (continuous, with a
    continuous slope: ``2 delta |r| - delta**2``)."""
    if point_estimate == "median":
        return residual.abs()
    if point_estimate == "huber":
        size = residual.abs()
        return torch.where(size <= huber_delta, residual**2,
                           2.0 * huber_delta * size - huber_delta**2)
    return residual**2


def mixture_of_gaussians(outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Combine test-time-augmented Gaussian outputs: an equal-weight mixture.

    Mean of the means; variance = mean of the variances + variance of the means.
    """
    means = torch.stack([o["mean"] for o in outputs])
    var = torch.stack([o["std"] ** 2 for o in outputs]).mean(0) + means.var(0, unbiased=False)
    return {"mean": means.mean(0), "std": torch.sqrt(var)}


class Family:
    """Base class of a model family (subclass, then `register` an instance).

    Class attributes
    ----------------
    name : str
        Registry key, the ``family`` of a config entry.
    summary : str
        One line: input -> target (the paper it follows).
    label_columns : tuple of str
        Object-table columns the targets are made from.
    standardise_targets : bool
        Whether targets are standardised with the training split's mean and std.
    pixel_arrays : tuple of str
        Per-pixel cutout arrays (``sigma``, ``truth_class``...) the loss needs, read
        and augmented with the image.
    partial_labels : bool
        An object with some NaN targets is trained on the others (the loss masks
        NaN, e.g. the answers of a Galaxy Zoo question too few volunteers reached);
        else an object needs every target finite.
    pixel_output : bool
        The network returns a map per object (``{"logits": (n, class, y, x)}``), not
        Gaussian outputs: inference goes through `pixel_columns` and writes the maps
        (`galcat.store.write_pixelmaps`).
    injection_labels : mapping of str to str or None
        Label column -> truth column of the single-Sérsic injections
        (`galcat.surveys.single_sersic.render_single_sersic`) for a family that can add
        them to its training (``models.<name>.injections``); None: it cannot.
    calibrates_std : bool
        The Gaussian std of every output is rescaled after training so that 68.27% of
        the validation split's labels lie within it (`galcat.models.train`): a family
        whose std describes the spread of its labels about the prediction, as exact
        truths (r50, sersic, metallicity) or vote fractions whose ``_err`` is the
        spread of the volunteers' fraction (gz2). Not where the labels come with
        errors of their own (an archive's): `galcat.models.train` then leaves the std
        as fitted.
    fits_point_estimate : bool
        Its loss fits the means of Gaussian outputs by `regression_loss`, so a
        model's ``point_estimate`` (mean, median or huber) applies to it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    label_columns: ClassVar[tuple[str, ...]]
    standardise_targets: ClassVar[bool] = True
    pixel_arrays: ClassVar[tuple[str, ...]] = ()
    partial_labels: ClassVar[bool] = False
    pixel_output: ClassVar[bool] = False
    injection_labels: ClassVar[Mapping[str, str] | None] = None
    calibrates_std: ClassVar[bool] = False
    fits_point_estimate: ClassVar[bool] = False

    # ------------------------------------------------------------------ data
    def targets(self, table: pd.DataFrame) -> np.ndarray:
        """Targets in fitting space, ``(n, k)`` float64; a NaN row is not trained on."""
        raise NotImplementedError

    def labelled(self, table: pd.DataFrame) -> np.ndarray:
        """Rows of ``table`` with a label to train on and score against (`partial_labels`)."""
        finite = np.isfinite(self.targets(table))
        return finite.any(axis=1) if self.partial_labels else finite.all(axis=1)

    def check_labels(self, table: pd.DataFrame, *, source: str) -> None:
        """Raise naming the missing label columns of the object table ``source``."""
        missing = [c for c in self.label_columns if c not in table.columns]
        if missing:
            raise KeyError(
                f"family {self.name!r} trains on columns {missing}, which the object table "
                f"{source!r} lacks (it has no truth for this family)"
            )

    # ------------------------------------------------------------------ network
    def encoder(self, settings: Mapping, n_bands: int, size: int) -> tuple[nn.Module, int]:
        """The encoder and its number of features; default: `build_encoder` (pooled)."""
        return build_encoder(settings, n_bands)

    def head(self, n_features: int, n_targets: int, *, settings: Mapping, n_bands: int,
             size: int) -> nn.Module:
        """The head on the encoder's features; default: `GaussianHead`.

        ``settings``, ``n_bands`` and ``size`` (side of the binned cutout) are for
        heads that reconstruct the image (a decoder).
        """
        return GaussianHead(n_features, n_targets)

    def loss(self, out: dict[str, torch.Tensor], target: torch.Tensor,
             batch: Mapping[str, torch.Tensor], net: nn.Module) -> torch.Tensor:
        """Training loss of a batch (``target`` standardised if `standardise_targets`).

        Default: `regression_loss` with the network's ``loss_scale``.
        """
        return regression_loss(out["mean"], out["std"], target, scale=net.loss_scale,
                               point_estimate=net.point_estimate, huber_delta=net.huber_delta)

    def combine(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Combine the outputs of the 8 dihedral transforms of the input (test time)."""
        return mixture_of_gaussians(outputs)

    # ------------------------------------------------------------------ outputs
    def outputs(self, settings: Mapping | None = None) -> list[Output]:
        """The per-object output columns (without the ``nn_{model}_`` prefix).

        ``settings`` (the model's entry) for families whose columns depend on it
        (the latent size of ``vae``); None: the family's defaults.
        """
        raise NotImplementedError

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        """Fit-space ``mean``/``std`` ``(n, k)`` -> output columns in physical units."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def baselines(self, data: EvalData) -> dict[str, dict[str, np.ndarray]]:
        """Baseline predictions for ``data.test`` objects: name -> output columns."""
        raise NotImplementedError

    def score(self, data: EvalData, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        """Test-split scores of the model and baselines (JSON-ready)."""
        raise NotImplementedError


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry under ``family.name``."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    FAMILIES[family.name] = family
    return family


def inputs_phrase(settings: Mapping | None) -> str:
    """" and <inputs>" for a column description: what the network saw beside the cutout."""
    names = list((settings or {}).get("inputs") or ())
    return f" and {', '.join(names)}" if names else ""


def build_net(family: str, settings: Mapping, *, n_bands: int, n_targets: int,
              size: int) -> GalaxyNet:
    """The untrained network of a model: normalisation, encoder (with the aperture
    photometry when ``settings['photometry']``, and the per-object values of
    ``settings['inputs']``), the family's head.

    ``size`` is the side of the (binned) cutouts in pixels.
    """
    fam = get_family(family)
    n_inputs = len(settings.get("inputs") or ())  # models saved before inputs existed: none
    point_estimate = settings.get("point_estimate", "mean")  # older models: the mean
    # read only where used: a train job's params leave it out otherwise, and a job
    # must not read a value its params lack (tests/test_params.py)
    huber_delta = settings["huber_delta"] if point_estimate == "huber" else None
    if point_estimate != "mean" and not fam.fits_point_estimate:
        raise ValueError(f"family {family!r} has no Gaussian outputs whose central value "
                         f"point_estimate {point_estimate!r} could choose; remove it from "
                         "the model's entry")
    if n_inputs and fam.pixel_output:
        raise ValueError(f"family {family!r} predicts per pixel and takes no per-object "
                         f"inputs; remove inputs {list(settings['inputs'])} from its entry")
    encoder, n_features = fam.encoder(settings, n_bands, size)
    # the aperture fluxes join pooled features; a per-pixel network has none
    phot = (AperturePhotometry(size, n_bands) if settings["photometry"] and not fam.pixel_output
            else None)
    if phot is not None:
        n_features += phot.n_features
    head = fam.head(n_features + n_inputs, n_targets, settings=settings, n_bands=n_bands,
                    size=size)
    return GalaxyNet(n_bands, encoder, head, n_targets, photometry=phot, n_inputs=n_inputs,
                     scaling=settings.get("scaling", "asinh"),  # older models: asinh
                     point_estimate=point_estimate,
                     huber_delta=huber_delta)


def get_family(name: str) -> Family:
    """The registered family ``name``; a clear error lists the known ones."""
    # the family modules register themselves when imported
    from galcat.models import families  # noqa: F401

    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(
            f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None
