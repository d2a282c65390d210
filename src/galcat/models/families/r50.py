"""``r50``: multi-band cutout -> half-stellar-mass radius (Kim et al.; GaMPEN, Ghosh et al. 2022).

The network sees every band given (all of the survey's by default: the colours
carry the mass-to-light gradient that separates the half-mass from the
half-light radius) and predicts log10 r50_mass with a Gaussian uncertainty.
Baseline: the traditional route of `measure` (image -> colour profile -> M/L ->
mass profile, ``r50_mass``), scored on the same test objects.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from galcat.models import scores
from galcat.models.registry import Family, Output, inputs_phrase, register

__all__ = ["R50", "SIZE_EDGES", "SNR_EDGES"]

#: Isophotal S/N bin edges (detection band), as in the morphology benchmarks.
SNR_EDGES = (20.0, 50.0, 200.0)
#: True half-mass radius bin edges, arcsec.
SIZE_EDGES = (1.0, 2.0, 3.0, 5.0)
_LN10 = float(np.log(10.0))


class R50(Family):
    name = "r50"
    calibrates_std = True
    fits_point_estimate = True
    summary = "multi-band cutout -> half-stellar-mass radius (log, Gaussian)"
    label_columns = ("truth_r50_mass",)

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        r = table["truth_r50_mass"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 0, np.log10(r), np.nan)[:, None]

    def outputs(self, settings=None) -> list[Output]:
        return [Output("r50_mass", "arcsec",
                       "half-stellar-mass radius (circular aperture) predicted by the network "
                       f"from the cutout{inputs_phrase(settings)} (median of its log-normal "
                       "prediction); _err is the 1-sigma width")]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        r50 = 10.0 ** mean[:, 0]
        return {"r50_mass": r50, "r50_mass_err": _LN10 * std[:, 0] * r50}

    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        test = data.table.loc[data.test]
        return {"traditional": {"r50_mass": test["r50_mass"].to_numpy(np.float64)}}

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        test = data.table.loc[data.test]
        truth = test["truth_r50_mass"].to_numpy(np.float64)
        snr = test[data.snr_column].to_numpy(np.float64)
        out: dict = {"snr_column": data.snr_column, "snr_edges": list(SNR_EDGES),
                     "size_edges_arcsec": list(SIZE_EDGES)}
        for name, pred in predictions.items():
            r = np.asarray(pred["r50_mass"], np.float64)
            frac = scores.fractional_error(r, truth)
            entry = {
                "median_abs_frac_error": scores.median_abs(frac),
                "median_abs_frac_error_snr_gt_20": scores.median_abs(frac[snr > 20]),
                "bias_frac": scores.median(frac),
                "by_snr": scores.binned(np.abs(frac), snr, SNR_EDGES, scores.median),
                "bias_by_size": scores.binned(frac, truth, SIZE_EDGES, scores.median),
            }
            if "r50_mass_err" in pred:
                sigma_log = np.asarray(pred["r50_mass_err"]) / (_LN10 * r)
                entry["coverage_68"] = scores.coverage(np.log10(r), sigma_log, np.log10(truth))
            out[name] = entry
        return out


register(R50())
