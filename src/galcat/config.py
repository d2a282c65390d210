"""Loading, validating and hashing galcat configurations.

The JSON Schema in ``config/schema.yaml`` is the single description of every
key; Snakemake validates against it on load, and so does :func:`load_config`
for users who call the package directly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "config_hash", "default_config_path", "load_config", "schema_path"]


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of bounds."""


def _repo_file(*parts: str) -> Path:
    # The package lives in src/galcat inside the workflow repository; the config
    # files are the workflow's, so they are found relative to it.
    return Path(__file__).resolve().parents[2].joinpath(*parts)


def schema_path() -> Path:
    return _repo_file("config", "schema.yaml")


def default_config_path() -> Path:
    return _repo_file("config", "config.yaml")


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_config(config: dict) -> dict:
    """Validate ``config`` against the schema, filling defaults; return it.

    Raises
    ------
    ConfigError
        Naming the offending key path and the rule it breaks.
    """
    import jsonschema

    with open(schema_path()) as fh:
        schema = yaml.safe_load(fh)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"config key {where}: {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _fill_defaults(config, schema)
    return config


def _fill_defaults(config: dict, schema: dict) -> None:
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)
    # entries of a name -> object mapping (the models section) get their defaults too
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("type") == "object":
        for key, value in config.items():
            if key not in properties and isinstance(value, dict):
                _fill_defaults(value, extra)


def load_config(*paths: os.PathLike | str, overrides: dict | None = None) -> dict:
    """The default config merged with ``paths`` (in order) and ``overrides``, validated."""
    with open(default_config_path()) as fh:
        config = yaml.safe_load(fh)
    for path in paths:
        with open(path) as fh:
            config = deep_merge(config, yaml.safe_load(fh) or {})
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config)


def config_hash(config: Any) -> str:
    """A short, stable SHA-256 of the parsed config (comments and layout do not count)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
