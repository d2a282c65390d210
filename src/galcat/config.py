"""Loading, validating and reading galcat configurations.

The JSON Schema ``config/schema.yaml`` (shipped inside the package as
``galcat/data/config_schema.yaml``) is the one source of every key, its type,
bounds, description and default. Nothing else writes a default down:

* `validate_config` checks a whole config against it, fills the defaults and
  writes every number of a ``type: number`` key as a float (so ``1`` and
  ``1.0`` are the same setting and rerun nothing);
* `settings` gives the code one section, validated and with defaults filled,
  and notes which values came from the schema rather than from the caller;
* `defaults` gives the defaults of a section, and `default_config_yaml` writes
  ``config/config.yaml`` from them (a test keeps that file in step).

The params of every Snakemake rule hold the sections its code reads.
`record_default_reads` lists the values a stage read without the caller having
passed them; a test runs every rule's command under it, so a rule whose params
miss a key its code reads fails the test suite instead of silently running on a
default.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import re
import textwrap
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "Settings",
    "check_config_files",
    "check_section",
    "config_hash",
    "deep_merge",
    "default_config_yaml",
    "defaults",
    "injection_survey",
    "keys_evaluation_reads",
    "keys_training_ignores",
    "load_config",
    "measured_inputs",
    "model_entry",
    "record_default_reads",
    "run_notes",
    "trained_models",
    "schema",
    "schema_path",
    "setting",
    "settings",
    "validate_config",
]

#: Sections that belong to one survey (or the archive transport). They are not
#: written into the default ``config/config.yaml``; ``config/surveys/*.yaml`` set them.
SURVEY_SECTIONS = ("archive", "sdss", "manga", "jades", "local")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of bounds."""


def schema_path() -> Path:
    """Path of the JSON Schema of the configuration (package data)."""
    return Path(str(resources.files("galcat").joinpath("data", "config_schema.yaml")))


@functools.cache
def schema() -> dict:
    """The parsed JSON Schema of the configuration (read once per process)."""
    with open(schema_path()) as fh:
        return yaml.safe_load(fh)


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- validation
def _non_finite(value: Any, path: list[str]) -> Iterator[str]:
    if isinstance(value, float) and not math.isfinite(value):
        yield f"config key {'.'.join(path)}: {value!r} is not a finite number"
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _non_finite(sub, [*path, str(key)])
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _non_finite(sub, [*path, str(i)])


def _errors(value: Any, node: dict, prefix: str) -> list[str]:
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema())
    errors = sorted(validator_cls(node).iter_errors(value), key=lambda e: list(e.path))
    lines = []
    for err in errors:
        path = [prefix] if prefix else []
        path += [str(p) for p in err.absolute_path]
        where = ".".join(path) or "(top level)"
        lines.append(f"config key {where}: {err.message}")
    # JSON Schema bounds let NaN through (every comparison with it is false)
    lines += _non_finite(value, [prefix] if prefix else [])
    return lines


def _fill(value: dict, node: dict, path: str, filled: set[str]) -> None:
    """Fill defaults of ``node``'s properties into ``value``; note filled paths."""
    props = node.get("properties", {})
    for key, sub in props.items():
        where = f"{path}.{key}" if path else key
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
            filled.add(where)
        if isinstance(value.get(key), dict) and sub.get("type") == "object":
            _fill(value[key], sub, where, filled)
    # the entries of a name -> settings mapping (the models section) too
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("type") == "object":
        for key, sub_value in value.items():
            if key not in props and isinstance(sub_value, dict):
                _fill(sub_value, extra, f"{path}.{key}" if path else key, filled)


def _is_float_type(node: dict) -> bool:
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return "number" in kinds and "integer" not in kinds


