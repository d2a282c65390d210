"""``metallicity``: colour cutout -> gas-phase 12 + log(O/H) (Wu & Boada 2019).

Wu & Boada's CNN read the metallicity of SDSS galaxies from gri images to
0.085 dex, against 0.10 dex for the mass–metallicity relation (MZR) at the
galaxy's mass. Here the network sees the bands of its ``bands`` setting and,
by default, the redshift (``inputs: [z]``: the fluxes become luminosities, so
the network can follow the MZR in mass instead of regressing to the mean
metallicity), and predicts 12 + log(O/H) with a Gaussian uncertainty. Labels: the synthetic truth,
or SDSS's MPA-JHU ``oh_p50`` with its error (half the 16th-84th percentile range,
`galcat.labels`), used in the loss (the likelihood's variance is the network's
width squared plus the label's error squared; least squares weighted by inverse
variance) and in the scores (error-weighted RMSE, chi-square, coverage against
the combined width). Baselines: the mean label of the training split, the MZR
at the galaxy's stellar mass (``truth_log_mass``: the synthetic truth, or the
MPA-JHU mass on SDSS) and a random forest on the `measure` features, the
isophotal colours and the model's per-object inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from galcat.labels import ERROR_COLUMN
from galcat.models import baselines, scores
from galcat.models.registry import Family, Output, register, regression_loss

__all__ = ["MASS_COLUMN", "Metallicity"]

#: Object-table column of the stellar mass the MZR baseline is evaluated at.
MASS_COLUMN = "truth_log_mass"


class Metallicity(Family):
    name = "metallicity"
    calibrates_std = True
    fits_point_estimate = True
    summary = "colour cutout -> gas-phase 12 + log(O/H) (Gaussian)"
    label_columns = ("truth_metallicity",)

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        return table["truth_metallicity"].to_numpy(np.float64)[:, None]

    def loss(self, out, target, batch, net) -> torch.Tensor:
        """`regression_loss` with the label's measurement error (standardised) where known."""
        err = batch.get(ERROR_COLUMN)
        if err is not None and bool(torch.isfinite(err).any()):
            err = err[:, None] / net.target_std
        else:
            err = None
        return regression_loss(out["mean"], out["std"], target, scale=net.loss_scale, error=err,
                               point_estimate=net.point_estimate,
                               huber_delta=net.huber_delta)

    def outputs(self, settings=None) -> list[Output]:
        extra = " and the redshift" if "z" in ((settings or {}).get("inputs") or ()) else ""
        return [Output("metallicity", "dex",
                       "gas-phase metallicity 12 + log10(O/H) predicted by the network from the "
                       f"cutout{extra}; _err is the 1-sigma width")]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        return {"metallicity": mean[:, 0], "metallicity_err": std[:, 0]}

    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        test = data.table.loc[data.test]
        y = self.targets(data.table.loc[data.train])
        out = {"mean_label": {"metallicity": baselines.mean_predictor(y, len(test))[:, 0]}}
        if MASS_COLUMN in test.columns:
            out["mzr"] = {"metallicity": baselines.mzr_at_mass(
                test[MASS_COLUMN].to_numpy(), relation=data.context.get("mzr_relation",
                                                                          "tremonti2004"))}
        out["random_forest"] = {"metallicity": data.random_forest(y)[:, 0]}
        return out

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        test = data.table.loc[data.test]
        truth = self.targets(test)[:, 0]
        err = (test[ERROR_COLUMN].to_numpy(np.float64) if ERROR_COLUMN in test.columns
               else np.full(len(test), np.nan))
        measured = np.isfinite(err) & (err > 0)
        out: dict = {}
        if measured.any():
            out["label_error_median_dex"] = scores.median(err[measured])
        scatter = data.context.get("mzr_scatter_dex")
        if scatter:
            out["mzr_intrinsic_scatter_dex"] = float(scatter)
        for name, pred in predictions.items():
            z = np.asarray(pred["metallicity"], np.float64)
            entry = {"rmse_dex": scores.rmse(z, truth), "bias_dex": scores.median(z - truth),
                     "nmad_dex": scores.nmad(z - truth)}
            if scatter:
                entry["rmse_over_intrinsic_scatter"] = entry["rmse_dex"] / float(scatter)
            sigma = np.asarray(pred.get("metallicity_err", np.zeros(len(z))), np.float64)
            if "metallicity_err" in pred:
                # against a measured label the prediction's width adds to the label's error
                total = np.hypot(sigma, np.where(measured, err, 0.0))
                entry["coverage_68"] = scores.coverage(z, total, truth)
            if measured.any():
                entry["rmse_weighted_dex"] = scores.weighted_rmse(
                    z[measured], truth[measured], 1.0 / err[measured] ** 2)
                r = z[measured] - truth[measured]
                ok = np.isfinite(r)
                var = sigma[measured] ** 2 + err[measured] ** 2
                entry["chi2_per_object"] = (float(np.mean(r[ok] ** 2 / var[ok])) if ok.any()
                                            else float("nan"))
            out[name] = entry
        return out


register(Metallicity())
