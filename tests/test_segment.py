"""Segmentation: background, detection, the three deblenders, the central object, flags.

Test images are rendered here with GalSim (PSF-convolved Exponential / Sérsic
profiles, a constant sky and Gaussian noise), independent of the synthetic survey.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from galcat import segment as seg
from galcat.flags import SegmentFlag, describe
from galcat.segment import (
    DEFAULTS,
    METHODS,
    SEGMENT_COLUMN_DESCRIPTIONS,
    SEGMENT_COLUMN_UNITS,
    SEGMENT_COLUMNS,
    SegmentationResult,
    SegmentOptionError,
    psf_fwhm_pixels,
    segment_image,
    segment_options,
    segment_shard,
)
from galcat.store import CutoutBatch, LayoutError

# Any warning raised while our code runs (a deprecated photutils argument, a
# NumPy runtime warning, a photutils NoDetectionsWarning) fails the test.
pytestmark = pytest.mark.filterwarnings("error")

ROOT = Path(__file__).resolve().parents[1]
N = 64
PIXEL_SCALE = 0.396
PSF_FWHM = 1.3  # arcsec, 3.3 pixels
SKY = 5.0
NOISE = 1.0
CENTRE = (N - 1) / 2.0  # 31.5: GalSim centres a profile between the 4 central pixels


@functools.cache
def _psf_stamp() -> np.ndarray:
    return galsim.Gaussian(fwhm=PSF_FWHM).drawImage(nx=25, ny=25, scale=PIXEL_SCALE).array


def render(*components, seed: int = 1, sky: float = SKY, noise: float = NOISE) -> np.ndarray:
    """Sum of PSF-convolved profiles ``(profile, dx, dy)`` (pixels from the centre)."""
    psf = galsim.Gaussian(fwhm=PSF_FWHM)
    img = galsim.ImageF(N, N, scale=PIXEL_SCALE)
    for profile, dx, dy in components:
        galsim.Convolve(profile, psf).shift(dx * PIXEL_SCALE, dy * PIXEL_SCALE).drawImage(
            img, add_to_image=True
        )
    rng = np.random.default_rng(seed)
    return img.array.astype(np.float64) + sky + rng.normal(0.0, noise, (N, N))


def exp_gal(hlr_pix: float, flux: float, q: float = 1.0, beta_deg: float = 0.0):
    prof = galsim.Exponential(half_light_radius=hlr_pix * PIXEL_SCALE, flux=flux)
    return prof.shear(q=q, beta=beta_deg * galsim.degrees) if q != 1.0 else prof


def sersic_gal(n: float, hlr_pix: float, flux: float):
    return galsim.Sersic(n=n, half_light_radius=hlr_pix * PIXEL_SCALE, flux=flux)


SIGMA = np.full((N, N), NOISE)
FWHM_PIX = PSF_FWHM / PIXEL_SCALE

ISOLATED = {
    "exponential": lambda: render((exp_gal(4.0, 3000, q=0.6, beta_deg=30), 0, 0)),
    "devaucouleurs": lambda: render((sersic_gal(4.0, 3.0, 4000), 0, 0), seed=2),
}
#: (image, companion position (x, y) in pixels)
SEPARATED_PAIR = (
    lambda: render((exp_gal(2.5, 1500), 0, 0), (exp_gal(2.0, 1000), -20, 13), seed=3),
    (CENTRE - 20, CENTRE + 13),
)
CLOSE_PAIR = (
    lambda: render((exp_gal(3.0, 2000), 0, 0), (exp_gal(2.5, 1500), 8, 3), seed=4),
    (CENTRE + 8, CENTRE + 3),
)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def run(image, sigma=SIGMA, mask=None, **kw):
    kw.setdefault("kernel_fwhm", FWHM_PIX)
    return segment_image(image, sigma, mask, **kw)


# --------------------------------------------------------------------------- science


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", sorted(ISOLATED))
def test_isolated_galaxy_is_label_1_and_centred(method, kind):
    segmap, flags, info = run(ISOLATED[kind](), method=method)
    assert segmap.dtype == np.int32 and segmap.shape == (N, N)
    assert flags == 0, describe(flags, SegmentFlag)
    # not shredded: anything else found is a noise peak of a few pixels that does not touch
    # the galaxy (the default threshold, 0.8 sigma smoothed, trades a few of these for
    # completeness)
    assert info["n_sources"] == segmap.max() <= 2
    for label in range(2, segmap.max() + 1):
        blob = segmap == label
        assert blob.sum() <= 2 * DEFAULTS["n_pixels"]
        assert not (ndimage.binary_dilation(blob, iterations=2) & (segmap == 1)).any()
    assert segmap[N // 2 - 1 : N // 2 + 1, N // 2 - 1 : N // 2 + 1].min() == 1
    cx, cy = centroid(segmap == 1)
    assert abs(cx - CENTRE) < 1.0 and abs(cy - CENTRE) < 1.0
    assert 100 < info["central_area"] < 0.5 * N * N
    # the far wings of a de Vaucouleurs profile bias the sky by < 0.15 sigma
    assert info["background"] == pytest.approx(SKY, abs=0.15 * NOISE)
    assert info["background_rms"] == pytest.approx(NOISE, rel=0.1)
    # most of the flux is inside the segment, and the segment holds little sky
    assert 0.8 * 3000 < info["central_flux"] < 1.05 * 4000


@pytest.mark.parametrize("method", METHODS)
def test_each_method_separates_a_well_separated_pair(method):
    make, (x2, y2) = SEPARATED_PAIR
    segmap, flags, info = run(make(), method=method)
    assert info["n_sources"] == 2, describe(flags, SegmentFlag)
    assert segmap[N // 2, N // 2] == 1
    assert segmap[round(y2), round(x2)] == 2
    cx, cy = centroid(segmap == 2)
    assert abs(cx - x2) < 1.5 and abs(cy - y2) < 1.5
    assert not flags & SegmentFlag.BLENDED


@pytest.mark.parametrize("method", ["multithreshold", "watershed"])
def test_close_pair_is_deblended(method):
    make, (x2, y2) = CLOSE_PAIR
    segmap, flags, info = run(make(), method=method)
    assert info["n_detected"] == 1  # one detected source ...
    assert info["n_sources"] == 2  # ... split in two
    assert segmap[N // 2, N // 2] == 1
    assert segmap[round(y2), round(x2)] == 2
    assert flags & SegmentFlag.BLENDED
    assert flags & ~SegmentFlag.BLENDED == 0, describe(flags, SegmentFlag)


def test_less_smoothing_for_deblending_splits_a_tighter_pair():
    # 7 pixels apart, ~2 PSF FWHM: the PSF-sized detection kernel erases the saddle
    image = render((exp_gal(4.0, 2000), 0, 0), (exp_gal(3.2, 1200), 7, 0), seed=22)
    merged, _, info = run(image, method="watershed", deblend_smoothing=1.0)
    assert info["n_sources"] == 1
    split, flags, info = run(image, method="watershed")  # default: half the kernel
    assert info["n_sources"] == 2 and flags == SegmentFlag.BLENDED
    assert split[round(CENTRE), round(CENTRE)] == 1
    assert split[round(CENTRE), round(CENTRE + 7)] == 2


def test_bright_compact_neighbour_on_the_halo_is_separated():
    image = render(
        (exp_gal(6.0, 20000), 0, 0),
        (galsim.Gaussian(sigma=0.05, flux=3000), 10, -6),
        seed=5,
    )
    for method in ("multithreshold", "watershed"):
        segmap, flags, info = run(image, method=method)
        assert info["n_sources"] == 2, method
        assert segmap[round(CENTRE - 6), round(CENTRE + 10)] == 2
        assert flags & SegmentFlag.BLENDED


def test_dbscan_noise_pixels_are_attached_and_small_clusters_merged():
    # min_samples larger than a pixel's neighbourhood: every pixel is DBSCAN noise,
    # and the detected source is kept whole instead of being lost
    image = ISOLATED["exponential"]()
    ref, _, ref_info = run(image, method="multithreshold")
    segmap, flags, info = run(image, method="dbscan", dbscan_min_samples=50)
    assert flags == 0 and info["n_sources"] == 1
    np.testing.assert_array_equal(segmap, ref)
    # every detected pixel has an object: the union of objects is the detection
    for method in METHODS:
        other, _, _ = run(CLOSE_PAIR[0](), method=method)
        base, _, _ = run(CLOSE_PAIR[0](), method="multithreshold", deblend_contrast=1.0)
        np.testing.assert_array_equal(other > 0, base > 0)


def test_neighbours_are_ordered_by_distance_from_the_centre():
    image = render(
        (exp_gal(2.5, 1500), 0, 0),
        (exp_gal(2.0, 1500), 24, 24),
        (exp_gal(2.0, 1500), -14, 0),
        seed=6,
    )
    segmap, _, info = run(image, method="watershed")
    assert info["n_sources"] == 3
    assert segmap[round(CENTRE), round(CENTRE - 14)] == 2
    assert segmap[round(CENTRE + 24), round(CENTRE + 24)] == 3


def test_detection_matches_photutils_detect_sources():
    from photutils.segmentation import detect_sources

    image = CLOSE_PAIR[0]() - SKY
    valid = np.ones_like(image, dtype=bool)
    kernel = seg._kernel(round(FWHM_PIX, 3))
    smoothed = seg._smooth(image, valid, kernel)
    threshold = 1.5 * SIGMA
    ours = seg._detect(smoothed, threshold, valid, 5)
    theirs = detect_sources(smoothed, threshold, n_pixels=5).data
    np.testing.assert_array_equal(ours > 0, theirs > 0)
    assert ours.max() == theirs.max()


def test_psf_fwhm_from_the_stamp():
    assert psf_fwhm_pixels(_psf_stamp()) == pytest.approx(FWHM_PIX, rel=0.15)
    assert psf_fwhm_pixels(np.zeros((5, 5))) == seg.FALLBACK_KERNEL_FWHM
    assert psf_fwhm_pixels(np.full((5, 5), np.nan)) == seg.FALLBACK_KERNEL_FWHM


def test_sigma_clipped_stats_match_astropy():
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(5.0, 1.0, 3000), rng.exponential(20.0, 400)])
    _, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=10)
    assert seg._clipped_stats(values) == pytest.approx((median, std), rel=1e-9)


# --------------------------------------------------------------------------- bad input


def _empty(segmap):
    return not np.any(segmap)


NO_DATA = SegmentFlag.ALL_NAN_OR_ZERO | SegmentFlag.NO_DETECTION


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("case", "make", "expected"),
    [
        (
            "all_nan",
            lambda: (np.full((N, N), np.nan), SIGMA, None),
            NO_DATA | SegmentFlag.BAD_PIXELS,
        ),
        ("all_zero", lambda: (np.zeros((N, N)), SIGMA, None), NO_DATA),
        (
            "all_masked",
            lambda: (render(), SIGMA, np.ones((N, N), bool)),
            NO_DATA | SegmentFlag.BAD_PIXELS,
        ),
        (
            "zero_weight",
            lambda: (render(), np.full((N, N), np.inf), None),
            NO_DATA | SegmentFlag.BAD_PIXELS,
        ),
        ("pure_noise", lambda: (render(seed=8), SIGMA, None), SegmentFlag.NO_DETECTION),
        ("constant", lambda: (np.full((N, N), 3.0), None, None), SegmentFlag.NO_DETECTION),
    ],
)
def test_no_data_gives_flags_and_an_empty_map(method, case, make, expected):
    image, sigma, mask = make()
    segmap, flags, info = run(image, sigma, mask, method=method)
    assert flags == expected, (case, describe(flags, SegmentFlag))
    assert _empty(segmap) and segmap.dtype == np.int32
    assert info["n_sources"] == 0 and info["central_area"] == 0


@pytest.mark.parametrize("method", METHODS)
def test_detector_edge_half_nan(method):
    image = ISOLATED["exponential"]()
    image[:, : N // 2 - 6] = np.nan
    segmap, flags, info = run(image, method=method)
    assert flags & SegmentFlag.BAD_PIXELS
    assert not flags & (SegmentFlag.NO_DETECTION | SegmentFlag.CENTRE_NOT_DETECTED)
    assert segmap[N // 2, N // 2] == 1
    assert not np.any(segmap[:, : N // 2 - 6])
    assert info["bad_fraction"] == pytest.approx((N // 2 - 6) / N)


@pytest.mark.parametrize("method", METHODS)
def test_object_off_centre_uses_the_nearest(method):
    image = render((exp_gal(2.0, 1500), 12, -9), seed=9)
    segmap, flags, info = run(image, method=method)
    assert flags == SegmentFlag.CENTRE_NOT_DETECTED, describe(flags, SegmentFlag)
    assert segmap[round(CENTRE - 9), round(CENTRE + 12)] == 1
    assert 5 < info["central_distance"] < 15


@pytest.mark.parametrize("method", METHODS)
def test_huge_galaxy_touching_the_edge(method):
    image = render((exp_gal(14.0, 150000), 0, 0), seed=10)
    segmap, flags, info = run(image, method=method)
    assert flags & SegmentFlag.CENTRAL_HUGE
    assert flags & SegmentFlag.CENTRAL_TOUCHES_EDGE
    assert flags & SegmentFlag.BACKGROUND_UNRELIABLE
    assert segmap[N // 2, N // 2] == 1


def test_galaxy_cut_by_the_edge():
    image = render((exp_gal(3.0, 3000), 0, 0), (exp_gal(3.0, 3000), 30, 0), seed=11)
    segmap, flags, _ = run(image, method="multithreshold")
    assert not flags & SegmentFlag.CENTRAL_TOUCHES_EDGE
    assert segmap[round(CENTRE), N - 1] == 2  # the neighbour reaches the edge


def test_missing_sigma_map_falls_back_to_the_background_rms():
    image = ISOLATED["exponential"]()
    ref, ref_flags, _ = run(image, sigma=None)
    segmap, flags, info = run(image, sigma=np.full((N, N), np.nan))
    assert ref_flags == 0
    assert flags == SegmentFlag.SIGMA_MAP_INVALID
    np.testing.assert_array_equal(segmap, ref)
    assert info["threshold"] == pytest.approx(DEFAULTS["nsigma"] * info["background_rms"])


def test_masked_pixels_never_belong_to_an_object():
    image = ISOLATED["exponential"]()
    mask = np.zeros((N, N), bool)
    mask[N // 2 + 2 : N // 2 + 5, N // 2 - 3 : N // 2 + 3] = True
    segmap, flags, _ = run(image, mask=mask)
    assert not np.any(segmap[mask])
    assert flags == SegmentFlag.BAD_PIXELS  # a bad pixel touches the central object
    assert segmap[N // 2, N // 2] == 1


def test_input_shapes_are_checked():
    with pytest.raises(ValueError, match="sigma shape"):
        segment_image(np.zeros((N, N)), np.zeros((N, N + 1)))
    with pytest.raises(ValueError, match="2-D"):
        segment_image(np.zeros(N))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("method", "sextractor"),
        ("method", None),
        ("nsigma", 0),
        ("nsigma", float("nan")),
        ("n_pixels", 0),
        ("n_pixels", 2.5),
        ("n_pixels", True),
        ("deblend_nlevels", 0),
        ("deblend_contrast", 1.5),
        ("watershed_min_distance", -1),
        ("dbscan_eps", 0.0),
        ("dbscan_min_samples", "5"),
        ("dbscan_flux_scale", -1.0),
        ("kernel_fwhm", -2.0),
        ("deblend_smoothing", 1.5),
    ],
)
def test_bad_option_raises_a_typed_error_naming_it(option, value):
    with pytest.raises(SegmentOptionError) as err:
        segment_image(np.zeros((N, N)), **{option: value})
    assert isinstance(err.value, ValueError)
    assert option in str(err.value) and repr(value) in str(err.value)


def test_segment_options_are_the_schema_section():
    """Defaults and bounds come from the config schema (tests/test_config.py walks every
    key); here: the section's own error type and messages."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert segment_options(config) == DEFAULTS
    assert segment_options({}) == DEFAULTS
    with pytest.raises(SegmentOptionError, match="'nsgima'"):
        segment_options({"segment": {"nsgima": 2}})
    with pytest.raises(SegmentOptionError, match="segment.method: 'fast'"):
        segment_options({"segment": {"method": "fast"}})


