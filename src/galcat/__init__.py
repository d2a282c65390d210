"""galcat: galaxy-morphology catalogues from survey archives."""

from importlib import metadata as _metadata

try:  # the version stands once, in pyproject.toml; the installed metadata carries it
    __version__ = _metadata.version("galcat")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"
