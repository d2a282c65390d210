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

``measure.priors: calibrate_mixture`` describes the shard's galaxies as a mixture of
types (`mixture_priors`): the bright galaxies' prior-free structure and B/T are fitted
by a Gaussian mixture of up to `MAX_COMPONENTS` components (diagonal; each point's own
fit error deconvolved, Bovy et al. 2011's extreme deconvolution; the Bayesian
information criterion decides how many, each with at least `MIN_COMPONENT_GALAXIES`
members), and every galaxy is fitted once per component
(`galcat.bulgedisc.PriorComponent`), keeping the most probable. One prior for all types
sits between a bulge-dominated galaxy and a disc and pulls both towards it; the
mixture lets each be pulled towards its own kind.

The values used are returned with the features (``DataFrame.attrs["priors"]``) and
written into the features table's metadata (`galcat.stages.run_measure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from galcat.metrics import nmad

__all__ = ["MAX_COMPONENTS", "SD_FLOOR", "calibrated_priors", "index_prior", "isophotal_snr",
           "mixture_priors"]

#: Smallest width of a calibrated prior, per key (log_ratio, log_r_disc, log_n: dex;
#: colour: mag).
SD_FLOOR: dict[str, float] = {"log_ratio": 0.05, "n_bulge": 0.3, "q_bulge": 0.05,
                              "q_disc": 0.05, "log_r_disc": 0.05, "colour": 0.03,
                              "log_n": 0.05, "bulge_to_total": 0.05}

#: Most galaxy types of a mixture prior (``measure.priors: calibrate_mixture``). On the
#: science survey's shards (250 bright galaxies) the information criterion mostly takes
#: three: discs, bulge-dominated galaxies, and the blends and intermediates between them,
#: which a two-type mixture puts in the bulge-dominated type (its B/T then 0.65 ± 0.20
#: against the early types' true 0.74 ± 0.14).
MAX_COMPONENTS = 3
#: Fewest bright galaxies (effective, the sum of memberships) of a mixture component:
#: types calibrated on fewer (a shard of 80 galaxies with 33-51 bright ones) were wide
#: enough to pass discs off as bulges at S/N < 40, worse than one prior for all.
MIN_COMPONENT_GALAXIES = 20


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


def mixture_priors(
    fits: Sequence[Mapping[str, float]],
    *,
    keys: Sequence[str],
    min_galaxies: int,
    max_components: int = MAX_COMPONENTS,
    iterations: int = 200,
) -> list[dict] | None:
    """A mixture prior of galaxy types from the prior-free bulge + disc fits of bright
    galaxies.

    Parameters
    ----------
    fits : sequence of mapping
        One per bright galaxy: the structure (`galcat.bulgedisc.PARAMETERS` keys),
        ``bulge_to_total`` (detection band), and each one's 1-sigma error under
        ``<key>_err`` (NaN: the median error of that key is used).
    keys : sequence of str
        Structure parameters of each component (those of the configured priors);
        ``bulge_to_total`` is always added.
    min_galaxies : int
        Fewest fits with finite values; fewer gives None.
    max_components : int
        Most components (default `MAX_COMPONENTS`); the Bayesian information criterion
        picks how many among the numbers whose every component has at least
        `MIN_COMPONENT_GALAXIES` effective members (one component always qualifies).
    iterations : int
        Most EM iterations per number of components.

    Returns
    -------
    list of dict or None
        One dict per component, ordered by mean B/T: ``weight``, ``priors`` (``{key:
        (mean, sd)}``) and ``bulge_to_total`` (``(mean, sd)``); each sd is the
        component's intrinsic spread, at least `SD_FLOOR`. None with too few fits.
        Deterministic (the split starts at the median B/T). Cost: a few ms.
    """
    names = [*keys, "bulge_to_total"]
    shape = (len(fits), len(names))
    values = np.array([[f.get(k, np.nan) for k in names] for f in fits],
                      dtype=np.float64).reshape(shape)
    errors = np.array([[f.get(f"{k}_err", np.nan) for k in names] for f in fits],
                      dtype=np.float64).reshape(shape)
    ok = np.isfinite(values).all(axis=1)
    values, errors = values[ok], errors[ok]
    if len(values) < min_galaxies:
        return None
    for j in range(len(names)):  # a missing or unusable error: the key's median one
        good = np.isfinite(errors[:, j]) & (errors[:, j] >= 0)
        errors[~good, j] = np.median(errors[good, j]) if good.any() else 0.0
    floor = np.array([SD_FLOOR[k] for k in names])
    best = None
    for n_comp in range(1, max_components + 1):
        found = _extreme_deconvolution(values, errors ** 2, floor, n_comp, iterations)
        if found is None:
            continue
        weights, means, variances, loglike = found
        if n_comp > 1 and (weights * len(values)).min() < MIN_COMPONENT_GALAXIES:
            continue
        n_par = n_comp * 2 * len(names) + n_comp - 1
        bic = -2.0 * loglike + n_par * np.log(len(values))
        if best is None or bic < best[0]:
            best = (bic, weights, means, variances)
    _, weights, means, variances = best
    order = np.argsort(means[:, -1])
    return [{"weight": float(weights[c]),
             "priors": {k: (float(means[c, j]), float(np.sqrt(variances[c, j])))
                        for j, k in enumerate(keys)},
             "bulge_to_total": (float(means[c, -1]), float(np.sqrt(variances[c, -1])))}
            for c in order]


