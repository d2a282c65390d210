"""Other populations for injection–recovery: the synthetic galaxies, changed where the
measurement leans on the defaults (issue 13).

The measurement's priors and the half-mass route were tuned on the synthetic survey, so
scoring them only there flatters them. A `Population` redraws, for every galaxy the
survey renders, what the defaults fix: the bulge − disc colour difference (the colour
gradient that separates the half-mass from the half-light radius), the bulge Sérsic
index, the bulge/disc size ratio, the overall size, and the colour → M/L relation of
the truth mass map. `apply_population` rewrites the truth rows (fluxes per band,
radii, masses) and `galcat.validation.recovery.recovery_table` renders them with the
survey's own renderer, which draws every galaxy from its truth columns.

What changes, per galaxy (each draw seeded by (seed, object_id, what), so a population
is the same galaxies whatever else is drawn):

* ``bulge_disc_gr`` (lo, hi): the bulge − disc g − r is set to U(lo, hi) mag by
  reddening the bulge along the survey's old − young colour vector (every band moves,
  the r-band flux stays, so B/T in r and the r-band radii do not change);
* ``n_bulge`` (lo, hi): bulge index U(lo, hi) on the survey's 0.1 grid;
* ``size_ratio`` (lo, hi): bulge/disc half-light radius ratio U(lo, hi);
* ``size_scale`` (lo, hi): both radii times a log-uniform factor;
* ``mass_to_light``: the relation (`galcat.relations.MASS_TO_LIGHT`) whose M/L the
  truth mass map uses (an M/L_i relation weighs the i-band light), also the
  measurement's unless the caller sets ``measure.mass_to_light``;
* ``dim_max``: the galaxies are dimmed by U(0, dim_max) mag
  (`galcat.validation.recovery.dim_population`) to reach S/N ~10.

Galaxies whose r80 no longer fits the cutout are shrunk to fit and marked
``truth_size_clipped`` (not isolated), as the survey does. Every truth radius is
recomputed with the survey's enclosed-light tables (`synthetic.circular_radius`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from galcat import relations
from galcat.surveys import synthetic

__all__ = ["POPULATIONS", "Population", "apply_population", "load_population"]


@dataclass(frozen=True)
class Population:
    """Ranges a population draws instead of the synthetic survey's (None: as drawn).

    Attributes
    ----------
    name : str
    bulge_disc_gr : (float, float) or None
        Bulge − disc g − r (mag), uniform.
    n_bulge : (float, float) or None
        Bulge Sérsic index, uniform (0.5 to 6.2, GalSim's range).
    size_ratio : (float, float) or None
        Bulge / disc half-light radius, uniform (at most 1).
    size_scale : (float, float) or None
        Factor on both radii, log-uniform.
    mass_to_light : str or None
        Colour → M/L relation of the truth mass map.
    dim_max : float or None
        Dimming U(0, dim_max) mag (None: the caller's).
    description : str
    """

    name: str
    bulge_disc_gr: tuple[float, float] | None = None
    n_bulge: tuple[float, float] | None = None
    size_ratio: tuple[float, float] | None = None
    size_scale: tuple[float, float] | None = None
    mass_to_light: str | None = None
    dim_max: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        bounds = {"bulge_disc_gr": (-1.0, 1.5), "n_bulge": (0.5, 6.2),
                  "size_ratio": (0.05, 1.0), "size_scale": (0.2, 5.0)}
        for key, (lo_ok, hi_ok) in bounds.items():
            value = getattr(self, key)
            if value is None:
                continue
            if len(value) != 2 or not lo_ok <= value[0] <= value[1] <= hi_ok:
                raise ValueError(f"population {self.name!r}: {key} must be [lo, hi] with "
                                 f"{lo_ok} <= lo <= hi <= {hi_ok}; got {value!r}")
        if self.mass_to_light is not None:
            relations.mass_to_light(self.mass_to_light)  # a clear error if unknown
        if self.dim_max is not None and not 0 <= self.dim_max <= 6:
            raise ValueError(f"population {self.name!r}: dim_max must be in [0, 6] mag; "
                             f"got {self.dim_max!r}")


#: Named populations (``bench/morphology_recovery.py --population NAME``).
POPULATIONS: dict[str, Population] = {
    "steep_gradients": Population(
        "steep_gradients", bulge_disc_gr=(0.0, 0.4), n_bulge=(1.0, 6.0),
        size_ratio=(0.1, 0.7), size_scale=(0.7, 1.4), mass_to_light="taylor2011_gi",
        dim_max=3.5,
        description="bulge - disc g - r U(0, 0.4) mag, bulge n U(1, 6), bulge/disc size "
                    "U(0.1, 0.7), sizes x 0.7-1.4, Taylor et al. 2011 M/L_i, dimmed by up "
                    "to 3.5 mag (S/N ~10-500)"),
}


def load_population(spec: str | Path) -> Population:
    """A `POPULATIONS` name or a YAML file of `Population` fields (``name`` optional)."""
    if str(spec) in POPULATIONS:
        return POPULATIONS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"population {str(spec)!r} is neither a file nor one of "
                         f"{sorted(POPULATIONS)}")
    data = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in fields(Population)}
    if not isinstance(data, dict) or set(data) - known:
        raise ValueError(f"{path}: population keys must be among {sorted(known)}; got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    data.setdefault("name", path.stem)
    for key in ("bulge_disc_gr", "n_bulge", "size_ratio", "size_scale"):
        if data.get(key) is not None:
            data[key] = tuple(float(x) for x in data[key])
    return Population(**data)


def _uniform(oids: np.ndarray, seed: int, what: int, lo: float, hi: float) -> np.ndarray:
    return np.array([np.random.default_rng([int(seed), 0x505, what, int(o)]).uniform(lo, hi)
                     for o in oids])


def _redden_bulges(out: pd.DataFrame, bands: Mapping, target: np.ndarray) -> None:
    """Set bulge − disc g − r to ``target`` by moving the bulge along old − young."""
    def colour(comp: str, band: str) -> np.ndarray:
        return -2.5 * np.log10(out[f"truth_flux_{comp}_{band}"].to_numpy(np.float64)
                               / out[f"truth_flux_{comp}_r"].to_numpy(np.float64))

    current = colour("bulge", "g") - colour("disc", "g")
    step = (target - current) / (bands["g"].old - bands["g"].young)
    for k, band in bands.items():
        col = f"truth_flux_bulge_{k}"
        out[col] = out[col].to_numpy(np.float64) * 10.0 ** (-0.4 * step * (band.old - band.young))
    out["truth_gr_bulge"] = out["truth_gr_disc"].to_numpy(np.float64) + target


def _masses(out: pd.DataFrame, relation: str) -> None:
    """Truth M/L, bulge mass fraction and mass of each galaxy under ``relation``: each
    component's M/L from its colour times its light in the relation's band."""
    rel = relations.mass_to_light(relation)
    sun = {"r": relations.SUN_ABS_MAG_R, "i": relations.SUN_ABS_MAG_I}
    if rel.band not in sun:
        raise ValueError(f"relation {relation!r}: no solar magnitude for band {rel.band!r}")
    old = sum(10.0 ** out[f"truth_log_ml_{c}"].to_numpy(np.float64)
              * out[f"truth_flux_{c}_r"].to_numpy(np.float64) for c in ("bulge", "disc"))
    mass = {}
    for comp in ("bulge", "disc"):
        f = {b: out[f"truth_flux_{comp}_{b}"].to_numpy(np.float64) for b in rel.bands}
        log_ml = rel.log_ml(-2.5 * np.log10(f[rel.blue] / f[rel.red]))
        out[f"truth_log_ml_{comp}"] = log_ml
        # solar luminosities per flux unit differ by band: 10^(0.4 M_sun)
        mass[comp] = 10.0**log_ml * f[rel.band] * 10.0 ** (0.4 * (sun[rel.band] - sun["r"]))
    total = mass["bulge"] + mass["disc"]
    out["truth_bt_mass"] = mass["bulge"] / total
    out["truth_log_mass"] = out["truth_log_mass"].to_numpy(np.float64) + np.log10(total / old)


def _radii(out: pd.DataFrame, config: Mapping) -> None:
    """Every truth radius again, shrinking galaxies whose r80 leaves the cutout."""
    syn = config["synthetic"]
    r_max = synthetic.FIT_FRACTION * 0.5 * int(syn["cutout_size"]) * float(syn["pixel_scale"])
    bands = list(synthetic.band_set(config))
    records = out.to_dict("records")
    clipped = out["truth_size_clipped"].to_numpy(bool).copy()
    cols: dict[str, list[float]] = {}
    for i, row in enumerate(records):
        r80 = synthetic.circular_radius(row, 0.8)
        if r80 > r_max:
            shrink = r_max / r80
            row["truth_r_e_bulge"] *= shrink
            row["truth_r_e_disc"] *= shrink
            clipped[i] = True
        values = {"truth_r_e_bulge": row["truth_r_e_bulge"],
                  "truth_r_e_disc": row["truth_r_e_disc"],
                  "truth_r20_r": synthetic.circular_radius(row, 0.2),
                  "truth_r80_r": synthetic.circular_radius(row, 0.8),
                  "truth_r50_mass": synthetic.circular_radius(row, 0.5, weight="mass")}
        for band in bands:
            values[f"truth_r50_{band}"] = synthetic.circular_radius(row, 0.5, weight=band)
        for key, value in values.items():
            cols.setdefault(key, []).append(float(value))
    for key, value in cols.items():
        out[key] = value
    out["truth_size_clipped"] = clipped
    out["truth_sersic_n"] = synthetic.sersic_n_from_concentration(
        out["truth_r80_r"].to_numpy(np.float64) / out["truth_r20_r"].to_numpy(np.float64))


def apply_population(rows: pd.DataFrame, population: Population, config: Mapping, *,
                     seed: int = 0) -> pd.DataFrame:
    """The synthetic ``rows`` redrawn as ``population`` (a copy; see the module docstring).

    Parameters
    ----------
    rows : DataFrame
        Object table of the synthetic survey (`galcat.surveys.synthetic.query`).
    population : Population
    config : mapping
        The whole config (its ``synthetic`` section: bands, cutout, relation).
    seed : int
        Seed of the draws (with each object id).

    Returns
    -------
    DataFrame
        The rows with the truth columns rewritten (fluxes, ``mag_*``, radii,
        ``truth_bt_mass``, ``truth_log_mass``, ``truth_log_ml_*``, ``truth_n_bulge``,
        ``truth_gr_bulge``, ``truth_sersic_n``, ``truth_size_clipped``). Cost: ~20 ms per
        galaxy (the radii).
    """
    out = rows.copy()
    oids = out["object_id"].to_numpy(np.int64)
    bands = synthetic.band_set(config)
    scale_kpc = (out["truth_r50_kpc"].to_numpy(np.float64)
                 / out["truth_r50_r"].to_numpy(np.float64))
    if population.n_bulge is not None:
        n = _uniform(oids, seed, 1, *population.n_bulge)
        out["truth_n_bulge"] = np.round(n / synthetic.N_STEP) * synthetic.N_STEP
    if population.size_ratio is not None:
        out["truth_r_e_bulge"] = (out["truth_r_e_disc"].to_numpy(np.float64)
                                  * _uniform(oids, seed, 2, *population.size_ratio))
    if population.size_scale is not None:
        lo, hi = (math.log(x) for x in population.size_scale)
        factor = np.exp(_uniform(oids, seed, 3, lo, hi))
        for col in ("truth_r_e_bulge", "truth_r_e_disc"):
            out[col] = out[col].to_numpy(np.float64) * factor
    if population.bulge_disc_gr is not None:
        _redden_bulges(out, bands, _uniform(oids, seed, 4, *population.bulge_disc_gr))
        for k in bands:
            flux = (out[f"truth_flux_bulge_{k}"].to_numpy(np.float64)
                    + out[f"truth_flux_disc_{k}"].to_numpy(np.float64))
            out[f"mag_{k}"] = 22.5 - 2.5 * np.log10(flux)
    _masses(out, population.mass_to_light or config["synthetic"]["mass_to_light"])
    _radii(out, config)
    out["truth_r50_kpc"] = out["truth_r50_r"].to_numpy(np.float64) * scale_kpc
    return out
