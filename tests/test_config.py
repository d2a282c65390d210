"""A bad config value stops the run before any job, naming the key."""

from __future__ import annotations

import pytest

from galcat.config import ConfigError, config_hash, load_config
from tests.conftest import TINY, deep_update, snakemake

BAD = [
    ({"synthetic": {"n_objects": "many"}}, "synthetic.n_objects", "not of type 'integer'"),
    ({"segment": {"nsigma": -1}}, "segment.nsigma", "less than or equal to the minimum"),
    ({"segment": {"nsgima": 2.0}}, "segment", "'nsgima' was unexpected"),
    ({"survey": "sdss; DROP TABLE"}, "survey", "is not one of"),
    ({"results": "../outside"}, "results", "does not match"),
]


@pytest.mark.parametrize(("override", "key", "message"), BAD)
def test_load_config_names_the_bad_key(override, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    assert f"config key {key}:" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(("override", "key", "message"), BAD[:3])
def test_snakemake_stops_before_any_job(tmp_path, override, key, message):
    proc = snakemake(tmp_path, deep_update(TINY, override), "-n", check=False)
    assert proc.returncode != 0
    assert f"config key {key}:" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_defaults_are_filled_and_hash_ignores_layout():
    a = load_config(overrides={"synthetic": {"n_objects": 5}})
    assert a["segment"]["method"] in {"watershed", "multithreshold", "dbscan"}
    b = load_config(overrides={"synthetic": {"n_objects": 5}})
    assert config_hash(a) == config_hash(b)
    c = load_config(overrides={"synthetic": {"n_objects": 6}})
    assert config_hash(a) != config_hash(c)
