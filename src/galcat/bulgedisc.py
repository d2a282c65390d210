"""Bulge + disc decomposition in several bands, and the radii it gives.

A Sérsic bulge and an exponential disc, concentric and sharing one position angle,
are fitted jointly to the images of several bands, each convolved with its own PSF
(the "Ser+Exp" model of Simard et al. 2011 and Meert et al. 2015 for SDSS). The
structure (bulge n, r_e, q; disc r_e, q) is common to all bands; the two fluxes of
every band are linear parameters, solved exactly (non-negative, weighted least
squares) for every trial structure ("variable projection"), so a fit in B bands
has five non-linear parameters, not 5 + 2B. Sharing the structure is what makes
the colours of the components measurable at S/N ≈ 20: each colour comes from the
whole component, not from a noisy ring.

Two radii follow from the fit (Szomoru et al. 2010, 2013: model + residual):

* `light_radius`: the PSF-free circular curve of growth of bulge + disc (analytic,
  `galcat.sersic.circular_fraction`, the bulge cut at ``bulge_extent`` r_e)
  plus the cumulative residual (data − model ⊗ PSF) inside an aperture of
  ``extent`` circular Petrosian radii; beyond it only the model counts.
* `mass_radius`: the traditional route with a resolved colour: each component's
  colour gives its M/L through the colour–M/L relation, so the stellar-mass map is
  ``M/L_b L_b(x, y) + M/L_d L_d(x, y)`` in the luminosity band, whose colour varies
  across the galaxy as the bulge-to-disc ratio does; the residual of the luminosity
  band adds mass at the local M/L of the model. Its circular curve of growth gives
  the radius holding half the mass.

Models are `galcat.sersic.SersicImage` renders: sampled at pixel centres and convolved
with the effective PSF image, as statmorph does, except the pixels within `CORE_RADIUS`
of the centre, where a cuspy bulge is integrated over `CORE_SUBSAMPLES`² sub-pixels,
each convolved with the PSF shifted to its position.

At S/N below ~70 the decomposition is degenerate (a fit reaches a lower chi² than the
truth with B/T off by 0.2–0.3), so `fit_bulge_disc` takes Gaussian priors on the
structure, and `component_colours` shrinks the bulge − disc colour difference to a prior
by its error (the structure marginalised, `BulgeDiscFit.flux_cov`) before `mass_radius`
turns colours into M/L.

The fit starts twice (`_starts`): from a disc of the galaxy's size with a small bulge,
and from a bulge of the galaxy's size inside a large faint disc; the second is kept only
where it lowers chi² by more than 2 (`MODE_TOLERANCE`). From the first start alone, a
third of the science survey's bulge-dominated single galaxies stopped with B/T low by
more than 0.1 (a fifth with both).

Cost: one start in two bands of a 64 × 64 cutout takes ~0.1 s on one core (15–60 model
evaluations of two FFT convolutions per band, the PSF transforms computed once); the
second start adds ~33% to a shard's `measure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize as opt

from galcat import halfmass, sersic
from galcat.flags import HalfMassFlag

__all__ = [
    "CORE_RADIUS",
    "CORE_SUBSAMPLES",
    "MODE_TOLERANCE",
    "PARAMETERS",
    "BulgeDiscError",
    "BulgeDiscFit",
    "PriorComponent",
    "component_colours",
    "fit_bulge_disc",
    "light_radius",
    "mass_radius",
    "structure",
]

#: Pixels within this distance (pixels) of the centre are integrated over sub-pixels.
CORE_RADIUS = 3.0
#: Sub-samples per axis of the core pixels.
CORE_SUBSAMPLES = 7
#: Bounds of the bulge Sérsic index.
N_BULGE_BOUNDS = (0.8, 6.0)
#: A later start of the fit replaces an earlier one only where it lowers chi² / 2 (with
#: the priors) by more than this: two modes closer than chi² = 2 are not told apart by
#: the data, and the bulge-dominated start then turns exponential discs into n ~ 1.5
#: "bulges" (B/T 0.04 -> 1.0 seen at chi² 0.85 lower).
MODE_TOLERANCE = 1.0


class BulgeDiscError(RuntimeError):
    """The bulge + disc fit failed; the message says why."""


def _nonnegative_fluxes(columns: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Least-squares non-negative (bulge, disc) fluxes of ``data ≈ columns @ f``.

    The normal equations of the two columns (a 2 × 2 solve, ~10x cheaper than an SVD of
    the columns), or ``lstsq`` when the columns are nearly parallel."""
    gram = columns.T @ columns
    (a, b), (_, d) = gram
    det = a * d - b * b
    if det > 1e-10 * a * d:
        rhs = columns.T @ data
        f = np.array([d * rhs[0] - b * rhs[1], a * rhs[1] - b * rhs[0]]) / det
    else:
        f, *_ = np.linalg.lstsq(columns, data, rcond=None)
    if np.all(f >= 0):
        return f
    best, best_chi = np.zeros(2), float(data @ data)
    for k in range(2):
        col = columns[:, k]
        norm = float(col @ col)
        if norm <= 0:
            continue
        fk = max(float(col @ data) / norm, 0.0)
        chi = float(np.sum((data - fk * col) ** 2))
        if chi < best_chi:
            best, best_chi = np.zeros(2), chi
            best[k] = fk
    return best


