"""JADES: the NIRCam data release on MAST (high-level science products).

Products are addressed by their MAST data URIs, built from validated config
values::

    mast:HLSP/jades/{release}/{target}/catalogs/hlsp_jades_jwst_nircam_{field}_photometry_{version}_catalog.fits
    mast:HLSP/jades/{release}/{target}/images/hlsp_jades_jwst_nircam_{field}_{filter}_{version}_drz.fits

and fetched through MAST's download API (``{jades.mast_url}/api/v0.1/Download/file?uri=``,
the URL astroquery.mast's ``Observations.download_file`` uses). With
``jades.product_lookup: mast_query`` the mosaics are first looked up with
astroquery.mast (``Observations.query_criteria(provenance_name=..., filters=...)``
then ``get_product_list``), so that a release whose files moved fails with a
clear message listing what MAST has.

Neither the catalogue nor the mosaics (GB-sized) are downloaded whole: FITS
headers, the needed catalogue extensions and the rows of each cutout are read
with HTTP ``Range`` requests (:class:`galcat.surveys._http.RemoteFITS`). A
server that ignores ``Range`` gets a single full download into the cache
(bounded by ``archive.max_download_mb``).

``query(config)``
    The catalogue's layout depends on the release (``jades.release``), described by
    :data:`RELEASES`: ``FLAG`` for ``ID``, ``RA``, ``DEC``; ``KRON`` for
    ``{FILTER}_KRON`` and ``{FILTER}_KRON_e`` (nJy); ``PHOTOZ`` for the photometric
    redshift (DR2 ``EAZY_z_a`` with its 68% interval ``EAZY_l68``/``EAZY_u68``; DR5
    ``z_a``); ``SIZE`` for each filter's half-light radius ``{FILTER}_RHALF``
    (arcsec). On first read the catalogue's headers (fetched by ``Range``) are checked
    against that layout for every column the config needs, and a mismatch fails
    naming the missing columns before any table is downloaded. ``object_id`` is the
    JADES ``ID`` (kept as the string ``jades_id`` too); ``z`` is the photometric
    redshift.

``cutouts(rows, config)``
    ``SCI`` and ``ERR`` of each filter's mosaic (MJy/sr) cut around each object
    with the SCI WCS and converted to nanomaggies per pixel. The PSF is a
    Gaussian of the NIRCam PSF FWHM of the filter (:data:`NIRCAM_FWHM`, the
    predicted FWHM in the JWST user documentation, "NIRCam Point Spread
    Functions"; ``jades.psf_fwhm_arcsec`` overrides it per filter). This is an
    approximation: the JWST PSF has hexagonal diffraction spikes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import pandas as pd
from astropy.wcs import WCS

from galcat.config import settings
from galcat.sharding import assign_shards
from galcat.store import CutoutBatch
from galcat.surveys import _cutting
from galcat.surveys._http import (
    ArchiveError,
    ArchiveSession,
    EmptyResultError,
    RemoteFITS,
    request_key,
    session_for,
    warn_partial,
)

__all__ = ["COLUMN_DESCRIPTIONS", "COLUMN_UNITS", "NIRCAM_FWHM", "RELEASES", "JadesRelease",
           "cutouts", "query"]

log = logging.getLogger("galcat.surveys.jades")

#: Predicted NIRCam PSF FWHM in arcsec per filter (JWST user documentation).
NIRCAM_FWHM = {
    "F070W": 0.023, "F090W": 0.030, "F115W": 0.037, "F140M": 0.046, "F150W": 0.049,
    "F162M": 0.053, "F182M": 0.060, "F200W": 0.064, "F210M": 0.068, "F250M": 0.082,
    "F277W": 0.088, "F300M": 0.097, "F335M": 0.109, "F356W": 0.114, "F360M": 0.118,
    "F410M": 0.133, "F430M": 0.139, "F444W": 0.140, "F460M": 0.151, "F480M": 0.157,
}
NJY_PER_NANOMAGGY = 3631.0


@dataclass(frozen=True)
class JadesRelease:
    """Where one JADES photometry release keeps what galcat reads.

    Column names may hold ``{F}`` for the upper-case filter (``F200W``). Every column
    named here is required: :func:`check_layout` names the ones a file lacks.
    """

    name: str
    redshifts: tuple[str, ...]  # PHOTOZ columns a config may choose; the first is the default
    z_l68: str | None = None  # lower / upper bound of the 68% interval, if the release has one
    z_u68: str | None = None
    position_columns: tuple[str, ...] = ("ID", "RA", "DEC")
    flux_hdu: str = "KRON"
    flux: str = "{F}_KRON"
    flux_err: str = "{F}_KRON_e"
    photoz_hdu: str = "PHOTOZ"
    size_hdu: str = "SIZE"
    rhalf: str = "{F}_RHALF"


#: The catalogue layouts, by ``jades.release`` (the MAST directory). DR2: the v2.0
#: GOODS-S deep catalogue (``..._goods-s-deep_photometry_v2.0_catalog.fits``); DR5: the
#: v5.0 catalogues (``..._goods-s_photometry_v5.0_catalog.fits``), which supersede it.
#: Both as third-party readers of the real files use them (docs/archives.md); the DR5
#: 68% interval columns are not known here, so DR5's ``z_l68``/``z_u68`` are NaN.
RELEASES: dict[str, JadesRelease] = {
    "dr2": JadesRelease("DR2 (v2.0)", redshifts=("EAZY_z_a", "EAZY_z_ml", "EAZY_z_peak"),
                        z_l68="EAZY_l68", z_u68="EAZY_u68"),
    "dr5": JadesRelease("DR5 (v5.0)", redshifts=("z_a", "z_ml")),
}

COLUMN_UNITS = {"object_id": "", "shard": "", "ra": "deg", "dec": "deg", "z": "",
                "jades_id": "", "jades_field": "", "z_l68": "", "z_u68": ""}
COLUMN_DESCRIPTIONS = {
    "object_id": "galcat object id: the JADES catalogue ID",
    "shard": "shard holding the object (rank of its id in ascending order)",
    "ra": "right ascension (catalogue RA)",
    "dec": "declination (catalogue DEC)",
    "z": "photometric redshift (PHOTOZ column jades.redshift_column, or the release's "
         "default: EAZY_z_a in DR2, z_a in DR5)",
    "jades_id": "JADES catalogue ID, as a string",
    "jades_field": "JADES field of the catalogue (e.g. goods-s-deep)",
    "z_l68": "lower bound of the 68% photometric-redshift interval (NaN where the release "
             "has none)",
    "z_u68": "upper bound of the 68% photometric-redshift interval (NaN where the release "
             "has none)",
}
for _f in NIRCAM_FWHM:
    _l = _f.lower()
    COLUMN_UNITS[f"flux_{_l}"] = "nJy"
    COLUMN_UNITS[f"flux_err_{_l}"] = "nJy"
    COLUMN_UNITS[f"mag_{_l}"] = "mag"
    COLUMN_UNITS[f"r50_{_l}"] = "arcsec"
    COLUMN_DESCRIPTIONS[f"flux_{_l}"] = f"Kron flux in {_f} ({_f}_KRON)"
    COLUMN_DESCRIPTIONS[f"flux_err_{_l}"] = f"Kron flux error in {_f} ({_f}_KRON_e)"
    COLUMN_DESCRIPTIONS[f"mag_{_l}"] = f"AB magnitude of the Kron flux in {_f}"
    COLUMN_DESCRIPTIONS[f"r50_{_l}"] = f"half-light radius in {_f} (SIZE.{_f}_RHALF)"


def mast_download_url(section: Mapping, uri: str) -> str:
    """The MAST download-API link of a data URI (as astroquery.mast builds it)."""
    return f"{section['mast_url'].rstrip('/')}/api/v0.1/Download/file?uri={quote(uri, safe=':/')}"


def catalog_uri(section: Mapping) -> str:
    return (f"mast:HLSP/jades/{section['release']}/{section['target']}/catalogs/"
            f"hlsp_jades_jwst_nircam_{section['field']}_photometry_{section['version']}"
            "_catalog.fits")


def mosaic_uri(section: Mapping, filt: str) -> str:
    return (f"mast:HLSP/jades/{section['release']}/{section['target']}/images/"
            f"hlsp_jades_jwst_nircam_{section['field']}_{filt.lower()}_{section['version']}"
            "_drz.fits")


def _col(hdu, name: str) -> np.ndarray | None:
    names = {n.upper(): n for n in hdu.columns.names}
    if name.upper() not in names:
        return None
    arr = np.asarray(hdu.data[names[name.upper()]])
    return arr.astype(arr.dtype.newbyteorder("=")) if arr.dtype.byteorder == ">" else arr


def release_of(section: Mapping) -> JadesRelease:
    """The layout of ``jades.release``; a clear error for a release galcat cannot read."""
    name = str(section["release"])
    if name not in RELEASES:
        raise ValueError(f"jades.release {name!r}: galcat reads the catalogue layouts of "
                         f"{sorted(RELEASES)}")
    return RELEASES[name]


def redshift_column(section: Mapping, release: JadesRelease) -> str:
    """The PHOTOZ column used as ``z``: ``jades.redshift_column`` or the release's default."""
    col = section.get("redshift_column") or release.redshifts[0]
    if col not in release.redshifts:
        raise ValueError(f"jades.redshift_column {col!r} is not a {release.name} PHOTOZ column; "
                         f"choose one of {list(release.redshifts)}")
    return col


