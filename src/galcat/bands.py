"""The run's detection band (``detect_band``): its resolution and the ``sum`` image.

One setting names the band in which every stage detects and measures: `segment`, the
mosaic detection of ``survey: local`` (`galcat.detection`) and `measure`. It is a
band of the survey, ``sum`` or ``auto`` (the schema default), resolved by
`resolve_detect_band` the same way everywhere (before any job, against the
configured bands; in a job, against the shard's bands, which are the same):

* ``auto``: ``r`` when the survey has it (SDSS, MaNGA, the synthetic survey), else
  the middle band of the band list, index ``(n - 1) // 2`` (the central wavelength
  when the bands are listed blue to red: F200W of the six default JADES filters;
  a single band is itself);
* ``sum``: the sum of every band (`sum_planes`): pixel values added in the cutouts'
  common flux unit, noise added in quadrature, a pixel bad when it is bad in any
  band, and as PSF the mean of the bands' unit-sum PSFs (exact for a source of equal
  flux in every band, an approximation for coloured ones). It is deeper than any one
  band and the usual detection image of multi-band mosaics. Bands in different flux
  units cannot be added: `with_sum_band` refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from galcat.store import CutoutBatch, LayoutError

__all__ = [
    "AUTO",
    "SUM",
    "detection_planes",
    "resolve_detect_band",
    "sum_planes",
    "with_sum_band",
]

#: ``detect_band`` value resolved from the survey's bands.
AUTO = "auto"
#: ``detect_band`` value naming the sum of every band.
SUM = "sum"


def resolve_detect_band(setting: str, bands: Sequence[str]) -> str:
    """The detection band ``setting`` means for a survey with ``bands``.

    Parameters
    ----------
    setting : str
        ``detect_band``: a band name, ``sum`` or ``auto``.
    bands : sequence of str
        The survey's bands in their configured order.

    Returns
    -------
    str
        A name in ``bands``, or ``sum``.

    Raises
    ------
    LayoutError
        A named band the survey does not have (a `ValueError`), naming both.
    """
    bands = list(bands)
    if setting == SUM:
        return SUM
    if setting == AUTO:
        if not bands:
            raise LayoutError("detect_band auto: the survey has no bands")
        return "r" if "r" in bands else bands[(len(bands) - 1) // 2]
    if setting not in bands:
        raise LayoutError(f"detect_band {setting!r} is not a band of this survey, which has "
                          f"{bands}; set detect_band to one of them, sum or auto")
    return setting


def sum_planes(images: Sequence[np.ndarray], sigmas: Sequence[np.ndarray],
               masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``sum`` image of several bands of one grid: ``(image, sigma, mask)``.

    Pixel values are added, noise in quadrature; a pixel is bad (mask True, value 0)
    where it is bad or not finite in any band. Arrays of one shape, any number of
    leading axes; float64 results.
    """
    bad = np.zeros(np.shape(images[0]), dtype=bool)
    for img, sig, msk in zip(images, sigmas, masks, strict=True):
        bad |= np.asarray(msk, dtype=bool) | ~np.isfinite(img) | ~np.isfinite(sig)
    image = np.zeros(bad.shape)
    variance = np.zeros(bad.shape)
    for img, sig in zip(images, sigmas, strict=True):
        image += np.where(bad, 0.0, img)
        variance += np.where(bad, 0.0, np.square(sig, dtype=np.float64))
    return image, np.where(bad, np.nan, np.sqrt(variance)), bad


def _mean_psf(psfs: np.ndarray) -> np.ndarray:
    psfs = np.asarray(psfs, dtype=np.float64)
    unit = psfs / psfs.sum(axis=(1, 2), keepdims=True)
    mean = unit.mean(axis=0)
    return (mean / mean.sum()).astype(np.float32)


def _check_one_scale(batch: CutoutBatch) -> None:
    if len(set(np.round(batch.zeropoints, 6))) > 1:
        raise LayoutError(
            f"detect_band sum adds the bands' pixel values, but this shard's bands have "
            f"different zero points {dict(zip(batch.bands, batch.zeropoints, strict=True))}; "
            "set detect_band to one band")


def detection_planes(batch: CutoutBatch, band: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(image, sigma, mask, psf)`` of the detection band of a shard, (n, y, x) each
    and (py, px); ``band`` already resolved (`resolve_detect_band`). Views of the
    batch for a named band, new arrays for ``sum``."""
    if band != SUM:
        k = batch.band_index(band)
        return batch.image[:, k], batch.sigma[:, k], batch.mask[:, k], batch.psf[k]
    _check_one_scale(batch)
    image, sigma, mask = sum_planes(
        [batch.image[:, k] for k in range(len(batch.bands))],
        [batch.sigma[:, k] for k in range(len(batch.bands))],
        [batch.mask[:, k] for k in range(len(batch.bands))])
    return (image.astype(np.float32), sigma.astype(np.float32), mask,
            _mean_psf(batch.psf))


def with_sum_band(batch: CutoutBatch) -> CutoutBatch:
    """``batch`` with a ``sum`` band appended (`detection_planes`); itself if it has one.

    Measuring in the ``sum`` band (``detect_band: sum``) treats it as one more band of
    the shard: its zero point is the bands' common one.
    """
    if SUM in batch.bands:
        return batch
    image, sigma, mask, psf = detection_planes(batch, SUM)
    return CutoutBatch(
        object_id=batch.object_id,
        image=np.concatenate([batch.image, image[:, None]], axis=1),
        sigma=np.concatenate([batch.sigma, sigma[:, None]], axis=1),
        mask=np.concatenate([batch.mask, mask[:, None]], axis=1),
        psf=np.concatenate([batch.psf, psf[None]], axis=0),
        bands=[*batch.bands, SUM],
        pixel_scale=batch.pixel_scale,
        zeropoints=[*batch.zeropoints, batch.zeropoints[0]],
        flux_unit=batch.flux_unit,
        survey=batch.survey,
        extras=batch.extras,
        cut_size=batch.cut_size,
        cut_origin=batch.cut_origin,
        cut_wcs=batch.cut_wcs,
    )