@dataclass(frozen=True)
class BulgeDiscFit:
    """A bulge + disc model of one galaxy; lengths in pixels, angles in radians.

    ``flux_bulge[k]`` and ``flux_disc[k]`` are the total fluxes (image units) of band
    ``bands[k]``; radii are semi-major half-light axes; the bulge is cut at
    ``bulge_extent`` r_e (its flux is that inside the cut). ``chi2_red`` is the reduced
    chi² over all bands. ``flux_cov`` (the fluxes, bulge and disc per band, band-major)
    and ``structure_cov`` (the structure in the order of `PARAMETERS`) are blocks of one
    inverse Fisher matrix of all the parameters, inflated by the reduced chi² where it
    exceeds 1: `bulge_to_total_err` and `structure_err` read them.
    """

    bands: tuple[str, ...]
    centre: tuple[float, float]
    theta: float
    n_bulge: float
    r_bulge: float
    q_bulge: float
    r_disc: float
    q_disc: float
    flux_bulge: np.ndarray
    flux_disc: np.ndarray
    bulge_extent: float
    chi2_red: float
    nfev: int
    flux_cov: np.ndarray = field(repr=False, compare=False)
    structure_cov: np.ndarray = field(repr=False, compare=False)
    convolved: dict[str, np.ndarray] = field(repr=False, compare=False)
    intrinsic: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    #: With a mixture prior (`PriorComponent`), the posterior probability of each
    #: component given the image (Laplace, at each component's best fit); the fit is
    #: that of the most probable one. Empty without a mixture.
    component_probabilities: tuple[float, ...] = field(default=(), compare=False)
    #: What `light_radius` and `mass_radius` both need, computed once per fit: the
    #: components' curves of growth on a radius grid, the sub-pixel radius order.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def band(self, name: str) -> int:
        try:
            return self.bands.index(name)
        except ValueError:
            raise KeyError(f"band {name!r} was not fitted; fitted: {list(self.bands)}") from None

    def circular_fraction(self, radius, component: str) -> np.ndarray:
        """Fraction of ``component``'s light inside circles of ``radius`` pixels.

        Kept per radius grid: the light and mass radii of one fit ask for the same one
        (~10 ms of incomplete gamma functions each)."""
        radius = np.asarray(radius, dtype=np.float64)
        key = ("fraction", component, radius.shape, radius.tobytes())
        if key not in self._memo:
            self._memo[key] = self._circular_fraction(radius, component)
        return self._memo[key]

    def _circular_fraction(self, radius, component: str) -> np.ndarray:
        if component == "bulge":
            return sersic.circular_fraction(radius, self.r_bulge, self.n_bulge, self.q_bulge,
                                            trunc=self.bulge_extent)
        if component == "disc":
            return sersic.circular_fraction(radius, self.r_disc, 1.0, self.q_disc)
        raise KeyError(f"component must be 'bulge' or 'disc'; got {component!r}")

    def bulge_to_total(self, band: str) -> float:
        k = self.band(band)
        total = self.flux_bulge[k] + self.flux_disc[k]
        return float(self.flux_bulge[k] / total) if total > 0 else math.nan

    def bulge_to_total_err(self, band: str) -> float:
        """1-sigma error of `bulge_to_total` from `flux_cov` (the structure
        marginalised, the priors' information included; linearised in the two fluxes,
        so the bounds 0 ≤ B/T ≤ 1 are not in it); NaN without positive flux."""
        k = self.band(band)
        fb, fd = self.flux_bulge[k], self.flux_disc[k]
        total = fb + fd
        if not total > 0:
            return math.nan
        grad = _bulge_to_total_gradient(fb, fd)
        return _sigma(grad @ self.flux_cov[2 * k:2 * k + 2, 2 * k:2 * k + 2] @ grad)

    def structure_err(self, name: str) -> float:
        """1-sigma error of one structure parameter (a key of `PARAMETERS`, e.g.
        ``q_disc``) from `structure_cov`; the bounds of the fit are not in it, so a
        parameter at its bound (q = 1) has the error of the curvature there."""
        try:
            i = PARAMETERS.index(name)
        except ValueError:
            raise KeyError(f"unknown structure parameter {name!r}; known: "
                           f"{list(PARAMETERS)}") from None
        return _sigma(self.structure_cov[i, i])


def _bulge_to_total_gradient(fb: float, fd: float) -> np.ndarray:
    """d(B/T)/d(f_bulge, f_disc); zero without positive total flux."""
    total = fb + fd
    return np.array([fd, -fb]) / total**2 if total > 0 else np.zeros(2)


def _sigma(variance) -> float:
    """The standard deviation of a variance from a covariance matrix; NaN where the
    (pseudo-)inverse left it non-finite or negative."""
    var = float(variance)
    return math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan


