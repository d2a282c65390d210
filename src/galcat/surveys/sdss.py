"""SDSS: SkyServer SQL for the objects, frame files cut with their WCS for the pixels.

``query(config)``
    One SQL query (split into keyset-paginated batches of ``sdss.batch_size``
    rows, ordered by ``objID``) built and parsed by astroquery's
    :class:`~astroquery.sdss.SDSSClass` (``query_sql``'s payload, URL and CSV
    parser; the SkyServer base URL is ``sdss.skyserver_url``) and sent as a POST
    form: a query this long (about 5 kB) is over the query-string
    cap SkyServer puts on a GET, and its ``x_results.aspx`` reads forms as well.
    It joins ``PhotoObj`` (photometry, the run/camcol/field of the frame),
    ``SpecObj`` (spectroscopic redshift, science-primary spectra of galaxies),
    ``Field`` (PSF width, gain and dark variance of the field), the MPA-JHU
    ``galSpecExtra`` table (stellar mass, 12 + log O/H, SFR, sSFR) and Galaxy Zoo 2
    ``zoo2MainSpecz`` (vote fractions); ``galSpecIndx`` only when an extra column
    lives there (``d4000``). Every column is named with its table in
    :data:`TABLES` / :data:`EXTRA_COLUMNS`, checked in the tests against the CAS
    schema. The vote fractions are turned into the Kaggle ``Class1.1 .. Class11.6``
    convention (``gz2_class{q}_{a}``) by :func:`galcat.gz2.kaggle_fractions`.
    ``specobjid`` is ``numeric(20,0)`` on the server (eBOSS ids exceed 2**63): it is
    kept exact, as uint64. A SkyServer SQL error (an HTML page titled "Skyserver
    Error") is an :class:`ArchiveError` quoting the server's own message.

    The SQL is built only from validated values: column names from the
    allow-lists below, numbers formatted by Python as numbers, and enum values
    mapped to constants; no config string is pasted into SQL.

``cutouts(rows, config)``
    For every object and band, the ``frame-{band}-{run6}-{camcol}-{field4}.fits.bz2``
    file (the link astroquery's ``SDSS.get_images`` builds from ``sdss.sas_url``),
    cut with its WCS. Frames are in nanomaggies already. The noise is the
    frame data model's recipe: counts = image / calib + sky,
    sigma = sqrt(counts / gain + darkVariance) * calib, with gain and dark
    variance from the ``Field`` table. The PSF is reconstructed from the field's
    ``psField`` file (KL eigen-images, the photoop ``sdss_psf_recon`` algorithm
    as ported to pydl) at the object's position, or, with ``sdss.psf: gaussian``,
    a Gaussian of the ``Field.psfWidth`` FWHM (an approximation: the real SDSS
    PSF has broader wings). The shard PSF of a band is the mean of its objects'.

Objects near a frame edge are cut from that frame only (no mosaicking of the
neighbouring frames): the missing pixels are masked and a warning lists them.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

from galcat import gz2
from galcat.config import check_section, settings
from galcat.sharding import assign_shards
from galcat.store import CutoutBatch
from galcat.surveys import _cutting
from galcat.surveys._http import (
    ArchiveError,
    ArchiveSession,
    EmptyResultError,
    HTMLPageError,
    open_fits_bytes,
    session_for,
    warn_partial,
)

__all__ = ["COLUMN_DESCRIPTIONS", "COLUMN_UNITS", "EXTRA_COLUMNS", "TABLES", "build_sql",
           "cutouts", "query"]

log = logging.getLogger("galcat.surveys.sdss")

BANDS = ("u", "g", "r", "i", "z")
PIXEL_SCALE = 0.396  # arcsec / pixel
MISSING = -999.0  # SkyServer and MPA-JHU use -9999 / -999 for "not measured"

#: Spectroscopic class (schema enum) -> SQL literal.
SPEC_CLASS = {"GALAXY": "'GALAXY'", "QSO": "'QSO'", "ANY": None}

#: SQL alias -> (CAS table or view, its JOIN clause). Every column below names its
#: table by one of these aliases; a table is joined only when a column needs it.
TABLES: dict[str, tuple[str, str]] = {
    "p": ("PhotoObj", ""),
    "s": ("SpecObj", "JOIN SpecObj AS s ON s.bestObjID = p.objID"),
    "f": ("Field", "JOIN Field AS f ON f.fieldID = p.fieldID"),
    "g": ("galSpecExtra", "LEFT OUTER JOIN galSpecExtra AS g ON g.specObjID = s.specObjID"),
    "gi": ("galSpecIndx", "LEFT OUTER JOIN galSpecIndx AS gi ON gi.specObjID = s.specObjID"),
    "gl": ("galSpecLine", "LEFT OUTER JOIN galSpecLine AS gl ON gl.specObjID = s.specObjID"),
    "z2": ("zoo2MainSpecz",
           "LEFT OUTER JOIN zoo2MainSpecz AS z2 ON z2.specobjid = s.specObjID"),
}
#: The spine every other table joins through.
ALWAYS_JOINED = ("p", "s")

#: Galaxy Zoo 2 answers: Kaggle answer -> zoo2MainSpecz column stem.
GZ2_COLUMNS = {
    "1.1": "t01_smooth_or_features_a01_smooth",
    "1.2": "t01_smooth_or_features_a02_features_or_disk",
    "1.3": "t01_smooth_or_features_a03_star_or_artifact",
    "2.1": "t02_edgeon_a04_yes",
    "2.2": "t02_edgeon_a05_no",
    "3.1": "t03_bar_a06_bar",
    "3.2": "t03_bar_a07_no_bar",
    "4.1": "t04_spiral_a08_spiral",
    "4.2": "t04_spiral_a09_no_spiral",
    "5.1": "t05_bulge_prominence_a10_no_bulge",
    "5.2": "t05_bulge_prominence_a11_just_noticeable",
    "5.3": "t05_bulge_prominence_a12_obvious",
    "5.4": "t05_bulge_prominence_a13_dominant",
    "6.1": "t06_odd_a14_yes",
    "6.2": "t06_odd_a15_no",
    "7.1": "t07_rounded_a16_completely_round",
    "7.2": "t07_rounded_a17_in_between",
    "7.3": "t07_rounded_a18_cigar_shaped",
    "8.1": "t08_odd_feature_a19_ring",
    "8.2": "t08_odd_feature_a20_lens_or_arc",
    "8.3": "t08_odd_feature_a21_disturbed",
    "8.4": "t08_odd_feature_a22_irregular",
    "8.5": "t08_odd_feature_a23_other",
    "8.6": "t08_odd_feature_a24_merger",
    "8.7": "t08_odd_feature_a38_dust_lane",
    "9.1": "t09_bulge_shape_a25_rounded",
    "9.2": "t09_bulge_shape_a26_boxy",
    "9.3": "t09_bulge_shape_a27_no_bulge",
    "10.1": "t10_arms_winding_a28_tight",
    "10.2": "t10_arms_winding_a29_medium",
    "10.3": "t10_arms_winding_a30_loose",
    "11.1": "t11_arms_number_a31_1",
    "11.2": "t11_arms_number_a32_2",
    "11.3": "t11_arms_number_a33_3",
    "11.4": "t11_arms_number_a34_4",
    "11.5": "t11_arms_number_a36_more_than_4",
    "11.6": "t11_arms_number_a37_cant_tell",
}
GZ2_SUFFIX = {"debiased": "_debiased", "weighted_fraction": "_weighted_fraction",
              "fraction": "_fraction"}


#: MPA-JHU emission lines selected (galSpecLine stems): the four of the BPT diagram.
LINES = {"h_alpha": "H-alpha", "h_beta": "H-beta", "oiii_5007": "[O III] 5007",
         "nii_6584": "[N II] 6584"}


def _core_columns() -> dict[str, tuple[str, str, str]]:
    """alias -> (SQL expression, unit, description) of the columns always selected."""
    cols: dict[str, tuple[str, str, str]] = {
        "objid": ("p.objID", "", "SDSS photometric object id (PhotoObj.objID)"),
        "specobjid": ("s.specObjID", "", "SDSS spectrum id (SpecObj.specObjID, "
                      "numeric(20,0) on the server: kept exact as an unsigned 64-bit integer)"),
        "ra": ("p.ra", "deg", "right ascension (J2000)"),
        "dec": ("p.dec", "deg", "declination (J2000)"),
        "z": ("s.z", "", "spectroscopic redshift"),
        "z_err": ("s.zErr", "", "redshift uncertainty"),
        "run": ("p.run", "", "imaging run"),
        "rerun": ("p.rerun", "", "photometric rerun"),
        "camcol": ("p.camcol", "", "camera column"),
        "field": ("p.field", "", "field number"),
        "petror50_r": ("p.petroR50_r", "arcsec", "radius holding 50% of the r Petrosian flux"),
        "petror90_r": ("p.petroR90_r", "arcsec", "radius holding 90% of the r Petrosian flux"),
        "log_mass": ("g.lgm_tot_p50", "dex(Msun)",
                     "MPA-JHU total stellar mass, median of the PDF (galSpecExtra.lgm_tot_p50)"),
        "log_mass_p16": ("g.lgm_tot_p16", "dex(Msun)", "MPA-JHU stellar mass, 16th percentile"),
        "log_mass_p84": ("g.lgm_tot_p84", "dex(Msun)", "MPA-JHU stellar mass, 84th percentile"),
        "oh_12": ("g.oh_p50", "dex",
                  "MPA-JHU gas-phase metallicity 12 + log(O/H), median (galSpecExtra.oh_p50)"),
        "oh_12_p16": ("g.oh_p16", "dex", "12 + log(O/H), 16th percentile"),
        "oh_12_p84": ("g.oh_p84", "dex", "12 + log(O/H), 84th percentile"),
        "log_sfr": ("g.sfr_tot_p50", "dex(Msun/yr)", "MPA-JHU total star-formation rate, median"),
        "log_ssfr": ("g.specsfr_tot_p50", "dex(1/yr)",
                     "MPA-JHU total specific star-formation rate, median"),
        "bpt_class": ("g.bptclass", "", "MPA-JHU BPT class (-1 unclassifiable, 1 SF, 2 low S/N "
                      "SF, 3 composite, 4 AGN, 5 low S/N LINER)"),
        "gz2_total_classifications": ("z2.total_classifications", "",
                                      "Galaxy Zoo 2 classifications of the object"),
    }
    # the four BPT lines, whose S/N the metallicity labels' quality cut reads
    for line, text in LINES.items():
        cols[f"{line}_flux"] = (f"gl.{line}_flux", "1e-17 erg/(s cm2)",
                                f"MPA-JHU {text} line flux (galSpecLine.{line}_flux)")
        cols[f"{line}_flux_err"] = (f"gl.{line}_flux_err", "1e-17 erg/(s cm2)",
                                    f"MPA-JHU {text} line flux error")
    for b in BANDS:
        cols[f"petromag_{b}"] = (f"p.petroMag_{b}", "mag", f"Petrosian magnitude, {b} band")
        cols[f"petromagerr_{b}"] = (f"p.petroMagErr_{b}", "mag", f"Petrosian magnitude error, {b}")
        cols[f"modelmag_{b}"] = (f"p.modelMag_{b}", "mag", f"model magnitude, {b} band")
        cols[f"extinction_{b}"] = (f"p.extinction_{b}", "mag", f"Galactic extinction, {b} band")
        cols[f"psfwidth_{b}"] = (f"f.psfWidth_{b}", "arcsec",
                                 f"PSF FWHM of the field from a 2-Gaussian fit, {b} band")
        cols[f"gain_{b}"] = (f"f.gain_{b}", "electron/count", f"CCD gain, {b} band")
        cols[f"darkvariance_{b}"] = (f"f.darkVariance_{b}", "count2",
                                     f"dark variance per pixel, {b} band")
    return cols


CORE_COLUMNS = _core_columns()

#: The optional columns a config may add (``sdss.extra_columns``), by the table they
#: live in (alias of :data:`TABLES`): alias -> (column, unit, description).
EXTRA_BY_TABLE: dict[str, dict[str, tuple[str, str, str]]] = {
    "p": {
        "fracdev_r": ("fracDeV_r", "", "fraction of the r light in the de Vaucouleurs component"),
        "devrad_r": ("deVRad_r", "arcsec", "de Vaucouleurs fit effective radius, r band"),
        "devab_r": ("deVAB_r", "", "de Vaucouleurs fit axis ratio b/a, r band"),
        "exprad_r": ("expRad_r", "arcsec", "exponential fit scale radius, r band"),
        "expab_r": ("expAB_r", "", "exponential fit axis ratio b/a, r band"),
        "petrorad_r": ("petroRad_r", "arcsec", "Petrosian radius, r band"),
        "clean": ("clean", "", "clean photometry flag (1 = clean)"),
        **{f"cmodelmag_{b}": (f"cModelMag_{b}", "mag", f"composite model mag, {b}") for b in BANDS},
        **{f"psfmag_{b}": (f"psfMag_{b}", "mag", f"PSF magnitude, {b} band") for b in BANDS},
        **{f"fibermag_{b}": (f"fiberMag_{b}", "mag", f"3-arcsec fibre mag, {b}") for b in BANDS},
    },
    "s": {
        "vel_disp": ("velDisp", "km/s", "stellar velocity dispersion"),
        "vel_disp_err": ("velDispErr", "km/s", "stellar velocity dispersion error"),
    },
    "gi": {
        "d4000": ("d4000", "", "MPA-JHU 4000 A break strength (galSpecIndx.d4000)"),
    },
}
#: Optional columns a config may add (``sdss.extra_columns``), nothing else:
#: alias -> (SQL expression, unit, description).
EXTRA_COLUMNS: dict[str, tuple[str, str, str]] = {
    alias: (f"{table}.{column}", unit, text)
    for table, columns in EXTRA_BY_TABLE.items()
    for alias, (column, unit, text) in columns.items()
}

_IDENT = re.compile(r"^([a-z][a-z0-9]?)\.[A-Za-z][A-Za-z0-9_]*$")

COLUMN_UNITS: dict[str, str] = {
    "object_id": "", "shard": "",
    **{k: v[1] for k, v in CORE_COLUMNS.items()},
    **{k: v[1] for k, v in EXTRA_COLUMNS.items()},
    **{f"gz2_class{k.replace('.', '_')}": "" for k in GZ2_COLUMNS},
}
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "object_id": "galcat object id: the SDSS objID",
    "shard": "shard holding the object (rank of its id in ascending order)",
    **{k: v[2] for k, v in CORE_COLUMNS.items()},
    **{k: v[2] for k, v in EXTRA_COLUMNS.items()},
    **{
        f"gz2_class{k.replace('.', '_')}": (
            f"Galaxy Zoo 2 answer Class{k} ({GZ2_COLUMNS[k].split('_a', 1)[0]}), Kaggle "
            "weighting: conditional fraction times the fraction that reached the question"
        )
        for k in GZ2_COLUMNS
    },
}


# --------------------------------------------------------------------------- SQL


def _num(value: Any, what: str) -> str:
    """A number for SQL, formatted by Python; anything else is an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"sdss.{what} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"sdss.{what} must be finite, got {value!r}")
    return repr(value)


