"""A small wrapper around SExtractor (Debian's ``source-extractor`` binary).

`run_sextractor` writes one 2-D image (and, from its 1-sigma noise map, an RMS
weight map) to temporary FITS files, writes a configuration, a parameter list and
a Gaussian detection filter next to them, runs the binary, and reads back its
catalogue (FITS_LDAC) as a `pandas.DataFrame` and its segmentation check-image as
an integer array. It exists so that galcat's own deblending (`galcat.segment`)
can be compared side by side with the reference tool (Bertin & Arnouts 1996,
A&AS 117, 393); the workflow itself does not need it.

Install the binary with ``apt-get install source-extractor`` (Debian/Ubuntu; the
executable is ``source-extractor``, older packages call it ``sex``).

Conventions
-----------
- The image is taken as is, in any flux unit; SExtractor estimates and subtracts
  its own background (one mesh over the whole cutout by default).
- ``X_IMAGE``/``Y_IMAGE`` are SExtractor's 1-based FITS pixel coordinates; the
  returned table adds ``x``/``y``, the same positions 0-based (NumPy ``[y, x]``
  indexing, pixel centres at integers), so that they compare directly with
  galcat's arrays.
- The segmentation map holds 0 for the background and the ``NUMBER`` of the
  detection elsewhere.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

__all__ = [
    "BINARY_NAMES",
    "DEFAULT_PARAMETERS",
    "SExtractorError",
    "SExtractorNotFoundError",
    "find_sextractor",
    "gaussian_filter_kernel",
    "run_sextractor",
    "sextractor_version",
]

#: Executable names tried, in order, when no ``binary`` is given.
BINARY_NAMES = ("source-extractor", "sex")
#: Environment variable that may name the executable (a path or a name on PATH).
BINARY_ENV = "GALCAT_SEXTRACTOR"
#: Catalogue columns written by default (``FLUX_RADIUS`` at ``phot_fluxfrac``).
DEFAULT_PARAMETERS = (
    "NUMBER",
    "X_IMAGE",
    "Y_IMAGE",
    "FLUX_AUTO",
    "FLUXERR_AUTO",
    "FLUX_ISO",
    "FLUX_RADIUS",
    "KRON_RADIUS",
    "A_IMAGE",
    "B_IMAGE",
    "THETA_IMAGE",
    "FLAGS",
)
#: RMS written for masked or non-finite pixels; anything above `_BAD_RMS_THRESH`
#: is a bad pixel for SExtractor (``WEIGHT_THRESH``).
_BAD_RMS = 1.0e30
_BAD_RMS_THRESH = 1.0e29
_INSTALL_HINT = (
    "install Debian's 'source-extractor' package (apt-get install source-extractor), "
    f"or pass binary= / set {BINARY_ENV} to the SExtractor executable"
)


class SExtractorNotFoundError(FileNotFoundError):
    """The SExtractor executable is not installed or not where it was said to be."""


class SExtractorError(RuntimeError):
    """SExtractor ran but failed, or its output could not be read.

    Attributes
    ----------
    returncode : int or None
        Exit status of the binary (None if it did not exit).
    stderr : str
        What the binary wrote to its standard error.
    """

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def find_sextractor(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the SExtractor executable.

    Parameters
    ----------
    binary : str or path-like, optional
        An executable path or a command name on ``PATH``. Without it, the
        ``GALCAT_SEXTRACTOR`` environment variable, then `BINARY_NAMES` on
        ``PATH`` are tried.

    Returns
    -------
    str
        Absolute path of the executable.

    Raises
    ------
    SExtractorNotFoundError
        Nothing executable was found; the message names the package to install.
    """
    if binary is not None:
        candidates = [os.fspath(binary)]
    elif os.environ.get(BINARY_ENV):
        candidates = [os.environ[BINARY_ENV]]
    else:
        candidates = list(BINARY_NAMES)
    for name in candidates:
        found = shutil.which(name)
        if found:
            return str(Path(found).resolve())
    raise SExtractorNotFoundError(
        f"SExtractor executable not found (tried {', '.join(map(repr, candidates))}): "
        f"{_INSTALL_HINT}"
    )


def sextractor_version(*, binary: str | os.PathLike[str] | None = None) -> str:
    """Version line of the SExtractor executable (``source-extractor -v``).

    Parameters
    ----------
    binary : str or path-like, optional
        See `find_sextractor`.

    Returns
    -------
    str
        For example ``"Source Extractor version 2.25.0 (2018-02-08)"``.
    """
    exe = find_sextractor(binary)
    proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30, check=False)
    lines = (proc.stdout or proc.stderr or "").strip().splitlines()
    return lines[0] if lines else ""