class _Problem:
    """The weighted residuals of a bulge + disc model for a vector of structure parameters
    ``v = (log10 r_disc, log10 r_bulge/r_disc, n_bulge, q_bulge, q_disc)``, the fluxes
    projected out (variable projection), and their analytic Jacobian."""

    def __init__(self, images, sigmas, valid, psfs, centre, theta, bulge_extent) -> None:
        self.images = [np.asarray(a, dtype=np.float64) for a in images]
        sigs = [np.asarray(a, dtype=np.float64) for a in sigmas]
        use = np.asarray(valid, dtype=bool).copy()
        for img, sig in zip(self.images, sigs, strict=True):
            use &= np.isfinite(img) & np.isfinite(sig) & (sig > 0)
        if use.sum() < 20:
            raise BulgeDiscError(f"only {int(use.sum())} usable pixels")
        self.use = use
        self._used = np.flatnonzero(use)  # taking these is faster than a boolean mask
        self.weights = [1.0 / sig[use] for sig in sigs]
        self.data = [img[use] * w for img, w in zip(self.images, self.weights, strict=True)]
        try:
            self.render = sersic.SersicImage(self.images[0].shape, centre, theta, psfs,
                                             core_radius=CORE_RADIUS,
                                             core_subsamples=CORE_SUBSAMPLES)
        except sersic.SersicError as exc:
            raise BulgeDiscError(str(exc)) from exc
        self.bands = list(range(len(self.images)))
        self.r_hi = 2.0 * max(self.images[0].shape)
        self.trunc = float(bulge_extent) if bulge_extent > 0 else math.inf
        self._last: tuple[bytes, tuple] | None = None
        self._last_gradients: tuple[bytes, list] | None = None

    def samples(self, v):
        r_d = 10.0 ** v[0]
        return (self.render.sample_flux(1.0, r_d * 10.0 ** v[1], v[2], v[3], trunc=self.trunc),
                self.render.sample_flux(1.0, r_d, 1.0, v[4]))

    def _columns(self, images: np.ndarray, k: int) -> np.ndarray:
        """Weighted used pixels of the images ``(m, ny, nx)`` of band ``k``: ``(n_use, m)``."""
        flat = images.reshape(images.shape[0], -1)
        return (np.take(flat, self._used, axis=1) * self.weights[k]).T

    def solve(self, v):
        """(weighted residuals, fluxes (band, component), convolved unit models, samples,
        weighted model columns per band); the last call's result is kept, because the
        fit asks for the Jacobian at the point it has just evaluated."""
        key = np.asarray(v, dtype=np.float64).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        bulge, disc = self.samples(v)
        conv = self.render.convolved_many([bulge, disc], self.bands)
        fluxes, resid, cols = [], [], []
        for k in self.bands:
            a = self._columns(conv[k], k)
            f = _nonnegative_fluxes(a, self.data[k])
            fluxes.append(f)
            resid.append(self.data[k] - a @ f)
            cols.append(a)
        result = (np.concatenate(resid), np.array(fluxes), [tuple(c) for c in conv],
                  (bulge, disc), cols)
        self._last = (key, result)
        return result

    def column_gradients(self, v) -> list[np.ndarray]:
        """Per band, d(weighted model columns)/dv: ``(5, n_use, 2)`` (bulge, disc); the
        last call's result is kept (the B/T term of a mixture prior asks for it too)."""
        key = np.asarray(v, dtype=np.float64).tobytes()
        if self._last_gradients is not None and self._last_gradients[0] == key:
            return self._last_gradients[1]
        out = self._column_gradients(v)
        self._last_gradients = (key, out)
        return out

    def _column_gradients(self, v) -> list[np.ndarray]:
        r_d = 10.0 ** v[0]
        _, b_lnr, b_n, b_q = self.render.sample_flux_gradient(
            1.0, r_d * 10.0 ** v[1], v[2], v[3], trunc=self.trunc)
        _, d_lnr, _, d_q = self.render.sample_flux_gradient(1.0, r_d, 1.0, v[4], dn=None)
        conv = self.render.convolved_many([b_lnr, b_n, b_q, d_lnr, d_q], self.bands)
        ln10 = math.log(10.0)
        out = []
        for k in self.bands:
            g = self._columns(conv[k], k).T  # (5, n_use)
            d = np.zeros((5, g.shape[1], 2))
            d[0, :, 0] = d[1, :, 0] = ln10 * g[0]  # r_bulge = 10^(v0 + v1)
            d[0, :, 1] = ln10 * g[3]
            d[2, :, 0], d[3, :, 0], d[4, :, 1] = g[1], g[2], g[4]
            out.append(d)
        return out

    def jacobian(self, v) -> np.ndarray:
        """d(weighted residuals)/dv of the projected problem (Golub & Pereyra 1973):
        ``−P⊥ ∂A f − A⁺ᵀ ∂Aᵀ r`` with ``A`` the columns of the components with positive
        flux (the non-negativity active set held), ``P⊥`` the projection off them."""
        resid, fluxes, _, _, cols = self.solve(v)
        grads = self.column_gradients(v)
        blocks, start = [], 0
        for k in self.bands:
            a, f, d = cols[k], fluxes[k], grads[k]
            r = resid[start:start + a.shape[0]]
            start += a.shape[0]
            active = f > 0
            if not active.any():
                blocks.append(np.zeros((a.shape[0], 5)))
                continue
            a, f, d = a[:, active], f[active], d[:, :, active]
            g_inv = np.linalg.pinv(a.T @ a)  # 2 x 2 at most
            moved = d @ f  # (5, n_use): ∂A f
            projected = moved - (a @ (g_inv @ (a.T @ moved.T))).T
            back = (a @ (g_inv @ np.einsum("jmp,m->pj", d, r))).T
            blocks.append(-(projected + back).T)
        return np.vstack(blocks)

    def flux_jacobian(self, v, k: int) -> np.ndarray:
        """d(bulge, disc flux of band ``k``)/dv of the projected problem, ``(2, 5)``:
        ``G⁻¹ (∂Aᵀ r − Aᵀ ∂A f)`` on the components with positive flux (the
        non-negativity active set held; a clipped flux has derivative 0)."""
        resid, fluxes, _, _, cols = self.solve(v)
        a, f, d = cols[k], fluxes[k], self.column_gradients(v)[k]
        start = sum(c.shape[0] for c in cols[:k])
        r = resid[start:start + a.shape[0]]
        out = np.zeros((2, 5))
        active = f > 0
        if not active.any():
            return out
        a, f, d = a[:, active], f[active], d[:, :, active]
        rhs = np.einsum("jmp,m->pj", d, r) - a.T @ (d @ f).T  # (n_active, 5)
        out[active] = np.linalg.pinv(a.T @ a) @ rhs
        return out

    def covariance(self, v, fluxes, prior, *, scale: float = 1.0,
                   extra: np.ndarray | None = None) -> np.ndarray:
        """Covariance of the structure ``v`` (5) and the fluxes (bulge, disc per band,
        band-major), in that order: the inverse Fisher matrix of all 5 + 2B parameters
        with the priors' terms (Laplace approximation; the structure columns analytic,
        ``∂A f``), times ``scale``. ``extra``: more rows of prior terms' derivatives
        with respect to all 5 + 2B parameters (the B/T term of a mixture prior). One
        ``(5 + 2B)²`` solve, ~1 ms."""
        cols = self.solve(v)[4]
        grads = self.column_gradients(v)
        n_b = len(cols)
        offsets = np.concatenate([[0], np.cumsum([c.shape[0] for c in cols])])
        jac = np.zeros((offsets[-1] + prior.jacobian.shape[0], 5 + 2 * n_b))
        for k in range(n_b):
            jac[offsets[k]:offsets[k + 1], :5] = (grads[k] @ fluxes[k]).T
            jac[offsets[k]:offsets[k + 1], 5 + 2 * k:7 + 2 * k] = cols[k]
        jac[offsets[-1]:, :5] = prior.jacobian
        if extra is not None:
            jac = np.vstack([jac, extra])
        return np.linalg.pinv(jac.T @ jac) * scale

    @staticmethod
    def vector(r_bulge, r_disc, n_bulge, q_bulge, q_disc) -> np.ndarray:
        return np.array([math.log10(r_disc), math.log10(r_bulge / r_disc), n_bulge,
                         q_bulge, q_disc])


