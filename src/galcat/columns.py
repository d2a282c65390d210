"""Catalogue column conventions: VO units, UCDs, flag bits and the column reference.

The published catalogue (Parquet, FITS, VOTable) must open in astropy and TOPCAT
without a unit warning, so every column's unit is one that the FITS standard, the
IVOA VOUnit recommendation and astropy's generic format all read (`published_unit`):

* ``nanomaggy`` (the cutouts' flux unit: 1 nmgy = 3.631e-6 Jy, AB) is not a unit of any
  standard: such columns are converted to ``nJy`` (values × 3631);
* ``dex(...)`` (log quantities) is astropy-only: FITS and VOUnit have no log unit
  astropy reads back, so a log column is dimensionless by design and its description
  names the quantity and its unit (``log10 ... in solMass``);
* astropy aliases (``Msun``) are written in their standard spelling (``solMass``);
* a unit no standard spells (``electron/count``, an SDSS gain) is, like a log, kept in
  the description of a dimensionless column.

UCDs (IVOA UCD1+ words, `ucd_for`) are given where the vocabulary has one; flag bits are
read through `flag_bits`, the one place that knows where each flag column's bits are
defined. `column_reference` writes ``docs/catalogue.md`` from a catalogue's own
metadata.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

__all__ = [
    "ColumnMetadataError",
    "UCDS",
    "column_reference",
    "flag_bits",
    "published_unit",
    "ucd_for",
    "write_column_reference",
]

#: Flux of zero AB magnitude; 1 maggy. Galcat cutouts are in nanomaggies (SDSS's unit).
AB_ZERO_POINT_JY = 3631.0


class ColumnMetadataError(ValueError):
    """A column has a unit no standard can express, or no unit/description at all."""


# --------------------------------------------------------------------------- units
def _strict_unit(text: str, fmt: str):
    from astropy import units as u

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return u.Unit(text, format=fmt)


def _maggy_to_jansky(unit):
    """``unit`` with every maggy-based factor replaced by nJy, and the value scale."""
    from astropy import units as u

    scale, bases = 1.0, []
    for base in unit.bases:
        if base.to_string().endswith("mgy"):
            one = (1.0 * base).to(u.nJy, equivalencies=u.zero_point_flux(AB_ZERO_POINT_JY * u.Jy))
            scale *= float(f"{float(one.value):.12g}") ** unit.powers[len(bases)]
            base = u.nJy
        bases.append(base)
    return u.CompositeUnit(unit.scale, bases, unit.powers), scale


def published_unit(unit: str, *, column: str = "?") -> tuple[str, float, str]:
    """How a galcat unit is published: ``(unit, scale, note)``.

    Parameters
    ----------
    unit : str
        The unit a galcat table declares (astropy's generic format; ``''`` dimensionless).
    column : str
        Named in the error message.

    Returns
    -------
    unit : str
        astropy generic spelling of a unit that FITS and VOUnit both express and astropy
        reads back without a warning; ``''`` for a dimensionless (or log) column.
    scale : float
        Multiply the values by it (nanomaggy -> nJy: 3631; else 1).
    note : str
        For a log column or a unit no standard spells, what its description must name
        (``'log10 of solMass'``, ``'in electron / count'``); else ``''``.

    Raises
    ------
    ColumnMetadataError
        A unit astropy cannot parse.
    """
    from astropy import units as u

    text = (unit or "").strip()
    if not text:
        return "", 1.0, ""
    try:
        parsed = _strict_unit(text, "generic")
    except (ValueError, TypeError, UserWarning) as exc:
        raise ColumnMetadataError(f"column {column!r}: unit {text!r} is not an astropy unit "
                                  f"({exc})") from None
    if parsed == u.dex:
        return "", 1.0, "dex"
    physical = getattr(parsed, "physical_unit", None)
    if physical is not None and parsed != u.mag:  # dex(X), mag(X): a log quantity
        what = physical.to_string() or "a dimensionless quantity"
        return "", 1.0, f"log10 of {what}" if "dex" in str(parsed) else f"magnitude of {what}"
    parsed, scale = _maggy_to_jansky(parsed)
    try:
        for fmt in ("fits", "vounit"):
            _strict_unit(parsed.to_string(fmt), fmt)
    except (ValueError, TypeError, UserWarning):
        # a real unit no standard spells (electron/count): named in the description
        return "", 1.0, f"in {parsed.to_string()}"
    return parsed.to_string(), scale, ""


# --------------------------------------------------------------------------- UCDs
#: (pattern on the column name without a ``truth_`` prefix, UCD1+), first match wins.
UCDS: tuple[tuple[str, str], ...] = (
    (r"object_id", "meta.id;meta.main"),
    (r"ra", "pos.eq.ra;meta.main"),
    (r"dec", "pos.eq.dec;meta.main"),
    (r"z|companion_z", "src.redshift"),
    (r"shard", "meta.id.part"),
    (r"(seg_)?flag|.*_flag", "meta.code.qual"),
    (r"mag_model_err_.+", "stat.error;phot.mag"),
    (r"mag_.+", "phot.mag"),
    (r"flux_err_.+", "stat.error;phot.flux.density"),
    (r"flux_.+", "phot.flux.density"),
    (r"log_mass_phot_err", "stat.error;phys.mass"),
    (r"sersic_n_err", "stat.error;src.morph.param"),
    (r"bulge_to_total_err", "stat.error;src.morph.param"),
    (r"(bulge|disc)_q_err", "stat.error;phys.size.axisRatio"),
    (r"log_mass(_phot|_nsa|_p\d\d)?|nsa_elpetro_mass", "phys.mass"),
    (r"log_ml_.+", "phys.composition.massLightRatio"),
    (r"gr_.+|bulge_colour|disc_colour|neighbour_colour_offset", "phot.color"),
    (r"neighbour_flux_ratio", "phot.flux;arith.ratio"),
    (r"residual_flux_fraction", "src.morph;arith.ratio"),
    (r"neighbour_separation", "pos.angDistance;arith.ratio"),
    (r"neighbour_size_ratio", "phys.angSize;arith.ratio"),
    (r"metallicity", "phys.abund.Z"),
    (r"ssfr", "phys.SFR"),
    (r"r50_kpc|r_eff_kpc|.+_kpc", "phys.size.radius"),
    (r".+_pix", "phys.angSize;instr.pixel"),
    (r"x(_centroid)?", "pos.cartesian.x;instr.pixel"),
    (r"y(_centroid)?", "pos.cartesian.y;instr.pixel"),
    (r"ra_centroid", "pos.eq.ra"),
    (r"dec_centroid", "pos.eq.dec"),
    (r"r\d\d(_.+)?|rpetro_circ|r_e_.+|sersic_r_eff|companion_r_e", "phys.angSize;src"),
    (r"(sersic_)?q(_.+)?|companion_q|bulge_q|disc_q", "phys.size.axisRatio"),
    (r"ellipticity", "src.ellipticity"),
    (r"orientation_deg|(companion_)?pa_deg", "pos.posAng"),
    (r"companion_sep", "pos.angDistance"),
    (r"type", "src.morph.type"),
    (r"gz2_.+", "src.morph.type;stat.probability"),
    (r"concentration|asymmetry|smoothness|gini|m20|gini_m20_.+|multimode|intensity|deviation"
     r"|shape_asymmetry|(sersic_)?n(_.+)?|sersic_n|bulge_to_total|bt(_mass)?|companion_n",
     "src.morph.param"),
    (r"sn_per_pixel", "stat.snr"),
    (r"seg_background", "instr.skyLevel"),
    (r"seg_background_rms", "stat.stdev;instr.skyLevel"),
    (r"seg_central_area", "phys.angArea"),
    (r"seg_central_flux", "phot.flux"),
    (r"seg_n_sources", "meta.number"),
    (r"merger|projection|size_clipped", "meta.code"),
    (r"class\d+_\d+", "src.morph.type;stat.probability"),  # a network's GZ2 vote fraction
    (r"companion_angle_deg|tail_twist_deg", "pos.posAng"),
    (r"companion_flux_ratio", "phot.flux;arith.ratio"),
    (r"tail_frac|lopsided_frac", "src.morph.param"),
    (r"seg_bad_fraction", "meta.code.qual;arith.ratio"),
)
_UCD_PATTERNS = tuple((re.compile(rf"(?:{p})\Z"), ucd) for p, ucd in UCDS)


def ucd_for(column: str) -> str | None:
    """The UCD1+ of a catalogue column (`UCDS`), or None where the IVOA has none.

    A network's output ``nn_{model}_{output}`` takes the UCD of its output (the model
    name, which may hold underscores, is tried off word by word), ``_err`` adds
    ``stat.error`` and ``_split`` is a code."""
    name = column.removeprefix("truth_")
    if name.startswith("nn_"):
        return _network_ucd(name)
    for pattern, ucd in _UCD_PATTERNS:
        if pattern.match(name):
            return ucd
    return None


def _network_ucd(name: str) -> str | None:
    if name.endswith("_split"):
        return "meta.code"
    error = name.endswith("_err")
    words = name.removesuffix("_err").split("_")[1:]
    for start in range(1, len(words)):
        output = "_".join(words[start:])
        found = next((ucd for pattern, ucd in _UCD_PATTERNS if pattern.match(output)), None)
        if found:
            return f"stat.error;{found.split(';')[0]}" if error else found
    return None


# --------------------------------------------------------------------------- flags
def flag_bits(column: str) -> list[tuple[int, str, str]]:
    """``(value, name, meaning)`` of every bit of a flag column; [] for other columns
    (`galcat.flags.FLAG_COLUMNS` names each flag column's class)."""
    from galcat.flags import FLAG_COLUMNS

    flag_class = FLAG_COLUMNS.get(column)
    if flag_class is None:
        return []
    return [(value, name, meaning) for value, (name, meaning) in flag_class.bits().items()]


# --------------------------------------------------------------------------- docs
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def column_reference(catalogue: os.PathLike | str) -> str:
    """The Markdown column reference of a catalogue, from its own metadata.

    One row per column (name, unit, UCD, description) in catalogue order, then the
    bits of each flag column (`flag_bits`). Nothing run-specific (no dates, hashes or
    counts) is written, so the text changes only when the columns do.

    Parameters
    ----------
    catalogue : path-like
        A ``catalogue.parquet`` written by `galcat.catalogue.build_catalogue`.
    """
    from galcat.tables import column_descriptions, column_names, column_ucds, column_units

    path = Path(catalogue)
    names = column_names(path)
    units, descriptions, ucds = column_units(path), column_descriptions(path), column_ucds(path)
    lines = [
        "# Catalogue column reference",
        "",
        "<!-- Generated by `galcat columns` from the catalogue's own metadata; do not edit. "
        "tests/test_catalogue.py checks it is up to date. -->",
        "",
        "Every column of `results/{survey}/catalogue.parquet` (also `catalogue.fits` and "
        "`catalogue.vot`, a VOTable) of the synthetic survey, in order. Units are "
        "VOUnit/FITS units astropy and TOPCAT read as they are; a blank unit is "
        "dimensionless by design (counts, ratios, indices, flags, redshifts and log10 "
        "quantities, whose description names the quantity and its unit). UCDs are IVOA "
        "UCD1+ words where one exists. Archive surveys replace the `truth_*` and "
        "`gz2_*` columns with their own labels, described in their catalogue's metadata.",
        "",
        "| column | unit | UCD | description |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        lines.append(f"| `{name}` | {_cell(units.get(name, ''))} | {_cell(ucds.get(name, ''))} "
                     f"| {_cell(descriptions.get(name, ''))} |")
    flagged = [name for name in names if flag_bits(name)]
    if flagged:
        lines += ["", "## Flag bits", "",
                  "A flag column is a bit word: the sum of the values of the bits set."]
    for name in flagged:
        lines += ["", f"### `{name}`", "", "| value | name | meaning |", "| --- | --- | --- |"]
        lines += [f"| {value} | `{bit}` | {_cell(meaning)} |"
                  for value, bit, meaning in flag_bits(name)]
    return "\n".join(lines) + "\n"


def write_column_reference(catalogue: os.PathLike | str, output: os.PathLike | str) -> Path:
    """Write `column_reference` of ``catalogue`` to ``output`` (atomically)."""
    from galcat.atomic import replacing_file

    final = Path(output)
    with replacing_file(final) as tmp:
        tmp.write_text(column_reference(catalogue))
    return final