def _range(sel: Mapping, key: str, expr: str, out: list[str]) -> None:
    rng = sel.get(key)
    if not rng:
        return
    if rng.get("min") is not None:
        out.append(f"{expr} >= {_num(rng['min'], f'selection.{key}.min')}")
    if rng.get("max") is not None:
        out.append(f"{expr} <= {_num(rng['max'], f'selection.{key}.max')}")


def _select_columns(section: Mapping) -> dict[str, str]:
    cols = {alias: expr for alias, (expr, _, _) in CORE_COLUMNS.items()}
    for name in section["extra_columns"]:
        if name not in EXTRA_COLUMNS:
            raise ValueError(f"sdss.extra_columns: {name!r} is not one of {sorted(EXTRA_COLUMNS)}")
        cols[name] = EXTRA_COLUMNS[name][0]
    suffix = GZ2_SUFFIX[section["gz2_fraction"]]
    for key, stem in GZ2_COLUMNS.items():
        cols[f"gz2_raw_{key.replace('.', '_')}"] = f"z2.{stem}{suffix}"
    for alias, expr in cols.items():  # defence in depth: only identifiers reach SQL
        m = _IDENT.match(expr)
        if not m or m.group(1) not in TABLES or not re.match(r"^[a-z0-9_]+$", alias):
            raise ValueError(f"refusing SQL column {expr!r} AS {alias!r}")
    return cols