#: Order of the structure vector of `_Problem`, and the prior keys.
PARAMETERS = ("log_r_disc", "log_ratio", "n_bulge", "q_bulge", "q_disc")


@dataclass(frozen=True)
class _Priors:
    """Gaussian priors on the structure as residuals ``(v_k − mean_k) / sd_k``."""

    index: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    def __call__(self, v) -> np.ndarray:
        return (np.asarray(v)[self.index] - self.mean) / self.sd

    @property
    def jacobian(self) -> np.ndarray:
        """d(residuals)/dv, ``(n_priors, 5)``: constant."""
        jac = np.zeros((self.index.size, len(PARAMETERS)))
        jac[np.arange(self.index.size), self.index] = 1.0 / self.sd
        return jac


def structure(fit: BulgeDiscFit) -> dict[str, float]:
    """The fitted structure as the prior keys (`PARAMETERS`): the values a calibrated
    prior describes (`galcat.priors`)."""
    return dict(zip(PARAMETERS, (float(x) for x in _Problem.vector(
        fit.r_bulge, fit.r_disc, fit.n_bulge, fit.q_bulge, fit.q_disc)), strict=True))


def _prior_terms(priors: Mapping[str, tuple[float, float]] | None) -> _Priors:
    """The `_Priors` of ``priors`` (key -> (mean, sd)), checked."""
    items = []
    for key, (mean, sd) in (priors or {}).items():
        if key not in PARAMETERS:
            raise ValueError(f"unknown bulge + disc prior {key!r}; known: {list(PARAMETERS)}")
        if not (np.isfinite(mean) and np.isfinite(sd) and sd > 0):
            raise ValueError(f"bulge + disc prior {key!r} needs a finite mean and sd > 0; "
                             f"got ({mean}, {sd})")
        items.append((PARAMETERS.index(key), float(mean), float(sd)))
    return _Priors(np.array([k for k, _, _ in items], dtype=int),
                   np.array([m for _, m, _ in items]), np.array([s for _, _, s in items]))


def _starts(r0: float, q0: float) -> list[list[float]]:
    """Starting structures (`_Problem.vector` order) from a single Sérsic fit's
    half-light radius ``r0`` (pixels) and axis ratio ``q0``: a disc about the galaxy's
    size with a small bulge, then a large faint disc around a bulge of the galaxy's
    size (where the first stops at B/T low by 0.1-0.3 for faint early types)."""
    return [[math.log10(r0 * 1.2), math.log10(0.35), 3.0, min(q0 + 0.2, 1.0), q0],
            [math.log10(r0 * 2.5), math.log10(0.3), 4.0, q0, min(q0 + 0.2, 1.0)]]


@dataclass(frozen=True)
class PriorComponent:
    """One type of galaxy in a mixture prior of `fit_bulge_disc`.

    ``weight``: the type's share of the population (0 < weight ≤ 1). ``priors``:
    Gaussian priors on the structure, keys of `PARAMETERS` to ``(mean, sd)``.
    ``bulge_to_total``: an optional Gaussian ``(mean, sd)`` on B/T in the fit's
    ``bt_band``; it is what tells a face-on disc with a small bulge from an early type
    whose light the fit gave to a large faint disc (sd > 0).
    """

    weight: float
    priors: Mapping[str, tuple[float, float]]
    bulge_to_total: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.weight) and 0 < self.weight <= 1):
            raise ValueError(f"a prior component's weight must be in (0, 1]; "
                             f"got {self.weight!r}")
        bt = self.bulge_to_total
        if bt is not None and not (len(bt) == 2 and np.isfinite(bt[0])
                                   and np.isfinite(bt[1]) and bt[1] > 0):
            raise ValueError(f"a prior component's bulge_to_total needs a finite mean and "
                             f"sd > 0; got {bt!r}")

    def normalisation(self) -> float:
        """``Σ (2 ln sd + ln 2π) − 2 ln weight``: what the component's prior adds to
        −2 ln posterior besides its chi² terms (the Gaussians' normalisations and the
        weight)."""
        sds = [sd for _, sd in self.priors.values()]
        if self.bulge_to_total is not None:
            sds.append(self.bulge_to_total[1])
        return (sum(2.0 * math.log(sd) + math.log(2.0 * math.pi) for sd in sds)
                - 2.0 * math.log(self.weight))


