"""A bad config value stops the run before any job, naming the key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from galcat.config import (
    ConfigError,
    config_hash,
    default_config_yaml,
    defaults,
    load_config,
    record_default_reads,
    schema,
    settings,
    trained_models,
)
from tests.conftest import TINY, deep_update, snakemake

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ({"synthetic": {"n_objects": "many"}}, "synthetic.n_objects", "not of type 'integer'"),
    ({"segment": {"nsigma": -1}}, "segment.nsigma", "less than or equal to the minimum"),
    ({"segment": {"nsgima": 2.0}}, "segment", "'nsgima' was unexpected"),
    ({"survey": "sdss; DROP TABLE"}, "survey", "is not one of"),
    ({"results": "../outside"}, "results", "does not match"),
    ({"results": "results/../../escaped"}, "results", "must stay inside the working directory"),
    ({"synthetic": {"redshift": {"min": 0.3, "max": 0.1}}}, "synthetic.redshift",
     "min 0.3 is above max 0.1"),
    ({"synthetic": {"n_objects": 100_000_000}}, "synthetic.n_objects",
     "raise sharding.objects_per_shard to at least 5000"),
    ({"detect_band": "F200W"}, "detect_band", "'F200W' is not a band of survey 'synthetic'"),
    ({"measure": {"detect_band": "y"}}, "measure.detect_band",
     "replaced by the top-level detect_band"),
    ({"synthetic": {"psf_stamp_size": 24}}, "synthetic.psf_stamp_size", "24 is even"),
    ({"release": "2026-13-45"}, "release", "is not a calendar date"),
    ({"models": {"vae": {"point_estimate": "median"}}}, "models.vae.point_estimate",
     "family 'vae' has none"),
    ({"models": {"seg": {"family": "pixels", "point_estimate": "median"}}},
     "models.seg.point_estimate", "family 'pixels' has none"),
    ({"models": {"seg": {"family": "pixels", "crop": 0.5}}}, "models.seg.crop",
     "family 'pixels' classifies every pixel of them"),
    ({"models": {"gz2": {"crop": 0}}}, "models.gz2.crop", "less than or equal to the minimum"),
    ({"models": {"gz2": {"point_estimate": "median"}}}, "models.gz2.point_estimate",
     "vote_loss 'multinomial' fits the votes' likelihood instead"),
    ({"models": {"sersic": {"residual_map": True, "injections": 100}}},
     "models.sersic.residual_map", "(models.sersic.injections) have no bulge + disc fit"),
    ({"models": {"gz2": {"residual_map": True}},
      "measure": {"r50_model": "sersic", "half_mass_colour_model": "gradient"}},
     "models.gz2.residual_map", "this config runs no such fit (measure.r50_model is 'sersic'"),
]


@pytest.mark.parametrize(("override", "key", "message"), BAD)
def test_load_config_names_the_bad_key(override, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    assert f"config key {key}:" in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize(("override", "key", "message"), [*BAD[:3], BAD[7]])
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


# --------------------------------------------------------------------------- one source
def leaves(node: dict, path: tuple[str, ...] = ()):
    """(path, schema node) of every leaf key below ``node``'s properties."""
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and sub.get("properties"):
            yield from leaves(sub, (*path, key))
        else:
            yield (*path, key), sub


SECTIONS = [k for k, v in schema()["properties"].items() if v.get("type") == "object"]
LEAVES = [(p, n) for s in SECTIONS for p, n in leaves(schema()["properties"][s], (s,))]


#: Required keys of sections that have some (the rest of each section is walked).
REQUIRED = {"local": {"objects": "objects.csv", "bands": ["r"],
                      "images": {"files": {"r": "r.fits"}}}}


def dig(value, path):
    for key in path:
        value = value[key]
    return value


def nest(path, value):
    for key in reversed(path):
        value = {key: value}
    return value


def out_of_bounds(node: dict) -> list:
    kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
    bad = []
    for bound, step in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1),
                        ("exclusiveMaximum", 0)):
        if bound in node:
            bad.append(node[bound] + step if "integer" in kinds else node[bound] + step * 0.5
                       if step else node[bound])
    if "enum" in node:
        bad.append("not-a-choice")
    if "pattern" in node:
        bad.append("../$(rm -rf ~);")
    return bad


def test_every_section_of_the_schema_is_walked():
    assert {"synthetic", "segment", "measure", "dask", "archive", "sdss"} <= set(SECTIONS)
    assert len(LEAVES) > 100


@pytest.mark.parametrize(("path", "node"), LEAVES, ids=lambda v: ".".join(v) if
                         isinstance(v, tuple) else "")