def _outer(table_alias: str) -> bool:
    """Whether a table is LEFT JOINed (its columns are NULL for objects it lacks)."""
    return TABLES[table_alias][1].startswith("LEFT")


def build_sql(section: Mapping, *, after_objid: int = 0, top: int = 1000) -> str:
    """The SkyServer SQL of one batch: objects with ``objID > after_objid``, by objID.

    ``section`` (the config's ``sdss`` section, whole or in part) is checked against
    the schema first: only allow-listed names and numbers reach the SQL.
    """
    section = check_section("sdss", section)
    cols = _select_columns(section)
    sel = section["selection"]
    where = ["p.type = 3", "s.sciencePrimary = 1"]
    spec_class = sel["spec_class"]
    if spec_class not in SPEC_CLASS:
        raise ValueError(f"sdss.selection.spec_class must be one of {sorted(SPEC_CLASS)}")
    if SPEC_CLASS[spec_class]:
        where.append(f"s.class = {SPEC_CLASS[spec_class]}")
    if sel["zwarning_zero"]:
        where.append("s.zWarning = 0")
    _range(sel, "ra", "p.ra", where)
    _range(sel, "dec", "p.dec", where)
    _range(sel, "z", "s.z", where)
    _range(sel, "petro_mag_r", "p.petroMag_r", where)
    if sel["require_mpajhu"]:
        where.append("g.lgm_tot_p50 > 0")
    if sel["require_gz2"]:
        where.append("z2.specobjid IS NOT NULL")
    where.append(f"p.objID > {int(after_objid):d}")
    # Columns of the LEFT-JOINed tables are NULL for objects they lack; ask for
    # -9999 instead (SkyServer is SQL Server), the archive's own "missing" value.
    select = ",\n  ".join(
        f"ISNULL({expr}, -9999) AS {alias}" if _outer(expr.split(".")[0]) else
        f"{expr} AS {alias}"
        for alias, expr in cols.items()
    )
    used = set(ALWAYS_JOINED) | {expr.split(".")[0] for expr in cols.values()}
    used |= set(re.findall(r"\b([a-z][a-z0-9]?)\.[A-Za-z]", " ".join(where)))
    joins = "".join(f"  {TABLES[t][1]}\n" for t in TABLES if t in used and TABLES[t][1])
    return (
        f"SELECT TOP {int(top):d}\n  {select}\n"
        f"FROM {TABLES['p'][0]} AS p\n"
        f"{joins}"
        f"WHERE {' AND '.join(where)}\n"
        "ORDER BY p.objID"
    )


