"""Published scaling relations, as small named functions a config can select.

Each registry maps the name used in ``config/config.yaml`` to its function:

* `SIZE_MASS` — galaxy size vs stellar mass by type
  (``vanderwel2014``: van der Wel et al. 2014, ApJ 788, 28, Table 1 at z = 0.25,
  with their (1 + z) evolution of the intercept);
* `MASS_TO_LIGHT` — colour -> stellar mass-to-light ratio
  (``bell2003_gr``: Bell et al. 2003, ApJS 149, 289, Table 7, (g - r) -> M/L_r;
  ``zibetti2009_gi``: Zibetti, Charlot & Rix 2009, MNRAS 400, 1181, Table B1,
  (g - i) -> M/L_r; ``bell2003_gi``: Bell et al. 2003, Table 7, (g - i) -> M/L_i;
  ``into2013_gi``: Into & Portinari 2013, MNRAS 430, 2715, Table 3, exponential
  star-formation histories, (g - i) -> M/L_r; ``taylor2011_gi``: Taylor et al. 2011,
  MNRAS 418, 1587, eq. 7, (g - i) -> M/L_i, calibrated on GAMA galaxies);
* `MZR` — gas-phase mass–metallicity relation
  (``tremonti2004``: Tremonti et al. 2004, ApJ 613, 898, eq. 3);
* `MAIN_SEQUENCE` — star-forming main sequence
  (``renzini_peng2015``: Renzini & Peng 2015, ApJ 801, L29);
* `MASS_FUNCTION` — stellar mass function
  (``baldry2012``: Baldry et al. 2012, MNRAS 421, 621, double Schechter fit);
* `early_type_fraction` — the fraction of quenched, bulge-dominated galaxies
  rising with mass (a logistic in log M*, 50 per cent at 10^10.6 Msun,
  approximating the red fraction of Baldry et al. 2006, MNRAS 373, 469 and
  Peng et al. 2010, ApJ 721, 193).

Masses are in solar masses (``log_mass`` = log10 M*/Msun), sizes in kpc.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAIN_SEQUENCE",
    "MASS_FUNCTION",
    "MASS_TO_LIGHT",
    "MZR",
    "SIZE_MASS",
    "SUN_ABS_MAG_I",
    "SUN_ABS_MAG_R",
    "MassToLight",
    "early_type_fraction",
    "get",
    "main_sequence_renzini_peng2015",
    "mass_function_baldry2012",
    "mass_to_light",
    "mzr_tremonti2004",
    "sample_log_mass",
    "size_mass_vanderwel2014",
]

#: Absolute AB magnitude of the Sun in the SDSS r band (Willmer 2018, ApJS 236, 47).
SUN_ABS_MAG_R = 4.65
#: Absolute AB magnitude of the Sun in the SDSS i band (Willmer 2018, ApJS 236, 47).
SUN_ABS_MAG_I = 4.53


# --------------------------------------------------------------------------- size–mass
def size_mass_vanderwel2014(
    log_mass: np.ndarray, early: np.ndarray, z: np.ndarray | float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Median effective radius (kpc) and its log-normal scatter (dex).

    van der Wel et al. (2014), Table 1, 0 < z < 0.5 bin (z = 0.25):
    ``r_eff / kpc = A (M* / 5e10 Msun)^alpha`` with
    early types log A = 0.60, alpha = 0.75, sigma(log r) = 0.10;
    late types  log A = 0.86, alpha = 0.25, sigma(log r) = 0.16.
    The intercept is moved from z = 0.25 to ``z`` with their average size
    evolution at fixed mass, r_eff ∝ (1 + z)^-1.48 (early) and (1 + z)^-0.75 (late).

    Parameters
    ----------
    log_mass : array
        log10 M*/Msun.
    early : array of bool
    z : array or float

    Returns
    -------
    (r_eff_kpc, sigma_dex)
    """
    log_mass = np.asarray(log_mass, dtype=np.float64)
    early = np.asarray(early, dtype=bool)
    z = np.asarray(z, dtype=np.float64)
    log_a = np.where(early, 0.60, 0.86)
    alpha = np.where(early, 0.75, 0.25)
    beta = np.where(early, -1.48, -0.75)
    sigma = np.where(early, 0.10, 0.16)
    log_r = log_a + alpha * (log_mass - np.log10(5e10)) + beta * np.log10((1 + z) / 1.25)
    return 10.0**log_r, sigma


SIZE_MASS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "vanderwel2014": size_mass_vanderwel2014,
}


# --------------------------------------------------------------------------- M/L
@dataclass(frozen=True)
class MassToLight:
    """A colour -> mass-to-light relation ``log10(M/L_band) = a + b (blue - red)``.

    Attributes
    ----------
    name : str
    blue, red : str
        Bands of the colour (AB magnitudes).
    band : str
        Band of the luminosity the ratio refers to.
    a, b : float
    reference : str
    scatter_dex : float
        Scatter of the true log M/L about the relation at fixed colour (dex): ~0.1 dex
        for optical colours (Bell et al. 2003, Sect. 4; Roediger & Courteau 2015, MNRAS
        452, 3209); the floor of a photometric stellar mass's error.
    """

    name: str
    blue: str
    red: str
    band: str
    a: float
    b: float
    reference: str
    scatter_dex: float = 0.1

    @property
    def colour_bands(self) -> tuple[str, str]:
        return self.blue, self.red

    @property
    def bands(self) -> tuple[str, ...]:
        """Every band the relation needs: the colour's and the luminosity's, once each."""
        return tuple(dict.fromkeys((self.blue, self.red, self.band)))

    def log_ml(self, colour: np.ndarray) -> np.ndarray:
        """log10 of M/L in solar units for the colour ``blue - red`` (AB mag)."""
        return self.a + self.b * np.asarray(colour, dtype=np.float64)


