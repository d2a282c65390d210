"""The ``galcat`` command line: one subcommand per stage of the DAG.

Snakemake rules call these; each takes the config sections it reads as one JSON
object (``--config-json``) so that the rule's ``params`` hold exactly them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main"]


def _config_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--config-json is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--config-json must be a JSON object")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="galcat", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config-json", type=_config_arg, required=True)
        sp.add_argument("--threads", type=int, default=1)
        return sp

    q = stage("query", "query the survey; write the object table")
    q.add_argument("--output", required=True)

    f = stage("fetch", "stage the cutouts of one shard into Zarr")
    f.add_argument("--objects", default=None,
                   help="the shard's object table (archive surveys); synthetic makes its own")
    f.add_argument("--shard", required=True)
    f.add_argument("--output", required=True)

    s = stage("segment", "segment the objects of one shard")
    s.add_argument("--cutouts", required=True)
    s.add_argument("--shard", required=True)
    s.add_argument("--output-maps", required=True)
    s.add_argument("--output-table", required=True)

    m = stage("measure", "measure the objects of one shard")
    m.add_argument("--cutouts", required=True)
    m.add_argument("--segmaps", required=True)
    m.add_argument("--segment-table", required=True)
    m.add_argument("--shard", required=True)
    m.add_argument("--output", required=True)

    c = stage("catalogue", "join objects and features; write Parquet and FITS")
    c.add_argument("--objects", required=True)
    c.add_argument("--features", nargs="+", required=True)
    c.add_argument("--config-hash", required=True)
    c.add_argument("--output-parquet", required=True)
    c.add_argument("--output-fits", required=True)
    c.add_argument("--output-votable", default=None)

    r = stage("report", "write the HTML report")
    r.add_argument("--catalogue", required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--figures", nargs="*", default=[],
                   help="PNG files to draw, each named after a figure of galcat.report.FIGURES")
    r.add_argument("--analysis-dir", default=None,
                   help="directory of the analyses' JSON and PNG files, listed if present")

    rel = stage("release", "write a dated release and switch 'latest' to it")
    rel.add_argument("--releases-dir", required=True)
    rel.add_argument("--date", required=True)
    rel.add_argument("--catalogue", required=True)
    rel.add_argument("--files", nargs="+", required=True)

    col = sub.add_parser("columns", help="write the Markdown column reference of a catalogue")
    col.add_argument("--catalogue", required=True)
    col.add_argument("--output", required=True)

    sh = sub.add_parser("shards", help="list the shards of an object table, one a line")
    sh.add_argument("--objects", required=True)
    sh.add_argument("--output", required=True)
    sh.add_argument("--shard-dir", required=True)

    v = sub.add_parser("validate-config", help="validate config files against the schema")
    v.add_argument("configs", nargs="*")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    from galcat import stages

    if args.command == "query":
        stages.run_query(args.config_json, args.output)
    elif args.command == "fetch":
        stages.run_fetch(
            args.config_json, args.objects, args.shard, args.output, threads=args.threads
        )
    elif args.command == "segment":
        stages.run_segment(
            args.config_json, args.cutouts, args.shard, args.output_maps, args.output_table,
            threads=args.threads,
        )
    elif args.command == "measure":
        stages.run_measure(
            args.config_json, args.cutouts, args.segmaps, args.segment_table, args.shard,
            args.output, threads=args.threads,
        )
    elif args.command == "catalogue":
        from galcat.catalogue import build_catalogue

        build_catalogue(
            args.objects, args.features, config_hash=args.config_hash,
            survey=args.config_json["survey"], output_parquet=args.output_parquet,
            output_fits=args.output_fits, output_votable=args.output_votable,
            mass_to_light=args.config_json.get("measure", {}).get("mass_to_light", "bell2003_gr"),
        )
    elif args.command == "report":
        from galcat.report import write_report

        write_report(args.catalogue, args.output, config=args.config_json,
                     figures=args.figures, analysis_dir=args.analysis_dir)
    elif args.command == "release":
        from galcat.release import make_release

        make_release(args.releases_dir, args.date, args.files, catalogue=args.catalogue)
    elif args.command == "columns":
        from galcat.columns import write_column_reference

        write_column_reference(args.catalogue, args.output)
    elif args.command == "shards":
        from galcat.stages import run_plan_shards

        run_plan_shards(args.objects, args.output, args.shard_dir)
    elif args.command == "validate-config":
        from galcat.config import load_config

        load_config(*args.configs)
        print("config is valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
