"""The model families; importing this package registers each of them.

One module per family (network head, loss, outputs, baselines, scores):
`r50`, `gz2`, `metallicity`. A new family is a module here and one line below.
"""

from galcat.models.families import gz2, metallicity, r50  # noqa: F401  (they register)

__all__ = ["gz2", "metallicity", "r50"]