MASS_TO_LIGHT: dict[str, MassToLight] = {
    "bell2003_gr": MassToLight(
        "bell2003_gr",
        "g",
        "r",
        "r",
        -0.306,
        1.097,
        "Bell, McIntosh, Katz & Weinberg 2003, ApJS 149, 289, Table 7",
    ),
    "zibetti2009_gi": MassToLight(
        "zibetti2009_gi",
        "g",
        "i",
        "r",
        -0.977,
        1.157,
        "Zibetti, Charlot & Rix 2009, MNRAS 400, 1181, Table B1",
    ),
    # Bell & de Jong (2001, ApJ 550, 212) give Johnson-Cousins colours only (B - R,
    # V - I, ...); their models in SDSS bands are Bell et al. (2003), whose g - i row
    # of Table 7 this is (diet-Salpeter IMF, as bell2003_gr).
    "bell2003_gi": MassToLight(
        "bell2003_gi",
        "g",
        "i",
        "i",
        -0.152,
        0.518,
        "Bell, McIntosh, Katz & Weinberg 2003, ApJS 149, 289, Table 7 (the SDSS form of "
        "Bell & de Jong 2001, ApJ 550, 212)",
    ),
    # Kroupa IMF, exponential star-formation histories (their disc-template fit is
    # -0.702 + 1.098 (g - i))
    "into2013_gi": MassToLight(
        "into2013_gi",
        "g",
        "i",
        "r",
        -0.652,
        1.005,
        "Into & Portinari 2013, MNRAS 430, 2715, Table 3 (exponential SFH)",
    ),
    # Chabrier IMF; empirically calibrated on GAMA, scatter ~0.1 dex
    "taylor2011_gi": MassToLight(
        "taylor2011_gi",
        "g",
        "i",
        "i",
        -0.68,
        0.70,
        "Taylor et al. 2011, MNRAS 418, 1587, eq. 7",
    ),
}


def mass_to_light(name: str) -> MassToLight:
    """The colour -> M/L relation called ``name`` (a clear error if unknown)."""
    return get(MASS_TO_LIGHT, name, "mass_to_light")


# --------------------------------------------------------------------------- MZR
def mzr_tremonti2004(log_mass: np.ndarray) -> np.ndarray:
    """12 + log(O/H) = -1.492 + 1.847 x - 0.08026 x^2, x = log10 M*/Msun.

    Tremonti et al. (2004), eq. 3, fitted over 8.5 < x < 11.5 (SDSS star-forming
    galaxies); the intrinsic scatter (~0.1 dex) is added by the caller.
    """
    x = np.asarray(log_mass, dtype=np.float64)
    return -1.492 + 1.847 * x - 0.08026 * x**2


MZR: dict[str, Callable[[np.ndarray], np.ndarray]] = {"tremonti2004": mzr_tremonti2004}


# --------------------------------------------------------------------------- SFMS
def main_sequence_renzini_peng2015(log_mass: np.ndarray) -> tuple[np.ndarray, float]:
    """Specific star-formation rate of the main sequence (log yr^-1) and its scatter.

    Renzini & Peng (2015): log SFR = 0.76 log M* - 7.64 (z ~ 0), so
    log sSFR = -0.24 log M* - 7.64; scatter about 0.3 dex. No redshift
    evolution is applied (it is < 0.1 dex over z < 0.2).
    """
    x = np.asarray(log_mass, dtype=np.float64)
    return -0.24 * x - 7.64, 0.3


MAIN_SEQUENCE: dict[str, Callable[[np.ndarray], tuple[np.ndarray, float]]] = {
    "renzini_peng2015": main_sequence_renzini_peng2015,
}


def early_type_fraction(log_mass: np.ndarray, *, pivot: float = 10.6, width: float = 0.25):
    """Fraction of early (quenched, bulge-dominated) galaxies at ``log_mass``.

    A logistic rising with mass, 50 per cent at 10^10.6 Msun, approximating the
    red-sequence fraction of Baldry et al. (2006) and Peng et al. (2010).
    """
    x = np.asarray(log_mass, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(x - pivot) / width))


# --------------------------------------------------------------------------- mass function
def mass_function_baldry2012(log_mass: np.ndarray) -> np.ndarray:
    """Galaxy stellar mass function, number per Mpc^3 per dex (h = 0.7).

    Baldry et al. (2012), GAMA double Schechter fit: log M* = 10.66,
    phi1 = 3.96e-3, alpha1 = -0.35, phi2 = 0.79e-3, alpha2 = -1.47 (per Mpc^3).
    """
    x = 10.0 ** (np.asarray(log_mass, dtype=np.float64) - 10.66)
    return np.log(10.0) * np.exp(-x) * (3.96e-3 * x ** (1 - 0.35) + 0.79e-3 * x ** (1 - 1.47))


MASS_FUNCTION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "baldry2012": mass_function_baldry2012,
}


def sample_log_mass(
    rng: np.random.Generator, n: int, lo: float, hi: float, name: str = "baldry2012"
) -> np.ndarray:
    """Draw ``n`` values of log10 M* in [lo, hi] from the mass function ``name``.

    Inverse-CDF sampling on a 2001-point grid (exact to < 1e-4 dex).
    """
    phi = get(MASS_FUNCTION, name, "mass_function")
    if not hi > lo:
        raise ValueError(f"log_mass range must have max > min; got [{lo}, {hi}]")
    grid = np.linspace(lo, hi, 2001)
    pdf = phi(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid)


def get(registry: dict, name: str, what: str):
    """``registry[name]`` with an error that lists the known names."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(
            f"unknown {what} relation {name!r}; known: {', '.join(sorted(registry))}"
        ) from None
