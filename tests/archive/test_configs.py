"""The example configs validate, and the schema's allow-lists match the modules."""

from __future__ import annotations

import copy

import astropy.units as u
import pytest
import yaml

from galcat.surveys import SURVEYS, get_survey
from tests.archive.conftest import ROOT, SCHEMA, validated

ARCHIVE = ["sdss", "manga", "jades", "local"]


@pytest.mark.parametrize("survey", ARCHIVE)
def test_example_config_validates(survey):
    example = yaml.safe_load((ROOT / "config" / "surveys" / f"{survey}.yaml").read_text())
    assert example["survey"] == survey and survey in example
    validated(copy.deepcopy(example))  # on its own
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    base.update(example)  # layered on the default, as --configfile does
    config = validated(base)
    if survey == "sdss":
        from galcat.surveys.sdss import build_sql

        sql = build_sql(config["sdss"], top=config["sdss"]["batch_size"])
        assert "p.petroMag_r <= 17.77" in sql and "p.cModelMag_r AS cmodelmag_r" in sql


@pytest.mark.parametrize("survey", ARCHIVE)
def test_module_contract(survey):
    assert survey in SURVEYS
    module = get_survey(survey)
    assert callable(module.query) and callable(module.cutouts)
    for col, unit in module.COLUMN_UNITS.items():
        if unit:
            u.Unit(unit)  # every unit is one astropy understands
        assert col in module.COLUMN_DESCRIPTIONS


def test_schema_allow_lists_match_modules():
    from galcat.surveys.jades import NIRCAM_FWHM
    from galcat.surveys.sdss import EXTRA_COLUMNS

    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    extra = schema["sdss"]["properties"]["extra_columns"]["items"]["enum"]
    assert sorted(extra) == sorted(EXTRA_COLUMNS)
    filters = schema["jades"]["properties"]["filters"]["items"]["enum"]
    assert sorted(filters) == sorted(NIRCAM_FWHM)
    from galcat.surveys.jades import RELEASES

    jades = schema["jades"]["properties"]
    assert sorted(jades["release"]["enum"]) == sorted(RELEASES)
    redshifts = {c for r in RELEASES.values() for c in r.redshifts}
    assert set(jades["redshift_column"]["enum"]) == redshifts | {None}
    assert set(ARCHIVE) <= set(schema["survey"]["enum"])
