"""Generate the fake archives' files, in the archives' own formats.

Run ``python tests/archive/make_fixtures.py OUTDIR`` to write them; the tests
call :func:`make_all` into a temporary directory once per session (seeded, so
the files are the same every time). Nothing here is read by galcat itself.

What is written (paths mirror the real archives' URL paths)::

    skyserver/db.json                        rows of a tiny SkyServer database per real
                                             table (PhotoObjAll, SpecObjAll, Field,
                                             galSpecExtra, galSpecIndx, zoo2MainSpecz),
                                             under the real column names
    sas/dr17/eboss/photoObj/frames/301/R/C/frame-{b}-RRRRRR-C-FFFF.fits.bz2
                                             SDSS frames: image in nanomaggies with a TAN
                                             WCS (rotated, per-band offsets), calib vector,
                                             sky table (ALLSKY, XINTERP, YINTERP)
    sas/dr17/eboss/photo/redux/301/R/objcs/C/psField-RRRRRR-C-FFFF.fit
                                             KL-PSF tables (RROWS, RNROW, RNCOL, NROW_B,
                                             NCOL_B, C) for u, g, r, i, z
    sas/dr17/manga/spectro/redux/v3_1_1/drpall-v3_1_1.fits
    sas/dr17/manga/spectro/redux/v3_1_1/P/stack/manga-P-I-LOGCUBE.fits.gz
                                             FLUX, IVAR, MASK, WAVE, {G,R,I,Z}IMG, {G,R,I,Z}PSF
    mast/HLSP/jades/dr2/goods-s/catalogs/hlsp_jades_jwst_nircam_goods-s-deep_photometry_v2.0_catalog.fits
    mast/HLSP/jades/dr5/goods-s/catalogs/hlsp_jades_jwst_nircam_goods-s_photometry_v5.0_catalog.fits
                                             FLAG, SIZE ({F}_RHALF), KRON, PHOTOZ extensions
                                             (PHOTOZ EAZY_z_a ... in DR2, z_a, z_ml in DR5)
    mast/HLSP/jades/{dr2,dr5}/goods-s/images/hlsp_jades_jwst_nircam_{field}_{f}_{version}_drz.fits
                                             SCI, ERR, WHT in MJy/sr with a TAN WCS
    mast/portal.json                         CAOM observations and products for the portal API
    truth.json                               where every fixture galaxy is

Galaxies are GalSim Sersic profiles convolved with a Gaussian PSF, drawn at
the pixel position that each image's own WCS gives for their (RA, Dec).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import math
import sys
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

from galcat.surveys.sdss import LINES

SEED = 20261122
NMGY_JY = 3.631e-6
ARCSEC_RAD = 206264.80624709636

SDSS_RUN, SDSS_RERUN, SDSS_CAMCOL, SDSS_FIELD = 3704, 301, 3, 91
SDSS_SHAPE = (300, 400)  # rows, columns (the real frames are 1489 x 2048)
SDSS_BANDS = "ugriz"
SDSS_PSF_FWHM = 1.4  # arcsec
SDSS_GAIN = {"u": 1.6, "g": 3.85, "r": 4.72, "i": 4.86, "z": 4.89}
SDSS_DARKVAR = {"u": 8.7, "g": 1.4, "r": 1.3, "i": 5.8, "z": 1.1}

JADES_FILTERS = ("F115W", "F200W", "F444W")
JADES_FWHM = {"F115W": 0.037, "F200W": 0.064, "F444W": 0.140}
JADES_SHAPE = (300, 300)
JADES_SCALE = 0.03


def _tan_wcs(crval, crpix, scale_arcsec, rot_deg, shape) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = list(crpix)
    s = scale_arcsec / 3600.0
    t = math.radians(rot_deg)
    w.wcs.cd = [[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.pixel_shape = (shape[1], shape[0])
    return w


def _draw(image: np.ndarray, x: float, y: float, *, flux: float, n: float, r50: float,
          q: float, beta_deg: float, psf_fwhm: float, scale: float) -> None:
    """Add a PSF-convolved Sersic galaxy centred at 0-based pixel (x, y)."""
    gal = galsim.Sersic(n=n, half_light_radius=r50, flux=flux)
    gal = gal.shear(q=q, beta=beta_deg * galsim.degrees)
    prof = galsim.Convolve(gal, galsim.Gaussian(fwhm=psf_fwhm))
    ny, nx = image.shape
    full = galsim.ImageF(image.astype(np.float32), scale=scale)  # bounds (1..nx, 1..ny)
    half = int(max(8, 8 * r50 / scale + 4 * psf_fwhm / scale))
    cx, cy = int(round(x)) + 1, int(round(y)) + 1
    bounds = galsim.BoundsI(cx - half, cx + half, cy - half, cy + half) & full.bounds
    if not bounds.isDefined():
        return
    sub = full[bounds]
    prof.drawImage(image=sub, center=galsim.PositionD(x + 1, y + 1), add_to_image=True,
                   method="auto")
    image[:, :] = full.array


def _gaussian_stamp(fwhm_pix: float, size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    sigma = fwhm_pix / 2.3548
    g = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return g / g.sum()


# --------------------------------------------------------------------------- SDSS

GZ2_SPIRAL = {
    "t01_smooth_or_features_a01_smooth": 0.15, "t01_smooth_or_features_a02_features_or_disk": 0.80,
    "t01_smooth_or_features_a03_star_or_artifact": 0.05,
    "t02_edgeon_a04_yes": 0.10, "t02_edgeon_a05_no": 0.90,
    "t03_bar_a06_bar": 0.30, "t03_bar_a07_no_bar": 0.70,
    "t04_spiral_a08_spiral": 0.85, "t04_spiral_a09_no_spiral": 0.15,
    "t05_bulge_prominence_a10_no_bulge": 0.10, "t05_bulge_prominence_a11_just_noticeable": 0.50,
    "t05_bulge_prominence_a12_obvious": 0.35, "t05_bulge_prominence_a13_dominant": 0.05,
    "t06_odd_a14_yes": 0.20, "t06_odd_a15_no": 0.80,
    "t07_rounded_a16_completely_round": 0.30, "t07_rounded_a17_in_between": 0.60,
    "t07_rounded_a18_cigar_shaped": 0.10,
    "t08_odd_feature_a19_ring": 0.20, "t08_odd_feature_a20_lens_or_arc": 0.05,
    "t08_odd_feature_a21_disturbed": 0.15, "t08_odd_feature_a22_irregular": 0.10,
    "t08_odd_feature_a23_other": 0.10, "t08_odd_feature_a24_merger": 0.30,
    "t08_odd_feature_a38_dust_lane": 0.10,
    "t09_bulge_shape_a25_rounded": 0.50, "t09_bulge_shape_a26_boxy": 0.10,
    "t09_bulge_shape_a27_no_bulge": 0.40,
    "t10_arms_winding_a28_tight": 0.30, "t10_arms_winding_a29_medium": 0.50,
    "t10_arms_winding_a30_loose": 0.20,
    "t11_arms_number_a31_1": 0.05, "t11_arms_number_a32_2": 0.60, "t11_arms_number_a33_3": 0.15,
    "t11_arms_number_a34_4": 0.05, "t11_arms_number_a36_more_than_4": 0.05,
    "t11_arms_number_a37_cant_tell": 0.10,
}


def _spec_obj_id(plate: int, fiber: int, mjd: int, run2d: str) -> int:
    """specObjID as the CAS builds it (bits: plate 50-63, fiber 38-49, mjd-50000 24-37,
    run2d 10-23 with vN_M_P coded as (N-5)*10000 + M*100 + P)."""
    n, m, q = (int(x) for x in run2d.lstrip("v").split("_"))
    return (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (((n - 5) * 10000 + m * 100 + q) << 10)


def _skyserver_rows(objects: list[dict], colour: dict) -> dict[str, list[dict]]:
    """PhotoObjAll, SpecObjAll, Field, galSpecExtra, galSpecIndx, galSpecLine and
    zoo2MainSpecz rows.

    Besides the four galaxies, five decoys that galcat's WHERE clause (or a CAS view)
    must drop, their objIDs interleaved with the galaxies' so that the keyset pages see
    them: a star, a redshift warning, a galaxy fainter than r = 17.77, one at z = 0.3 and
    one whose only spectrum is not science-primary (outside the SpecObj view).
    """
    field_id = 1237661068570017792  # fieldID of run 3704, camcol 3, field 91
    field = {"fieldID": field_id, "run": SDSS_RUN, "rerun": SDSS_RERUN, "camcol": SDSS_CAMCOL,
             "field": SDSS_FIELD}
    for b in SDSS_BANDS:
        field[f"psfWidth_{b}"] = SDSS_PSF_FWHM
        field[f"gain_{b}"] = SDSS_GAIN[b]
        field[f"darkVariance_{b}"] = SDSS_DARKVAR[b]
    db: dict[str, list[dict]] = {"PhotoObjAll": [], "SpecObjAll": [], "Field": [field],
                                 "galSpecExtra": [], "galSpecIndx": [], "galSpecLine": [],
                                 "zoo2MainSpecz": []}

    def add(obj: dict, k: int, *, photo: dict | None = None, spec: dict | None = None,
            labels: bool = True) -> None:
        mags = {b: 22.5 - 2.5 * math.log10(obj["flux_r"] * colour[b]) for b in SDSS_BANDS}
        p = {"objID": obj["objid"], "ra": obj["ra"], "dec": obj["dec"], "run": SDSS_RUN,
             "rerun": SDSS_RERUN, "camcol": SDSS_CAMCOL, "field": SDSS_FIELD,
             "fieldID": field_id, "mode": 1, "type": 3, "clean": 1,
             "petroR50_r": obj["r50"], "petroR90_r": 2.5 * obj["r50"], "petroRad_r": 2.0 * obj["r50"],
             "fracDeV_r": 0.3, "deVRad_r": obj["r50"], "deVAB_r": obj["q"],
             "expRad_r": obj["r50"] / 1.68, "expAB_r": obj["q"]}
        for b in SDSS_BANDS:
            p[f"petroMag_{b}"] = mags[b]
            p[f"petroMagErr_{b}"] = 0.02
            p[f"modelMag_{b}"] = mags[b] - 0.05
            p[f"extinction_{b}"] = 0.05
            p[f"cModelMag_{b}"] = mags[b] - 0.03
            p[f"psfMag_{b}"] = mags[b] + 1.2
            p[f"fiberMag_{b}"] = mags[b] + 1.8
        sp = {"specObjID": obj["specobjid"], "bestObjID": obj["objid"], "sciencePrimary": 1,
              "class": "GALAXY", "z": obj["z"], "zErr": 1e-5, "zWarning": 0,
              "velDisp": 150.0, "velDispErr": 8.0}
        db["PhotoObjAll"].append({**p, **(photo or {})})
        db["SpecObjAll"].append({**sp, **(spec or {})})
        if not labels:
            return
        db["galSpecExtra"].append({
            "specObjID": obj["specobjid"], "bptclass": 1,
            "lgm_tot_p50": 10.2 + 0.3 * k, "lgm_tot_p16": 10.1 + 0.3 * k,
            "lgm_tot_p84": 10.3 + 0.3 * k, "oh_p50": 8.9 + 0.05 * k, "oh_p16": 8.85 + 0.05 * k,
            "oh_p84": 8.95 + 0.05 * k, "sfr_tot_p50": 0.1 * k, "specsfr_tot_p50": -10.0 - 0.2 * k})
        db["galSpecIndx"].append({"specObjID": obj["specobjid"], "d4000": 1.4 + 0.1 * k,
                                  "d4000_n": 1.3 + 0.1 * k})
        db["galSpecLine"].append({"specObjID": obj["specobjid"],
                                  **{f"{line}_flux{e}": v for line in LINES
                                     for e, v in (("", 120.0 - 10 * k), ("_err", 6.0))}})
        z2 = {"specobjid": obj["specobjid"], "dr8objid": obj["objid"],
              "total_classifications": 40 + k}
        for stem, frac in GZ2_SPIRAL.items():
            # debiased fractions need not sum to 1 per question: object 1's do not
            scale = 0.9 if (k == 1 and stem.startswith("t01")) else 1.0
            for suffix in ("_debiased", "_weighted_fraction", "_fraction"):
                z2[f"{stem}{suffix}"] = frac * scale
        db["zoo2MainSpecz"].append(z2)

    for k, obj in enumerate(objects):
        # object 3 (eBOSS) is in neither the MPA-JHU (DR7) nor the Galaxy Zoo 2 tables
        add(obj, k, labels=k != 3)
    base = objects[0]
    decoys = [  # (objID offset, photometry, spectrum)
        (1, {"type": 6}, {"class": "STAR"}),
        (8, {}, {"zWarning": 4}),
        (9, {"petroMag_r": 18.4}, {}),
        (15, {}, {"z": 0.31}),
        (22, {}, {"sciencePrimary": 0}),
    ]
    for k, (offset, photo, spec) in enumerate(decoys):
        decoy = {**base, "objid": base["objid"] + offset, "specobjid": base["specobjid"] + 1 + k}
        add(decoy, 0, photo=photo, spec=spec)
    return db


def _sdss_objects(wcs_r: WCS) -> list[dict]:
    """Four galaxies: three inside the frame, one across its right edge."""
    pixels = [(200.0, 150.0), (120.3, 95.7), (281.6, 210.2), (395.0, 150.0)]
    out = []
    for k, (x, y) in enumerate(pixels):
        ra, dec = wcs_r.pixel_to_world_values(x, y)
        out.append({
            "objid": 1237661068570017800 + 7 * k + 3,
            # objects 0-2 have SDSS-I/II (DR7) spectra; object 3 an eBOSS one, whose id
            # (numeric(20,0) on the server) exceeds 2**63
            "specobjid": _spec_obj_id(10223, 412, 57987, "v5_13_2") if k == 3 else
            1569284125423380480 + 1024 * k,
            "ra": float(ra), "dec": float(dec),
            "z": 0.03 + 0.02 * k, "flux_r": [900.0, 400.0, 250.0, 600.0][k],
            "n": [1.0, 4.0, 1.5, 2.5][k], "r50": [3.0, 2.0, 2.5, 2.2][k],
            "q": [0.5, 0.8, 0.6, 0.7][k], "beta": [30.0, 120.0, 75.0, 10.0][k],
        })
    return out


def sdss_fixtures(root: Path, rng: np.random.Generator) -> dict:
    ny, nx = SDSS_SHAPE
    centre = (150.05, 2.05)
    wcs_r = _tan_wcs(centre, (nx / 2 + 0.5, ny / 2 + 0.5), 0.396, 30.0, SDSS_SHAPE)
    objects = _sdss_objects(wcs_r)
    colour = {"u": 0.25, "g": 0.6, "r": 1.0, "i": 1.3, "z": 1.5}
    frame_dir = root / f"sas/dr17/eboss/photoObj/frames/{SDSS_RERUN}/{SDSS_RUN}/{SDSS_CAMCOL}"
    frame_dir.mkdir(parents=True, exist_ok=True)
    truth: dict = {"objects": {}, "frames": {}}
    for k, band in enumerate(SDSS_BANDS):
        shift = (0.37 * (k - 2), -0.21 * (k - 2))
        wcs = _tan_wcs(centre, (nx / 2 + 0.5 + shift[0], ny / 2 + 0.5 + shift[1]), 0.396, 30.0,
                       SDSS_SHAPE)
        calib = (0.005 * (1 + 0.05 * np.arange(nx) / nx)).astype(np.float32)
        nys, nxs = ny // 16 + 1, nx // 16 + 1
        yy, xx = np.mgrid[:nys, :nxs]
        allsky = (150.0 + 2.0 * xx + 1.0 * yy).astype(np.float32)
        xinterp = ((np.arange(nx) + 0.5) / 16.0 - 0.5).astype(np.float32)
        yinterp = ((np.arange(ny) + 0.5) / 16.0 - 0.5).astype(np.float32)
        image = np.zeros(SDSS_SHAPE, dtype=np.float64)
        for obj in objects:
            x, y = wcs.world_to_pixel_values(obj["ra"], obj["dec"])
            _draw(image, float(x), float(y), flux=obj["flux_r"] * colour[band], n=obj["n"],
                  r50=obj["r50"], q=obj["q"], beta_deg=obj["beta"], psf_fwhm=SDSS_PSF_FWHM,
                  scale=0.396)
            truth["objects"].setdefault(str(obj["objid"]), {"ra": obj["ra"], "dec": obj["dec"]})
            truth["objects"][str(obj["objid"])][f"pixel_{band}"] = [float(x), float(y)]
        yy_s, xx_s = np.meshgrid(yinterp, xinterp, indexing="ij")
        sky_counts = map_coordinates(allsky.astype(float), [yy_s, xx_s], order=1, mode="nearest")
        counts = image / calib[None, :] + sky_counts
        noise = rng.normal(0, 1, SDSS_SHAPE) * np.sqrt(counts / SDSS_GAIN[band]
                                                       + SDSS_DARKVAR[band])
        frame = (image + noise * calib[None, :]).astype(np.float32)
        header = wcs.to_header()
        header["BUNIT"] = "nanomaggy"
        header["FILTER"] = band
        header["RUN"], header["CAMCOL"], header["FIELD"] = SDSS_RUN, SDSS_CAMCOL, SDSS_FIELD
        header["NMGY"] = float(calib.mean())
        primary = fits.PrimaryHDU(frame, header=header)
        calib_hdu = fits.ImageHDU(calib)
        sky = fits.BinTableHDU.from_columns([
            fits.Column(name="ALLSKY", format=f"{nys * nxs}E", dim=f"({nxs},{nys})",
                        array=allsky[None]),
            fits.Column(name="XINTERP", format=f"{nx}E", array=xinterp[None]),
            fits.Column(name="YINTERP", format=f"{ny}E", array=yinterp[None]),
        ])
        astrom = fits.BinTableHDU.from_columns([
            fits.Column(name="FIELD", format="J", array=[SDSS_FIELD]),
            fits.Column(name="RUN", format="J", array=[SDSS_RUN]),
        ])
        buf = io.BytesIO()
        fits.HDUList([primary, calib_hdu, sky, astrom]).writeto(buf)
        name = f"frame-{band}-{SDSS_RUN:06d}-{SDSS_CAMCOL}-{SDSS_FIELD:04d}.fits.bz2"
        (frame_dir / name).write_bytes(bz2.compress(buf.getvalue(), 5))
        truth["frames"][band] = str((frame_dir / name).relative_to(root))
    _write_gaussian_psfield(root, rng)
    # The SkyServer "database": rows of the real tables, under their real column names
    # (the fake refuses a column that is not in cas_schema.json).
    db = _skyserver_rows(objects, colour)
    (root / "skyserver").mkdir(parents=True, exist_ok=True)
    (root / "skyserver/db.json").write_text(json.dumps(db))
    truth["sql_rows"] = len(objects)
    truth["edge_object"] = str(objects[3]["objid"])
    truth["specobjid"] = {str(o["objid"]): str(o["specobjid"]) for o in objects}
    truth["decoys"] = [str(r["objID"]) for r in db["PhotoObjAll"]
                       if r["objID"] not in {o["objid"] for o in objects}]
    return truth


# --------------------------------------------------------------------------- SDSS, labelled

#: Side of the grid cell of one galaxy in the labelled field (pixels of 0.396").
LABELLED_CELL = 30


def _labelled_population(n: int, rng: np.random.Generator, wcs_r: WCS, shape) -> list[dict]:
    """``n`` galaxies on a grid whose labels follow from what is rendered.

    A type parameter t in [0, 1] sets the Sersic index (1 + 3t), the colour (g - r
    0.35 + 0.45t) and, with noise, the stellar mass; the metallicity is Tremonti's
    MZR at that mass; the Galaxy Zoo answers follow t (smooth vs features) and the
    axis ratio (edge-on, roundness): a network that sees the cutout can learn them.
    """
    from galcat.relations import mzr_tremonti2004

    ny, nx = shape
    per_row = (nx - 2 * LABELLED_CELL) // LABELLED_CELL
    out = []
    for k in range(n):
        row, col = divmod(k, per_row)
        x = LABELLED_CELL * (col + 1.5) + rng.uniform(-2, 2)
        y = LABELLED_CELL * (row + 1.5) + rng.uniform(-2, 2)
        ra, dec = wcs_r.pixel_to_world_values(x, y)
        t = float(rng.uniform(0, 1))
        q = float(rng.uniform(0.6, 1.0) if t > 0.6 else rng.uniform(0.2, 1.0))
        log_mass = 9.4 + 1.6 * t + rng.normal(0, 0.15)
        out.append({
            "objid": 1237661068570100000 + 11 * k + 5,
            "specobjid": 1569284125423500000 + 2048 * k,
            "ra": float(ra), "dec": float(dec), "z": float(rng.uniform(0.03, 0.12)),
            # n on a 0.25 grid: galsim builds one Sersic table per distinct index
            "flux_r": float(rng.uniform(150.0, 700.0)), "n": 1.0 + round(12.0 * t) / 4.0,
            "r50": float(rng.uniform(1.2, 2.4)), "q": q, "beta": float(rng.uniform(0, 180)),
            "t": t, "g_r": 0.35 + 0.45 * t + rng.normal(0, 0.02), "log_mass": log_mass,
            "oh": float(mzr_tremonti2004(np.array([log_mass]))[0] + rng.normal(0, 0.04)),
        })
    return out


def _draw_stamp(image: np.ndarray, x: float, y: float, *, flux: float, n: float, r50: float,
                q: float, beta_deg: float) -> None:
    """`_draw` on a stamp of one grid cell (the whole frame is never copied)."""
    gal = galsim.Sersic(n=n, half_light_radius=r50, flux=flux, trunc=6 * r50)
    gal = gal.shear(q=q, beta=beta_deg * galsim.degrees)
    prof = galsim.Convolve(gal, galsim.Gaussian(fwhm=SDSS_PSF_FWHM))
    half = LABELLED_CELL // 2
    cx, cy = int(round(x)), int(round(y))
    stamp = galsim.ImageF(2 * half + 1, 2 * half + 1, scale=0.396)
    prof.drawImage(image=stamp, offset=(x - cx, y - cy), add_to_image=True)
    image[cy - half : cy + half + 1, cx - half : cx + half + 1] += stamp.array


def _labelled_probs(objects: list[dict]) -> np.ndarray:
    """Conditional answer probabilities (n, 37) of each galaxy's volunteers."""
    from galcat import gz2

    index = {a: i for i, a in enumerate(gz2.ANSWERS)}
    probs = np.zeros((len(objects), len(gz2.ANSWERS)))
    for q in gz2.QUESTIONS:
        probs[:, list(q.columns)] = 1.0 / len(q.columns)
    for i, o in enumerate(objects):
        smooth = 0.08 + 0.84 * o["t"]
        probs[i, [index["Class1.1"], index["Class1.2"], index["Class1.3"]]] = (
            smooth * 0.98, (1 - smooth) * 0.98, 0.02)
        edge = 1.0 / (1.0 + math.exp((o["q"] - 0.35) / 0.05))
        probs[i, [index["Class2.1"], index["Class2.2"]]] = edge, 1 - edge
        round_ = min(max((o["q"] - 0.4) / 0.6, 0.0), 1.0)
        probs[i, [index["Class7.1"], index["Class7.2"], index["Class7.3"]]] = (
            0.9 * round_ + 0.05, 0.9 * (1 - round_) * 0.6 + 0.05, 0.9 * (1 - round_) * 0.4)
    for q in gz2.QUESTIONS:  # exact sums
        cols = list(q.columns)
        probs[:, cols] /= probs[:, cols].sum(axis=1, keepdims=True)
    return probs