def needed_columns(section: Mapping, release: JadesRelease) -> dict[str, list[str]]:
    """HDU -> the columns the config reads from it (for the first-read check)."""
    filters = [f.upper() for f in section["filters"]]
    photoz = [redshift_column(section, release)] + [c for c in (release.z_l68, release.z_u68)
                                                     if c]
    need: dict[str, list[str]] = {}
    for hdu, columns in (
        (section["position_hdu"], list(release.position_columns)),
        (release.flux_hdu, [t.format(F=f) for f in filters
                            for t in (release.flux, release.flux_err)]),
        (release.photoz_hdu, photoz),
        (release.size_hdu, [release.rhalf.format(F=f) for f in filters]),
    ):
        need.setdefault(hdu, []).extend(c for c in columns if c not in need.get(hdu, []))
    return need


def check_layout(cat: RemoteFITS, section: Mapping, release: JadesRelease, what: str) -> None:
    """Raise, naming every missing HDU and column, unless the catalogue has the layout.

    Reads only the headers (a few kB by ``Range``), before any table data.
    """
    hdus = {h.name: h for h in cat.hdus()}
    missing: list[str] = []
    have: dict[str, list[str]] = {}
    for hdu, columns in needed_columns(section, release).items():
        if hdu not in hdus:
            missing.append(f"HDU {hdu}")
            continue
        header = hdus[hdu].header
        names = [str(header.get(f"TTYPE{i}", "")) for i in range(1, int(header.get("TFIELDS",
                                                                                    0)) + 1)]
        upper = {n.upper() for n in names}
        lacking = [c for c in columns if c.upper() not in upper]
        missing += [f"{hdu}.{c}" for c in lacking]
        if lacking:
            have[hdu] = names
    if missing:
        found = [f"{h} has {n[:12]}{' ...' if len(n) > 12 else ''}" for h, n in have.items()]
        if any(m.startswith("HDU ") for m in missing):
            found.append(f"its HDUs are {sorted(hdus)}")
        raise ArchiveError(
            f"{what} does not have the {release.name} layout of jades.release = "
            f"{section['release']!r}: missing {', '.join(missing)} "
            f"({'; '.join(found)})"
        )


