"""The validation wing: benchmark harness that scores galcat's science against known truth.

It imports the science (`galcat.segment`, `galcat.morphology`, `galcat.surveys.synthetic`,
`galcat.metrics`) and is imported by nothing in it: the workflow never needs it, the
``bench/`` scripts and the tests do (``tests/test_validation.py`` checks that no science
module imports this package).

``recovery``
    Injection–recovery of segmentation and morphology on the synthetic survey
    (``bench/morphology_recovery.py``): render, segment and measure as the workflow does,
    join with the truth, score by S/N and size.
``population``
    Other populations for the injections (bulge − disc colour, bulge n, sizes, the
    truth's M/L relation): ``bench/morphology_recovery.py --population``.
``blends``
    Synthetic blended pairs with known truth and the deblending scores
    (``bench/deblend_vs_sextractor.py``).
``sextractor``
    A wrapper of the SExtractor binary, the reference of the deblending benchmark.

Import the submodule you need (``from galcat.validation import recovery``); importing this
package alone loads none of them.
"""

__all__ = ["blends", "population", "recovery", "sextractor"]