def fit_bulge_disc(
    images: Sequence[np.ndarray],
    sigmas: Sequence[np.ndarray],
    valid: np.ndarray,
    psfs: Sequence[np.ndarray],
    centre: tuple[float, float],
    *,
    bands: Sequence[str],
    theta: float,
    r_start: float,
    q_start: float,
    bulge_extent: float = 8.0,
    priors: Mapping[str, tuple[float, float]] | None = None,
    mixture: Sequence[PriorComponent] | None = None,
    bt_band: str | None = None,
    max_ratio: float = 1.0,
    max_nfev: int = 200,
) -> BulgeDiscFit:
    """Fit a Sérsic bulge + exponential disc jointly to ``images`` (one per band).

    Parameters
    ----------
    images, sigmas : sequences of 2-D arrays
        Background-subtracted images and their 1-sigma noise, one per band.
    valid : 2-D bool array
        Pixels that may be used (neighbours, bad pixels and non-finite values False).
    psfs : sequence of 2-D arrays
        Effective PSF image of each band (normalised here).
    centre : (x, y)
        Centre of both components, pixels (held fixed).
    bands : sequence of str
        Names of the bands, in the order of ``images``.
    theta : float
        Position angle of both major axes, radians from +x counter-clockwise (held).
    r_start, q_start : float
        Half-light semi-major axis (pixels) and axis ratio of a single-Sérsic fit,
        the starting point.
    bulge_extent : float
        The bulge profile is cut at this many r_e (SDSS and the synthetic survey: 8);
        ≤ 0: not cut.
    priors : mapping of str to (mean, sd), optional
        Gaussian priors on the structure (keys of `PARAMETERS`: ``log_ratio`` =
        log10 r_bulge / r_disc, ``n_bulge``, ``q_bulge``, ``q_disc``, ``log_r_disc`` in
        log10 pixels), added to the chi² as ``((v - mean) / sd)²``. Default none.
    mixture : sequence of PriorComponent, optional
        A prior that is a mixture of galaxy types instead of ``priors`` (give one or
        the other). The fit runs once per component (each from every start) and keeps
        the most probable component; its covariance is the second moment about that
        fit over the components' fits, weighted by their posterior probabilities
        (`BulgeDiscFit.component_probabilities`), so the errors carry the doubt over
        the type. A component's probability is its Laplace evidence: the posterior at
        its best fit times the posterior's volume, so a narrow component does not win
        on parameters the image does not constrain (its prior's density is high, but
        only over a small volume). Costs one fit per component.
    bt_band : str, optional
        Band of the components' B/T priors (default the first of ``bands``).
    max_ratio : float
        Largest r_bulge / r_disc (default 1: a bulge is the inner component; without it
        a noisy fit can swap the components).
    max_nfev : int
        Most model evaluations of the non-linear fit.

    Returns
    -------
    BulgeDiscFit

    Raises
    ------
    ValueError
        An unknown prior key, a prior sd ≤ 0, both ``priors`` and ``mixture``, an
        unknown ``bt_band``, or ``max_ratio`` out of range.
    BulgeDiscError
        Fewer than 20 usable pixels, a PSF without positive sum, no positive flux, or
        no start of the fit converged (the last one's reason is given).
    """
    if mixture is not None and priors:
        raise ValueError("give fit_bulge_disc priors or a mixture of them, not both")
    components = ([PriorComponent(1.0, priors or {})] if mixture is None else list(mixture))
    if not components:
        raise ValueError("a mixture prior needs at least one component")
    terms = [_prior_terms(c.priors) for c in components]
    bt_index = 0 if bt_band is None else _band_index(bands, bt_band)
    if not 0.05 < max_ratio <= 10:
        raise ValueError(f"max_ratio must be in (0.05, 10]; got {max_ratio!r}")
    problem = _Problem(images, sigmas, valid, psfs, centre, theta, bulge_extent)
    if not (np.isfinite(r_start) and r_start > 0):
        raise BulgeDiscError(f"unusable starting radius {r_start!r}")
    q0 = min(max(float(q_start), 0.1), 1.0) if np.isfinite(q_start) else 0.7
    r0 = min(max(float(r_start), 0.6), problem.r_hi / 2)
    bounds = ([math.log10(0.5), math.log10(0.05), N_BULGE_BOUNDS[0], 0.2, 0.05],
              [math.log10(problem.r_hi), math.log10(max_ratio), N_BULGE_BOUNDS[1], 1.0, 1.0])
    fits, failure = [], ""
    for component, prior in zip(components, terms, strict=True):
        term = _BulgeToTotalTerm(problem, bt_index, component.bulge_to_total)
        best, failure = _best_start(problem, prior, term, r0, q0, bounds, max_nfev, failure)
        if best is not None:
            fits.append(_ComponentFit(problem, best, prior, term, component.normalisation()))
    if not fits:
        raise BulgeDiscError(failure)
    cov, probabilities, chosen = _mixture_posterior(fits)
    res = fits[chosen].result
    resid, fluxes, conv, samples, _ = problem.solve(res.x)
    if not np.any(fluxes.sum(axis=1) > 0):
        raise BulgeDiscError("no positive flux in any band")
    if mixture is None:
        probabilities = ()
    n_par = 5 + 2 * len(problem.images)
    dof = max(resid.size - n_par, 1)
    r_d = 10.0 ** res.x[0]
    return BulgeDiscFit(
        bands=tuple(bands), centre=(float(centre[0]), float(centre[1])), theta=float(theta),
        n_bulge=float(res.x[2]), r_bulge=float(r_d * 10.0 ** res.x[1]), q_bulge=float(res.x[3]),
        r_disc=float(r_d), q_disc=float(res.x[4]),
        flux_bulge=fluxes[:, 0].copy(), flux_disc=fluxes[:, 1].copy(),
        bulge_extent=problem.trunc, chi2_red=float(resid @ resid / dof), nfev=int(res.nfev),
        flux_cov=cov[5:, 5:], structure_cov=cov[:5, :5],
        convolved={name: conv[k][0] * fluxes[k, 0] + conv[k][1] * fluxes[k, 1]
                   for k, name in enumerate(bands)},
        intrinsic={name: (problem.render.intrinsic(samples[0]) * fluxes[k, 0],
                          problem.render.intrinsic(samples[1]) * fluxes[k, 1])
                   for k, name in enumerate(bands)},
        component_probabilities=tuple(float(p) for p in probabilities),
    )


