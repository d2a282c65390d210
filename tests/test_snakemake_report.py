"""Snakemake's own report of the tiny run: it builds, and every file it shows exists."""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

import pytest

from galcat.analysis import FIGURES as ANALYSIS_FIGURES
from galcat.report import figure_names
from tests.conftest import TINY, snakemake

pytestmark = pytest.mark.slow

#: How the report page refers to a file: its results' JSON ("data_uri") and HTML attributes.
REFERENCE = re.compile(r'"data_uri":\s*"([^"]+)"|\b(?:src|href)=[\'"]([^\'"#]+)[\'"]')


def references(text: str) -> list[str]:
    refs = [a or b for a, b in REFERENCE.findall(text)]
    return [r for r in refs if not re.match(r"(https?:|mailto:|javascript:)", r)]


def check_reference(ref: str, base: Path) -> bytes:
    """The bytes a reference points to (a data URI or a file under ``base``), non-empty."""
    if ref.startswith("data:"):
        data = base64.b64decode(ref.split(",", 1)[1]) if ";base64," in ref else ref.encode()
    else:
        path = base / ref
        assert path.is_file(), f"report references {ref!r}, missing under {base}"
        data = path.read_bytes()
    assert data, f"report references {ref[:60]!r}, which is empty"
    return data


def results(text: str) -> dict:
    """The results table Snakemake embeds (file name -> record with caption and data)."""
    records = {}
    for match in re.finditer(r'"name":\s*"([^"]+\.(?:png|html))".*?"data_uri":\s*"([^"]+)"', text):
        records[match.group(1)] = match.group(2)
    return records


@pytest.mark.parametrize("kind", ["zip", "html"])
def test_snakemake_report_builds_and_every_image_exists(tiny_run, tmp_path, kind):
    target = tmp_path / f"report.{kind}"
    snakemake(tiny_run, TINY, "--report", str(target))
    if kind == "zip":
        with zipfile.ZipFile(target) as archive:
            archive.extractall(tmp_path / "unzipped")
        page = tmp_path / "unzipped" / "report" / "report.html"
    else:
        page = target
    text = page.read_text()
    refs = references(text)
    found = results(text)
    expected = {f"{name}.png" for name in figure_names(truth=True)} | {"report.html"} | {
        f"{fig}.png" for figs in ANALYSIS_FIGURES.values() for fig in figs}
    assert expected <= set(found), f"missing from the report: {expected - set(found)}"
    for ref in refs:
        check_reference(ref, page.parent)
    for name in expected:
        data = check_reference(found[name], page.parent)
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        else:  # galcat's own page, inside Snakemake's: its images are embedded PNGs
            inner = data.decode()
            images = re.findall(r"src='data:image/png;base64,([^']+)'", inner)
            assert len(images) >= len(figure_names(truth=True))
            assert all(base64.b64decode(img)[:4] == b"\x89PNG" for img in images)
    # each figure carries its caption from workflow/report/
    captions = re.findall(r'"caption":\s*("(?:[^"\\]|\\.)*")', text)
    assert sum(1 for c in captions if json.loads(c).strip()) >= len(expected)
