"""Live smoke test of the archive clients: one small request per archive, for a user
with internet access. Not part of the test suite (CI is offline); see docs/archives.md.

    .venv/bin/python bench/live_archive_smoke.py

What it checks, through galcat's own clients (a fresh cache, so every answer is live):

- SDSS SkyServer: a 3-object query of galcat's SQL (POST form, ``d4000`` from
  ``galSpecIndx``), its columns, exact ``specobjid`` (uint64);
- MaNGA SAS: the DRPall file's headers by HTTP Range (whether the SAS honours Range,
  and that every column galcat reads is there), without downloading the table;
- MAST portal: the JADES mosaic lookup (long polling, field types);
- MAST download API, per JADES release (dr2, dr5): how it answers Range (206, 200 or a
  redirect) and the catalogue's headers against galcat's column map for that release.
  ``archive.max_download_mb`` is set to 64 here, so a server that ignores Range fails
  fast instead of streaming a multi-GB file.

Prints a table, then one JSON line; exits 1 if any check failed. ``--skyserver``,
``--sas`` and ``--mast`` point it elsewhere (the tests run it against the fake archive).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from galcat.config import load_config
from galcat.surveys import jades, manga, sdss
from galcat.surveys._http import RemoteFITS, session_for

FILTERS = ["F200W"]


def config_for(args, cache: Path) -> dict:
    return load_config(overrides={
        "archive": {"cache_dir": str(cache), "timeout_s": args.timeout, "retries": 1,
                    "backoff_s": 1, "max_download_mb": 64},
        "sdss": {"skyserver_url": args.skyserver, "sas_url": args.sas, "max_objects": 3,
                 "batch_size": 3, "extra_columns": ["d4000", "vel_disp"],
                 "selection": {"ra": {"min": 150.0, "max": 152.0}, "dec": {"min": 1.0, "max": 3.0},
                               "z": {"min": 0.02, "max": 0.15}, "petro_mag_r": {"max": 17.77}}},
        "manga": {"sas_url": args.sas},
        "jades": {"mast_url": args.mast, "filters": FILTERS},
    })


def check_sdss(config: dict) -> dict:
    df = sdss.query(config)
    missing = [c for c in ("object_id", "ra", "dec", "z", "d4000", "vel_disp", "log_mass",
                           "gz2_class1_1") if c not in df]
    if missing:
        raise AssertionError(f"columns missing from the answer: {missing}")
    if df["specobjid"].dtype != np.uint64:
        raise AssertionError(f"specobjid is {df['specobjid'].dtype}, not uint64")
    return {"rows": len(df), "first_object": int(df["object_id"].iloc[0]),
            "d4000_finite": int(np.isfinite(df["d4000"]).sum())}


def check_manga(config: dict) -> dict:
    section = config["manga"]
    url = manga.drpall_url(section)
    remote = RemoteFITS(session_for(config, "manga"), url, what="MaNGA DRPall")
    names = {h.name for h in remote.hdus()}
    hdu = remote.hdu_info("MANGA" if "MANGA" in names else 1)
    columns = {str(hdu.header.get(f"TTYPE{i}", "")).lower()
               for i in range(1, int(hdu.header.get("TFIELDS", 0)) + 1)}
    missing = [c for c in manga._COLUMNS if c not in columns]
    if missing:
        raise AssertionError(f"DRPall lacks {missing}")
    return {"range": _range_answer(remote), "rows": int(hdu.header.get("NAXIS2", 0)),
            "size_mb": round((remote.size or 0) / 2**20, 1)}


def check_portal(config: dict) -> dict:
    section = config["jades"]
    session = session_for(config, "jades")
    uris = jades._lookup_mosaics(session, section, FILTERS)
    polls = sum(1 for method, url, _ in session.history if url.endswith("/api/v0/invoke"))
    return {"mosaics": uris, "portal_requests": polls}


def check_jades(config: dict, release: str, field: str, version: str) -> dict:
    section = {**config["jades"], "release": release, "field": field, "version": version,
               "redshift_column": None}
    uri = jades.catalog_uri(section)
    remote = RemoteFITS(session_for(config, "jades"), jades.mast_download_url(section, uri),
                        what=f"JADES {release} catalogue {uri}")
    jades.check_layout(remote, section, jades.release_of(section), remote.what)
    return {"range": _range_answer(remote), "redirected_to": remote.redirected_to,
            "size_mb": round((remote.size or 0) / 2**20, 1)}


def _range_answer(remote: RemoteFITS) -> str:
    answer = {True: "206", False: "200 (Range ignored)", None: "not probed"}[
        remote.range_supported]
    return f"redirect, then {answer}" if remote.redirected_to else answer


def run(name: str, check: Callable[[], dict], results: dict) -> None:
    start = time.perf_counter()
    try:
        out = {"ok": True, **check()}
    except Exception as exc:  # a smoke test reports every failure, then goes on
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
    out["seconds"] = round(time.perf_counter() - start, 2)
    results[name] = out
    detail = out.get("error") or ", ".join(f"{k}={v}" for k, v in out.items()
                                            if k not in {"ok", "seconds"})
    print(f"{name:<14} {'ok' if out['ok'] else 'FAILED':<7} {out['seconds']:>7.2f}  {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skyserver", default="https://skyserver.sdss.org")
    parser.add_argument("--sas", default="https://data.sdss.org/sas")
    parser.add_argument("--mast", default="https://mast.stsci.edu")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="galcat-smoke-") as tmp:
        config = config_for(args, Path(tmp) / "cache")
        print(f"{'check':<14} {'result':<7} {'seconds':>7}  detail")
        run("sdss_sql", lambda: check_sdss(config), results)
        run("manga_drpall", lambda: check_manga(config), results)
        run("mast_portal", lambda: check_portal(config), results)
        run("jades_dr2", lambda: check_jades(config, "dr2", "goods-s-deep", "v2.0"), results)
        run("jades_dr5", lambda: check_jades(config, "dr5", "goods-s", "v5.0"), results)
    ok = all(r["ok"] for r in results.values())
    print(json.dumps({"live_archive_smoke": results, "ok": ok}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
