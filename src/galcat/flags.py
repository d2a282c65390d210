"""The flag words of galcat's tables: one `enum.IntFlag` class per column, one `describe`.

A flag column holds an integer whose bits say what went wrong (or merely deserves a
note) for one object. Each column has a class here; every member is one bit, carrying
its meaning (``member.description``). The bit values are part of the catalogue
contract: they never change, so catalogues of different versions stay comparable.

=================  ================  ====================================================
column             class             written by
=================  ================  ====================================================
``seg_flag``       `SegmentFlag`     `galcat.segment` (one per object and segmentation)
``flag``           `MeasureFlag`     `galcat.morphology` (the features table)
``r50_mass_flag``  `HalfMassFlag`    `galcat.halfmass` / `galcat.bulgedisc`; -1: not run
``det_flag``       `DetectFlag`      `galcat.detection` (mosaic detection, survey local)
=================  ================  ====================================================

`FLAG_COLUMNS` maps each column to its class, and `flag_metadata` gives the bit names
and meanings of all of them as plain JSON for a catalogue's metadata. `describe` turns
a value into the names of its bits::

    >>> describe(MeasureFlag.EDGE | MeasureFlag.NO_SKY)
    ['EDGE', 'NO_SKY']
    >>> describe(6, SegmentFlag)
    ['CENTRE_NOT_DETECTED', 'CENTRAL_TOUCHES_EDGE']
"""

from __future__ import annotations

import enum

__all__ = [
    "FLAG_COLUMNS",
    "BitFlag",
    "DetectFlag",
    "HalfMassFlag",
    "MassFlag",
    "MeasureFlag",
    "SegmentFlag",
    "describe",
    "flag_metadata",
]


class BitFlag(enum.IntFlag):
    """An `enum.IntFlag` whose members are declared as ``NAME = value, "meaning"``."""

    description: str

    def __new__(cls, value: int, description: str = ""):
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    @classmethod
    def bits(cls) -> dict[int, tuple[str, str]]:
        """``{bit value: (name, meaning)}`` of every member, lowest bit first."""
        return {int(m): (m.name, m.description) for m in sorted(cls, key=int)}


class SegmentFlag(BitFlag):
    """Bits of the ``seg_flag`` word (`galcat.segment`)."""

    NO_DETECTION = 1 << 0, "no source above the threshold; the segmap is all background (0)"
    CENTRE_NOT_DETECTED = (1 << 1, "no object covers the cutout centre; the nearest object "
                           "is label 1")
    CENTRAL_TOUCHES_EDGE = 1 << 2, "the central object reaches the outermost row or column"
    CENTRAL_HUGE = (1 << 3, "the central object covers more than `huge_fraction` (50%) of "
                    "the cutout")
    BAD_PIXELS = (1 << 4, "more than `max_bad_fraction` (10%) of the pixels are bad (masked, "
                  "NaN, zero weight), or a bad pixel touches the central object")
    ALL_NAN_OR_ZERO = (1 << 5, "no usable data in the detection band (all masked, NaN or "
                       "exactly zero: a missing band); the segmap is empty")
    BLENDED = 1 << 6, "a neighbour touches the central object"
    BACKGROUND_UNRELIABLE = (1 << 7, "too few sky pixels; the background comes from the "
                             "outer frame")
    SIGMA_MAP_INVALID = (1 << 8, "the sigma map is missing, non-positive or NaN over more "
                         "than half of the valid pixels; the background RMS is used instead")
    FAILED = (1 << 9, "segmentation raised an unexpected error (logged with the object id); "
              "the segmap is empty")


