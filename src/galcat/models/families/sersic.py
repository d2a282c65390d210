"""``sersic``: single-band cutout -> Sérsic index and effective radius, by an
encoder–decoder (the seed work's autoencoder with a regression head on its bottleneck).

The encoder (`galcat.models.nets.small_cnn`) compresses the cutout to a feature
vector; a decoder (`galcat.models.nets.ConvDecoder`) reconstructs the
normalised, PSF-convolved cutout from it, and a Gaussian head on the same
features predicts log10 n and log10 r_e with their uncertainties. The loss is
the regression loss of `galcat.models.registry.regression_loss` plus
``reconstruction_weight`` times the mean squared reconstruction error (in the
normalised units of the input): the reconstruction makes the bottleneck keep
the light profile, which is what n is, where the labels alone are noisy.

Targets: the survey's ``truth_sersic_n`` (the index of the single circular
Sérsic profile with the galaxy's r80/r20 concentration) and ``truth_r50_r``
(the true circular half-light radius, arcsec); with ``models.<name>.injections``
also single-Sérsic injections, whose index is exact (`galcat.models.injections`). Baseline: the Sérsic fit of
`measure` (``sersic_n``; ``sersic_r_eff * sqrt(sersic_q)``, circularised),
which fails (NaN) for some faint galaxies; the network predicts every galaxy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from galcat.models import scores
from galcat.models.nets import ConvDecoder
from galcat.models.registry import Family, GaussianHead, Output, register, regression_loss

__all__ = ["RECON_OUTPUT", "ReconstructingHead", "Sersic", "reconstruction_error"]

#: Output column of the per-object reconstruction error (families with a decoder).
RECON_OUTPUT = Output(
    "recon_mse", "", "mean squared error of the network's reconstruction of the cutout, in "
    "the normalised (asinh-stretched, standardised) pixel units of its input", error=False)
#: Isophotal S/N bin edges of the scores.
SNR_EDGES = (20.0,)
_LN10 = float(np.log(10.0))


def reconstruction_error(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-object mean squared error ``(n,)`` of a reconstruction."""
    return ((recon - target) ** 2).flatten(1).mean(1)


class ReconstructingHead(nn.Module):
    """`GaussianHead` on the features plus a `ConvDecoder` that reconstructs the input.

    Returns ``{"mean", "std", "recon"}`` (``recon``: ``(n, band, size, size)`` in the
    normalised input units).
    """

    def __init__(self, n_features: int, n_targets: int, *, n_bands: int, size: int,
                 width: int, reconstruction_weight: float = 1.0) -> None:
        super().__init__()
        self.reconstruction_weight = float(reconstruction_weight)
        self.gauss = GaussianHead(n_features, n_targets)
        self.decoder = ConvDecoder(n_features, n_bands, size, width=width)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**self.gauss(features), "recon": self.decoder(features)}


class Sersic(Family):
    name = "sersic"
    calibrates_std = True
    fits_point_estimate = True
    summary = "single-band cutout -> Sersic n and r_e (encoder-decoder, Gaussian)"
    label_columns = ("truth_sersic_n", "truth_r50_r")
    # an injected single Sersic's index is exact: n itself, and its circular r50
    injection_labels = {"truth_sersic_n": "truth_n", "truth_r50_r": "truth_r50"}

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        y = table[list(self.label_columns)].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(y > 0, np.log10(y), np.nan)

    def head(self, n_features: int, n_targets: int, *, settings: Mapping, n_bands: int,
             size: int) -> nn.Module:
        return ReconstructingHead(n_features, n_targets, n_bands=n_bands, size=size,
                                  width=int(settings["width"]),
                                  reconstruction_weight=float(settings["reconstruction_weight"]))

    def loss(self, out, target, batch, net) -> torch.Tensor:
        recon = reconstruction_error(out["recon"], net.normalise(batch["image"])).mean()
        return regression_loss(out["mean"], out["std"], target, scale=net.loss_scale,
                               point_estimate=net.point_estimate,
                               huber_delta=net.huber_delta) + \
            net.head.reconstruction_weight * recon

    def outputs(self, settings=None) -> list[Output]:
        return [
            Output("sersic_n", "", "Sersic index predicted by the encoder-decoder from the "
                   "cutout (median of its log-normal prediction); _err is the 1-sigma width"),
            Output("r_e", "arcsec", "circular half-light radius predicted by the "
                   "encoder-decoder (median of its log-normal prediction); _err is the "
                   "1-sigma width"),
            RECON_OUTPUT,
        ]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        n, r = 10.0 ** mean[:, 0], 10.0 ** mean[:, 1]
        return {"sersic_n": n, "sersic_n_err": _LN10 * std[:, 0] * n,
                "r_e": r, "r_e_err": _LN10 * std[:, 1] * r}

    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        test = data.table.loc[data.test]
        q = test["sersic_q"].to_numpy(np.float64)
        return {"measure_fit": {
            "sersic_n": test["sersic_n"].to_numpy(np.float64),
            "r_e": test["sersic_r_eff"].to_numpy(np.float64) * np.sqrt(q)}}

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        test = data.table.loc[data.test]
        n_true = test["truth_sersic_n"].to_numpy(np.float64)
        r_true = test["truth_r50_r"].to_numpy(np.float64)
        snr = test[data.snr_column].to_numpy(np.float64)
        out: dict = {"snr_column": data.snr_column, "snr_edges": list(SNR_EDGES)}
        for name, pred in predictions.items():
            n = np.asarray(pred["sersic_n"], np.float64)
            fn = scores.fractional_error(n, n_true)
            fr = scores.fractional_error(np.asarray(pred["r_e"], np.float64), r_true)
            entry = {"median_abs_frac_error_n": scores.median_abs(fn),
                     "median_abs_frac_error_n_snr_gt_20": scores.median_abs(fn[snr > 20]),
                     "median_abs_frac_error_n_snr_lt_20": scores.median_abs(fn[snr <= 20]),
                     "bias_frac_n": scores.median(fn),
                     "median_abs_frac_error_r_e": scores.median_abs(fr),
                     "n_by_snr": scores.binned(np.abs(fn), snr, SNR_EDGES, scores.median)}
            if "sersic_n_err" in pred:
                sig_n = np.asarray(pred["sersic_n_err"]) / (_LN10 * n)
                r = np.asarray(pred["r_e"], np.float64)
                sig_r = np.asarray(pred["r_e_err"]) / (_LN10 * r)
                entry["coverage_68_n"] = scores.coverage(np.log10(n), sig_n, np.log10(n_true))
                entry["coverage_68_r_e"] = scores.coverage(np.log10(r), sig_r, np.log10(r_true))
            out[name] = entry
        return out


register(Sersic())