# --------------------------------------------------------------------------- astroquery


def _sdss_client(session: ArchiveSession):
    from astroquery.sdss import SDSSClass

    client = SDSSClass()
    client._session = session
    return client


def _run_sql(client, session: ArchiveSession, section: Mapping, sql: str, what: str) -> Table | None:
    """One SQL query: astroquery's payload, URL and CSV parser, sent as a POST form."""
    from astroquery.exceptions import RemoteServiceError
    from astroquery.sdss import conf

    ttl = float(session.settings.query_cache_ttl_hours)
    release = int(section["data_release"])
    with conf.set_temp("skyserver_baseurl", section["skyserver_url"].rstrip("/")), \
            session.expecting("csv", what, ttl_hours=ttl):
        # query_sql would send this as a GET, over SkyServer's query-string cap
        payload = client.query_sql_async(sql, data_release=release, get_query_payload=True)
        url = client._get_query_url(release)
        try:
            response = client._request("POST", url, data=payload, cache=False)
            with warnings.catch_warnings():
                # ids over 2**63 are read as text, then made exact uint64 by astroquery
                warnings.filterwarnings("ignore", message="OverflowError converting to IntType")
                return client._parse_result(response)
        except HTMLPageError as exc:
            if exc.title.strip().lower() != "skyserver error":
                raise
            raise ArchiveError(f"{what}: SkyServer refused the query: {exc.message}") from exc
        except RemoteServiceError as exc:  # the CSV form of an error: "error_message ..."
            raise ArchiveError(f"{what}: SkyServer refused the query: {str(exc)[:400]}") from exc
        except ValueError as exc:  # astropy could not read the answer as CSV
            raise ArchiveError(f"{what}: SkyServer's answer is not a CSV table ({exc})") from exc