def labelled_sdss_fixtures(root: Path, *, n: int = 300, seed: int = SEED) -> dict:
    """A SkyServer + SAS replay of one SDSS field with ``n`` labelled galaxies.

    Frames in five bands (each galaxy's colours from its type), psField, and the
    PhotoObjAll, SpecObjAll, Field, galSpecExtra, galSpecLine and zoo2MainSpecz rows
    the query reads. About 8% of the galaxies are not in Galaxy Zoo 2 and 8% not in
    MPA-JHU (no label: predicted, never trained on); 10% are AGN (bptclass 4) and
    5% have weak lines, which the metallicity cuts remove; vote counts 10-60.
    Cost: ~10 s for 300 galaxies (rendering and bz2). Returns the truth manifest.
    """
    from galcat import gz2

    root = Path(root)
    rng = np.random.default_rng(seed)
    per_row = 20
    shape = (LABELLED_CELL * (-(-n // per_row) + 3), LABELLED_CELL * (per_row + 2))
    centre = (150.55, 2.05)
    ny, nx = shape
    wcs_r = _tan_wcs(centre, (nx / 2 + 0.5, ny / 2 + 0.5), 0.396, 0.0, shape)
    objects = _labelled_population(n, rng, wcs_r, shape)
    # colours per galaxy: g - r from the type; u, i, z follow it
    for o in objects:
        gr = o["g_r"]
        o["colour"] = {"u": 10 ** (-0.4 * (1.6 * gr + 0.6)), "g": 10 ** (-0.4 * gr), "r": 1.0,
                       "i": 10 ** (0.4 * (0.4 * gr)), "z": 10 ** (0.4 * (0.6 * gr))}
    frame_dir = root / f"sas/dr17/eboss/photoObj/frames/{SDSS_RERUN}/{SDSS_RUN}/{SDSS_CAMCOL}"
    frame_dir.mkdir(parents=True, exist_ok=True)
    for band in SDSS_BANDS:
        image = np.zeros(shape, dtype=np.float64)
        for o in objects:
            x, y = wcs_r.world_to_pixel_values(o["ra"], o["dec"])
            _draw_stamp(image, float(x), float(y), flux=o["flux_r"] * o["colour"][band],
                        n=o["n"], r50=o["r50"], q=o["q"], beta_deg=o["beta"])
        calib = np.full(nx, 0.005, np.float32)
        nys, nxs = ny // 16 + 1, nx // 16 + 1
        allsky = np.full((nys, nxs), 150.0, np.float32)
        counts = image / calib[None, :] + 150.0
        noise = rng.normal(0, 1, shape) * np.sqrt(counts / SDSS_GAIN[band] + SDSS_DARKVAR[band])
        frame = (image + noise * calib[None, :]).astype(np.float32)
        header = wcs_r.to_header()
        header["BUNIT"] = "nanomaggy"
        header["FILTER"] = band
        header["RUN"], header["CAMCOL"], header["FIELD"] = SDSS_RUN, SDSS_CAMCOL, SDSS_FIELD
        header["NMGY"] = 0.005
        sky = fits.BinTableHDU.from_columns([
            fits.Column(name="ALLSKY", format=f"{nys * nxs}E", dim=f"({nxs},{nys})",
                        array=allsky[None]),
            fits.Column(name="XINTERP", format=f"{nx}E",
                        array=((np.arange(nx) + 0.5) / 16.0 - 0.5).astype(np.float32)[None]),
            fits.Column(name="YINTERP", format=f"{ny}E",
                        array=((np.arange(ny) + 0.5) / 16.0 - 0.5).astype(np.float32)[None]),
        ])
        astrom = fits.BinTableHDU.from_columns([
            fits.Column(name="FIELD", format="J", array=[SDSS_FIELD]),
            fits.Column(name="RUN", format="J", array=[SDSS_RUN])])
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(frame, header=header), fits.ImageHDU(calib), sky,
                      astrom]).writeto(buf)
        name = f"frame-{band}-{SDSS_RUN:06d}-{SDSS_CAMCOL}-{SDSS_FIELD:04d}.fits.bz2"
        (frame_dir / name).write_bytes(bz2.compress(buf.getvalue(), 1))
    _write_gaussian_psfield(root, rng)

    # labels: votes of 10-60 volunteers, MPA-JHU values with their errors
    probs = _labelled_probs(objects)
    n_votes = rng.choice([10, 18, 25, 35, 45, 60], size=n)
    kaggle = np.zeros((n, len(gz2.ANSWERS)))
    for value in np.unique(n_votes):
        sel = n_votes == value
        kaggle[sel] = gz2.simulate_votes(probs[sel], int(value), rng)
    conditional = gz2.normalise_per_question(kaggle, fill=0.0)
    in_gz2 = rng.uniform(size=n) > 0.08
    in_mpa = rng.uniform(size=n) > 0.08
    bpt = np.where(rng.uniform(size=n) < 0.10, 4, 1)
    line_snr = np.where(rng.uniform(size=n) < 0.05, 2.0, rng.uniform(5, 40, size=n))
    oh_err = rng.uniform(0.02, 0.08, size=n)
    field = {"fieldID": 1237661068570017792, "run": SDSS_RUN, "rerun": SDSS_RERUN,
             "camcol": SDSS_CAMCOL, "field": SDSS_FIELD}
    for b in SDSS_BANDS:
        field.update({f"psfWidth_{b}": SDSS_PSF_FWHM, f"gain_{b}": SDSS_GAIN[b],
                      f"darkVariance_{b}": SDSS_DARKVAR[b]})
    db: dict[str, list[dict]] = {"PhotoObjAll": [], "SpecObjAll": [], "Field": [field],
                                 "galSpecExtra": [], "galSpecIndx": [], "galSpecLine": [],
                                 "zoo2MainSpecz": []}
    truth: dict = {"objects": {}, "n": n}
    # GZ2_SPIRAL lists the zoo2MainSpecz stems in Kaggle answer order
    answer_stem = dict(zip(gz2.ANSWERS, GZ2_SPIRAL, strict=True))
    for k, o in enumerate(objects):
        mags = {b: 22.5 - 2.5 * math.log10(o["flux_r"] * o["colour"][b]) for b in SDSS_BANDS}
        p = {"objID": o["objid"], "ra": o["ra"], "dec": o["dec"], "run": SDSS_RUN,
             "rerun": SDSS_RERUN, "camcol": SDSS_CAMCOL, "field": SDSS_FIELD,
             "fieldID": db["Field"][0]["fieldID"], "mode": 1, "type": 3, "clean": 1,
             "petroR50_r": o["r50"], "petroR90_r": 2.5 * o["r50"],
             "petroRad_r": 2.0 * o["r50"], "fracDeV_r": o["t"], "deVRad_r": o["r50"],
             "deVAB_r": o["q"], "expRad_r": o["r50"] / 1.68, "expAB_r": o["q"]}
        for b in SDSS_BANDS:
            p.update({f"petroMag_{b}": mags[b], f"petroMagErr_{b}": 0.02,
                      f"modelMag_{b}": mags[b] - 0.05, f"extinction_{b}": 0.05,
                      f"cModelMag_{b}": mags[b] - 0.03, f"psfMag_{b}": mags[b] + 1.2,
                      f"fiberMag_{b}": mags[b] + 1.8})
        db["PhotoObjAll"].append(p)
        db["SpecObjAll"].append({"specObjID": o["specobjid"], "bestObjID": o["objid"],
                                 "sciencePrimary": 1, "class": "GALAXY", "z": o["z"],
                                 "zErr": 1e-5, "zWarning": 0, "velDisp": 150.0,
                                 "velDispErr": 8.0})
        oh_obs = o["oh"] + rng.normal(0, oh_err[k])
        if in_mpa[k]:
            db["galSpecExtra"].append({
                "specObjID": o["specobjid"], "bptclass": int(bpt[k]),
                "lgm_tot_p50": o["log_mass"], "lgm_tot_p16": o["log_mass"] - 0.1,
                "lgm_tot_p84": o["log_mass"] + 0.1, "oh_p50": oh_obs,
                "oh_p16": oh_obs - oh_err[k], "oh_p84": oh_obs + oh_err[k],
                "sfr_tot_p50": 0.0, "specsfr_tot_p50": -10.0})
            db["galSpecLine"].append({"specObjID": o["specobjid"],
                                      **{f"{line}_flux{e}": v for line in LINES for e, v in
                                         (("", 10.0 * line_snr[k]), ("_err", 10.0))}})
        if in_gz2[k]:
            z2 = {"specobjid": o["specobjid"], "dr8objid": o["objid"],
                  "total_classifications": int(n_votes[k])}
            for j, a in enumerate(gz2.ANSWERS):
                for suffix in ("_debiased", "_weighted_fraction", "_fraction"):
                    z2[f"{answer_stem[a]}{suffix}"] = float(conditional[k, j])
            db["zoo2MainSpecz"].append(z2)
        truth["objects"][str(o["objid"])] = {
            "t": o["t"], "q": o["q"], "oh": o["oh"], "in_gz2": bool(in_gz2[k]),
            "in_mpa": bool(in_mpa[k]), "bpt": int(bpt[k]), "votes": int(n_votes[k])}
    (root / "skyserver").mkdir(parents=True, exist_ok=True)
    (root / "skyserver/db.json").write_text(json.dumps(db))
    (root / "mast").mkdir(parents=True, exist_ok=True)
    (root / "mast/portal.json").write_text("{}")
    (root / "truth.json").write_text(json.dumps(truth))
    return truth


def _write_gaussian_psfield(root: Path, rng: np.random.Generator) -> None:
    """psField whose one Gaussian eigen-image carries the whole PSF."""
    hdus = [fits.PrimaryHDU()]
    for _band in SDSS_BANDS:
        rrows = np.zeros((4, 51 * 51), dtype=np.float32)
        rrows[0] = _gaussian_stamp(SDSS_PSF_FWHM / 0.396, 51).ravel()
        rrows[1:] = rng.normal(0, 1e-4, (3, 51 * 51))
        c = np.zeros((4, 5, 5), dtype=np.float32)
        c[0, 0, 0] = 1.0
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column(name="RROWS", format=f"{51 * 51}E", array=rrows),
            fits.Column(name="RNROW", format="J", array=[51] * 4),
            fits.Column(name="RNCOL", format="J", array=[51] * 4),
            fits.Column(name="NROW_B", format="J", array=[3] * 4),
            fits.Column(name="NCOL_B", format="J", array=[3] * 4),
            fits.Column(name="C", format="25E", dim="(5,5)", array=c),
        ]))
    psdir = root / f"sas/dr17/eboss/photo/redux/{SDSS_RERUN}/{SDSS_RUN}/objcs/{SDSS_CAMCOL}"
    psdir.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(
        psdir / f"psField-{SDSS_RUN:06d}-{SDSS_CAMCOL}-{SDSS_FIELD:04d}.fit", overwrite=True)


