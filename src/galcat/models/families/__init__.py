"""The model families; importing this package registers each of them.

One module per family (network head, loss, outputs, baselines, scores):
`r50`, `gz2`, `metallicity` (supervised), `sersic` (encoder-decoder), `vae`
(latent space), `pixels` (per-pixel classes). A new family is a module here and
one line below.
"""

from galcat.models.families import (  # noqa: F401  (they register)
    gz2,
    metallicity,
    pixels,
    r50,
    sersic,
    vae,
)

__all__ = ["gz2", "metallicity", "pixels", "r50", "sersic", "vae"]