def query(config: Mapping) -> pd.DataFrame:
    """The JADES object table (see the module docstring)."""
    section = settings(config, "jades")
    release = release_of(section)
    session = session_for(config, "jades")
    uri = catalog_uri(section)
    url = mast_download_url(section, uri)
    what = f"JADES catalogue {uri}"
    cat = RemoteFITS(session, url, what=what, use_range=section["range_requests"])
    check_layout(cat, section, release, what)
    filters = [f.upper() for f in section["filters"]]
    pos = cat.read_hdu(section["position_hdu"])
    ids = _col(pos, "ID")
    df = pd.DataFrame({"object_id": ids.astype(np.int64), "ra": _col(pos, "RA").astype(float),
                       "dec": _col(pos, "DEC").astype(float)})
    kron = cat.read_hdu(release.flux_hdu)
    _check_ids(kron, ids, what)
    for f in filters:
        flux = _col(kron, release.flux.format(F=f)).astype(float)
        df[f"flux_{f.lower()}"] = flux
        df[f"flux_err_{f.lower()}"] = _col(kron, release.flux_err.format(F=f)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            df[f"mag_{f.lower()}"] = np.where(flux > 0, -2.5 * np.log10(flux) + 31.4, np.nan)
    photoz = cat.read_hdu(release.photoz_hdu)
    _check_ids(photoz, ids, what)
    df["z"] = _col(photoz, redshift_column(section, release)).astype(float)
    for name, col in (("z_l68", release.z_l68), ("z_u68", release.z_u68)):
        df[name] = _col(photoz, col).astype(float) if col else np.nan
    size_hdu = cat.read_hdu(release.size_hdu)
    _check_ids(size_hdu, ids, what)
    for f in filters:
        df[f"r50_{f.lower()}"] = _col(size_hdu, release.rhalf.format(F=f)).astype(float)
    n_all = len(df)
    keep = np.isfinite(df["ra"]) & np.isfinite(df["dec"]) & (df["object_id"] >= 1)
    sel = section["selection"]
    for key in ("z", "ra", "dec"):
        rng = sel.get(key) or {}
        if rng.get("min") is not None:
            keep &= df[key] >= float(rng["min"])
        if rng.get("max") is not None:
            keep &= df[key] <= float(rng["max"])
    if sel.get("mag_max") is not None:
        band = (sel.get("mag_band") or filters[0]).lower()  # default: the first filter
        if f"mag_{band}" not in df:
            raise ValueError(f"jades.selection.mag_band {band!r} is not one of jades.filters")
        keep &= df[f"mag_{band}"] <= float(sel["mag_max"])
    df = df[keep].sort_values("object_id")
    if section.get("max_objects"):
        df = df.iloc[: int(section["max_objects"])]
    if df.empty:
        raise EmptyResultError(f"JADES: none of the {n_all} catalogue rows pass the selection "
                               f"{dict(sel)}; widen it")
    df["jades_id"] = df["object_id"].astype(str)
    df["jades_field"] = section["field"]
    out = assign_shards(df, settings(config, "sharding")["objects_per_shard"])
    cols = ["object_id", "ra", "dec", "z", "shard"]
    return out[cols + [c for c in out.columns if c not in cols]]


def _check_ids(hdu, ids: np.ndarray, what: str) -> None:
    other = _col(hdu, "ID")
    if other is not None and not np.array_equal(other, ids):
        raise ArchiveError(f"{what}: the rows of {hdu.name} are not in the order of the IDs")


# --------------------------------------------------------------------------- products


def _lookup_mosaics(session: ArchiveSession, section: Mapping, filters) -> dict[str, str]:
    """Data URIs of the mosaics, checked against MAST with astroquery.mast."""
    wanted = {f: mosaic_uri(section, f) for f in filters}
    if section["product_lookup"] != "mast_query":
        return wanted
    from astroquery.mast import ObservationsClass

    base = section["mast_url"].rstrip("/")
    obs = ObservationsClass()
    obs._session = session
    portal = obs._portal_api_connection
    portal._session = session
    portal.MAST_REQUEST_URL = base + "/api/v0/invoke"
    portal.COLUMNS_CONFIG_URL = base + "/portal/Mashup/Mashup.asmx/columnsconfig"
    portal.MAST_DOWNLOAD_URL = base + "/api/v0.1/Download/file"
    what = f"MAST product lookup (provenance {section['provenance_name']}, filters {filters})"
    with session.expecting("json", what, ttl_hours=session.settings.query_cache_ttl_hours):
        try:
            table = obs.query_criteria(provenance_name=section["provenance_name"],
                                       filters=list(filters))
            if len(table) == 0:
                raise EmptyResultError(f"{what}: MAST has no such observation")
            products = obs.get_product_list(table)
        except ArchiveError:
            raise
        except Exception as exc:  # astroquery raises many kinds; name the request
            raise ArchiveError(f"{what}: {type(exc).__name__}: {exc}") from exc
    uris = {str(u) for u in products["dataURI"]}
    found: dict[str, str] = {}
    for f, uri in wanted.items():
        if uri in uris:
            found[f] = uri
            continue
        name = uri.rsplit("/", 1)[1]
        near = [u for u in uris if u.endswith(name)]
        if near:
            found[f] = near[0]
            continue
        similar = sorted(u for u in uris if f.lower() in u.lower() and u.endswith("_drz.fits"))
        raise ArchiveError(
            f"JADES: MAST has no product {uri}; products of filter {f}: {similar[:5] or 'none'}"
        )
    return found


def cutouts(rows: pd.DataFrame, config: Mapping) -> CutoutBatch:
    """Cutouts of ``rows`` in every ``jades.filters`` filter (see the module docstring)."""
    section = settings(config, "jades")
    filters = [f.upper() for f in section["filters"]]
    size = int(section["cutout_size"])
    psf_size = int(section["psf_stamp_size"])
    off_image = settings(config, "archive")["off_image"]
    rows = rows.sort_values("object_id").reset_index(drop=True)
    if rows.empty:
        raise EmptyResultError("JADES cutouts: no rows given")
    session = session_for(config, "jades")
    uris = _lookup_mosaics(session, section, filters)
    n, nf = len(rows), len(filters)
    image = np.full((n, nf, size, size), np.nan, dtype=np.float32)
    sigma = np.full_like(image, np.nan)
    mask = np.ones(image.shape, dtype=bool)
    partial: list[str] = []
    scales: list[float] = []
    psf_fwhm = {**NIRCAM_FWHM, **{k.upper(): float(v) for k, v in
                                  section["psf_fwhm_arcsec"].items()}}
    for j, f in enumerate(filters):
        url = mast_download_url(section, uris[f])
        mosaic = RemoteFITS(session, url, what=f"JADES {f} mosaic",
                            use_range=section["range_requests"])
        sci = mosaic.hdu_info("SCI")
        names = {h.name for h in mosaic.hdus()}
        noise_hdu = "ERR" if "ERR" in names else "WHT" if "WHT" in names else None
        if noise_hdu is None:
            raise ArchiveError(f"JADES {f} mosaic {url} has neither an ERR nor a WHT extension")
        wcs = WCS(sci.header)
        if not wcs.has_celestial:
            raise ArchiveError(f"JADES {f} mosaic {url} has no celestial WCS")
        scale = _cutting.pixel_scale_arcsec(wcs)
        scales.append(scale)
        factor = _cutting.nanomaggy_factor(sci.header.get("BUNIT", "MJy/sr"), scale,
                                           what=f"JADES {f} mosaic")
        shape = (int(sci.header["NAXIS2"]), int(sci.header["NAXIS1"]))
        for i, row in rows.iterrows():
            oid = int(row["object_id"])
            what = f"JADES object {oid} ({f})"
            x, y = wcs.celestial.world_to_pixel_values(float(row["ra"]), float(row["dec"]))
            try:
                large, small, is_partial = _cutting.window(shape, float(x), float(y), size,
                                                           what=f"{what} in {url}")
            except _cutting.OffImageError:
                if off_image != "mask":
                    raise
                log.warning("%s lies wholly off the mosaic; kept fully masked", what)
                continue
            data = _cached_section(session, mosaic, "SCI", large, url, what)
            img = _cutting.paste(data, small, size) * factor
            noise = _cutting.paste(_cached_section(session, mosaic, noise_hdu, large, url,
                                                   what), small, size)
            if noise_hdu == "WHT":  # inverse variance
                with np.errstate(divide="ignore", invalid="ignore"):
                    noise = np.where(noise > 0, 1.0 / np.sqrt(noise), np.nan)
            noise = noise * factor
            image[i, j] = img
            sigma[i, j] = noise
            mask[i, j] = ~np.isfinite(img) | ~(noise > 0)
            if is_partial:
                partial.append(f"{oid} ({f})")
    warn_partial("JADES", partial)
    pixel_scale = float(np.mean(scales))
    if max(scales) - min(scales) > 1e-3 * pixel_scale:
        raise ArchiveError(f"JADES: the mosaics have different pixel scales {scales}")
    psf = np.stack([_cutting.gaussian_psf(psf_fwhm.get(f, 0.1), pixel_scale, psf_size)
                    for f in filters])
    return CutoutBatch(
        object_id=rows["object_id"].to_numpy(np.int64), image=image, sigma=sigma, mask=mask,
        psf=psf, bands=filters, pixel_scale=pixel_scale,
        zeropoints=[_cutting.ZEROPOINT] * nf, flux_unit="nanomaggy", survey="jades",
    )


def _cached_section(session: ArchiveSession, mosaic: RemoteFITS, hdu: str, large: tuple,
                    url: str, what: str) -> np.ndarray:
    """A pixel section read by range request, cached as .npy (not the raw rows)."""
    ys, xs = large
    key = request_key("GET", url) + f"-{hdu}-{ys.start}-{ys.stop}-{xs.start}-{xs.stop}"
    path = session.cache.root / "sections" / f"{key}.npy" if session.cache is not None else None
    if path is not None and path.exists():
        return np.load(path)
    try:
        data = mosaic.read_section(hdu, ys, xs)
    except ArchiveError as exc:
        raise ArchiveError(f"{what}: {exc}") from exc
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        np.save(tmp, data)
        tmp.replace(path)
    return data

