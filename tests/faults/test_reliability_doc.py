"""docs/reliability.md, written by the fault suite (`make reliability`), reports every
registered scenario, and every one of them lost nothing and corrupted nothing."""

from __future__ import annotations

import re
from pathlib import Path

from tests.faults.scenarios import SCENARIOS

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
ROW = re.compile(r"^\| [^|]+ \| `(\w+)` \|.*\| (\d+) \| (\d+) \|$")


def test_the_page_reports_every_scenario_with_nothing_lost():
    rows = {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in map(ROW.match, DOC.read_text().splitlines()) if m}
    assert set(rows) == set(SCENARIOS), "regenerate it: make reliability"
    assert {name: counts for name, counts in rows.items() if counts != (0, 0)} == {}
