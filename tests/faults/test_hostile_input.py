"""Hostile input: config strings never reach a path or SQL unchecked, and object ids
that look like paths, shell or SQL become stable integers without losing an object."""

from __future__ import annotations

import pytest

from galcat.config import ConfigError, load_config
from galcat.surveys import get_survey

pytestmark = pytest.mark.slow

HOSTILE_IDS = ["../../etc/passwd", "a b;rm -rf ~", "x' OR '1'='1"]


def test_hostile_ids_become_stable_integers(local_config, local_dir, tmp_path, reliability):
    rows = (local_dir / "objects.csv").read_text().splitlines()
    header = rows[0].replace(",name", ",label").replace("id,", "name,", 1)
    body = [f'"{hostile}",{row.split(",", 1)[1]}' for hostile, row in
            zip(HOSTILE_IDS, rows[1:], strict=True)]
    table = tmp_path / "hostile.csv"
    table.write_text("\n".join([header, *body]) + "\n")
    config = local_config(objects=str(table), id_column="name", columns=["label"])
    df = get_survey("local").query(config)
    again = get_survey("local").query(config)
    assert len(df) == len(HOSTILE_IDS) and (df["object_id"] >= 1).all()
    assert df["object_id"].tolist() == again["object_id"].tolist()
    assert sorted(df["source_id"]) == sorted(HOSTILE_IDS)
    assert df["shard"].str.fullmatch(r"s\d{6}").all()
    reliability("hostile_ids", "hashed to stable positive integer ids (the text kept as "
                "source_id); shard names are s + 6 digits, never the id")


@pytest.mark.parametrize("override", [
    {"results": "results/../../escaped"},
    {"results": "/etc"},
    {"archive": {"cache_dir": "cache/../../../tmp"}},
])
def test_hostile_paths_stop_before_any_job(override, reliability):
    with pytest.raises(ConfigError, match="config key (results|archive.cache_dir)"):
        load_config(overrides=override)
    reliability("hostile_paths", "refused at validation, before any job, naming the key")


@pytest.mark.parametrize("override", [
    {"sdss": {"selection": {"spec_class": "GALAXY' OR 1=1 --"}}},
    {"sdss": {"extra_columns": ["p.ra; DROP TABLE PhotoObj"]}},
    {"sdss": {"selection": {"z": {"min": "0; DROP TABLE SpecObj"}}}},
])
def test_hostile_sql_never_reaches_the_archive(override, fake, make_config, reliability):
    from snakemake.exceptions import WorkflowError

    with pytest.raises((WorkflowError, ConfigError, ValueError)):
        make_config("sdss", **override)
    with pytest.raises(ConfigError):
        load_config(overrides={"survey": "sdss", **override})
    assert fake.hits("x_results.aspx") == []
    reliability("hostile_sql", "refused by the schema (allow-lists and numbers only); no "
                "request reached the archive")

