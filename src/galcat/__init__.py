"""galcat: galaxy-morphology catalogues from survey archives."""

__version__ = "0.1.0"