def _extreme_deconvolution(x: np.ndarray, err2: np.ndarray, floor: np.ndarray,
                           n_comp: int, iterations: int):
    """EM of a Gaussian mixture with diagonal intrinsic variances ``V`` to points ``x``
    ``(n, d)`` with known noise variances ``err2`` (Bovy, Hogg & Roweis 2011, diagonal):
    each point is drawn from ``N(m_c, V_c + err2_i)``; ``V`` at least ``floor²``.
    Started from equal groups in order of the last column (B/T). Returns
    ``(weights, means, variances, log likelihood)``, or None when a component loses
    its points."""
    n = len(x)
    rank = np.argsort(np.argsort(x[:, -1], kind="stable"), kind="stable")
    resp = np.eye(n_comp)[rank * n_comp // n]  # equal groups in order of the last column
    members = resp.sum(axis=0)
    if np.any(members < 1):
        return None
    means = (resp.T @ x) / members[:, None]
    variances = np.maximum((resp.T @ x ** 2) / members[:, None] - means ** 2
                           - (resp.T @ err2) / members[:, None], floor ** 2)
    weights = members / n
    previous = -np.inf
    for _ in range(iterations):
        resp, loglike = _memberships(x, err2, weights, means, variances)
        members = resp.sum(axis=0)
        if np.any(members <= 1e-6):
            return None
        # M step of extreme deconvolution: each point's deconvolved value b and variance B
        total = variances[None] + err2[:, None, :]  # (n, comp, d)
        gain = variances[None] / total
        b = means[None] + gain * (x[:, None, :] - means[None])
        spread = variances[None] * (1.0 - gain)
        r = resp[:, :, None]
        means = (r * b).sum(axis=0) / members[:, None]
        variances = np.maximum(((r * ((b - means[None]) ** 2 + spread)).sum(axis=0)
                                / members[:, None]), floor ** 2)
        weights = members / n
        if loglike - previous < 1e-9 * abs(loglike):
            break
        previous = loglike
    _, loglike = _memberships(x, err2, weights, means, variances)
    return weights, means, variances, loglike


def _memberships(x, err2, weights, means, variances) -> tuple[np.ndarray, float]:
    """Posterior membership ``(n, comp)`` of each point in each component, and the log
    likelihood of the mixture."""
    total = variances[None] + err2[:, None, :]
    log_p = np.log(weights)[None] - 0.5 * np.sum(
        np.log(2 * np.pi * total) + (x[:, None, :] - means[None]) ** 2 / total, axis=2)
    top = log_p.max(axis=1, keepdims=True)
    resp = np.exp(log_p - top)
    norm = resp.sum(axis=1, keepdims=True)
    return resp / norm, float(np.sum(top[:, 0] + np.log(norm[:, 0])))
