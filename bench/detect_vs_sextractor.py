"""Detection on a whole mosaic: galcat's (`galcat.detection`) and SExtractor's, side by side.

Renders a synthetic mosaic with known truth (`galcat.validation.mosaic`: galaxies of the
synthetic survey's population dimmed by U(0, --dim-max) mag so that the faint end
reaches the detection limit, stars, the survey's sky and Poisson noise and a smooth sky
pedestal of --pedestal sky sigmas), writes it as FITS (r band in nanomaggies, with a
WCS) and

* runs galcat's detection on it as the workflow does (``local.objects: detect``, tiles
  of --tile-size pixels through Dask, the config's ``local.detection`` defaults);
* runs SExtractor (Debian's ``source-extractor``, `galcat.validation.sextractor`) on the
  same image with the same settings where both have one: a 64-pixel background mesh
  median-filtered over 3 meshes, a Gaussian filter of the PSF's FWHM, a 1.5-sigma
  threshold on 5 pixels, 32 deblending levels at contrast 0.005, Kron photometry
  (PHOT_AUTOPARAMS 2.5, 3.5) and windowed centroids; each estimates its own noise.

Scores (`galcat.validation.mosaic.score_detections`; one-to-one matching of true
positions within --match-radius pixels): completeness overall and by true r magnitude,
spurious detections (matched to no source), median position offset of galaxies and of
stars, and the galaxies' Kron flux against their true total flux (median |ratio - 1| and
median bias), on each method's own matches and on the galaxies both matched.

Prints a table and ends with one line of JSON.

    python bench/detect_vs_sextractor.py [--size 2048] [--galaxies 1200] [--stars 150]
        [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from galcat.config import load_config
from galcat.detection import detect_mosaic
from galcat.segment import psf_fwhm_pixels
from galcat.validation.mosaic import score_detections, synthetic_mosaic, write_mosaic
from galcat.validation.sextractor import find_sextractor, run_sextractor, sextractor_version

BAND = "r"
MAG_BINS = (14.0, 20.0, 21.0, 22.0, 22.5, 23.0, 23.5, 24.0, 30.0)
#: SExtractor's star/galaxy network (CLASS_STAR), as Debian installs it.
STAR_NNW = "/usr/share/source-extractor/default.nnw"
SEX_PARAMETERS = ("NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "FLUX_AUTO",
                  "FLUXERR_AUTO", "FLUX_RADIUS", "KRON_RADIUS", "A_IMAGE", "B_IMAGE",
                  "CLASS_STAR", "FLAGS")


def run_galcat(mosaic, args, workdir) -> tuple[pd.DataFrame, float]:
    section = write_mosaic(mosaic, workdir, unit="nanomaggy", wcs=True)
    section["detection"] = {"tile_size": args.tile_size}
    config = load_config(overrides={
        "survey": "local", "detect_band": BAND, "local": section,
        "dask": {"scheduler": "processes" if args.workers > 1 else "synchronous",
                 "workers": args.workers}})
    t0 = time.perf_counter()
    table = detect_mosaic(config)
    seconds = time.perf_counter() - t0
    return pd.DataFrame({"x": table["x"], "y": table["y"], "flux": table[f"flux_{BAND}"],
                         "point": table["point_source"]}), seconds


def run_sex(mosaic, args) -> tuple[pd.DataFrame, float]:
    fwhm = psf_fwhm_pixels(mosaic.psf[BAND])
    t0 = time.perf_counter()
    table, _ = run_sextractor(
        mosaic.images[BAND], None, detect_thresh=1.5, detect_minarea=5, deblend_nthresh=32,
        deblend_mincont=0.005, filter_fwhm=fwhm, back_size=64, back_filtersize=3,
        phot_autoparams=(2.5, 3.5), parameters=SEX_PARAMETERS, timeout=3600.0,
        extra_config={"STARNNW_NAME": STAR_NNW,
                      "SEEING_FWHM": fwhm * mosaic.pixel_scale,
                      "PIXEL_SCALE": mosaic.pixel_scale})
    seconds = time.perf_counter() - t0
    x, y = table["XWIN_IMAGE"] - 1.0, table["YWIN_IMAGE"] - 1.0
    return pd.DataFrame({"x": x, "y": y, "flux": table["FLUX_AUTO"],
                         "point": table["CLASS_STAR"] > 0.8}), seconds


def _pct(v) -> str:
    return "    -" if v is None or not math.isfinite(v) else f"{100 * v:5.1f}"


def common_flux(truth, scores: dict, found: dict) -> dict:
    """Flux error and bias of the galaxies every method matched."""
    galaxy = (truth["kind"] == "galaxy").to_numpy()
    both = galaxy & np.logical_and.reduce([s["matched"] >= 0 for s in scores.values()])
    true = truth[f"flux_{BAND}"].to_numpy()[both]
    out = {"n": int(both.sum())}
    for name, s in scores.items():
        ratio = found[name]["flux"].to_numpy()[s["matched"][both]] / true
        out[name] = {"flux_error": float(np.median(np.abs(ratio - 1))),
                     "flux_bias": float(np.median(ratio - 1))}
    return out


def print_table(scores: dict, common: dict, seconds: dict, mosaic, args) -> None:
    names = list(scores)
    print(f"\nDetection on a {args.size} x {args.size} synthetic mosaic ({BAND} band, "
          f"{(mosaic.truth['kind'] == 'galaxy').sum()} galaxies dimmed by U(0, {args.dim_max}) "
          f"mag, {(mosaic.truth['kind'] == 'star').sum()} stars, sky pedestal "
          f"{args.pedestal} sigma); matched within {args.match_radius} px")
    head = f"{'':<28}" + "".join(f"{n:>14}" for n in names)
    print(head)
    print("-" * len(head))
    rows = [("completeness (%)", lambda s: _pct(s["completeness"])),
            ("spurious detections", lambda s: f"{s['spurious']:5d}"),
            ("detections", lambda s: f"{s['n_found']:5d}"),
            ("position galaxies (px)", lambda s: f"{s['position_galaxies']:5.3f}"),
            ("position stars (px)", lambda s: f"{s['position_stars']:5.3f}"),
            ("flux |ratio-1| own (%)", lambda s: _pct(s["flux_error"])),
            ("flux bias own (%)", lambda s: _pct(s["flux_bias"]))]
    for label, fmt in rows:
        print(f"{label:<28}" + "".join(f"{fmt(scores[n]):>14}" for n in names))
    print(f"{'flux |ratio-1| common (%)':<28}"
          + "".join(f"{_pct(common[n]['flux_error']):>14}" for n in names))
    print(f"{'flux bias common (%)':<28}"
          + "".join(f"{_pct(common[n]['flux_bias']):>14}" for n in names))
    print(f"{'time (s)':<28}" + "".join(f"{seconds[n]:>14.1f}" for n in names))
    print(f"\nCompleteness (%) by true {BAND} magnitude")
    print(f"{'mag':<12}{'n':>6}" + "".join(f"{n:>14}" for n in names))
    for b, v in scores[names[0]]["by_mag"].items():
        print(f"{b:<12}{v['n']:>6}"
              + "".join(f"{_pct(scores[n]['by_mag'][b]['completeness']):>14}" for n in names))
    print(f"(flux: Kron flux against the true total flux of the {common['n']} galaxies both "
          "matched ('common') or each method's own matches)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="mosaic side in pixels (2048)")
    parser.add_argument("--galaxies", type=int, default=1200, help="galaxies (1200)")
    parser.add_argument("--stars", type=int, default=150, help="stars (150)")
    parser.add_argument("--dim-max", type=float, default=5.0, help="galaxy dimming, mag (5)")
    parser.add_argument("--pedestal", type=float, default=2.0, help="sky pedestal, sigma (2)")
    parser.add_argument("--tile-size", type=int, default=1024, help="galcat tile side (1024)")
    parser.add_argument("--match-radius", type=float, default=3.0, help="pixels (3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    find_sextractor()  # fail early with the install hint

    t0 = time.perf_counter()
    mosaic = synthetic_mosaic((args.size, args.size), n_galaxies=args.galaxies,
                              n_stars=args.stars, bands=(BAND,), seed=args.seed,
                              dim_max=args.dim_max, pedestal=args.pedestal)
    render_s = time.perf_counter() - t0
    found, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="galcat-detect-") as workdir:
        found["galcat"], seconds["galcat"] = run_galcat(mosaic, args, workdir)
    found["sextractor"], seconds["sextractor"] = run_sex(mosaic, args)
    scores = {name: score_detections(mosaic.truth, table, band=BAND, radius=args.match_radius,
                                     mag_bins=MAG_BINS) for name, table in found.items()}
    common = common_flux(mosaic.truth, scores, found)
    print(f"detect_vs_sextractor: {sextractor_version()}; mosaic rendered in {render_s:.1f} s")
    print_table(scores, common, seconds, mosaic, args)
    summary = {
        "benchmark": "detect_vs_sextractor", "size": args.size, "seed": args.seed,
        "galaxies": args.galaxies, "stars": args.stars, "dim_max": args.dim_max,
        **{name: {k: v for k, v in s.items() if k != "matched"} | {
            "flux_error_common": common[name]["flux_error"],
            "flux_bias_common": common[name]["flux_bias"], "seconds": seconds[name]}
           for name, s in scores.items()},
        "common_galaxies": common["n"],
        "galcat_at_least_sextractor": bool(
            scores["galcat"]["completeness"] >= scores["sextractor"]["completeness"]
            and common["galcat"]["flux_error"] <= common["sextractor"]["flux_error"]),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
