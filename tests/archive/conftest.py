"""Fixtures of the archive tests: the fixture files, the fake archive, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from galcat.config import deep_merge
from tests.archive.fake_archive import FakeArchive
from tests.archive.make_fixtures import labelled_sdss_fixtures, make_all

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config" / "schema.yaml"


deep_update = deep_merge  # the package's own merge, under the tests' name


def validated(config: dict) -> dict:
    """``config`` checked (and completed with defaults) by snakemake against the schema."""
    from snakemake.utils import validate

    validate(config, str(SCHEMA))
    return config


@pytest.fixture(scope="session")
def archive_files(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("archive_fixtures")
    truth = make_all(root)
    return root, json.loads(json.dumps(truth))


@pytest.fixture(scope="session")
def _server(archive_files):
    fake = FakeArchive(archive_files[0], slow_s=1.5).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_server) -> FakeArchive:
    """The fake archive, with no faults queued and an empty request log."""
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def truth(archive_files) -> dict:
    return archive_files[1]


@pytest.fixture
def make_config(fake, tmp_path):
    """``make_config(survey, **sections)``: a validated config pointing at the fake archive."""

    def make(survey: str, **sections) -> dict:
        base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        base = deep_update(base, {
            "survey": survey,
            "results": "results",
            "sharding": {"objects_per_shard": 2},
            "archive": {"cache_dir": str(tmp_path / "cache"), "timeout_s": 1.0, "retries": 2,
                        "backoff_s": 0.01, "backoff_max_s": 0.05},
            "sdss": {"skyserver_url": fake.url, "sas_url": f"{fake.url}/sas", "cutout_size": 32,
                     "batch_size": 3},
            "manga": {"sas_url": f"{fake.url}/sas", "cutout_size": 32},
            "jades": {"mast_url": fake.url, "cutout_size": 32,
                      "filters": ["F115W", "F200W", "F444W"], "selection": {"z": {"max": 6.0}}},
            # three labelled galaxies are too few to train on: the labelled replay
            # (labelled_config, tests/archive/test_archive_labels.py) covers the models
            "models": {"gz2": {"enabled": False}, "metallicity": {"enabled": False}},
        })
        return validated(deep_update(base, sections))

    return make


@pytest.fixture
def local_dir(archive_files):
    return archive_files[0] / "local"


@pytest.fixture
def local_config(local_dir, tmp_path):
    def make(**local) -> dict:
        base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        section = {
            "objects": str(local_dir / "objects.csv"),
            "id_column": "id",
            "z_column": "redshift",
            "columns": ["name"],
            "bands": ["g", "r"],
            "images": {"kind": "mosaic", "files": {"g": str(local_dir / "mosaic_g.fits"),
                                                   "r": str(local_dir / "mosaic_r.fits")}},
            "noise": {"kind": "sigma", "files": {"g": str(local_dir / "noise_g.fits"),
                                                 "r": str(local_dir / "noise_r.fits")}},
            "psf": {"cube": str(local_dir / "psf_cube.fits")},
            "cutout_size": 32,
        }
        config = deep_update(base, {"survey": "local", "sharding": {"objects_per_shard": 2},
                                    "archive": {"cache_dir": str(tmp_path / "cache")}})
        config["local"] = {**section, **local}
        return validated(config)

    return make


@pytest.fixture(scope="session")
def labelled_archive(tmp_path_factory):
    """A replayed SDSS field of 300 galaxies with frames and labels, and its truth."""
    root = tmp_path_factory.mktemp("labelled_archive")
    truth = labelled_sdss_fixtures(root)
    fake = FakeArchive(root, slow_s=1.5).start()
    yield fake, truth
    fake.stop()


#: What keeps the labelled run short: no statmorph or half-mass, small networks.
LABELLED_SETTINGS = {
    "sharding": {"objects_per_shard": 150},
    "measure": {"statmorph": False, "half_mass": False, "sersic_refine": False,
                "r50_model": "sersic"},
    "models": {"gz2": {"epochs": 3, "width": 8, "batch_size": 32, "tta": False},
               "metallicity": {"epochs": 3, "width": 8, "batch_size": 32, "tta": False,
                               "bands": ["g", "r", "i"]}},
}


@pytest.fixture(scope="session")
def labelled_config(labelled_archive, tmp_path_factory):
    """``labelled_config(**sections)``: the SDSS config against the labelled replay."""
    fake, _ = labelled_archive
    cache = tmp_path_factory.mktemp("labelled_cache")

    def make(**sections) -> dict:
        base = yaml.safe_load((ROOT / "config" / "surveys" / "sdss.yaml").read_text())
        base = deep_update(base, {
            "archive": {"cache_dir": str(cache), "timeout_s": 5.0, "retries": 2,
                        "backoff_s": 0.01, "backoff_max_s": 0.05},
            "sdss": {"skyserver_url": fake.url, "sas_url": f"{fake.url}/sas", "cutout_size": 24,
                     "extra_columns": [],
                     "selection": {"require_mpajhu": False, "require_gz2": False}},
            **LABELLED_SETTINGS,
        })
        return validated(deep_update(base, sections))

    return make
