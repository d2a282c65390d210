"""Self-calibrating priors of the bulge + disc fit and the half-mass colour (issue 13).

At S/N 20–70 a bulge + disc decomposition is degenerate, and `galcat.bulgedisc` leans
on Gaussian priors on the structure (``measure.bulge_disc_priors``) and on the
bulge − disc colour (``measure.half_mass_colour_prior``). Fixed priors describe the
synthetic survey; on a population with redder bulges they pull the colour difference
towards the wrong value and the half-mass radius comes out 5–15% too large.

With ``measure.priors: calibrate`` each ``measure`` job estimates them from its own
shard (empirical Bayes): the galaxies with isophotal S/N ≥
``measure.prior_calibration.min_snr`` are fitted without priors, the priors are set
from their distribution, and then every galaxy is fitted with them
(`galcat.morphology.measure_shard`). Robust statistics (`galcat.metrics`): the mean of
each prior is the median of the bright fits, its width their NMAD; the colour width is
the NMAD with the bright fits' median measurement error removed in quadrature (the
prior describes the galaxies, not the noise of their fits). Widths have floors
(`SD_FLOOR`), so a shard of near-identical galaxies cannot pin a parameter. A shard
with fewer than ``min_galaxies`` usable bright fits keeps the fixed priors and says so.

Why per shard and not one calibration over the whole run: a ``calibrate_priors`` rule
reading every shard would make every ``measure`` job depend on every other shard, so a
nightly run that adds shards would re-measure the finished ones (their priors moved),
and the DAG would gain an all-to-one-to-all edge. Per shard, the DAG is unchanged, a
shard's features depend only on its own galaxies, and a shard of 200 galaxies with a
few dozen bright ones pins a median to ~0.2 of the population's width.

``measure.sersic_n_prior: calibrate`` does the same for the single Sérsic fit's index
(`index_prior`): a Gaussian prior on log10 n from the bright galaxies' prior-free fits.
At S/N 20–50 the maximum-likelihood index is at its Cramér–Rao error, 15–25%; the prior
is what brings it down, at the price of pulling faint indices towards the bright ones'
median (the user guide says when that is wanted).

The values used are returned with the features (``DataFrame.attrs["priors"]``) and
written into the features table's metadata (`galcat.stages.run_measure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from galcat.metrics import nmad

__all__ = ["SD_FLOOR", "calibrated_priors", "index_prior", "isophotal_snr"]

#: Smallest width of a calibrated prior, per key (log_ratio, log_r_disc, log_n: dex;
#: colour: mag).
SD_FLOOR: dict[str, float] = {"log_ratio": 0.05, "n_bulge": 0.3, "q_bulge": 0.05,
                              "q_disc": 0.05, "log_r_disc": 0.05, "colour": 0.03,
                              "log_n": 0.05}


def isophotal_snr(image: np.ndarray, sigma: np.ndarray, segmap: np.ndarray) -> np.ndarray:
    """Isophotal S/N of label 1 of each object: ``sum(image) / sqrt(sum(sigma²))``.

    ``image``, ``sigma``: ``(n, y, x)`` of one band (sky-subtracted); ``segmap``
    ``(n, y, x)``. Non-finite pixels count as 0; NaN for an object without label 1.
    """
    central = np.asarray(segmap) == 1
    img = np.where(central, np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0)
    var = np.where(central, np.nan_to_num(np.asarray(sigma, dtype=np.float64)) ** 2, 0.0)
    flux = img.sum(axis=(1, 2))
    noise = np.sqrt(var.sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(noise > 0, flux / noise, np.nan)


def calibrated_priors(
    fits: Sequence[Mapping[str, float]],
    *,
    keys: Sequence[str],
    colour: bool,
    min_galaxies: int,
) -> tuple[dict[str, tuple[float, float]] | None, tuple[float, float] | None, int]:
    """Priors from the prior-free bulge + disc fits of bright galaxies.

    Parameters
    ----------
    fits : sequence of mapping
        One per bright galaxy with a fit: the structure (`galcat.bulgedisc.PARAMETERS`
        keys) and ``colour_delta``, ``colour_delta_err`` (mag, the bulge − disc colour
        of the M/L relation and its error).
    keys : sequence of str
        Structure parameters to calibrate (those of the configured priors).
    colour : bool
        Calibrate the colour prior too.
    min_galaxies : int
        Fewest fits with finite values for a prior; fewer gives None.

    Returns
    -------
    (structure priors or None, colour prior or None, number of fits used)
        ``{key: (median, max(NMAD, floor))}`` and ``(median, width)``; None where fewer
        than ``min_galaxies`` fits have finite values. Cost: negligible.
    """
    structure: dict[str, tuple[float, float]] = {}
    used = 0
    for key in keys:
        values = np.array([f.get(key, np.nan) for f in fits], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size < min_galaxies:
            structure = {}
            break
        used = max(used, int(values.size))
        structure[key] = (float(np.median(values)),
                          float(max(nmad(values), SD_FLOOR[key])))
    colour_prior = None
    if colour:
        delta = np.array([f.get("colour_delta", np.nan) for f in fits], dtype=np.float64)
        err = np.array([f.get("colour_delta_err", np.nan) for f in fits], dtype=np.float64)
        ok = np.isfinite(delta) & np.isfinite(err)
        if ok.sum() >= min_galaxies:
            used = max(used, int(ok.sum()))
            spread2 = nmad(delta[ok]) ** 2 - float(np.median(err[ok])) ** 2
            colour_prior = (float(np.median(delta[ok])),
                            float(max(np.sqrt(max(spread2, 0.0)), SD_FLOOR["colour"])))
    return (structure or None), colour_prior, used


def index_prior(n: np.ndarray, n_err: np.ndarray, *, min_galaxies: int
                ) -> tuple[float, float] | None:
    """Gaussian prior ``(mean, sd)`` on log10 n from the prior-free Sérsic fits of bright
    galaxies.

    Parameters
    ----------
    n, n_err : arrays
        Fitted indices and their 1-sigma errors (``sersic_n``, ``sersic_n_err``); fits
        with a non-finite or non-positive value are left out.
    min_galaxies : int
        Fewest usable fits; fewer gives None.

    Returns
    -------
    (mean, sd) or None
        The median of log10 n, and the NMAD of log10 n with the fits' median error (in
        dex) removed in quadrature, at least ``SD_FLOOR["log_n"]``: the prior describes
        the galaxies, not the noise of their fits. Cost: negligible.
    """
    n = np.asarray(n, dtype=np.float64)
    n_err = np.asarray(n_err, dtype=np.float64)
    ok = np.isfinite(n) & np.isfinite(n_err) & (n > 0) & (n_err > 0)
    if ok.sum() < min_galaxies:
        return None
    log_n = np.log10(n[ok])
    err = n_err[ok] / (n[ok] * np.log(10.0))
    spread2 = nmad(log_n) ** 2 - float(np.median(err)) ** 2
    return float(np.median(log_n)), float(max(np.sqrt(max(spread2, 0.0)), SD_FLOOR["log_n"]))
