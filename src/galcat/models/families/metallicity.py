"""``metallicity``: colour cutout -> gas-phase 12 + log(O/H) (Wu & Boada 2019).

Wu & Boada's CNN read the metallicity of SDSS galaxies from gri images to
0.085 dex, against 0.10 dex for the mass–metallicity relation (MZR) at the
galaxy's mass. Here the network sees the bands of its ``bands`` setting and
predicts 12 + log(O/H) with a Gaussian uncertainty. Baselines: the MZR at the
galaxy's stellar mass (``truth_log_mass`` in the synthetic survey, so the MZR's
intrinsic scatter is its error) and a random forest on the `measure` features
and the isophotal colours.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from galcat.models import baselines, scores
from galcat.models.registry import Family, Output, register

__all__ = ["MASS_COLUMN", "Metallicity"]

#: Object-table column of the stellar mass the MZR baseline is evaluated at.
MASS_COLUMN = "truth_log_mass"


class Metallicity(Family):
    name = "metallicity"
    summary = "colour cutout -> gas-phase 12 + log(O/H) (Gaussian)"
    label_columns = ("truth_metallicity",)

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        return table["truth_metallicity"].to_numpy(np.float64)[:, None]

    def outputs(self, settings=None) -> list[Output]:
        return [Output("metallicity", "dex",
                       "gas-phase metallicity 12 + log10(O/H) predicted by the network from the "
                       "cutout; _err is the 1-sigma width")]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        return {"metallicity": mean[:, 0], "metallicity_err": std[:, 0]}

    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        test = data.table.loc[data.test]
        out = {}
        if MASS_COLUMN in test.columns:
            out["mzr"] = {"metallicity": baselines.mzr_at_mass(
                test[MASS_COLUMN].to_numpy(), relation=data.context.get("mzr_relation",
                                                                          "tremonti2004"))}
        y = self.targets(data.table.loc[data.train])
        out["random_forest"] = {"metallicity": data.random_forest(y)[:, 0]}
        return out

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        truth = self.targets(data.table.loc[data.test])[:, 0]
        out: dict = {}
        scatter = data.context.get("mzr_scatter_dex")
        if scatter:
            out["mzr_intrinsic_scatter_dex"] = float(scatter)
        for name, pred in predictions.items():
            z = np.asarray(pred["metallicity"], np.float64)
            entry = {"rmse_dex": scores.rmse(z, truth), "bias_dex": scores.median(z - truth),
                     "nmad_dex": scores.nmad(z - truth)}
            if scatter:
                entry["rmse_over_intrinsic_scatter"] = entry["rmse_dex"] / float(scatter)
            if "metallicity_err" in pred:
                entry["coverage_68"] = scores.coverage(z, np.asarray(pred["metallicity_err"]), truth)
            out[name] = entry
        return out


register(Metallicity())