class MeasureFlag(BitFlag):
    """Bits of the ``flag`` word of the features table (`galcat.morphology`)."""

    NO_CENTRAL_SEGMENT = (1 << 0, "the segmentation map has no central object (label 1); "
                          "nothing is measured")
    BAD_PIXELS = (1 << 1, "fewer than half of the central segment's detection-band pixels "
                  "are valid (unmasked, finite, sigma > 0); nothing is measured")
    NO_FLUX = (1 << 2, "the central segment's detection-band flux is not positive; nothing "
               "is measured")
    EDGE = (1 << 3, "the central segment touches the cutout border; when its centroid also "
            "lies within 10% of the cutout side of the border nothing is measured")
    NO_SKY = (1 << 4, "fewer than 20 valid pixels outside every segment (the segments fill "
              "the cutout): no sky for statmorph, which is not run")
    STATMORPH_FAILED = (1 << 5, "statmorph raised, could not run, or returned flag >= 2 (bad "
                        "or catastrophic); its non-parametric columns are NaN")
    STATMORPH_WARNING = (1 << 6, "statmorph flag 1 (suspect: e.g. Gini and MID segmaps "
                         "differ, several Gini regions); values kept")
    SERSIC_FAILED = (1 << 7, "the Sersic fit failed (statmorph's: flag_sersic >= 2) or could "
                     "not run; sersic_* columns are NaN")
    SERSIC_WARNING = (1 << 8, "sersic_flag 1: a Sersic parameter stuck at its bound; values "
                      "kept")
    HALFMASS_FAILED = (1 << 9, "the half-mass radius could not be measured (see "
                       "r50_mass_flag); r50_mass is NaN")
    MISSING_BAND = (1 << 10, "the detection band or a band of the M/L colour is absent from "
                    "the shard or has no valid pixel")
    SKIPPED = (1 << 11, "a measurement is switched off in the config (measure.statmorph or "
               "measure.half_mass) or impossible with the survey's bands (the half-mass "
               "route without the bands of its colour, said once when the run starts); its "
               "columns are NaN and its *_FAILED bit is not set")
    R50_PSF_FAILED = (1 << 12, "the PSF-corrected r50 could not be measured (no usable "
                      "Sersic fit, or no half-light crossing); r50_psf_corrected is NaN")
    PARTLY_MASKED = (1 << 13, "masked or invalid detection-band pixels lie on the galaxy "
                     "(its segment with holes filled, grown by 2 pixels) though most of it is "
                     "valid: statmorph's values (r50, Gini, M20, CAS) use the rest and may be "
                     "biased; the model radii fill them with the fitted model")
    UNRESOLVED = (1 << 14, "the PSF dominates: statmorph's r50 is below "
                  "measure.unresolved_ratio times a point source's (the PSF's, measured "
                  "alike); the PSF-corrected radii r50_psf_corrected and r50_mass are NaN")


class HalfMassFlag(BitFlag):
    """Bits of the ``r50_mass_flag`` word (`galcat.halfmass`, `galcat.bulgedisc`)."""

    MISSING_BAND = 1, "a band of the colour is absent or has no valid pixel; radius NaN"
    NO_FLUX = 2, "the luminosity-band flux within the aperture is not positive; radius NaN"
    LOW_SNR = 4, "no ring bin reached min_snr: one integrated colour used for the galaxy"
    COLOUR_CLIPPED = 8, "a bin colour was outside the calibrated range and clipped"
    NO_PETROSIAN = (16, "no Petrosian radius found; the aperture is the largest inside the "
                    "cutout")
    TRUNCATED = 32, "the extent x Petrosian aperture leaves the cutout; it is cut at the border"
    PSF_FIT_FAILED = (64, "the Sersic model + residual correction failed; the observed "
                      "profiles are used")
    NO_CROSSING = 128, "the cumulative mass never reaches half its total; radius NaN"
    MASKED = 256, "more than half of the pixels inside the aperture are masked"
    EXTRAPOLATED = (512, "the half-mass radius lies beyond the aperture, in the Sersic "
                    "extrapolation")
    BAD_INPUT = 1024, "centre outside the cutout or shapes that disagree; radius NaN"
    NO_BULGE_DISC = (2048, "colour model bulge_disc: the bulge + disc fit failed and the "
                     "gradient colour model was used instead")


