"""galcat.fastmorph: statmorph's values at less cost (issue 15).

The faster asymmetry (flip + sub-pixel shift in place of ``skimage.transform.rotate``) and
the apertures computed once are checked piece by piece against what they replace
(skimage, photutils), then as a whole against ``statmorph.SourceMorphology``: on
statmorph's own reference image, within statmorph's own tolerance (its test compares
with rtol = 1e-5) and against its published asymmetry, and on synthetic galaxies with
a PSF, where every statistic and flag must agree.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import skimage.transform
import statmorph
from astropy.io import fits
from photutils.aperture import (
    CircularAnnulus,
    CircularAperture,
    EllipticalAnnulus,
    EllipticalAperture,
)
from statmorph.statmorph import _quantity_names

from galcat import fastmorph, morphology, sersic
from galcat.fastmorph import ApertureWeights

RNG = np.random.default_rng(15)


# --------------------------------------------------------------------------- rotation
@pytest.mark.parametrize("centre", [(20.3, 17.81), (0.2, 39.7), (12.5, 12.5), (31.0, 4.0),
                                    (39.99, 0.01)])
def test_rotation_by_180_is_skimage_rotate(centre):
    image = RNG.normal(size=(40, 41))
    mask = RNG.random((40, 41)) < 0.2
    pad = 43
    ours = fastmorph.rotate_180(np.pad(image, pad), image.shape, centre, pad)
    theirs = skimage.transform.rotate(image, 180.0, center=centre)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    ours_mask = fastmorph.rotate_180_mask(np.pad(mask, pad), mask.shape, centre, pad)
    theirs_mask = skimage.transform.rotate(mask, 180.0, center=centre)
    assert theirs_mask.dtype == bool  # skimage rotates a bool mask with order 0
    np.testing.assert_array_equal(ours_mask, theirs_mask)


# --------------------------------------------------------------------------- apertures
APERTURES = [
    (CircularAperture((20.3, 18.7), r=7.4), lambda s: ApertureWeights.circle(s, (20.3, 18.7), 7.4)),
    (CircularAperture((1.2, 38.6), r=9.0), lambda s: ApertureWeights.circle(s, (1.2, 38.6), 9.0)),
    (CircularAnnulus((20.3, 18.7), r_in=3.1, r_out=4.1),
     lambda s: ApertureWeights.circular_annulus(s, (20.3, 18.7), 3.1, 4.1)),
    (EllipticalAperture((22.1, 19.4), a=8.2, b=5.1, theta=0.7),
     lambda s: ApertureWeights.ellipse(s, (22.1, 19.4), 8.2, 5.1, 0.7)),
    (EllipticalAnnulus((38.5, 2.4), a_in=5.0, a_out=6.0, b_out=3.3, theta=-2.1),
     lambda s: ApertureWeights.elliptical_annulus(s, (38.5, 2.4), 5.0, 6.0, 3.3, -2.1)),
    (CircularAperture((80.0, 80.0), r=3.0), lambda s: ApertureWeights.circle(s, (80.0, 80.0), 3.0)),
]


@pytest.mark.parametrize(("aperture", "ours"), APERTURES)
def test_aperture_weights_give_photutils_sums_and_areas(aperture, ours):
    image = RNG.normal(size=(40, 41))
    mask = RNG.random((40, 41)) < 0.3
    weights = ours(image.shape)
    expected_sum = aperture.do_photometry(image, method="exact")[0][0]
    expected_area = aperture.area_overlap(image, mask=mask)
    if np.isnan(expected_sum):  # no overlap with the image
        assert np.isnan(weights.sum(image)) and np.isnan(weights.area(mask))
        return
    assert weights.sum(image) == expected_sum  # the same grid, the same summation
    assert weights.area(mask) == expected_area
    assert weights.area() == aperture.area_overlap(image)


# --------------------------------------------------------------------------- the whole
@pytest.fixture(scope="module")
def reference_slice():
    """statmorph's own test galaxy (image, segmap, mask) and its test's weight map."""
    path = os.path.join(os.path.dirname(statmorph.__file__), "tests", "data", "slice.fits")
    assert os.path.exists(path), f"statmorph's reference image is missing: {path}"
    with fits.open(path) as hdul:
        image = hdul[0].data.astype(np.float64)
        segmap = hdul[1].data.astype(np.int64)
        mask = hdul[2].data.astype(bool)
    weightmap = np.sqrt(np.abs(image) / 1.0 + 150.91754150390625**2)  # as statmorph's test
    return image, segmap, mask, weightmap


def _both(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (statmorph.SourceMorphology(*args, **kwargs),
                fastmorph.SourceMorphology(*args, **kwargs))


def _assert_same(slow, fast, rtol):
    assert fast.flag == slow.flag and fast.flag_sersic == slow.flag_sersic
    for name in _quantity_names:
        np.testing.assert_allclose(fast[name], slow[name], rtol=rtol, atol=0,
                                   err_msg=name, equal_nan=True)


def test_fast_statmorph_on_statmorph_reference_image(reference_slice):
    image, segmap, mask, weightmap = reference_slice
    slow, fast = _both(image, segmap, 1, mask=mask, weightmap=weightmap)
    _assert_same(slow, fast, rtol=1e-5)  # statmorph's own tolerance
    # statmorph 0.7.2's published values (tests/test_statmorph.py, TestSourceMorphology)
    assert fast.asymmetry == pytest.approx(0.00377345808887, rel=1e-5)
    assert fast.xc_asymmetry == pytest.approx(82.23985214801982, rel=1e-5)
    assert fast.yc_asymmetry == pytest.approx(80.76076242700849, rel=1e-5)
    assert fast.rms_asymmetry2 == pytest.approx(0.0053900924481633, rel=1e-5)
    assert fast.rpetro_circ == pytest.approx(40.93755531944313, rel=1e-5)


def test_fast_statmorph_on_synthetic_galaxies_with_a_psf(tiny_config):
    from galcat.segment import segment_shard
    from galcat.surveys import synthetic

    rows = synthetic.query(tiny_config).iloc[:6]
    batch = synthetic.cutouts(rows, tiny_config)
    config = {**tiny_config, "dask": {**tiny_config["dask"], "scheduler": "synchronous"}}
    segmap = segment_shard(batch, config=config).segmap
    b = batch.band_index("r")
    psf = sersic.normalised_psf(batch.psf[b])
    compared = 0
    for i in range(batch.n_objects):
        if not (segmap[i] == 1).any():
            continue
        image, sigma = batch.image[i, b], batch.sigma[i, b]
        valid = morphology._valid_pixels(image, sigma, batch.mask[i, b])
        slow, fast = _both(np.where(valid, image, 0), segmap[i].astype(np.int64), 1,
                           mask=~valid | (segmap[i] > 1), weightmap=np.where(valid, sigma, 0),
                           psf=psf)
        _assert_same(slow, fast, rtol=1e-9)
        compared += 1
    assert compared >= 4


def test_skip_sersic_leaves_out_the_sersic_fit_and_nothing_else(reference_slice):
    """galcat fits its own Sérsic (`morphology.fit_sersic`): with ``skip_sersic`` statmorph
    must not fit one at construction, and every other quantity must be unchanged."""
    image, segmap, mask, weightmap = reference_slice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = fastmorph.SourceMorphology(image, segmap, 1, mask=mask, weightmap=weightmap)
        lean = fastmorph.SourceMorphology(image, segmap, 1, mask=mask, weightmap=weightmap,
                                          skip_sersic=True)
    assert "_sersic_model" in full.__dict__  # statmorph fits it eagerly ...
    assert "_sersic_model" not in lean.__dict__  # ... unless told not to
    assert lean.flag == full.flag
    for name in _quantity_names:
        if not name.startswith("sersic_"):
            np.testing.assert_array_equal(lean[name], full[name], err_msg=name)


class _Skybox:
    """Just what statmorph's ``_slice_skybox`` reads, on both classes."""

    def __init__(self, segmap, mask, size):
        self._segmap = type("Segmap", (), {"data": segmap})()
        self._mask = mask
        self._skybox_size = size
        self._verbose = False
        self.flag = 0
        self.__dict__["_slice_stamp"] = (slice(0, segmap.shape[0]), slice(0, segmap.shape[1]))


class _SlowSkybox(_Skybox, statmorph.SourceMorphology):
    pass


class _FastSkybox(_Skybox, fastmorph.SourceMorphology):
    pass


def test_sky_box_is_statmorph_sky_box():
    rng = np.random.default_rng(21)
    found = missing = 0
    for _ in range(150):
        ny, nx = (int(v) for v in rng.integers(6, 70, 2))
        segmap = (rng.random((ny, nx)) < rng.uniform(0, 0.05)).astype(np.int64)
        segmap[ny // 2 - 2:ny // 2 + 2, nx // 2 - 2:nx // 2 + 2] = 1
        mask = rng.random((ny, nx)) < rng.uniform(0, 0.03)
        if rng.random() < 0.2:  # no room for a box at all
            mask[::2, ::2] = True
        size = int(rng.integers(2, 40))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slow, fast = _SlowSkybox(segmap, mask, size), _FastSkybox(segmap, mask, size)
            assert fast._slice_skybox == slow._slice_skybox
        assert fast.flag == slow.flag
        found += slow._slice_skybox[0].stop > 0
        missing += slow._slice_skybox[0].stop == 0
    assert found > 20 and missing > 5  # boxes found (at several sizes) and not found