def _band_index(bands: Sequence[str], band: str) -> int:
    try:
        return list(bands).index(band)
    except ValueError:
        raise ValueError(f"bt_band {band!r} is not a fitted band; fitted: "
                         f"{list(bands)}") from None


class _BulgeToTotalTerm:
    """The residual ``(B/T(v) − mean) / sd`` of a component's B/T prior in band ``k``
    and its derivatives; no residual without a prior. B/T of a fit without flux in the
    band counts as 0.5 (derivative 0)."""

    def __init__(self, problem: _Problem, k: int, prior: tuple[float, float] | None) -> None:
        self.problem, self.k, self.prior = problem, k, prior

    def __call__(self, v) -> np.ndarray:
        if self.prior is None:
            return np.zeros(0)
        fb, fd = self.problem.solve(v)[1][self.k]
        total = fb + fd
        bt = fb / total if total > 0 else 0.5
        return np.array([(bt - self.prior[0]) / self.prior[1]])

    def _gradient(self, fb: float, fd: float) -> np.ndarray:
        """d(B/T)/d(f_bulge, f_disc) / sd."""
        return _bulge_to_total_gradient(fb, fd) / self.prior[1]

    def jacobian(self, v) -> np.ndarray:
        """d(residual)/dv through the fluxes of the projected problem, ``(0 or 1, 5)``."""
        if self.prior is None:
            return np.zeros((0, 5))
        fb, fd = self.problem.solve(v)[1][self.k]
        return (self._gradient(fb, fd) @ self.problem.flux_jacobian(v, self.k))[None, :]

    def full_jacobian(self, fluxes: np.ndarray) -> np.ndarray | None:
        """d(residual)/d(structure, fluxes) of all 5 + 2B parameters (`_Problem.covariance`
        rows); None without a prior."""
        if self.prior is None:
            return None
        row = np.zeros((1, 5 + 2 * len(fluxes)))
        row[0, 5 + 2 * self.k:7 + 2 * self.k] = self._gradient(*fluxes[self.k])
        return row


def _best_start(problem: _Problem, prior: _Priors, term: _BulgeToTotalTerm, r0: float,
                q0: float, bounds, max_nfev: int, failure: str):
    """The best of the fits from every start (`_starts`) with one prior: a later start
    replaces an earlier one only where it lowers the cost by `MODE_TOLERANCE`. Returns
    ``(least_squares result or None, reason of the last failure)``."""
    def residual(v):
        return np.concatenate([problem.solve(v)[0], prior(v), term(v)])

    def jacobian(v):
        return np.vstack([problem.jacobian(v), prior.jacobian, term.jacobian(v)])

    lo, hi = bounds
    res = None
    inside = (np.array(lo) + 1e-6, np.array(hi) - 1e-6)  # a start strictly within bounds
    for start in _starts(r0, q0):
        x0 = np.clip(start, *inside)
        try:
            trial = opt.least_squares(residual, x0, jac=jacobian, bounds=(lo, hi),
                                      x_scale=[0.1, 0.2, 0.5, 0.1, 0.1], max_nfev=max_nfev)
        except (ValueError, FloatingPointError, OverflowError,
                np.linalg.LinAlgError) as exc:
            failure = f"bulge + disc fit raised {type(exc).__name__}: {exc}"
            continue
        if not np.all(np.isfinite(trial.x)) or trial.status < 0:
            failure = f"bulge + disc fit did not converge: {trial.message}"
            continue
        # a start that fails loses nothing when another one converged
        if res is None or trial.cost < res.cost - MODE_TOLERANCE:
            res = trial
    return res, failure


class _ComponentFit:
    """The best fit with one component's prior: its covariance of the structure and
    fluxes (the noise inflated by the reduced chi² where it exceeds 1), the parameter
    vector, and the parts of −2 ln of its Laplace evidence: ``cost`` (chi² + prior
    terms + normalisation) and ``log_volume`` (ln det of the covariance; NaN where it
    is singular)."""

    def __init__(self, problem: _Problem, result, prior: _Priors, term: _BulgeToTotalTerm,
                 normalisation: float) -> None:
        self.result = result
        resid, fluxes = problem.solve(result.x)[:2]
        self.cov = problem.covariance(
            result.x, fluxes, prior, scale=max(float(resid @ resid) / max(resid.size, 1), 1.0),
            extra=term.full_jacobian(fluxes))
        self.vector = np.concatenate([result.x, fluxes.ravel()])
        sign, logdet = np.linalg.slogdet(self.cov)
        self.log_volume = float(logdet) if sign > 0 and np.isfinite(logdet) else math.nan
        self.cost = 2.0 * float(result.cost) + normalisation