# --------------------------------------------------------------------------- a shard


def make_batch() -> CutoutBatch:
    """Ten objects in bands g and r: good ones and every kind of bad one."""
    r_images = [
        ISOLATED["exponential"](),
        ISOLATED["devaucouleurs"](),
        SEPARATED_PAIR[0](),
        CLOSE_PAIR[0](),
        np.full((N, N), np.nan),  # missing r band
        np.zeros((N, N)),  # all zero
        render(seed=12),  # nothing there
        render((exp_gal(2.0, 1500), 12, -9), seed=13),  # off centre
        render((exp_gal(14.0, 150000), 0, 0), seed=14),  # huge
        render((exp_gal(3.0, 2500), 0, 0), seed=15),
    ]
    r = np.stack(r_images).astype(np.float32)
    g = np.where(np.isfinite(r), 0.5 * r, 1.0).astype(np.float32)
    image = np.stack([g, r], axis=1)
    sigma = np.full(image.shape, NOISE, np.float32)
    mask = np.zeros(image.shape, bool)
    mask[-1, 1, :8, :] = True  # a masked strip (12.5% of the pixels) on the last object
    psf = np.stack([_psf_stamp(), _psf_stamp()]).astype(np.float32)
    return CutoutBatch(
        object_id=np.arange(1000, 1000 + len(r_images)),
        image=image,
        sigma=sigma,
        mask=mask,
        psf=psf,
        bands=["g", "r"],
        pixel_scale=PIXEL_SCALE,
        zeropoints=[22.5, 22.5],
        flux_unit="nanomaggy",
    )