def query(config: Mapping) -> pd.DataFrame:
    """The SDSS object table (see the module docstring)."""
    section = settings(config, "sdss")
    session = session_for(config, "sdss")
    client = _sdss_client(session)
    max_objects = int(section["max_objects"])
    batch = int(section["batch_size"])
    tables: list[pd.DataFrame] = []
    last = 0
    n = 0
    k = 0
    while n < max_objects:
        k += 1
        top = min(batch, max_objects - n)
        sql = build_sql(section, after_objid=last, top=top)
        what = f"SDSS SQL query, batch {k} (objID > {last})"
        table = _run_sql(client, session, section, sql, what)
        if table is None or len(table) == 0:
            break
        df = table.to_pandas()
        df.columns = [c.lower() for c in df.columns]
        missing = [c for c in ("objid", "ra", "dec", "z", "run", "camcol", "field") if c not in df]
        if missing:
            raise ArchiveError(f"{what}: the answer lacks columns {missing}")
        tables.append(df)
        n += len(df)
        last = int(df["objid"].max())
        if len(df) < top:
            break
    if not tables:
        raise EmptyResultError(
            "SDSS: the query matched no object (sdss.selection = "
            f"{dict(section['selection'])}); widen the selection"
        )
    df = pd.concat(tables, ignore_index=True)
    return _finish(df, section, config)