def _normalise(value: Any, node: dict) -> Any:
    """Numbers of ``type: number`` keys as floats, recursively (1 and 1.0 are one value)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and _is_float_type(node):
        return float(value)
    if isinstance(value, dict):
        props = node.get("properties", {})
        patterns = node.get("patternProperties", {})
        extra = node.get("additionalProperties")
        for key in list(value):
            sub = props.get(key)
            if sub is None and patterns:
                sub = next(iter(patterns.values()))
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is not None:
                value[key] = _normalise(value[key], sub)
        return value
    if isinstance(value, list):
        prefix = node.get("prefixItems", [])
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        return [
            _normalise(v, prefix[i] if i < len(prefix) else items) for i, v in enumerate(value)
        ]
    return value


def validate_config(config: dict) -> dict:
    """Validate ``config`` against the schema, fill defaults, normalise numbers; return it.

    ``config`` is changed in place (Snakemake's global ``config`` is passed).

    Raises
    ------
    ConfigError
        Naming every offending key path and the rule it breaks.
    """
    lines = list(_moved_keys(config))
    _fill(config, schema(), "", set())
    lines = lines or _errors(config, schema(), "") or _cross_field_errors(config)
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    normalised = _normalise(config, schema())
    config.update(normalised)
    return config


#: Keys that moved: old path -> what to set instead.
MOVED_KEYS = {
    ("segment", "detect_band"): "the top-level detect_band (one band for the whole run)",
    ("measure", "detect_band"): "the top-level detect_band (one band for the whole run)",
}


def _moved_keys(config: dict) -> Iterator[str]:
    for (section, key), instead in MOVED_KEYS.items():
        if isinstance(config.get(section), dict) and key in config[section]:
            yield (f"config key {section}.{key}: replaced by {instead}; write "
                   f"`detect_band: {config[section][key]}` at the top level instead")


def _ranges(value: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Every {min, max} mapping below ``value``: (path, min, max)."""
    if isinstance(value, dict):
        if set(value) >= {"min", "max"} and not any(isinstance(v, dict) for v in value.values()):
            yield path, value["min"], value["max"]
        for key, sub in value.items():
            yield from _ranges(sub, f"{path}.{key}")


def _cross_field_errors(config: dict) -> list[str]:
    """What one key's bounds cannot say: ranges, odd stamps, bands, paths, dates, job count."""
    from galcat.bands import AUTO, SUM
    from galcat.surveys import configured_bands

    survey = config["survey"]
    errors = []
    for section in (survey,):
        for path, low, high in _ranges(config.get(section), section):
            if low is not None and high is not None and low > high:
                errors.append(f"config key {path}: min {low} is above max {high}")
        size = (config.get(section) or {}).get("psf_stamp_size")
        if size is not None and size % 2 == 0:
            errors.append(f"config key {section}.psf_stamp_size: {size} is even; a PSF stamp "
                          "needs a centre pixel (use an odd size)")
    if survey != "local" or config.get("local"):
        bands = configured_bands(config)
        band = config["detect_band"]
        if band not in (AUTO, SUM, *bands):
            errors.append(f"config key detect_band: {band!r} is not a band of survey "
                          f"{survey!r}, which has {bands}; name one of them, sum or auto")
    measure = config.get("measure") or {}
    if measure.get("sersic_n_prior", "none") != "none" and measure.get("sersic_refine") is False:
        errors.append("config key measure.sersic_n_prior: calibrate puts a prior in galcat's "
                      "own Sersic fit, but measure.sersic_refine is false (statmorph's fit); "
                      "set sersic_refine: true or sersic_n_prior: none")
    local = config.get("local") or {}
    if survey == "local" and local.get("objects") == "detect" and (
            (local.get("images") or {}).get("kind", "mosaic") != "mosaic"):
        errors.append("config key local.objects: detect finds objects on mosaics; set "
                      "local.images.kind: mosaic (or give a table of objects)")
    box_filter = (local.get("detection") or {}).get("background_filter")
    if survey == "local" and box_filter is not None and box_filter % 2 == 0:
        errors.append(f"config key local.detection.background_filter: {box_filter} is even; "
                      "a median filter needs a centre (use an odd number of meshes)")
    results = Path(config["results"])
    if results.is_absolute() or ".." in results.parts:
        errors.append(f"config key results: {str(results)!r} must stay inside the working "
                      "directory (a relative path without '..')")
    cache = (config.get("archive") or {}).get("cache_dir")
    if cache and ".." in Path(cache).parts:
        errors.append(f"config key archive.cache_dir: {cache!r} must not contain '..'")
    if "release" in config:
        import datetime as dt

        try:
            dt.date.fromisoformat(config["release"])
        except ValueError:
            errors.append(f"config key release: {config['release']!r} is not a calendar date "
                          "(YYYY-MM-DD)")
    errors += _job_ceiling_errors(config)
    errors += list(_model_errors(config))
    return errors


def trained_models(config: Mapping) -> list[str]:
    """Names of the models the run trains: the enabled ones whose family's labels the
    survey provides (`galcat.labels.provides`); `run_notes` names the others.

    The schema's own models come first, in the schema's order, then the config's other
    names in its order: the catalogue's columns follow this order, which must not
    depend on which models a config happens to mention first."""
    from galcat.labels import provides

    models = config.get("models") or {}
    declared = [n for n in schema()["properties"]["models"]["properties"] if n in models]
    ordered = declared + [n for n in models if n not in declared]
    return [name for name in ordered if models[name].get("enabled", True)
            and provides(config["survey"], models[name].get("family", name))]


def model_entry(config: Mapping, model: str) -> Settings:
    """The validated entry ``models.<model>`` of ``config``, defaults filled in.

    Raises
    ------
    ConfigError
        No model of that name, naming the ones the config has.
    """
    models = settings(config, "models")
    if model not in models:
        raise ConfigError(f"config key models.{model}: no such model; the config has "
                          f"{sorted(models)}")
    return models[model]


def keys_training_ignores(entry: Mapping) -> tuple[str, ...]:
    """Keys of a model entry that its train job does not read, so they stay out of
    its params (editing them retrains nothing) and the job must not read them:
    ``tta`` (inference only), ``huber_delta`` unless the model fits huber,
    ``resnet_norm`` unless its encoder is resnet18, and ``ema_epochs`` when it is 0,
    ``crop`` when it is 1, ``resnet_stem`` when it is torchvision or the encoder
    is not resnet18 and ``lr_schedule`` when it is plateau (so adding them retrained
    no model); ``vote_loss`` unless the family is gz2 (whose models, trained by least
    squares before the key, retrain once under its default); ``lr_factor`` and
    ``lr_patience`` when it is cosine; ``residual_map`` when false. Torch-free: the
    Snakefile plans with it."""
    unread = ["tta"]
    # 0 stays out of the params, and the train job, given no value, fills in the same 0:
    # deciding that is no read of the value (dict.get bypasses `Settings`' record)
    if not dict.get(entry, "ema_epochs"):
        unread.append("ema_epochs")
    if not _crops(entry):
        unread.append("crop")
    if entry["point_estimate"] != "huber":
        unread.append("huber_delta")
    if entry.get("architecture") != "resnet18":
        unread += ["resnet_norm", "resnet_stem"]
    elif dict.get(entry, "resnet_stem", "torchvision") == "torchvision":
        unread.append("resnet_stem")
    if dict.get(entry, "lr_schedule", "plateau") == "plateau":
        unread.append("lr_schedule")
    else:
        unread += ["lr_factor", "lr_patience"]
    if entry.get("family") != "gz2":
        unread.append("vote_loss")
    if not dict.get(entry, "residual_map", False):
        unread.append("residual_map")
    return tuple(unread)


#: Keys of a model entry that its evaluate job reads (bands, binning and crop: the
#: baselines that score pixels see what the network saw).
EVALUATION_KEYS = ("family", "seed", "bands", "bin", "inputs", "scaling")


def keys_evaluation_reads(entry: Mapping) -> tuple[str, ...]:
    """Keys of a model entry in its evaluate job's params: `EVALUATION_KEYS`, and
    ``crop`` unless it is 1 (so adding the key reran no evaluation; the job, given
    none, takes the whole cutout). Torch-free: the Snakefile plans with it."""
    return EVALUATION_KEYS + (("crop",) if _crops(entry) else ())


def _crops(entry: Mapping) -> bool:
    """Whether a model entry crops its cutouts (``crop`` below 1): 1 stays out of the
    params, and a job given none fills in the same 1, so deciding it is no read of
    the value (dict.get bypasses `Settings`' record)."""
    return dict.get(entry, "crop", 1) != 1


#: ``models.<name>.inputs`` read from `measure`'s features tables
#: (`galcat.models.data.MEASURED_INPUTS` says what the network sees of each).
MEASURED_MODEL_INPUTS = ("r50_mass", "r50_psf_corrected", "sersic_n", "sersic_q",
                         "bulge_to_total", "bulge_q", "disc_q", "asymmetry", "concentration",
                         "seg_n_sources", "sn_per_pixel", "bulge_colour", "disc_colour",
                         "neighbour_flux_ratio", "neighbour_colour_offset",
                         "neighbour_separation", "neighbour_size_ratio", "gini", "m20",
                         "smoothness", "shape_asymmetry", "multimode", "intensity",
                         "deviation", "ellipticity", "colour_g_r", "colour_r_i",
                         "bulge_to_total_err", "bulge_q_err", "disc_q_err",
                         "residual_flux_fraction")


def measured_inputs(config: Mapping, model: str) -> list[str]:
    """The inputs of ``models.<model>`` read from `measure`'s features tables: a model
    with one depends on them (its train job on every shard's, a predict job on its
    shard's), so re-measuring retrains it and no other. Torch-free: the Snakefile
    plans with it."""
    return [n for n in (model_entry(config, model).get("inputs") or ())
            if n in MEASURED_MODEL_INPUTS]


def injection_survey(config: Mapping, model: str) -> Settings | None:
    """The ``synthetic`` section that model ``model`` draws its single-Sérsic injections
    with (``models.<model>.injections``); None without injections.

    The injections carry the synthetic survey's PSF and sky noise, so only its own
    models may add them. Torch-free: the Snakefile plans with it, the train job draws
    with it.

    Raises
    ------
    ConfigError
        ``models.<model>`` absent, or injections asked of another survey.
    """
    if not model_entry(config, model).get("injections"):
        return None
    survey = setting(config, "survey")
    if survey != "synthetic":
        raise ConfigError(f"config key models.{model}.injections: injections are drawn with "
                          f"the synthetic survey's PSF and sky noise, not survey {survey!r}'s; "
                          "set it to 0")
    return settings(config, "synthetic")


def run_notes(config: Mapping) -> list[str]:
    """What a user should know before a valid run starts, said once (the Snakefile logs
    each line): settings that cannot work with the survey's bands and are skipped
    rather than failed on every object."""
    from galcat.relations import mass_to_light
    from galcat.surveys import configured_bands

    survey = config["survey"]
    if survey == "local" and not config.get("local"):
        return []
    bands = configured_bands(config)
    out = []
    measure = config.get("measure") or {}
    if measure.get("half_mass", True):
        relation = measure.get("mass_to_light") or defaults("measure")["mass_to_light"]
        missing = [b for b in mass_to_light(relation).bands if b not in bands]
        if missing:
            out.append(
                f"measure.half_mass: the half-mass radius needs the colour of "
                f"measure.mass_to_light = {relation} (bands {list(mass_to_light(relation).bands)}"
                f"); survey {survey!r} has {bands}, without {missing}: r50_mass will not be "
                "measured (flag SKIPPED on every object). Set measure.half_mass: false to "
                "silence this note.")
    enabled = [n for n, e in (config.get("models") or {}).items() if e.get("enabled", True)]
    trained = trained_models(config)
    unlabelled = [n for n in enabled if n not in trained]
    if unlabelled:
        out.append(f"models {unlabelled}: survey {survey!r} has no training labels for their "
                   "families (galcat.labels.SURVEY_LABELS); they are not trained on this run "
                   "and the catalogue has no nn_* columns for them. Set "
                   "models.<name>.enabled: false to silence this note.")
    return out


#: Families with Gaussian outputs, whose central value ``models.<name>.point_estimate``
#: chooses (`galcat.models.registry.Family.fits_point_estimate`, which a test keeps
#: equal). Named here too because the config is checked before any torch import.
POINT_ESTIMATE_FAMILIES = ("r50", "gz2", "metallicity", "sersic")
#: why gz2 refuses a point estimate other than the mean beside the votes' likelihood
#: (here, naming the config key, and in `GZ2.head` for direct callers)
POINT_ESTIMATE_BESIDE_LIKELIHOOD = (
    "chooses what least squares fit, and vote_loss 'multinomial' fits the votes' likelihood "
    "instead; set vote_loss: least_squares, or point_estimate: mean")
RESIDUAL_MAP_BESIDE_INJECTIONS = (
    "the injected galaxies (models.{name}.injections) have no bulge + disc fit to leave a "
    "residual; set one of them off")
#: Families that write a class map of every cutout pixel (`Family.pixel_output`, kept
#: equal by a test): their networks see the whole cutout.
PIXEL_MAP_FAMILIES = ("pixels",)


def _model_errors(config: dict) -> Iterator[str]:
    """Settings an entry's family cannot use, found when the config loads rather
    than when its train job starts, hours later in a cluster queue."""
    for name, entry in (config.get("models") or {}).items():
        family = entry.get("family", name)
        estimate = entry.get("point_estimate", "mean")
        if estimate != "mean" and family not in POINT_ESTIMATE_FAMILIES:
            yield (f"config key models.{name}.point_estimate: {estimate!r} chooses the "
                   f"central value of a Gaussian output, and family {family!r} has none "
                   f"(only {', '.join(POINT_ESTIMATE_FAMILIES)} have); remove the key or "
                   "set it to mean")
        if (family == "gz2" and estimate != "mean"
                and entry.get("vote_loss", "multinomial") == "multinomial"):
            yield (f"config key models.{name}.point_estimate: {estimate!r} "
                   + POINT_ESTIMATE_BESIDE_LIKELIHOOD)
        crop = entry.get("crop", 1)
        if crop != 1 and family in PIXEL_MAP_FAMILIES:
            yield (f"config key models.{name}.crop: {crop!r} crops the cutouts, and family "
                   f"{family!r} classifies every pixel of them (its maps cover the whole "
                   "cutout); remove the key or set it to 1")
        if entry.get("residual_map") and entry.get("injections"):
            yield (f"config key models.{name}.residual_map: "
                   + RESIDUAL_MAP_BESIDE_INJECTIONS.format(name=name))
        if entry.get("residual_map") and not measure_fits_bulge_disc(config["measure"]):
            yield (f"config key models.{name}.residual_map: the map is what measure's bulge + "
                   "disc fit leaves, and this config runs no such fit (measure.r50_model is "
                   f"{config['measure']['r50_model']!r}, and the half-mass route's colour "
                   "model is not bulge_disc); set measure.r50_model: bulge_disc, or remove "
                   "the key")


def measure_fits_bulge_disc(measure: Mapping) -> bool:
    """Whether `measure`, with these settings, fits a bulge + disc to every galaxy: for
    ``r50_model: bulge_disc``, or for the half-mass route's ``bulge_disc`` colour model.
    The one test of it, read by the config's checks and by `galcat.morphology`."""
    return (measure["r50_model"] == "bulge_disc"
            or bool(measure["half_mass"] and measure["half_mass_colour_model"] == "bulge_disc"))


def _job_ceiling_errors(config: dict) -> list[str]:
    survey = config["survey"]
    key = "n_objects" if survey == "synthetic" else "max_objects"
    n_objects = (config.get(survey) or {}).get(key)
    sharding = config["sharding"]
    if not n_objects:
        return []
    n_shards = math.ceil(n_objects / sharding["objects_per_shard"])
    if n_shards <= sharding["max_shards"]:
        return []
    need = math.ceil(n_objects / sharding["max_shards"])
    return [f"config key {survey}.{key}: {n_objects} objects in shards of "
            f"{sharding['objects_per_shard']} make {n_shards} shards, more than "
            f"sharding.max_shards ({sharding['max_shards']}); raise "
            f"sharding.objects_per_shard to at least {need} (or max_shards, if planning "
            f"that many jobs is what you want)"]


# --------------------------------------------------------------------------- sections
_RECORDERS: list[list[str]] = []


@contextlib.contextmanager
def record_default_reads() -> Iterator[list[str]]:
    """Collect the config paths read from schema defaults instead of from the caller.

    Inside the block every `Settings` value that the caller did not pass (its
    section or key was missing and the schema default stood in) is appended,
    as ``section.key``, to the list this yields, once per read.
    """
    reads: list[str] = []
    _RECORDERS.append(reads)
    try:
        yield reads
    finally:
        _RECORDERS.remove(reads)


class Settings(dict):
    """One config section, validated, with the schema defaults filled in.

    A plain dict to read, except that a value the caller did not pass is
    reported to `record_default_reads` when it is read, however it is read
    (indexing, ``get``, ``pop``, ``items``, ``values``, ``dict(s)``, ``**s``).
    """

    def __init__(self, values: Mapping, *, path: str, filled: frozenset[str]):
        super().__init__()
        self._path = path
        self._filled = filled
        for key, value in values.items():
            where = f"{path}.{key}"
            if isinstance(value, dict):
                inner = frozenset(p for p in filled if p.startswith(where + "."))
                value = Settings(value, path=where, filled=inner)
            dict.__setitem__(self, key, value)

    def _note(self, key: str) -> None:
        where = f"{self._path}.{key}"
        if _RECORDERS and (where in self._filled or self._path in self._filled):
            for reads in _RECORDERS:
                reads.append(where)

    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def pop(self, key, *default):
        if key in self:
            self._note(key)
        return super().pop(key, *default)

    # Overriding __iter__ makes dict(s), {**s} and f(**s) read through __getitem__.
    def __iter__(self):
        return super().__iter__()

    def items(self):
        for key in self:
            self._note(key)
        return super().items()

    def values(self):
        for key in self:
            self._note(key)
        return super().values()

    def copy(self) -> Settings:
        return Settings(dict(dict.items(self)), path=self._path, filled=self._filled)

    def __reduce__(self):  # pickled (Dask processes) as a plain dict
        return (dict, (dict(dict.items(self)),))


@functools.lru_cache(maxsize=256)
def _section(name: str, text: str) -> tuple[dict, frozenset[str]]:
    node = schema()["properties"].get(name)
    if node is None:
        raise ConfigError(f"config has no section {name!r}; known: {sorted(schema()['properties'])}")
    filled: set[str] = set()
    value = json.loads(text)
    if value is None:  # the section is missing: all of it is the schema's
        value, filled = {}, {name}
    if isinstance(value, dict):
        _fill(value, node, name, filled)
    lines = _errors(value, node, name)
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return _normalise(value, node), frozenset(filled)


def settings(
    config: Mapping | None, name: str, *, error: type[ConfigError] = ConfigError
) -> Settings:
    """Section ``name`` of ``config``, validated, with the schema defaults filled in.

    Parameters
    ----------
    config : mapping or None
        A whole galcat config, or a part of one (a rule's params). A missing
        section or key takes the schema default.
    name : str
        Top-level section (``segment``, ``measure``, ``dask``, ...).
    error : subclass of ConfigError, optional
        Exception raised for an invalid section (a module's own typed error).

    Returns
    -------
    Settings
        A dict; values the caller did not pass are noted when read
        (`record_default_reads`). Cached per distinct section: cheap to call.

    Raises
    ------
    ConfigError
        For an unknown key or a value of the wrong type or out of bounds, naming
        ``section.key`` and the bad value.
    """
    value, filled = _checked(name, (config or {}).get(name), error)
    return Settings(copy.deepcopy(value), path=name, filled=filled)


def setting(config: Mapping | None, name: str, *,
            error: type[ConfigError] = ConfigError) -> Any:
    """Top-level setting ``name`` that is not a section (``detect_band``), validated.

    A missing value takes the schema default and is noted as a default read
    (`record_default_reads`), as `settings` does for the keys of a section.

    Raises
    ------
    ConfigError
        An unknown name, or a value of the wrong type or out of bounds.
    """
    node = schema()["properties"].get(name)
    if node is None or node.get("type") == "object":
        raise ConfigError(f"{name!r} is not a top-level setting of the config schema")
    given = config is not None and name in config
    if not given:
        for reads in _RECORDERS:
            reads.append(name)
        return copy.deepcopy(node.get("default"))
    value = config[name]
    lines = _errors(value, node, name)
    if lines:
        raise error("invalid configuration:\n  " + "\n  ".join(lines))
    return _normalise(copy.deepcopy(value), node)


def check_section(
    name: str, values: Mapping, *, error: type[ConfigError] = ConfigError
) -> dict:
    """``values`` checked as section ``name``: a plain dict with the defaults filled in.

    For keyword options of a library function that are also config keys: the
    schema holds their bounds. Unlike `settings`, reads are not recorded.
    """
    return copy.deepcopy(_checked(name, dict(values), error)[0])


def _checked(name: str, raw: Any, error: type[ConfigError]) -> tuple[dict, frozenset[str]]:
    text = json.dumps(raw, sort_keys=True, default=str)
    try:
        return _section(name, text)
    except ConfigError as exc:
        if error is ConfigError:
            raise
        raise error(str(exc)) from None


def defaults(name: str | None = None) -> dict:
    """The schema defaults of section ``name`` (or of the whole config) as plain dicts."""
    if name is None:
        out: dict = {}
        _fill(out, schema(), "", set())
        return _normalise(out, schema())
    return copy.deepcopy(_section(name, "null")[0])


# --------------------------------------------------------------------------- files
def load_config(*paths: os.PathLike | str, overrides: dict | None = None) -> dict:
    """The defaults merged with the YAML files ``paths`` (in order) and ``overrides``.

    Raises
    ------
    ConfigError
        A file that is not valid YAML, whose top level is not a mapping, or a
        value that breaks the schema, naming the file or the key.
    """
    config: dict = {}
    for path in paths:
        config = deep_merge(config, _read_yaml(path))
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently: a second ``segment:`` block would
    drop every setting of the first.
    """

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a YAML merge key (<<: *anchor): its keys may be overridden
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1}); the first would be ignored",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def check_config_files(*paths: os.PathLike | str) -> None:
    """Raise `ConfigError` for a config file that cannot be read, is not YAML, is not
    a mapping, or gives a key twice (for files another loader read: Snakemake's)."""
    for path in paths:
        _read_yaml(path)


def _read_yaml(path: os.PathLike | str) -> dict:
    try:
        with open(path) as fh:
            value = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return value


def default_config_yaml() -> str:
    """The text of ``config/config.yaml``: every default outside the survey sections.

    Written from the schema (descriptions as comments), never by hand, so that a
    default stands in one place.
    """
    top = schema()
    out = [
        "# galcat default configuration: the synthetic survey, offline, a laptop in minutes.",
        "# Written from config/schema.yaml by `galcat defaults > config/config.yaml`: change a",
        "# default there. Put your own changes in your own file (snakemake --configfile mine.yaml).",
        "# The archive surveys' sections are in config/surveys/*.yaml.",
        "",
    ]
    values = defaults()
    for key, node in top["properties"].items():
        if key in SURVEY_SECTIONS or key not in values:
            continue
        out += _yaml_block(key, values[key], node, indent=0)
    return "\n".join(out).rstrip() + "\n"


def _first_sentence(node: dict) -> str:
    # The whole description is in the schema; the config file keeps it short.
    text = " ".join(str(node.get("description", "")).split())
    parts = re.split(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+", text, maxsplit=1)
    return parts[0] + "." if len(parts) > 1 else text


def _comment(node: dict, indent: int, width: int = 92) -> list[str]:
    text = _first_sentence(node)
    if not text:
        return []
    pad = " " * indent + "# "
    return textwrap.wrap(text, width=width, initial_indent=pad, subsequent_indent=pad)


def _yaml_block(key: str, value: Any, node: dict, *, indent: int) -> list[str]:
    pad = " " * indent
    props = node.get("properties", {})
    expand = isinstance(value, dict) and props and value
    flow = "" if expand else yaml.safe_dump(
        {key: value}, default_flow_style=True, width=10_000, allow_unicode=True
    ).strip()[1:-1]
    description = _first_sentence(node)
    if flow and indent and len(pad + flow + description) < 88:
        # a short description reads best beside its value
        return [f"{pad}{flow}  # {description}" if description else pad + flow]
    lines = _comment(node, indent)
    if expand:
        lines.append(f"{pad}{key}:")
        for sub_key, sub_value in value.items():
            lines += _yaml_block(sub_key, sub_value, props.get(sub_key, {}), indent=indent + 2)
        if indent == 0:
            lines.append("")
        return lines
    lines.append(pad + flow)
    if indent == 0:
        lines.append("")
    return lines


def config_hash(config: Any) -> str:
    """A short, stable SHA-256 of the parsed config (comments and layout do not count)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