# --------------------------------------------------------------------------- MaNGA

MANGA_ROWS = [
    # plateifu, mangaid, mngtarg1, drp3qual, z, in cube
    ("8485-1901", "1-209232", 1 << 10, 0, 0.0407, True),
    ("8485-12701", "1-209113", 1 << 11, 0, 0.0600, True),
    ("7443-3702", "12-98126", 1 << 10, 1 << 30, 0.0300, False),
    ("8485-3701", "1-209232", 1 << 10, 0, 0.0407, False),
    ("9000-1902", "1-999999", 0, 0, 0.0200, False),
]


def manga_fixtures(root: Path, rng: np.random.Generator) -> dict:
    base = root / "sas/dr17/manga/spectro/redux/v3_1_1"
    base.mkdir(parents=True, exist_ok=True)
    n = len(MANGA_ROWS)
    ra = 150.2 + 0.5 * np.arange(n)
    dec = 1.5 + 0.3 * np.arange(n)
    ra[3], dec[3] = ra[0], dec[0]  # the repeat observation
    cols = [
        fits.Column(name="plateifu", format="12A", array=[r[0] for r in MANGA_ROWS]),
        fits.Column(name="mangaid", format="12A", array=[r[1] for r in MANGA_ROWS]),
        fits.Column(name="plate", format="J", array=[int(r[0].split("-")[0]) for r in MANGA_ROWS]),
        fits.Column(name="ifudsgn", format="6A", array=[r[0].split("-")[1] for r in MANGA_ROWS]),
        fits.Column(name="objra", format="D", array=ra + 1e-4),
        fits.Column(name="objdec", format="D", array=dec - 1e-4),
        fits.Column(name="ifura", format="D", array=ra),
        fits.Column(name="ifudec", format="D", array=dec),
        fits.Column(name="z", format="E", array=[r[4] for r in MANGA_ROWS]),
        fits.Column(name="nsa_z", format="E", array=[r[4] for r in MANGA_ROWS]),
        fits.Column(name="nsa_elpetro_mass", format="E", array=np.full(n, 5e9)),
        fits.Column(name="nsa_sersic_n", format="E", array=np.full(n, 2.0)),
        fits.Column(name="nsa_elpetro_th50_r", format="E", array=np.full(n, 4.0)),
        fits.Column(name="nsa_elpetro_ba", format="E", array=np.full(n, 0.7)),
        fits.Column(name="nsa_elpetro_phi", format="E", array=np.full(n, 45.0)),
        fits.Column(name="mngtarg1", format="K", array=[r[2] for r in MANGA_ROWS]),
        fits.Column(name="drp3qual", format="K", array=[r[3] for r in MANGA_ROWS]),
        fits.Column(name="nsa_nsaid", format="K", array=np.arange(n) + 10000),
    ]
    drpall = fits.BinTableHDU.from_columns(cols, name="MANGA")
    fits.HDUList([fits.PrimaryHDU(), drpall]).writeto(base / "drpall-v3_1_1.fits",
                                                      overwrite=True)
    truth: dict = {"objects": {}}
    size = 40
    wave = np.geomspace(3622.0, 10354.0, 50)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    footprint = np.hypot(xx, yy) < 17
    for k, row in enumerate(MANGA_ROWS):
        if not row[5]:
            continue
        plate, ifu = row[0].split("-")
        wcs = _tan_wcs((ra[k], dec[k]), (size / 2 + 0.5, size / 2 + 0.5), 0.5, 0.0, (size, size))
        x, y = wcs.world_to_pixel_values(ra[k] + 1e-4, dec[k] - 1e-4)
        oid = int(plate) * 100000 + int(ifu)
        truth["objects"][str(oid)] = {"ra": float(ra[k] + 1e-4), "dec": float(dec[k] - 1e-4),
                                      "pixel": [float(x), float(y)]}
        ivar = np.where(footprint, 1 / 0.01**2, 0.0).astype(np.float32)
        flux = rng.normal(0, 0.01, (len(wave), size, size)).astype(np.float32) * footprint
        hdus = [fits.PrimaryHDU(header=fits.Header({"PLATEIFU": row[0], "MANGAID": row[1]})),
                fits.ImageHDU(flux, name="FLUX"),
                fits.ImageHDU(np.broadcast_to(ivar, flux.shape).copy(), name="IVAR"),
                fits.ImageHDU(np.where(footprint, 0, 1024).astype(np.int32)[None].repeat(
                    len(wave), 0), name="MASK"),
                fits.ImageHDU(wave, name="WAVE")]
        for b, total in zip("GRIZ", (60.0, 100.0, 130.0, 150.0), strict=True):
            img = np.zeros((size, size))
            _draw(img, float(x), float(y), flux=total, n=1.5, r50=3.0, q=0.7, beta_deg=40.0,
                  psf_fwhm=2.5, scale=0.5)
            img = (img + rng.normal(0, 0.006, img.shape)) * footprint
            h = wcs.to_header()
            h["BUNIT"] = "nanomaggies/pixel"
            hdus.append(fits.ImageHDU(img.astype(np.float32), header=h, name=f"{b}IMG"))
        for b in "GRIZ":
            h = wcs.to_header()
            hdus.append(fits.ImageHDU(_gaussian_stamp(2.5 / 0.5, size).astype(np.float32),
                                      header=h, name=f"{b}PSF"))
        buf = io.BytesIO()
        fits.HDUList(hdus).writeto(buf)
        out = base / plate / "stack" / f"manga-{plate}-{ifu}-LOGCUBE.fits.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(gzip.compress(buf.getvalue(), 5))
    truth["kept"] = sorted(truth["objects"])
    return truth


