"""The ``galcat`` command line: one subcommand per stage of the DAG.

Snakemake rules call these. A stage takes the config sections it reads as one
JSON object (``--config-json``, the rule's ``params``, so that an edit reruns
exactly the rules it affects) and, where it parallelises, the job's execution
settings (``--dask-json``, ``--threads``: how to run, never what comes out, so
they are kept out of the params).

Adding a stage: write ``run_<stage>`` in `galcat.stages`, its rule, and one
entry in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "main"]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _one(flag: str, **kw) -> tuple[str, dict]:
    return flag, {"required": True, **kw}


def _many(flag: str) -> tuple[str, dict]:
    return flag, {"required": True, "nargs": "+"}


def _optional(flag: str, **kw) -> tuple[str, dict]:
    return flag, {"default": None, **kw}


CONFIG = _one("--config-json", type=_json_object, dest="config",
              help="the config sections the stage reads (the rule's params), as JSON")
DASK = _optional("--dask-json", type=_json_object, dest="dask",
                 help="execution settings: the config's dask section, as JSON")
THREADS = _optional("--threads", type=int, help="cores of the job (caps the Dask workers)")


@dataclass(frozen=True)
class Command:
    """One subcommand: its help, the function it calls and that function's options.

    ``target`` is ``"module:function"``, imported only when the command runs (so
    ``galcat --help`` stays fast); the parsed options are its keyword arguments.
    """

    help: str
    target: str
    options: tuple[tuple[str, dict], ...]

    def function(self) -> Callable:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    "query": Command("query the survey; write the object table", "galcat.stages:run_query",
                     (CONFIG, _one("--output"),
                      _optional("--shard-map", help="the survey's object -> shard map, kept "
                                                    "across runs (archive and local surveys)"),
                      _optional("--detections", help="the detection table (local.objects: "
                                                     "detect)"))),
    "detect": Command("detect the objects of local mosaics; write their table",
                      "galcat.stages:run_detect", (CONFIG, DASK, THREADS, _one("--output"))),
    "shards": Command("list the shards of an object table and write each shard's rows",
                      "galcat.stages:run_plan_shards",
                      (_one("--objects"), _one("--output"), _one("--shard-dir"))),
    "fetch": Command("stage the cutouts of one shard into Zarr", "galcat.stages:run_fetch",
                     (CONFIG, DASK, THREADS, _optional("--objects"), _one("--shard"),
                      _one("--output"))),
    "segment": Command("segment the objects of one shard", "galcat.stages:run_segment",
                       (CONFIG, DASK, THREADS, _one("--cutouts"), _one("--shard"),
                        _one("--output-maps"), _one("--output-table"))),
    "measure": Command("measure the objects of one shard", "galcat.stages:run_measure",
                       (CONFIG, DASK, THREADS, _one("--cutouts"), _one("--segmaps"),
                        _one("--segment-table"), _one("--shard"), _one("--output"),
                        _optional("--residuals", help="the shard's residual significance "
                                                      "maps to write (Zarr)"))),
    "catalogue": Command("join objects and features; write Parquet, FITS and VOTable",
                         "galcat.stages:run_catalogue",
                         (CONFIG, _one("--objects"), _many("--features"),
                          _optional("--predictions", nargs="*"),
                          _one("--config-hash"), _one("--output-parquet"),
                          _one("--output-fits"), _optional("--output-votable"))),
    "train": Command("train one model (galcat.models); resumes a killed run",
                     "galcat.models.stages:run_train",
                     (CONFIG, THREADS, _one("--model"), _many("--objects"), _many("--cutouts"),
                      _one("--output-dir"),
                      _optional("--init-model", help="model.pt to fine-tune from (models.<name>"
                                                     ".init: synthetic)"),
                      _optional("--features", nargs="*",
                                help="features tables of the shards (models with measured "
                                     "inputs)"),
                      _optional("--residuals", nargs="*",
                                help="residual maps of the shards, in the order of --cutouts "
                                     "(models.<name>.residual_map)"))),
    "predict": Command("predict every object of one shard with a trained model",
                       "galcat.models.stages:run_predict",
                       (CONFIG, THREADS, _one("--model"), _one("--model-file"),
                        _one("--splits"), _one("--cutouts"), _one("--output"),
                        _optional("--pixelmaps", help="the shard's pixel maps to write "
                                                      "(per-pixel families)"),
                        _optional("--objects", nargs="*",
                                  help="object table(s) of the shard's objects (models with "
                                       "per-object inputs)"),
                        _optional("--features", nargs="*",
                                  help="the shard's features table (models with measured "
                                       "inputs)"),
                        _optional("--residuals", nargs="*",
                                  help="the shard's residual maps (models.<name>."
                                       "residual_map)"),
                        _optional("--batch-size", type=int,
                                  help="objects read at once (execution setting)"))),
    "evaluate": Command("score a model and its baselines on the test split",
                        "galcat.models.stages:run_evaluate",
                        (CONFIG, THREADS, _one("--model"), _many("--objects"),
                         _many("--features"), _many("--cutouts"), _many("--segmaps"),
                         _many("--predictions"), _one("--splits"), _one("--output"),
                         _optional("--pixelmaps", nargs="*",
                                   help="the model's pixel maps of every shard"))),
    "report": Command("write the HTML report", "galcat.stages:run_report",
                      (CONFIG, _one("--catalogue"), _one("--output"),
                       ("--figures", {"nargs": "*", "default": [],
                                      "help": "PNG files to draw, each named after a figure "
                                              "of galcat.report.FIGURES"}),
                       _optional("--analysis-dir", help="directory of the analyses' JSON and "
                                                        "PNG files, listed if present"))),
    "merger-fraction": Command(
        "merger fraction in redshift and mass bins, corrected for chance projections",
        "galcat.analysis.merger:run_merger_fraction",
        (CONFIG, _one("--catalogue"), _one("--output-json"), _many("--output-png"))),
    "mzr": Command("mass-metallicity relation against the measured stellar mass",
                   "galcat.analysis.mzr:run_mzr",
                   (CONFIG, _one("--catalogue"), _one("--output-json"), _one("--output-png"))),
    "r50-validation": Command(
        "half-mass radius of the network and the traditional route vs truth",
        "galcat.analysis.r50:run_r50_validation",
        (CONFIG, _one("--catalogue"), _optional("--cutouts", nargs="*", default=()),
         _one("--output-json"), _many("--output-png"))),
    "latent-space": Command(
        "correlations of the latent-space model's columns with galaxy properties",
        "galcat.analysis.latent:run_latent_space",
        (CONFIG, _one("--catalogue"), _one("--output-json"), _one("--output-png"))),
    "seed-papers": Command(
        "the seed papers' headline figures beside this run's",
        "galcat.analysis.seeds:run_seed_papers",
        (CONFIG, _one("--catalogue"), _many("--analyses"), _one("--output-json"))),
    "columns": Command("write the Markdown column reference of a catalogue",
                       "galcat.columns:write_column_reference",
                       (_one("--catalogue"), _one("--output"))),
    "release": Command("write a dated release and switch 'latest' to it",
                       "galcat.stages:run_release",
                       (_one("--releases-dir"), _one("--date"), _one("--catalogue"),
                        _many("--files"))),
    "validate-config": Command("validate config files against the schema",
                               "galcat.stages:run_validate_config",
                               (("configs", {"nargs": "*", "help": "YAML files, in order"}),)),
    "status": Command("list the galcat version each shard's tables were written by",
                      "galcat.stages:run_status",
                      (_one("--results", help="results/{survey} of a run"),
                       ("--outdated", {"action": "store_true",
                                       "help": "print only the tables of another version"}))),
    "local-config": Command(
        "write a config that detects and measures the objects of your FITS mosaics",
        "galcat.stages:run_local_config",
        (("images", {"nargs": "+", "metavar": "BAND=MOSAIC",
                     "help": "one FITS mosaic per band, blue to red"}),
         _one("--output", help="the YAML file to write (snakemake --configfile it)"),
         _optional("--psf-fwhm", nargs="+", metavar="[BAND=]ARCSEC",
                   help="Gaussian PSF FWHM, one for all bands or one per band"),
         _optional("--psf", nargs="+", metavar="BAND=FILE", help="PSF images instead"),
         _optional("--pixel-scale", type=float, help="arcsec/pixel of mosaics without a WCS"),
         _optional("--zeropoint", nargs="+", metavar="[BAND=]MAG",
                   help="AB magnitude of one pixel unit where the header lacks it"),
         _optional("--noise", nargs="+", metavar="BAND=FILE", help="noise maps"),
         ("--noise-kind", {"default": "sigma", "choices": ["sigma", "variance", "ivar"]}),
         _optional("--mask", help="one mask for every band"),
         ("--mask-kind", {"default": "bad", "choices": ["bad", "good", "weight"]}),
         ("--detect-band", {"default": "auto", "help": "a band, sum or auto"}),
         ("--results", {"default": "results", "help": "results directory of the run"}))),
    "defaults": Command("print the default config (the text of config/config.yaml)",
                        "galcat.stages:run_defaults", ()),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="galcat", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sp = sub.add_parser(name, help=command.help, description=command.help)
        for flag, spec in command.options:
            sp.add_argument(flag, **spec)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a configuration error is one line on stderr and exit code 2."""
    args = vars(_parser().parse_args(argv))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    from galcat.config import ConfigError

    name = args.pop("command")
    command = COMMANDS[name]
    try:
        command.function()(**args)
    except ConfigError as exc:
        print(f"galcat: {exc}", file=sys.stderr)
        return 2
    _log_usage(name)
    return 0


def _log_usage(command: str) -> None:
    """One log line with the CPU the command used, its worker processes included (they
    are reaped by the time it returns), and its peak memory: Snakemake's ``benchmark:``
    samples the process tree and misses the CPU of Dask workers that end between two
    samples, so ``bench/survey_scale.py`` reads this line instead."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_s = own.ru_utime + own.ru_stime
    workers_s = workers.ru_utime + workers.ru_stime
    logging.getLogger("galcat.usage").info(
        "%s: CPU %.2f s (this process %.2f s, workers %.2f s); peak memory %.0f MiB "
        "(this process)", command, own_s + workers_s, own_s, workers_s, own.ru_maxrss / 1024)


if __name__ == "__main__":
    sys.exit(main())