@pytest.fixture(scope="module")
def batch() -> CutoutBatch:
    return make_batch()


def config(method="multithreshold", scheduler="synchronous", workers=1, per_task=3, **segment):
    return {
        "survey": "synthetic",
        "detect_band": segment.pop("detect_band", "r"),
        "segment": {"method": method, **segment},
        "dask": {"scheduler": scheduler, "workers": workers, "objects_per_task": per_task},
    }


def test_shard_result_follows_the_contract(batch, caplog):
    with caplog.at_level(logging.WARNING, logger="galcat.segment"):
        result = segment_shard(batch, config=config())
    assert isinstance(result, SegmentationResult)
    assert result.segmap.shape == (10, N, N) and result.segmap.dtype == np.int32
    assert list(result.table.columns) == list(SEGMENT_COLUMNS)
    np.testing.assert_array_equal(result.table["object_id"].to_numpy(), batch.object_id)
    assert result.table["object_id"].dtype == np.int64
    assert result.table["seg_flag"].dtype == np.int32
    assert result.units["seg_central_flux"] == "nanomaggy"
    assert result.units["seg_background"] == "nanomaggy/pixel"
    assert result.table.attrs["units"] == result.units
    table = result.table.set_index("object_id")
    assert result.kernel_fwhm == pytest.approx(FWHM_PIX, rel=0.15)

    flags = table["seg_flag"]
    for oid in (1000, 1001, 1009):
        assert flags[oid] & ~SegmentFlag.BAD_PIXELS == 0, (oid, describe(flags[oid], SegmentFlag))
    assert flags[1009] == SegmentFlag.BAD_PIXELS
    assert table.loc[1002, "seg_n_sources"] == 2
    assert flags[1003] == SegmentFlag.BLENDED
    assert flags[1004] & SegmentFlag.ALL_NAN_OR_ZERO
    assert flags[1005] & SegmentFlag.ALL_NAN_OR_ZERO
    assert flags[1006] == SegmentFlag.NO_DETECTION
    assert flags[1007] == SegmentFlag.CENTRE_NOT_DETECTED
    assert flags[1008] & SegmentFlag.CENTRAL_HUGE
    for i, oid in enumerate(batch.object_id):
        has_object = not flags[oid] & SegmentFlag.NO_DETECTION
        assert (result.segmap[i].max() >= 1) == has_object
        assert table.loc[oid, "seg_central_area"] == np.count_nonzero(result.segmap[i] == 1)
        assert table.loc[oid, "seg_n_sources"] == result.segmap[i].max()
    # the objects without a usable map are named in the log
    logged = caplog.text
    for oid in (1004, 1005, 1006):
        assert f"object {oid}" in logged
    assert "object 1000" not in logged


