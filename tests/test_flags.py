"""The flag words (galcat.flags): stable bits, documented meanings, one describe."""

from __future__ import annotations

import functools
import json
import operator

import numpy as np
import pytest

from galcat import flags
from galcat.flags import (
    FLAG_COLUMNS,
    DetectFlag,
    HalfMassFlag,
    MassFlag,
    MeasureFlag,
    SegmentFlag,
    describe,
)

#: The bit values of the catalogues written before the IntFlag classes: they must never
#: change, or catalogues of different versions stop being comparable.
FROZEN = {
    SegmentFlag: ["NO_DETECTION", "CENTRE_NOT_DETECTED", "CENTRAL_TOUCHES_EDGE", "CENTRAL_HUGE",
                  "BAD_PIXELS", "ALL_NAN_OR_ZERO", "BLENDED", "BACKGROUND_UNRELIABLE",
                  "SIGMA_MAP_INVALID", "FAILED"],
    MeasureFlag: ["NO_CENTRAL_SEGMENT", "BAD_PIXELS", "NO_FLUX", "EDGE", "NO_SKY",
                  "STATMORPH_FAILED", "STATMORPH_WARNING", "SERSIC_FAILED", "SERSIC_WARNING",
                  "HALFMASS_FAILED", "MISSING_BAND", "SKIPPED", "R50_PSF_FAILED", "PARTLY_MASKED",
                  "UNRESOLVED"],
    HalfMassFlag: ["MISSING_BAND", "NO_FLUX", "LOW_SNR", "COLOUR_CLIPPED", "NO_PETROSIAN",
                   "TRUNCATED", "PSF_FIT_FAILED", "NO_CROSSING", "MASKED", "EXTRAPOLATED",
                   "BAD_INPUT", "NO_BULGE_DISC"],
    MassFlag: ["NO_PHOTOMETRY", "NO_REDSHIFT", "COLOUR_CLIPPED"],
    DetectFlag: ["BLENDED", "MASKED", "IMAGE_EDGE", "TILE_EDGE"],
}


@pytest.mark.parametrize("cls", list(FROZEN))
def test_bit_values_are_frozen_and_documented(cls):
    assert [(m.name, int(m)) for m in cls] == [(n, 1 << k) for k, n in enumerate(FROZEN[cls])]
    for member in cls:
        assert len(member.description) > 20, member


@pytest.mark.parametrize("cls", list(FROZEN))
def test_describe_round_trip(cls):
    rng = np.random.default_rng(len(cls.__name__))
    members = list(cls)
    for _ in range(50):
        chosen = [m for m in members if rng.random() < 0.3]
        value = functools.reduce(operator.or_, chosen, cls(0))
        names = describe(int(value), cls)
        assert names == [m.name for m in chosen]  # lowest bit first
        assert functools.reduce(operator.or_, (cls[n] for n in names), cls(0)) == value
        assert describe(value) == names  # a flag knows its class


def test_describe_edge_cases():
    assert describe(0, MeasureFlag) == []
    assert describe(-1, HalfMassFlag) == ["NOT_RUN"]  # r50_mass_flag of a skipped galaxy
    assert describe(np.int64(1 << 6 | 1 << 15), SegmentFlag) == ["BLENDED", "BIT_15"]
    with pytest.raises(TypeError, match="needs flag_class for a plain integer"):
        describe(3)
    with pytest.raises(TypeError, match="BitFlag class"):
        describe(3, int)
    with pytest.raises(ValueError, match="SegmentFlag word is >= 0"):
        describe(-2, SegmentFlag)


def test_flag_columns_and_metadata_name_every_bit():
    assert FLAG_COLUMNS == {"seg_flag": SegmentFlag, "flag": MeasureFlag,
                            "r50_mass_flag": HalfMassFlag, "log_mass_phot_flag": MassFlag,
                            "det_flag": DetectFlag}
    meta = json.loads(json.dumps(flags.flag_metadata()))
    assert set(meta) == set(FLAG_COLUMNS)
    assert meta["flag"]["8"] == {"name": "EDGE", "description": MeasureFlag.EDGE.description}
    assert len(meta["r50_mass_flag"]) == len(HalfMassFlag)


def test_the_table_writers_document_the_classes():
    from galcat.morphology import FEATURE_DESCRIPTIONS
    from galcat.segment import SEGMENT_COLUMN_DESCRIPTIONS
    from galcat.stellar_mass import MASS_COLUMNS
    from galcat.surveys.local import DETECTION_COLUMNS

    descriptions = {**SEGMENT_COLUMN_DESCRIPTIONS, **FEATURE_DESCRIPTIONS,
                    **{name: text for name, (_, text) in MASS_COLUMNS.items()},
                    **{name: text for name, (_, text) in DETECTION_COLUMNS.items()}}
    for column, cls in FLAG_COLUMNS.items():
        assert f"galcat.flags.{cls.__name__}" in descriptions[column]