def gaussian_filter_kernel(fwhm: float) -> np.ndarray:
    """A normalised 2-D Gaussian detection filter of ``fwhm`` pixels.

    The side is odd, at least 3 and about three FWHM (SExtractor's
    ``gauss_*.conv`` files use the same shape), at most 31 pixels.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in pixels, > 0.

    Returns
    -------
    ndarray of float64, shape (n, n)
        Sums to 1.
    """
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"filter fwhm={fwhm!r} must be a positive number of pixels")
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    half = min(15, max(1, int(math.ceil(1.5 * fwhm))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    one = np.exp(-0.5 * (x / sigma) ** 2)
    kern = np.outer(one, one)
    return kern / kern.sum()


def _write_filter(path: Path, kernel: np.ndarray) -> None:
    lines = [f"CONV NORM\n# {kernel.shape[1]}x{kernel.shape[0]} Gaussian filter (galcat)\n"]
    lines += [" ".join(f"{v:.6g}" for v in row) + "\n" for row in kernel]
    path.write_text("".join(lines))


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, (list, tuple)):
        return ",".join(_format_value(v) for v in value)
    return str(value)


def _check_options(
    *,
    detect_thresh: float,
    analysis_thresh: float,
    detect_minarea: int,
    deblend_nthresh: int,
    deblend_mincont: float,
    phot_fluxfrac: float,
) -> None:
    if not (math.isfinite(detect_thresh) and detect_thresh > 0):
        raise ValueError(f"detect_thresh={detect_thresh!r} must be > 0 (sigmas)")
    if not (math.isfinite(analysis_thresh) and analysis_thresh > 0):
        raise ValueError(f"analysis_thresh={analysis_thresh!r} must be > 0 (sigmas)")
    if int(detect_minarea) != detect_minarea or detect_minarea < 1:
        raise ValueError(f"detect_minarea={detect_minarea!r} must be an integer >= 1")
    if int(deblend_nthresh) != deblend_nthresh or not 1 <= deblend_nthresh <= 64:
        raise ValueError(f"deblend_nthresh={deblend_nthresh!r} must be an integer in [1, 64]")
    if not 0.0 <= deblend_mincont <= 1.0:
        raise ValueError(f"deblend_mincont={deblend_mincont!r} must be in [0, 1]")
    if not 0.0 < phot_fluxfrac < 1.0:
        raise ValueError(f"phot_fluxfrac={phot_fluxfrac!r} must be in (0, 1)")


def _read_catalogue(path: Path, parameters: Sequence[str]) -> pd.DataFrame:
    with fits.open(path, memmap=False) as hdul:
        # FITS_LDAC: primary, LDAC_IMHEAD, LDAC_OBJECTS
        hdu = next((h for h in hdul if h.name == "LDAC_OBJECTS"), None)
        if hdu is None:
            raise SExtractorError(f"no LDAC_OBJECTS table in the SExtractor catalogue {path}")
        data = hdu.data
        columns: dict[str, np.ndarray] = {}
        for name in parameters:
            if data is None or len(data) == 0:
                col = np.empty(0, dtype=np.float64)
            else:
                col = np.asarray(data[name])
                col = col.astype(col.dtype.newbyteorder("="))  # native byte order for pandas
            columns[name] = col
    table = pd.DataFrame(columns)
    for name in ("NUMBER", "FLAGS"):
        if name in table:
            table[name] = table[name].astype("int32")
    if "X_IMAGE" in table and "Y_IMAGE" in table:
        table["x"] = table["X_IMAGE"].astype(np.float64) - 1.0
        table["y"] = table["Y_IMAGE"].astype(np.float64) - 1.0
    return table


def run_sextractor(
    image: np.ndarray,
    sigma: np.ndarray | None = None,
    *,
    mask: np.ndarray | None = None,
    detect_thresh: float = 1.5,
    analysis_thresh: float | None = None,
    detect_minarea: int = 5,
    deblend_nthresh: int = 32,
    deblend_mincont: float = 0.005,
    filter_fwhm: float | None = 3.0,
    clean: bool = True,
    clean_param: float = 1.0,
    back_size: int | None = None,
    back_filtersize: int = 1,
    back_value: float | None = None,
    rescale_weights: bool = False,
    gain: float = 0.0,
    phot_autoparams: tuple[float, float] = (2.5, 3.5),
    phot_fluxfrac: float = 0.5,
    mag_zeropoint: float = 0.0,
    parameters: Sequence[str] = DEFAULT_PARAMETERS,
    extra_config: Mapping[str, Any] | None = None,
    binary: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
    workdir: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Detect, deblend and measure the sources of one image with SExtractor.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        The image, any flux unit per pixel. Non-finite pixels are bad pixels.
    sigma : ndarray, shape (ny, nx), optional
        1-sigma noise of every pixel, same unit: written as an RMS map
        (``WEIGHT_TYPE MAP_RMS``), so that ``detect_thresh`` is in units of it.
        Non-finite or non-positive values are bad pixels. Without it SExtractor
        measures a single noise level from the image (``WEIGHT_TYPE NONE``).
    mask : ndarray of bool, shape (ny, nx), optional
        True where a pixel must not be used (given a huge RMS; without a
        ``sigma`` map, masked pixels are set to 0).
    detect_thresh, analysis_thresh : float
        ``DETECT_THRESH`` and ``ANALYSIS_THRESH`` in sigmas (the latter defaults
        to the former).
    detect_minarea : int
        ``DETECT_MINAREA``, the fewest connected pixels of a detection.
    deblend_nthresh : int
        ``DEBLEND_NTHRESH``, number of exponentially spaced deblending levels.
    deblend_mincont : float
        ``DEBLEND_MINCONT``, the fraction of the total flux a branch must hold
        to be split off (0 splits everything, 1 nothing).
    filter_fwhm : float or None
        FWHM in pixels of the Gaussian detection filter (best matched to the
        PSF); None switches filtering off (``FILTER N``).
    clean, clean_param : bool, float
        ``CLEAN`` and ``CLEAN_PARAM``: remove spurious detections in the wings
        of bright ones.
    back_size : int, optional
        ``BACK_SIZE`` in pixels; default the larger image side, i.e. one mesh
        (a constant background), right for a small cutout.
    back_filtersize : int
        ``BACK_FILTERSIZE``.
    back_value : float, optional
        A known constant background (``BACK_TYPE MANUAL``) instead of an
        estimate.
    rescale_weights : bool
        ``RESCALE_WEIGHTS``: let SExtractor rescale the ``sigma`` map to the
        noise it measures (default off: ``sigma`` is trusted).
    gain : float
        ``GAIN`` in e-/unit for the flux errors; 0 (the default) when ``sigma``
        already includes the sources' Poisson noise.
    phot_autoparams : (float, float)
        ``PHOT_AUTOPARAMS``: Kron factor and minimum radius of ``FLUX_AUTO``.
    phot_fluxfrac : float
        ``PHOT_FLUXFRAC``: the light fraction of ``FLUX_RADIUS`` (0.5: the
        half-light radius).
    mag_zeropoint : float
        ``MAG_ZEROPOINT`` (only for magnitude columns asked in ``parameters``).
    parameters : sequence of str
        Catalogue columns (SExtractor names, scalar ones); default
        `DEFAULT_PARAMETERS`.
    extra_config : mapping, optional
        Further configuration keys and values, which override the above
        (``{"BACKPHOTO_TYPE": "LOCAL"}``).
    binary : str or path-like, optional
        The executable; see `find_sextractor`.
    timeout : float
        Seconds before the run is killed.
    workdir : str or path-like, optional
        Keep the FITS, configuration and catalogue files in this (existing)
        directory instead of a temporary one removed afterwards: for debugging.

    Returns
    -------
    table : pandas.DataFrame
        One row per detection in ``NUMBER`` order, the ``parameters`` columns
        plus ``x``, ``y``: the 0-based ``X_IMAGE - 1``, ``Y_IMAGE - 1``.
        ``table.attrs`` holds ``config`` (the keys passed) and ``binary``.
    segmap : ndarray of int32, shape (ny, nx)
        The ``SEGMENTATION`` check-image: 0 background, ``NUMBER`` elsewhere.

    Raises
    ------
    SExtractorNotFoundError
        The executable is missing (the message names the package to install).
    SExtractorError
        The run failed or timed out; the message includes its standard error.
    ValueError
        The arrays are not 2-D of one shape, or an option is out of range.

    Examples
    --------
    >>> table, segmap = run_sextractor(image, sigma, detect_thresh=1.5,
    ...                                filter_fwhm=psf_fwhm)  # doctest: +SKIP
    >>> table[["x", "y", "FLUX_AUTO", "FLUX_RADIUS"]]  # doctest: +SKIP
    """
    exe = find_sextractor(binary)
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"image must be a non-empty 2-D array; got shape {image.shape}")
    bad = ~np.isfinite(image)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image {image.shape}")
        bad |= mask
    rms = None
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != image.shape:
            raise ValueError(f"sigma shape {sigma.shape} differs from image {image.shape}")
        bad |= ~(np.isfinite(sigma) & (sigma > 0))
        rms = np.where(bad, _BAD_RMS, sigma).astype(np.float32)
    analysis_thresh = detect_thresh if analysis_thresh is None else analysis_thresh
    _check_options(
        detect_thresh=detect_thresh,
        analysis_thresh=analysis_thresh,
        detect_minarea=detect_minarea,
        deblend_nthresh=deblend_nthresh,
        deblend_mincont=deblend_mincont,
        phot_fluxfrac=phot_fluxfrac,
    )
    parameters = list(parameters)
    if not parameters:
        raise ValueError("parameters must name at least one catalogue column")
    data = np.where(bad, 0.0, image).astype(np.float32)

    config: dict[str, Any] = {
        "CATALOG_NAME": "cat.fits",
        "CATALOG_TYPE": "FITS_LDAC",
        "PARAMETERS_NAME": "cat.param",
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": int(detect_minarea),
        "THRESH_TYPE": "RELATIVE",
        "DETECT_THRESH": float(detect_thresh),
        "ANALYSIS_THRESH": float(analysis_thresh),
        "FILTER": filter_fwhm is not None,
        "DEBLEND_NTHRESH": int(deblend_nthresh),
        "DEBLEND_MINCONT": float(deblend_mincont),
        "CLEAN": bool(clean),
        "CLEAN_PARAM": float(clean_param),
        "MASK_TYPE": "CORRECT",
        "WEIGHT_TYPE": "MAP_RMS" if rms is not None else "NONE",
        "PHOT_AUTOPARAMS": tuple(float(v) for v in phot_autoparams),
        "PHOT_FLUXFRAC": float(phot_fluxfrac),
        "SATUR_LEVEL": 1.0e18,
        "MAG_ZEROPOINT": float(mag_zeropoint),
        "GAIN": float(gain),
        "PIXEL_SCALE": 1.0,
        "BACK_TYPE": "AUTO" if back_value is None else "MANUAL",
        "BACK_VALUE": 0.0 if back_value is None else float(back_value),
        "BACK_SIZE": int(back_size or max(image.shape)),
        "BACK_FILTERSIZE": int(back_filtersize),
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "SEGMENTATION",
        "CHECKIMAGE_NAME": "seg.fits",
        "VERBOSE_TYPE": "QUIET",
        "WRITE_XML": False,
        "NTHREADS": 1,
    }
    if filter_fwhm is not None:
        config["FILTER_NAME"] = "gauss.conv"
    if rms is not None:
        config.update(
            WEIGHT_IMAGE="weight.fits",
            WEIGHT_THRESH=_BAD_RMS_THRESH,
            RESCALE_WEIGHTS=bool(rescale_weights),
            WEIGHT_GAIN=False,
        )
    if extra_config:
        config.update({str(k).upper(): v for k, v in extra_config.items()})

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="galcat-sex-")
        work = Path(tmp.name)
    else:
        work = Path(workdir)
    try:
        fits.PrimaryHDU(data).writeto(work / "image.fits", overwrite=True)
        if rms is not None:
            fits.PrimaryHDU(rms).writeto(work / "weight.fits", overwrite=True)
        if filter_fwhm is not None:
            _write_filter(work / "gauss.conv", gaussian_filter_kernel(float(filter_fwhm)))
        (work / "cat.param").write_text("\n".join(parameters) + "\n")
        (work / "cat.sex").write_text(
            "".join(f"{key:<18} {_format_value(val)}\n" for key, val in config.items())
        )
        for stale in ("cat.fits", "seg.fits"):
            (work / stale).unlink(missing_ok=True)
        cmd = [exe, "image.fits", "-c", "cat.sex"]
        try:
            proc = subprocess.run(
                cmd, cwd=work, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            raise SExtractorError(
                f"SExtractor ({exe}) did not finish in {timeout} s; stderr:\n{err}",
                stderr=err,
            ) from exc
        stderr = (proc.stderr or "").strip()
        if proc.returncode != 0 or not (work / "cat.fits").is_file():
            raise SExtractorError(
                f"SExtractor ({exe}) failed with exit status {proc.returncode}; "
                f"stderr:\n{stderr or '(empty)'}",
                returncode=proc.returncode,
                stderr=stderr,
            )
        try:
            table = _read_catalogue(work / "cat.fits", parameters)
            with fits.open(work / "seg.fits", memmap=False) as hdul:
                segmap = np.asarray(hdul[0].data, dtype=np.int32)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise SExtractorError(
                f"could not read SExtractor's output ({type(exc).__name__}: {exc}); "
                f"stderr:\n{stderr or '(empty)'}",
                returncode=proc.returncode,
                stderr=stderr,
            ) from exc
    finally:
        if tmp is not None:
            tmp.cleanup()
    if segmap.shape != image.shape:
        raise SExtractorError(
            f"SExtractor's segmentation map has shape {segmap.shape}, not {image.shape}"
        )
    table.attrs["config"] = {k: _format_value(v) for k, v in config.items()}
    table.attrs["binary"] = exe
    return table, segmap