# --------------------------------------------------------------------------- JADES

JADES_OBJECTS = [
    # ID, x, y, z, flux (nJy, F200W)
    (101, 150.0, 150.0, 2.1, 3000.0),
    (205, 80.4, 210.6, 3.5, 1500.0),
    (310, 230.2, 90.1, 1.2, 2200.0),
    (415, 296.0, 150.0, 2.8, 1800.0),
    (520, 100.0, 100.0, 7.5, 800.0),
]


#: The two catalogue layouts the fake serves (DR2 v2.0 and DR5 v5.0), as third-party
#: readers of the real files use them: MAST directory, field and version in the file
#: names, and the PHOTOZ columns (DR5 drops the ``EAZY_`` prefix).
JADES_RELEASES = {
    "dr2": {"field": "goods-s-deep", "version": "v2.0", "z": "EAZY_z_a",
            "photoz": {"EAZY_z_a": 0.0, "EAZY_z_ml": 0.01, "EAZY_l68": -0.1, "EAZY_u68": 0.1}},
    "dr5": {"field": "goods-s", "version": "v5.0", "z": "z_a",
            "photoz": {"z_a": 0.0, "z_ml": 0.01}},
}


def _jades_catalogue(rel: dict, positions: dict) -> fits.HDUList:
    """FLAG, SIZE (per-filter ``{F}_RHALF``), KRON and PHOTOZ extensions of one release."""
    colour = {"F115W": 0.7, "F200W": 1.0, "F444W": 1.6}
    ids = np.array([o[0] for o in JADES_OBJECTS], dtype=np.int32)
    base = [fits.Column(name="ID", format="J", array=ids),
            fits.Column(name="RA", format="D", array=[positions[i][0] for i in ids]),
            fits.Column(name="DEC", format="D", array=[positions[i][1] for i in ids])]
    filters = ("F090W",) + JADES_FILTERS
    flag = fits.BinTableHDU.from_columns(
        base + [fits.Column(name=f"{f}_FLAG", format="J", array=np.zeros(len(ids)))
                for f in filters], name="FLAG")
    size = fits.BinTableHDU.from_columns(
        base + [fits.Column(name="A", format="E", array=np.full(len(ids), 0.2)),
                fits.Column(name="B", format="E", array=np.full(len(ids), 0.12)),
                fits.Column(name="Q", format="E", array=np.full(len(ids), 0.6))]
        + [fits.Column(name=f"{f}_RHALF", format="E",
                       array=np.full(len(ids), 0.15 + 0.01 * k)) for k, f in enumerate(filters)],
        name="SIZE")
    kron_cols = list(base)
    for f in filters:
        fl = np.array([o[4] * colour.get(f, 0.5) for o in JADES_OBJECTS])
        kron_cols += [fits.Column(name=f"{f}_KRON", format="E", array=fl),
                      fits.Column(name=f"{f}_KRON_e", format="E", array=fl * 0.02)]
    kron = fits.BinTableHDU.from_columns(kron_cols, name="KRON")
    zs = np.array([o[3] for o in JADES_OBJECTS])
    photoz = fits.BinTableHDU.from_columns(
        [fits.Column(name="ID", format="J", array=ids)]
        + [fits.Column(name=name, format="E", array=zs + shift)
           for name, shift in rel["photoz"].items()], name="PHOTOZ")
    return fits.HDUList([fits.PrimaryHDU(), flag, size, kron, photoz])