def _mixture_posterior(fits: Sequence[_ComponentFit]) -> tuple[np.ndarray, np.ndarray, int]:
    """The covariance about the most probable component's fit, the components'
    posterior probabilities ``∝ exp(−J / 2)`` (``J = cost − log_volume``, −2 ln the
    Laplace evidence up to a constant; the volume left out for all where one
    covariance is singular), and the index of the most probable. The covariance is
    ``Σ_c p_c (C_c + d_c d_cᵀ)``, ``d_c`` the difference of fit c from the chosen one;
    with one fit, its own covariance."""
    volumes = np.array([f.log_volume for f in fits])
    j = np.array([f.cost for f in fits])
    if np.all(np.isfinite(volumes)):
        j = j - volumes
    chosen = int(np.argmin(j))
    probabilities = np.exp(-0.5 * (j - j[chosen]))
    probabilities /= probabilities.sum()
    centre = fits[chosen].vector
    total = np.zeros_like(fits[chosen].cov)
    for p, fit in zip(probabilities, fits, strict=True):
        d = fit.vector - centre
        total += p * (fit.cov + np.outer(d, d))
    return total, probabilities, chosen


def _aperture_and_grid(fit: BulgeDiscFit, image, valid, band: str, extent: float):
    """Residual aperture (pixels, flags) and the radius grid of the curves of growth."""
    shape = image.shape
    r_pix = halfmass.elliptical_radius(shape, fit.centre)
    ring = halfmass._ring_index(r_pix)
    filled = np.where(valid, image, fit.convolved[band])
    r_ap, rp, flag = halfmass._petrosian_aperture(r_pix, ring, filled, valid, extent)
    r_big = max(fit.r_disc, fit.r_bulge * max(fit.bulge_extent, 1.0) if
                np.isfinite(fit.bulge_extent) else fit.r_bulge)
    n_in = int(math.ceil(r_ap)) * halfmass._FINE
    grid = np.concatenate([np.linspace(0.0, r_ap, n_in + 1),
                           np.geomspace(r_ap, max(r_ap * 1.01, 200.0 * r_big), 401)[1:]])
    key = ("cumulative", shape)
    if key not in fit._memo:  # the sort of the sub-pixel radii, shared by both radii
        fit._memo[key] = halfmass._CumulativeProfile(
            halfmass.elliptical_radius(shape, fit.centre, oversample=halfmass._SUBPIXELS),
            halfmass._SUBPIXELS)
    return r_ap, rp, flag, grid, fit._memo[key]


#: Grid points of a curve of growth evaluated at a time while looking for its crossing.
_CHUNK = 64


def _half_radius(fit: BulgeDiscFit, grid, weights: Mapping[str, float], residual_cum,
                 r_ap, fraction: float = 0.5) -> tuple[float, int]:
    """First radius of ``grid`` where ``Σ weights[c] × fit.circular_fraction(grid, c) +
    residual_cum`` reaches ``fraction`` of its value at the end of the grid, linearly
    interpolated (`galcat.halfmass._first_crossing`); with the flag bits.

    The model's curves (incomplete gamma functions at 128 angles, the cost of a radius)
    are evaluated in chunks of `_CHUNK` grid points from the centre until the crossing,
    not over the whole grid, which runs out to 200 scale lengths (the total needs only
    its last point); the chunks are kept on the fit, so the light and mass radii share
    them.
    """
    def cum(part: slice) -> np.ndarray:
        out = np.array(residual_cum[part], dtype=np.float64)
        for comp, weight in weights.items():
            out += weight * fit.circular_fraction(grid[part], comp)
        return out

    n = len(grid)
    total = float(cum(slice(n - 1, n))[0])
    if not (np.isfinite(total) and total > 0):
        return math.nan, HalfMassFlag.NO_FLUX
    level = fraction * total
    previous = None
    for start in range(0, n, _CHUNK):
        values = cum(slice(start, start + _CHUNK))
        if not np.all(np.isfinite(values)):
            return math.nan, HalfMassFlag.NO_FLUX
        if np.any(values >= level):  # the crossing, from the last point below it
            if start:
                values = np.concatenate([[previous], values])
            r = halfmass._first_crossing(grid[max(start - 1, 0):start + _CHUNK], values, level)
            return r, HalfMassFlag.EXTRAPOLATED if r > r_ap else 0
        previous = values[-1]
    return math.nan, HalfMassFlag.NO_CROSSING


def light_radius(fit: BulgeDiscFit, image: np.ndarray, valid: np.ndarray, *, band: str,
                 extent: float = 3.0, fraction: float = 0.5) -> tuple[float, int]:
    """PSF-corrected circular radius (pixels) holding ``fraction`` of the light of ``band``.

    Bulge + disc model in circles about the fit's centre (analytic, to 200 × the larger
    scale length) plus the residual ``image − model ⊗ PSF`` inside ``extent`` circular
    Petrosian radii (masked pixels carry none). Returns ``(radius, flag)`` with bits of
    `galcat.flags.HalfMassFlag`; NaN radius when a fatal bit is set.
    """
    k = fit.band(band)
    image = np.asarray(image, dtype=np.float64)
    r_ap, _, flag, grid, cumulative = _aperture_and_grid(fit, image, valid, band, extent)
    residual = np.where(valid, image - fit.convolved[band], 0.0)
    r, f = _half_radius(fit, grid, {"bulge": fit.flux_bulge[k], "disc": fit.flux_disc[k]},
                        cumulative(residual, np.minimum(grid, r_ap)), r_ap, fraction)
    return r, flag | f