def test_failure_of_one_object_is_flagged_not_raised(batch, monkeypatch, caplog):
    real = seg.segment_image
    poisoned = batch.image[1, 1]

    def flaky(image, *args, **kwargs):
        if np.array_equal(image, poisoned):
            raise RuntimeError("deblender exploded")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(seg, "segment_image", flaky)
    with caplog.at_level(logging.WARNING, logger="galcat.segment"):
        result = segment_shard(batch, config=config())
    flags = result.table.set_index("object_id")["seg_flag"]
    assert flags[1001] == SegmentFlag.FAILED | SegmentFlag.NO_DETECTION
    assert not result.segmap[1].any()
    assert "object 1001" in caplog.text and "deblender exploded" in caplog.text
    assert flags[1000] == 0 and result.segmap[0].max() == 1


def test_shard_stops_on_a_bad_option_or_a_missing_band(batch):
    with pytest.raises(SegmentOptionError, match="segment.nsigma: -1 "):
        segment_shard(batch, config=config(nsigma=-1))
    with pytest.raises(LayoutError, match="'i'"):
        segment_shard(batch, config=config(detect_band="i"))


@pytest.mark.parametrize("method", METHODS)
def test_serial_equals_parallel(batch, method):
    serial = segment_shard(batch, config=config(method, "synchronous", 1, per_task=10))
    runs = [("threads", 2, 3), ("threads", 2, 1)]
    if method == "multithreshold":
        runs.append(("processes", 2, 4))
    for scheduler, workers, per_task in runs:
        other = segment_shard(batch, config=config(method, scheduler, workers, per_task))
        np.testing.assert_array_equal(other.segmap, serial.segmap)
        pd.testing.assert_frame_equal(other.table, serial.table)


def test_table_round_trips_through_the_stage_writer(batch, tmp_path):
    from galcat.tables import column_units, read_table, write_table

    result = segment_shard(batch, config=config("watershed"))
    path = write_table(
        result.table,
        tmp_path / "s0.parquet",
        units=result.units,
        descriptions=SEGMENT_COLUMN_DESCRIPTIONS,
    )
    table = read_table(path)
    pd.testing.assert_frame_equal(table, result.table, check_like=False)
    assert column_units(path)["seg_background"] == "nanomaggy/pixel"
    assert SEGMENT_COLUMN_UNITS == result.units


def test_segment_image_defaults_are_the_config_defaults():
    """bench/deblend_vs_sextractor.py calls segment_image with its keyword defaults: they
    must be the settings the workflow runs with (DEFAULTS and config/schema.yaml)."""
    import inspect

    signature = inspect.signature(segment_image).parameters
    for key, value in DEFAULTS.items():
        if key in signature:
            assert signature[key].default == value, key
    with open(Path(__file__).parents[1] / "config" / "schema.yaml") as fh:
        schema = yaml.safe_load(fh)
    section = schema["properties"]["segment"]["properties"]
    for key, value in DEFAULTS.items():
        assert section[key]["default"] == value, key