def _finish(df: pd.DataFrame, section: Mapping, config: Mapping) -> pd.DataFrame:
    df = df.sort_values(["objid", "specobjid"]).drop_duplicates("objid", keep="first")
    ids = {"objid", "specobjid", "run", "rerun", "camcol", "field"}
    for col in df.columns:
        if col not in ids and df[col].dtype.kind in "if":
            values = df[col].astype(float)
            df[col] = values.where(values > MISSING)
    df = _gz2_kaggle(df)
    data = {
        "object_id": df["objid"].astype(np.int64).to_numpy(),  # objID is a bigint
        "ra": df["ra"].astype(float).to_numpy(),
        "dec": df["dec"].astype(float).to_numpy(),
        "z": df["z"].astype(float).to_numpy(),
    }
    for col in df.columns:
        if col not in data and not col.startswith("gz2_raw_"):
            data[col] = df[col].to_numpy()
    for col in ("objid", "run", "rerun", "camcol", "field"):
        if col in data:
            data[col] = data[col].astype(np.int64)
    data["specobjid"] = _unsigned_ids(df["specobjid"])
    out = pd.DataFrame(data)
    out = assign_shards(out, settings(config, "sharding")["objects_per_shard"])
    cols = ["object_id", "ra", "dec", "z", "shard"]
    return out[cols + [c for c in out.columns if c not in cols]]


def _unsigned_ids(values: pd.Series) -> np.ndarray:
    """numeric(20,0) ids as exact uint64 (astroquery reads ids over 2**63 as text)."""
    if values.dtype.kind == "u":
        return values.to_numpy(np.uint64)
    if values.dtype.kind == "i":
        if (values < 0).any():
            raise ArchiveError(f"SDSS: negative specObjID {int(values.min())}")
        return values.to_numpy(np.uint64)
    text = values.astype(str).str.strip()
    if not text.str.fullmatch(r"\d{1,20}").all():
        bad = text[~text.str.fullmatch(r"\d{1,20}")].iloc[0]
        raise ArchiveError(f"SDSS: specObjID {bad!r} is not an unsigned integer")
    return np.array([int(v) for v in text], dtype=np.uint64)


def _gz2_kaggle(df: pd.DataFrame) -> pd.DataFrame:
    """Kaggle-weighted ``gz2_class{q}_{a}`` from the zoo2MainSpecz vote fractions
    (:func:`galcat.gz2.kaggle_fractions`; an object absent from Galaxy Zoo 2 is NaN)."""
    raw = np.full((len(df), len(gz2.ANSWERS)), np.nan)
    for k, answer in enumerate(gz2.ANSWERS):
        col = "gz2_raw_" + answer.removeprefix("Class").replace(".", "_")
        if col in df:
            raw[:, k] = df[col].to_numpy(dtype=float)
    values = gz2.kaggle_fractions(raw)
    out = pd.DataFrame(values, columns=gz2.column_names("gz2_"), index=df.index)
    return pd.concat([df.drop(columns=[c for c in out.columns if c in df]), out], axis=1)