def jades_fixtures(root: Path, rng: np.random.Generator) -> dict:
    ny, nx = JADES_SHAPE
    wcs = _tan_wcs((53.16, -27.78), (nx / 2 + 0.5, ny / 2 + 0.5), JADES_SCALE, 20.0, JADES_SHAPE)
    truth: dict = {"objects": {}}
    positions = {}
    for oid, x, y, z, _flux in JADES_OBJECTS:
        ra, dec = wcs.pixel_to_world_values(x, y)
        positions[oid] = (float(ra), float(dec))
        truth["objects"][str(oid)] = {"ra": float(ra), "dec": float(dec), "pixel": [x, y], "z": z}
    omega = (JADES_SCALE / ARCSEC_RAD) ** 2
    colour = {"F115W": 0.7, "F200W": 1.0, "F444W": 1.6}
    mosaics = {}
    for f in JADES_FILTERS:
        img = np.zeros(JADES_SHAPE)
        for oid, x, y, _z, flux in JADES_OBJECTS:
            _draw(img, x, y, flux=flux * colour[f] * 1e-9 / omega / 1e6, n=1.0, r50=0.15,
                  q=0.6, beta_deg=10.0 + oid, psf_fwhm=JADES_FWHM[f], scale=JADES_SCALE)
        err = np.full(JADES_SHAPE, 0.02)
        sci = img + rng.normal(0, 0.02, JADES_SHAPE)
        h = wcs.to_header()
        h["BUNIT"] = "MJy/sr"
        h["FILTER"] = f
        mosaics[f] = fits.HDUList([
            fits.PrimaryHDU(header=fits.Header({"TELESCOP": "JWST", "INSTRUME": "NIRCAM"})),
            fits.ImageHDU(sci.astype(np.float32), header=h, name="SCI"),
            fits.ImageHDU(err.astype(np.float32), header=h, name="ERR"),
            fits.ImageHDU((1 / err**2).astype(np.float32), header=h, name="WHT")])
    observations, products = [], []
    for release, rel in JADES_RELEASES.items():
        stem = f"hlsp_jades_jwst_nircam_{rel['field']}"
        img_dir = root / f"mast/HLSP/jades/{release}/goods-s/images"
        img_dir.mkdir(parents=True, exist_ok=True)
        for f in JADES_FILTERS:
            mosaics[f].writeto(img_dir / f"{stem}_{f.lower()}_{rel['version']}_drz.fits",
                               overwrite=True)
        cat_dir = root / f"mast/HLSP/jades/{release}/goods-s/catalogs"
        cat_dir.mkdir(parents=True, exist_ok=True)
        _jades_catalogue(rel, positions).writeto(
            cat_dir / f"{stem}_photometry_{rel['version']}_catalog.fits", overwrite=True)
        # CAOM: one observation per filter, one product each; obsid is an integer
        for k, f in enumerate(JADES_FILTERS):
            obsid = 87000000 + 100 * int(release[2:]) + k
            obs_id = f"{stem}_{f.lower()}_{rel['version']}"
            observations.append({
                "dataproduct_type": "image", "obs_collection": "HLSP", "instrument_name": "NIRCAM",
                "project": "JADES", "filters": f, "target_name": "GOODS-S", "obs_id": obs_id,
                "provenance_name": "JADES", "s_ra": 53.16, "s_dec": -27.78, "calib_level": 4,
                "obsid": obsid, "objID": obsid + 1000000, "distance": 0.0,
            })
            name = f"{obs_id}_drz.fits"
            products.append({
                "obsID": obsid, "obs_collection": "HLSP", "dataproduct_type": "image",
                "obs_id": obs_id, "description": "drizzled mosaic", "type": "S",
                "dataURI": f"mast:HLSP/jades/{release}/goods-s/images/{name}",
                "productType": "SCIENCE", "productGroupDescription": "Minimum Recommended Products",
                "productSubGroupDescription": "DRZ", "project": "JADES", "productFilename": name,
                "size": (img_dir / name).stat().st_size,
            })
    (root / "mast/portal.json").write_text(json.dumps({"observations": observations,
                                                        "products": products}))
    truth["kept"] = ["101", "205", "310", "415"]
    truth["edge_object"] = "415"
    return truth