def component_colours(fit: BulgeDiscFit, blue: str, red: str, dzp: float, *,
                      prior: tuple[float, float] | None = None) -> dict[str, float]:
    """Colours ``m_blue − m_red`` (mag) of bulge and disc, optionally shrunk to a prior.

    The total colour of the galaxy is measured far better than the colour difference
    ``Δ = c_bulge − c_disc``, whose error (``delta_err``, from `BulgeDiscFit.flux_cov`,
    the structure marginalised) grows fast as the decomposition weakens at low S/N.
    With ``prior = (mean, sd)`` Δ is replaced by its posterior mean under a Gaussian
    prior, ``(Δ/σ² + mean/sd²) / (1/σ² + 1/sd²)``, and the two colours are re-solved so
    that the blue-band flux of bulge + disc stays the fitted one; at high S/N Δ stays the
    measured one, at low S/N it goes to the prior mean. A component without positive
    flux in both bands takes the colour of the galaxy (Δ = 0 for it).
    Returns ``bulge``, ``disc``, ``delta_measured``, ``delta_err``, ``delta``.
    """
    kb, kr = fit.band(blue), fit.band(red)
    fb = np.array([fit.flux_bulge[kb], fit.flux_disc[kb]])
    fr = np.array([fit.flux_bulge[kr], fit.flux_disc[kr]])
    total_blue, total_red = float(fb.sum()), float(fr.sum())
    if not (total_blue > 0 and total_red > 0):
        raise BulgeDiscError(f"no positive total flux in {blue} and {red}")
    total = dzp - 2.5 * math.log10(total_blue / total_red)
    if not (np.all(fb > 0) and np.all(fr > 0)):
        return {"bulge": total, "disc": total, "delta_measured": math.nan,
                "delta_err": math.nan, "delta": 0.0}
    delta_measured = float(-2.5 * math.log10(fb[0] / fr[0] * fr[1] / fb[1]))
    idx = [2 * kb, 2 * kb + 1, 2 * kr, 2 * kr + 1]
    cov = fit.flux_cov[np.ix_(idx, idx)]
    grad = 2.5 / math.log(10) * np.array([-1 / fb[0], 1 / fb[1], 1 / fr[0], -1 / fr[1]])
    var = float(grad @ cov @ grad)
    delta = delta_measured
    if prior is not None:
        mean, sd = prior
        if not (np.isfinite(var) and var > 0):
            var = math.inf
        w_data = 0.0 if math.isinf(var) else 1.0 / var
        delta = (w_data * delta_measured + mean / sd**2) / (w_data + 1.0 / sd**2)
    # keep the blue flux of the galaxy: F_blue = 10^(0.4 dzp) 10^(-0.4 c_d) (F_rb 10^(-0.4 Δ) + F_rd)
    disc = -2.5 * math.log10(total_blue * 10.0 ** (-0.4 * dzp)
                             / (fr[0] * 10.0 ** (-0.4 * delta) + fr[1]))
    return {"bulge": disc + delta, "disc": disc, "delta_measured": delta_measured,
            "delta_err": math.sqrt(var) if np.isfinite(var) else math.nan, "delta": delta}


def mass_radius(
    fit: BulgeDiscFit,
    image: np.ndarray,
    valid: np.ndarray,
    *,
    relation: str,
    zeropoints: dict[str, float],
    extent: float = 3.0,
    colour_prior: tuple[float, float] | None = None,
) -> tuple[float, int, dict]:
    """Half-stellar-mass circular radius (pixels) from the components' colours.

    The colour of each component (``m_blue − m_red`` of its fitted fluxes, clipped to
    `galcat.halfmass.COLOUR_LIMITS`) gives its M/L (`galcat.halfmass.mass_to_light`);
    the mass inside a circle is ``Σ_c M/L_c L_c(< R)`` in the luminosity band
    (``image`` is that band) plus the residual inside the aperture times the model's
    local M/L. A component with no flux in the luminosity band carries no mass.
    Returns ``(radius, flag, info)``; ``info`` holds the colours and M/L ratios.
    """
    (blue, red), _, _, _ = halfmass.MASS_TO_LIGHT_RELATIONS[relation]
    lum = halfmass.LUMINOSITY_BAND[relation]
    lo, hi = halfmass.COLOUR_LIMITS[relation]
    kl = fit.band(lum)
    flag = 0
    colours = component_colours(fit, blue, red, zeropoints[blue] - zeropoints[red],
                                prior=colour_prior)
    ml = {}
    for comp in ("bulge", "disc"):
        colour = colours[comp]
        if not lo <= colour <= hi:
            flag |= HalfMassFlag.COLOUR_CLIPPED
        colours[comp] = float(np.clip(colour, lo, hi))
        ml[comp] = float(halfmass.mass_to_light(colours[comp], relation))
    image = np.asarray(image, dtype=np.float64)
    r_ap, _, ap_flag, grid, cumulative = _aperture_and_grid(fit, image, valid, lum, extent)
    bulge_l, disc_l = fit.intrinsic[lum]
    light = bulge_l + disc_l
    with np.errstate(invalid="ignore", divide="ignore"):
        local_ml = np.where(light > 0, (ml["bulge"] * bulge_l + ml["disc"] * disc_l) / light,
                            ml["disc"])
    residual = np.where(valid, image - fit.convolved[lum], 0.0) * local_ml
    r, f = _half_radius(fit, grid, {"bulge": ml["bulge"] * fit.flux_bulge[kl],
                                    "disc": ml["disc"] * fit.flux_disc[kl]},
                        cumulative(residual, np.minimum(grid, r_ap)), r_ap)
    info = {**colours, "colour_bulge": colours["bulge"], "colour_disc": colours["disc"],
            "ml_bulge": ml["bulge"], "ml_disc": ml["disc"], "aperture_pix": r_ap}
    return r, flag | ap_flag | f, info