# --------------------------------------------------------------------------- cutouts


class _Frame:
    """One decompressed frame file: image (nanomaggies), WCS, noise on demand."""

    def __init__(self, hdul, url: str, what: str):
        self.url = url
        self.image = np.asarray(hdul[0].data, dtype=np.float64)
        self.wcs = WCS(hdul[0].header)
        if not self.wcs.has_celestial:
            raise ArchiveError(f"{what}: frame {url} has no celestial WCS")
        self.calib = np.asarray(hdul[1].data, dtype=np.float64).ravel()
        sky = hdul[2].data
        self.allsky = np.asarray(sky["ALLSKY"][0], dtype=np.float64)
        self.xinterp = np.asarray(sky["XINTERP"][0], dtype=np.float64)
        self.yinterp = np.asarray(sky["YINTERP"][0], dtype=np.float64)
        if self.allsky.ndim == 1:  # stored flat: (nrow_sky, ncol_sky) from the TDIM
            raise ArchiveError(f"{what}: the sky table of {url} has no 2-D ALLSKY")
        self._sigma: np.ndarray | None = None

    def sigma(self, gain: float, dark_variance: float) -> np.ndarray:
        """1-sigma noise in nanomaggies (SDSS frame data model recipe)."""
        if self._sigma is None:
            ny, nx = self.image.shape
            yy, xx = np.meshgrid(self.yinterp[:ny], self.xinterp[:nx], indexing="ij")
            simg = map_coordinates(self.allsky, [yy, xx], order=1, mode="nearest")
            cimg = np.broadcast_to(self.calib[:nx], (ny, nx))
            counts = self.image / cimg + simg
            dn_err = np.sqrt(np.clip(counts, 0, None) / gain + dark_variance)
            self._sigma = dn_err * cimg
        return self._sigma


def _frame_urls(client, section: Mapping, row: pd.Series, bands) -> dict[str, str]:
    """The frame links astroquery's ``SDSS.get_images`` would download."""
    from astroquery.sdss import conf

    matches = Table({k: [int(row[k])] for k in ("run", "rerun", "camcol", "field")})
    with conf.set_temp("sas_baseurl", section["sas_url"].rstrip("/")):
        containers = client.get_images_async(matches=matches, band=list(bands),
                                             data_release=int(section["data_release"]),
                                             cache=False)
    return {b: fc._target for b, fc in zip(bands, containers, strict=True)}


def _psfield_url(frame_url: str) -> str:
    m = re.match(r"^(.*)/photoObj/frames/(\d+)/(\d+)/(\d)/frame-[ugriz]-(\d{6})-(\d)-(\d{4})"
                 r"\.fits(\.bz2)?$", frame_url)
    if not m:
        raise ArchiveError(f"cannot derive the psField link from {frame_url}")
    base, rerun, run, camcol, run6, _, field4 = m.groups()[:7]
    return f"{base}/photo/redux/{rerun}/{run}/objcs/{camcol}/psField-{run6}-{camcol}-{field4}.fit"


def psf_from_psfield(table, row: float, col: float) -> np.ndarray:
    """Reconstruct the PSF at 0-indexed (row, col) from one band's psField KL table.

    The photoop ``sdss_psf_recon`` algorithm as written in pydl
    (``pydl.photoop.image.sdss_psf_recon``): each eigen-image ``RROWS[k]`` is
    weighted by a polynomial in ``0.001 * (row + 0.5)`` and
    ``0.001 * (col + 0.5)`` with coefficients ``C[k]``.
    """
    rnrow = int(table["RNROW"][0])
    rncol = int(table["RNCOL"][0])
    nr = int(np.max(table["NROW_B"]))
    nc = int(np.max(table["NCOL_B"]))
    coeffs = np.outer(((row + 0.5) * 1e-3) ** np.arange(nr), ((col + 0.5) * 1e-3) ** np.arange(nc))
    nrow_b, ncol_b = int(table["NROW_B"][0]), int(table["NCOL_B"][0])
    rrows = np.asarray(table["RROWS"], dtype=np.float64)
    image = np.zeros(rrows.shape[1])
    for k in range(len(table)):
        c = np.asarray(table["C"][k], dtype=np.float64)
        weight = (c[:nrow_b, :ncol_b] * coeffs[:nrow_b, :ncol_b].T).sum()
        image += rrows[k] * weight
    return image[: rnrow * rncol].reshape(rncol, rnrow)