# --------------------------------------------------------------------------- local


def make_local(root: Path, *, seed: int = SEED) -> dict:
    """A two-band mosaic with WCS, noise maps, a PSF file, per-object cutouts and a table."""
    rng = np.random.default_rng(seed + 7)
    root.mkdir(parents=True, exist_ok=True)
    shape = (200, 200)
    wcs = _tan_wcs((210.5, 54.3), (100.5, 100.5), 0.2, 15.0, shape)
    objs = [(1, 100.0, 100.0), (2, 40.2, 150.7), (3, 160.4, 60.3)]
    truth = {"objects": {}}
    mosaics = {}
    for b, scale in (("g", 1.0), ("r", 1.6)):
        img = np.zeros(shape)
        for oid, x, y in objs:
            _draw(img, x, y, flux=2000.0 * scale, n=1.0, r50=1.2, q=0.7, beta_deg=20.0 * oid,
                  psf_fwhm=0.9, scale=0.2)
        noise = np.full(shape, 2.0)
        img = img + rng.normal(0, 2.0, shape)
        h = wcs.to_header()
        h["BUNIT"] = "nJy"
        fits.PrimaryHDU(img.astype(np.float32), header=h).writeto(root / f"mosaic_{b}.fits",
                                                                  overwrite=True)
        fits.PrimaryHDU(noise.astype(np.float32), header=h).writeto(root / f"noise_{b}.fits",
                                                                    overwrite=True)
        # the same image without any WCS
        fits.PrimaryHDU(img.astype(np.float32)).writeto(root / f"nowcs_{b}.fits", overwrite=True)
        mosaics[b] = img
    fits.PrimaryHDU(np.stack([_gaussian_stamp(0.9 / 0.2, 25)] * 2).astype(np.float32)).writeto(
        root / "psf_cube.fits", overwrite=True)
    lines = ["id,ra,dec,redshift,x,y,name"]
    (root / "cutouts").mkdir(exist_ok=True)
    for oid, x, y in objs:
        ra, dec = wcs.pixel_to_world_values(x, y)
        truth["objects"][str(oid)] = {"ra": float(ra), "dec": float(dec), "pixel": [x, y]}
        lines.append(f"{oid},{float(ra)!r},{float(dec)!r},{0.05 * oid},{x},{y},gal{oid}")
        # ready-made cutouts: per band with WCS, and a per-object cube without WCS
        cube = []
        for b in ("g", "r"):
            ix, iy = int(round(x)), int(round(y))
            sl = (slice(iy - 20, iy + 20), slice(ix - 20, ix + 20))
            sub = mosaics[b][sl]
            h = wcs[sl].to_header()
            h["BUNIT"] = "nJy"
            fits.PrimaryHDU(sub.astype(np.float32), header=h).writeto(
                root / "cutouts" / f"{oid}_{b}.fits", overwrite=True)
            cube.append(mosaics[b][iy - 16:iy + 16, ix - 16:ix + 16])
        fits.PrimaryHDU(np.stack(cube).astype(np.float32)).writeto(
            root / "cutouts" / f"cube_{oid}.fits", overwrite=True)
    (root / "objects.csv").write_text("\n".join(lines) + "\n")
    # an object that is nowhere near the mosaic
    far = wcs.pixel_to_world_values(900.0, 900.0)
    (root / "objects_off.csv").write_text(
        "\n".join(lines[:2] + [f"9,{float(far[0])!r},{float(far[1])!r},0.1,900,900,far"]) + "\n")
    return truth


def make_all(root: Path) -> dict:
    """Write every fixture under ``root``; return (and write) the truth manifest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    truth = {
        "sdss": sdss_fixtures(root, rng),
        "manga": manga_fixtures(root, rng),
        "jades": jades_fixtures(root, rng),
        "local": make_local(root / "local"),
    }
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "archive_fixtures")
    make_all(out)
    print(f"fixtures written to {out}")
