"""Every fault scenario galcat is tested against, and the page that reports them.

A scenario is registered here once (name -> (category, what is done to galcat));
its test records what galcat did (`tests.faults.recorder`) and asserts that no object
was lost and no output corrupted. ``make reliability`` writes ``docs/reliability.md``.
"""

from __future__ import annotations

#: name -> (category, the fault injected)
SCENARIOS: dict[str, tuple[str, str]] = {
    # bad pixels: a faulty copy of a galaxy measured beside its clean twin, in one shard
    "nan_block": ("bad pixels", "a 10x10 block of NaN pixels, not masked, beside the centre"),
    "nan_core": ("bad pixels", "a 6x6 block of NaN pixels over the centre, not masked"),
    "masked_block": ("bad pixels", "the first block declared in the mask"),
    "inf_pixels": ("bad pixels", "five +inf pixels in the detection band"),
    "zero_band": ("bad pixels", "the g band all zeros (a band the instrument did not read)"),
    "missing_band": ("bad pixels", "the i band all NaN and masked (absent for this object)"),
    "saturated": ("bad pixels", "a saturated core: 3x3 pixels at 1000x the peak, not masked"),
    "zero_sigma": ("bad pixels", "a sigma map of zeros in the detection band"),
    "small_cutout": ("bad pixels", "only the central 40x40 pixels delivered, the rest NaN"),
    "edge": ("bad pixels", "the galaxy 6 pixels from the cutout border"),
    "all_nan": ("bad pixels", "every pixel NaN"),
    # files the user brings (survey: local)
    "big_endian_int16": ("input files", "cutout files as big-endian 16-bit integers"),
    "broken_header": ("input files", "a FITS header card that is not FITS"),
    "no_wcs": ("input files", "a cutout file without a WCS (and no local.pixel_scale)"),
    "truncated_file": ("input files", "a cutout file cut short in its data"),
    # killed writes (the process dies at a file-system step, as after SIGKILL)
    "killed_zarr_shard": ("killed writes", "fetch killed while writing a cutout shard"),
    "killed_parquet": ("killed writes", "measure killed while writing its features table"),
    "killed_catalogue": ("killed writes", "catalogue killed while writing any of its formats"),
    "killed_release": ("killed writes", "a release killed at every step of its assembly"),
    "full_disk": ("killed writes", "the disk fills while a Parquet table and a Zarr shard "
                  "are written (RLIMIT_FSIZE)"),
    # runs at once
    "manual_and_nightly": ("concurrency", "a nightly run starts while a manual run works"),
    "nightly_and_nightly": ("concurrency", "a second night starts while the first holds "
                            "its lock"),
    # hostile input
    "hostile_ids": ("hostile input", "object ids that are paths, shell and SQL text"),
    "hostile_paths": ("hostile input", "a results path out of the working directory and a "
                      "cache path with '..'"),
    "hostile_sql": ("hostile input", "SQL in an SDSS selection value and an extra column"),
    # archives
    "archive_timeout": ("archive", "the archive answers after the time-out, twice"),
    "archive_5xx": ("archive", "HTTP 503 then 502 from the archive"),
    "archive_dropped": ("archive", "the connection closes before an answer"),
    "archive_cut_body": ("archive", "the answer announced whole, half sent, connection closed"),
    "archive_truncated_file": ("archive", "a frame file delivered half long"),
    "archive_html": ("archive", "an HTML maintenance page where data was expected"),
}


def render_table(recorded: dict[str, dict]) -> str:
    """The Markdown page of ``recorded`` outcomes, in registry order."""
    lines = [
        "# Reliability",
        "",
        "What galcat does under each fault of its fault-injection suite (`tests/faults`,",
        "and the nightly tests). Written by the suite: `make reliability`. Every",
        "scenario's test asserts the two zero columns.",
        "",
        "| category | scenario | fault | what galcat did | objects lost | corrupted outputs |",
        "|---|---|---|---|---|---|",
    ]
    for name, (category, fault) in SCENARIOS.items():
        if name not in recorded:
            continue
        row = recorded[name]
        did = row["did"].replace("|", "\\|")
        lines.append(f"| {category} | `{name}` | {fault} | {did} | {row['objects_lost']} "
                     f"| {row['corrupted']} |")
    return "\n".join(lines) + "\n"