def test_code_reads_the_schema_default_and_rejects_out_of_bounds(path, node):
    section = path[0]
    assert node.get("description"), f"{'.'.join(path)} has no description"
    base = {section: REQUIRED.get(section, {})}
    if "default" in node:
        assert dig(settings(base, section), path[1:]) == node["default"]
        if section not in REQUIRED:
            assert dig(defaults(section), path[1:]) == node["default"]
    for bad in out_of_bounds(node):
        with pytest.raises(ConfigError, match=re.escape(f"config key {'.'.join(path)}:")):
            settings(deep_update(base, nest(path, bad)), section)


def test_module_defaults_are_the_schema_defaults():
    import inspect

    from galcat import morphology, segment

    assert segment.DEFAULTS == defaults("segment")
    assert morphology.DEFAULTS == defaults("measure")
    signature = inspect.signature(segment.segment_image).parameters
    for key, value in defaults("segment").items():
        if key in signature:
            assert signature[key].default == value, key


def test_default_config_file_is_written_from_the_schema():
    """config/config.yaml is generated (`galcat defaults`): a default stands in one place."""
    text = (ROOT / "config" / "config.yaml").read_text()
    assert text == default_config_yaml(), "regenerate: galcat defaults > config/config.yaml"
    assert load_config(ROOT / "config" / "config.yaml") == load_config()


def test_the_science_configs_load_and_the_analyses_overlay_trains_what_they_read():
    science = ROOT / "config" / "science.yaml"
    full = load_config(science)
    # the schema's models in its order, then the config's own
    assert trained_models(full) == ["r50", "gz2", "metallicity", "sersic", "vae", "pixels",
                                    "r50_rband", "gz2_resnet", "vae_large"]
    assert full["models"]["metallicity"]["inputs"] == ["z"]  # the entry's default
    assert full["models"]["r50"]["inputs"] == ["r50_mass", "sn_per_pixel"]
    # an entry of another name states its own: the r band's half-light radius
    assert full["models"]["r50_rband"]["inputs"] == ["r50_psf_corrected", "sn_per_pixel"]
    assert full["models"]["gz2_resnet"]["inputs"] == full["models"]["gz2"]["inputs"]
    lean = load_config(science, ROOT / "config" / "science_analyses.yaml")
    assert trained_models(lean) == ["r50", "gz2", "metallicity", "vae"]
    assert lean["analysis"]["merger"]["model"] in trained_models(lean)
    assert lean["analysis"]["mzr"]["model"] in trained_models(lean)


def test_numbers_are_floats_so_a_format_edit_changes_nothing():
    a = load_config(overrides={"measure": {"half_mass_min_snr": 10}})
    b = load_config(overrides={"measure": {"half_mass_min_snr": 10.0}})
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert isinstance(a["synthetic"]["psf_fwhm_r"], float)
    assert isinstance(a["synthetic"]["n_objects"], int)


def test_values_read_from_defaults_are_recorded():
    with record_default_reads() as reads:
        section = settings({"segment": {"nsigma": 2.0}}, "segment")
        assert section["nsigma"] == 2.0 and reads == []
        assert section["n_pixels"] == defaults("segment")["n_pixels"]
        dict(settings({}, "dask"))
    assert reads[0] == "segment.n_pixels"
    assert "dask.workers" in reads and "dask.scheduler" in reads


def test_non_finite_numbers_are_rejected():
    with pytest.raises(ConfigError, match="segment.nsigma: nan is not a finite number"):
        settings({"segment": {"nsigma": float("nan")}}, "segment")


@pytest.mark.parametrize(
    ("text", "message"),
    [("segment: [unclosed\n", "is not valid YAML"), ("- a list\n", "must hold a mapping")],
)
def test_a_bad_file_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "bad.yaml" in str(err.value)


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("segment:\n  nsigma: 2.0\nmeasure: {}\nsegment:\n  n_pixels: 5\n")
    with pytest.raises(ConfigError, match="key 'segment' is given twice \\(lines 1 and 4\\)"):
        load_config(path)
    proc = snakemake(tmp_path, None, "-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0 and "given twice" in proc.stderr + proc.stdout


def test_a_prior_on_n_needs_galcats_own_sersic_fit():
    with pytest.raises(ConfigError, match="measure.sersic_n_prior: calibrate puts a prior"):
        load_config(overrides={"measure": {"sersic_n_prior": "calibrate",
                                           "sersic_refine": False}})
    load_config(overrides={"measure": {"sersic_n_prior": "calibrate"}})


def test_gz2_takes_a_point_estimate_beside_least_squares():
    config = load_config(overrides={"models": {"gz2": {"point_estimate": "median",
                                                        "vote_loss": "least_squares"}}})
    assert config["models"]["gz2"]["point_estimate"] == "median"


def test_the_package_reads_the_schema_the_workflow_validates_with():
    # the package's copy is a link to config/schema.yaml; an edit that replaced the link
    # by a file (sed -i does) would let the two drift apart
    packaged = ROOT / "src" / "galcat" / "data" / "config_schema.yaml"
    assert packaged.read_text() == (ROOT / "config" / "schema.yaml").read_text()