class DetectFlag(BitFlag):
    """Bits of ``det_flag`` of the detection table (`galcat.detection`)."""

    BLENDED = 1, "deblended from a source shared with other objects"
    MASKED = 2, "the segment touches masked, NaN or zero-weight pixels"
    IMAGE_EDGE = 4, "the segment reaches the edge of the mosaic"
    TILE_EDGE = (8, "the segment reaches the edge of the tile it was measured in: the object "
                 "is larger than local.detection.tile_overlap, its flux and shape may be cut")


class MassFlag(BitFlag):
    """Bits of ``log_mass_phot_flag`` (`galcat.stellar_mass`)."""

    NO_PHOTOMETRY = (1, "a model magnitude of the colour or the luminosity band is missing "
                     "(no bulge + disc fit, or the band is not in the survey); log_mass_phot "
                     "is NaN")
    NO_REDSHIFT = 2, "the redshift is missing or not positive; log_mass_phot is NaN"
    COLOUR_CLIPPED = (4, "the colour lies outside the relation's calibrated range and was "
                      "clipped to it; log_mass_phot is kept")


#: Flag column of galcat's tables -> the class of its bits.
FLAG_COLUMNS: dict[str, type[BitFlag]] = {
    "seg_flag": SegmentFlag,
    "flag": MeasureFlag,
    "r50_mass_flag": HalfMassFlag,
    "log_mass_phot_flag": MassFlag,
    "det_flag": DetectFlag,
}

#: What `describe` returns for -1, the "not run" value of ``r50_mass_flag``.
NOT_RUN = "NOT_RUN"


def describe(value, flag_class: type[BitFlag] | None = None) -> list[str]:
    """Names of the bits set in a flag word, lowest bit first.

    Parameters
    ----------
    value : int or BitFlag
        A flag word (a member, a combination, or a plain int read from a table).
    flag_class : BitFlag subclass, optional
        The class of a plain int (see `FLAG_COLUMNS`); taken from ``value`` when it is a
        flag already.

    Returns
    -------
    list of str
        Member names; a set bit that no member declares appears as ``"BIT_<k>"``, and -1
        (a measurement that did not run) as ``["NOT_RUN"]``. ``describe(0) == []``.

    Raises
    ------
    TypeError
        A plain int without ``flag_class``, or a ``flag_class`` that is not a `BitFlag`.
    ValueError
        A negative value other than -1.
    """
    if flag_class is None:
        if not isinstance(value, BitFlag):
            raise TypeError(f"describe({value!r}) needs flag_class for a plain integer; "
                            f"the classes of the flag columns are {_column_classes()}")
        flag_class = type(value)
    if not (isinstance(flag_class, type) and issubclass(flag_class, BitFlag)):
        raise TypeError(f"flag_class must be a galcat.flags.BitFlag class; got {flag_class!r}")
    word = int(value)
    if word == -1:
        return [NOT_RUN]
    if word < 0:
        raise ValueError(f"a {flag_class.__name__} word is >= 0 (or -1: not run); got {word}")
    names = [name for bit, (name, _) in flag_class.bits().items() if word & bit]
    unknown = word & ~sum(flag_class.bits())
    names += [f"BIT_{k}" for k in range(unknown.bit_length()) if unknown >> k & 1]
    return names


def flag_metadata() -> dict[str, dict[str, dict[str, str]]]:
    """Bit names and meanings of every flag column, JSON-ready for a table's metadata:
    ``{column: {str(bit value): {"name": .., "description": ..}}}``."""
    return {column: {str(bit): {"name": name, "description": text}
                     for bit, (name, text) in cls.bits().items()}
            for column, cls in FLAG_COLUMNS.items()}


def _column_classes() -> str:
    return ", ".join(f"{col}: {cls.__name__}" for col, cls in FLAG_COLUMNS.items())