def cutouts(rows: pd.DataFrame, config: Mapping) -> CutoutBatch:
    """Cutouts of ``rows`` in every ``sdss.bands`` band (see the module docstring)."""
    section = settings(config, "sdss")
    bands = list(section["bands"])
    size = int(section["cutout_size"])
    psf_size = int(section["psf_stamp_size"])
    psf_mode = section["psf"]
    off_image = settings(config, "archive")["off_image"]
    rows = rows.sort_values("object_id").reset_index(drop=True)
    n, nb = len(rows), len(bands)
    if n == 0:
        raise EmptyResultError("SDSS cutouts: no rows given")
    session = session_for(config, "sdss")
    client = _sdss_client(session)
    image = np.full((n, nb, size, size), np.nan, dtype=np.float32)
    sigma = np.full_like(image, np.nan)
    mask = np.ones(image.shape, dtype=bool)
    psfs: dict[str, list[np.ndarray]] = {b: [] for b in bands}
    partial: list[str] = []
    key_cols = ["run", "rerun", "camcol", "field"]
    for key, group in rows.groupby(key_cols, sort=True):
        urls = _frame_urls(client, section, group.iloc[0], bands)
        frames: dict[str, _Frame] = {}
        psfield = None
        for i, row in group.iterrows():
            oid = int(row["object_id"])
            for j, band in enumerate(bands):
                what = f"SDSS object {oid} ({band} band)"
                if band not in frames:
                    response = session.fetch(urls[band], what=f"{what}: frame", kind="fits")
                    hdul = open_fits_bytes(response.content, what=f"{what}: frame",
                                           url=urls[band])
                    frames[band] = _Frame(hdul, urls[band], what)
                frame = frames[band]
                noise = frame.sigma(float(row[f"gain_{band}"]), float(row[f"darkvariance_{band}"]))
                try:
                    cut = _cutting.cut_arrays([frame.image, noise], frame.wcs, float(row["ra"]),
                                              float(row["dec"]), size,
                                              what=f"{what} in {urls[band]}")
                except _cutting.OffImageError:
                    if off_image != "mask":
                        raise
                    log.warning("%s lies wholly off %s; kept fully masked", what, urls[band])
                    psfs[band].append(_cutting.gaussian_psf(
                        float(row[f"psfwidth_{band}"]), PIXEL_SCALE, psf_size))
                    continue
                if cut.partial:
                    partial.append(f"{oid} ({band})")
                image[i, j] = cut.arrays[0]
                sigma[i, j] = cut.arrays[1]
                mask[i, j] = cut.mask | ~(cut.arrays[1] > 0)
                if psf_mode == "psfield":
                    if psfield is None:
                        psf_url = _psfield_url(urls[band])
                        resp = session.fetch(psf_url, what=f"{what}: psField", kind="fits")
                        psfield = open_fits_bytes(resp.content, what=f"{what}: psField",
                                                  url=psf_url)
                    x, y = frame.wcs.celestial.world_to_pixel_values(float(row["ra"]),
                                                                     float(row["dec"]))
                    recon = psf_from_psfield(psfield[BANDS.index(band) + 1].data,
                                             float(y), float(x))
                    psfs[band].append(_cutting.stamp(recon, psf_size))
                else:
                    psfs[band].append(_cutting.gaussian_psf(
                        float(row[f"psfwidth_{band}"]), PIXEL_SCALE, psf_size))
        log.info("SDSS field %s: %d object(s) cut", key, len(group))
    warn_partial("SDSS", partial)
    psf = np.stack([_cutting.mean_psf(psfs[b]) for b in bands])
    return CutoutBatch(
        object_id=rows["object_id"].to_numpy(np.int64),
        image=image, sigma=sigma, mask=mask, psf=psf, bands=bands,
        pixel_scale=PIXEL_SCALE, zeropoints=[_cutting.ZEROPOINT] * nb,
        flux_unit="nanomaggy", survey="sdss",
    )
