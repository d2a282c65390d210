"""``vae``: cutout -> a latent vector, by a variational autoencoder (Kingma & Welling 2014).

The encoder (`galcat.models.nets.small_cnn`, with the aperture fluxes when
``photometry``) gives the mean and log-variance of a ``latent_dim``-dimensional
Gaussian posterior; a decoder (`galcat.models.nets.ConvDecoder`) reconstructs
the normalised cutout from a sample of it. The loss per object is the mean
squared reconstruction error per pixel plus ``beta`` times the KL divergence to
the unit Gaussian divided by the number of pixels (the evidence lower bound of
a unit-variance Gaussian decoder, per pixel). The seed work used a 2-D latent
(the default); the science config adds a larger one. Single band by default;
``bands`` gives a multi-band model.

Outputs per galaxy (catalogue ``nn_{model}_z{i}`` and ``nn_{model}_z{i}_err``): the
posterior mean and standard deviation of every latent, and ``recon_mse``.

Scores (test split): the Spearman correlation of every latent with each
physical truth (`TRUTHS`), the ROC AUC of a logistic regression on the latents
(fitted on the training split) separating disc- from bulge-dominated galaxies
(B/T < or >= 0.5) and mergers from isolated ones, and the reconstruction error;
the baseline is PCA "eigengalaxies" of the same dimension fitted on the training
split's images in the same normalised units (the same table, AUCs and error).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from galcat.models.families.sersic import RECON_OUTPUT, reconstruction_error
from galcat.models.nets import ConvDecoder
from galcat.models.registry import Family, Output, register

__all__ = ["TRUTHS", "VAE", "VAEHead", "latent_names"]

#: The physical truths every latent is correlated with: score key -> column (or a
#: callable of the table).
TRUTHS: dict[str, object] = {
    "r50_light": "truth_r50_r",
    "r50_mass": "truth_r50_mass",
    "bt": "truth_bt",
    "sersic_n": "truth_sersic_n",
    "colour_gr": lambda t: -2.5 * np.log10(
        (t["truth_flux_bulge_g"] + t["truth_flux_disc_g"])
        / (t["truth_flux_bulge_r"] + t["truth_flux_disc_r"])),
    "ssfr": "truth_ssfr",
    "metallicity": "truth_metallicity",
    "log_mass": "truth_log_mass",
    "axis_ratio": "truth_q",
}
#: Truths that stand for size, and for B/T or colour (the issue's goals).
SIZE_TRUTHS = ("r50_light", "r50_mass")
BT_COLOUR_TRUTHS = ("bt", "colour_gr")


def latent_names(k: int) -> list[str]:
    """Output names of ``k`` latents: ``z1`` ... ``zk``."""
    return [f"z{i + 1}" for i in range(k)]


class VAEHead(nn.Module):
    """Features -> posterior mean/std of the latent, a sample's reconstruction, the KL.

    In training the decoder sees ``z = mean + std * eps``; in evaluation the mean.
    Returns ``{"mean", "std", "recon", "kl"}`` (``kl`` per object, nats).
    """

    def __init__(self, n_features: int, latent_dim: int, *, n_bands: int, size: int,
                 width: int, beta: float) -> None:
        super().__init__()
        self.mu = nn.Linear(n_features, latent_dim)
        self.logvar = nn.Linear(n_features, latent_dim)
        self.decoder = ConvDecoder(latent_dim, n_bands, size, width=width)
        self.beta = float(beta)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        mu = self.mu(features)
        # clamped: a runaway variance early in training must not overflow exp
        logvar = self.logvar(features).clamp(-12.0, 8.0)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn_like(std) if self.training else mu
        kl = 0.5 * (mu**2 + std**2 - logvar - 1.0).sum(1)
        return {"mean": mu, "std": std, "recon": self.decoder(z), "kl": kl}


class VAE(Family):
    name = "vae"
    summary = "cutout -> latent vector (variational autoencoder, KL term)"
    label_columns = ()
    standardise_targets = False

    def targets(self, table: pd.DataFrame) -> np.ndarray:
        # unsupervised: one dummy target per object (every object is trainable)
        return np.zeros((len(table), 1))

    def head(self, n_features: int, n_targets: int, *, settings: Mapping, n_bands: int,
             size: int) -> nn.Module:
        return VAEHead(n_features, int(settings["latent_dim"]), n_bands=n_bands, size=size,
                       width=int(settings["width"]), beta=float(settings["beta"]))

    def loss(self, out, target, batch, net) -> torch.Tensor:
        x = net.normalise(batch["image"])
        n_pixels = float(x[0].numel())
        recon = reconstruction_error(out["recon"], x)
        return (recon + net.head.beta * out["kl"] / n_pixels).mean()

    def outputs(self, settings=None) -> list[Output]:
        k = int((settings or {}).get("latent_dim", 2))
        return [*(Output(z, "", f"posterior mean of latent {z} of the variational "
                         "autoencoder; _err is its posterior standard deviation")
                  for z in latent_names(k)), RECON_OUTPUT]

    def decode(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for j, z in enumerate(latent_names(mean.shape[1])):
            out[z], out[f"{z}_err"] = mean[:, j], std[:, j]
        return out

    # ------------------------------------------------------------------ evaluation
    def baselines(self, data) -> dict[str, dict[str, np.ndarray]]:
        k = len(_latent_columns(data.table))
        pca = _pca_latents(data, k)
        return {"pca": {**dict(zip(latent_names(k), pca["test"].T, strict=True)),
                        "recon_mse": pca["test_mse"]}}

    def score(self, data, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
        test = data.table.loc[data.test]
        train = data.table.loc[data.train]
        k = len(_latent_columns(data.table))
        names = latent_names(k)
        pca = _pca_latents(data, k)
        train_latents = {"model": train[[f"model:{z}" for z in names]].to_numpy(np.float64),
                         "pca": pca["train"]}
        labels = _labels(test), _labels(train)
        out: dict = {"latent_dim": k}
        for name, pred in predictions.items():
            z = np.stack([np.asarray(pred[c], np.float64) for c in names], axis=1)
            table = correlation_table(z, test)
            entry = {"spearman": table,
                     "max_abs_rho_size": _max_abs(table, SIZE_TRUTHS),
                     "max_abs_rho_bt_or_colour": _max_abs(table, BT_COLOUR_TRUTHS),
                     "recon_mse": float(np.nanmean(np.asarray(pred["recon_mse"], np.float64)))}
            if name in train_latents:
                for task in ("bulge_dominated", "merger"):
                    entry[f"auc_{task}"] = _logistic_auc(
                        train_latents[name], labels[1][task], z, labels[0][task],
                        seed=data.seed)
            out[name] = entry
        return out


def _latent_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns
            if c.startswith("model:z") and c[7:].isdigit() and not c.endswith("_err")]


def _truth(table: pd.DataFrame, key: str) -> np.ndarray:
    spec = TRUTHS[key]
    value = spec(table) if callable(spec) else table[spec]
    return np.asarray(value, np.float64)


def correlation_table(z: np.ndarray, table: pd.DataFrame) -> dict[str, list[float]]:
    """Spearman rho of every latent (columns of ``z``) with every truth of `TRUTHS`."""
    from scipy.stats import spearmanr

    out = {}
    for key in TRUTHS:
        if not _has(table, key):
            continue
        t = _truth(table, key)
        rho = []
        for j in range(z.shape[1]):
            ok = np.isfinite(t) & np.isfinite(z[:, j])
            rho.append(float(spearmanr(z[ok, j], t[ok]).statistic) if ok.sum() > 2 else np.nan)
        out[key] = rho
    return out


def _has(table: pd.DataFrame, key: str) -> bool:
    spec = TRUTHS[key]
    if callable(spec):
        return all(f"truth_flux_{c}_{b}" in table for c in ("bulge", "disc") for b in "gr")
    return spec in table


def _max_abs(table: Mapping[str, list[float]], keys) -> float:
    values = [abs(v) for k in keys if k in table for v in table[k] if np.isfinite(v)]
    return max(values) if values else float("nan")


def _labels(table: pd.DataFrame) -> dict[str, np.ndarray]:
    bt = table["truth_bt"].to_numpy(np.float64) if "truth_bt" in table else np.full(len(table),
                                                                                    np.nan)
    merger = (table["truth_merger"].to_numpy(bool) if "truth_merger" in table
              else np.zeros(len(table), bool))
    return {"bulge_dominated": bt >= 0.5, "merger": merger}


def _logistic_auc(x_train, y_train, x_test, y_test, *, seed: int) -> float | None:
    """ROC AUC on the test objects of a logistic regression fitted on the training ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ok_tr = np.all(np.isfinite(x_train), axis=1)
    ok_te = np.all(np.isfinite(x_test), axis=1)
    if len(set(y_train[ok_tr].tolist())) < 2 or len(set(y_test[ok_te].tolist())) < 2:
        return None  # one class only (a tiny survey): no AUC
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    clf.fit(x_train[ok_tr], y_train[ok_tr])
    return float(roc_auc_score(y_test[ok_te], clf.predict_proba(x_test[ok_te])[:, 1]))


def _pca_latents(data, k: int) -> dict[str, np.ndarray]:
    """PCA "eigengalaxies" of ``k`` components fitted on the training split's images.

    Images as the network sees them (`EvalData.normalised_images`: the model's bands
    and binning, the normalisation fitted on the training split). Returns the
    components of the training and of the ``data.test`` objects and the latter's
    reconstruction MSE. The fit is cached on ``data`` (baselines and scores both
    need it, on test sets that may differ).
    """
    from sklearn.decomposition import PCA

    cache = data.context.setdefault("_pca", {})
    if k not in cache:
        x_train = data.normalised_images(data.train).reshape(int(data.train.sum()), -1)
        pca = PCA(n_components=k, random_state=data.seed).fit(x_train)
        cache[k] = (pca, pca.transform(x_train))
    pca, z_train = cache[k]
    x_test = data.normalised_images(data.test).reshape(int(data.test.sum()), -1)
    z_test = pca.transform(x_test)
    mse = ((pca.inverse_transform(z_test) - x_test) ** 2).mean(1)
    return {"train": z_train, "test": z_test, "test_mse": mse}


register(VAE())
