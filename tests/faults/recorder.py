"""The fault-injection suite's recorder (a pytest plugin, loaded by tests/conftest.py so
that scenarios outside tests/faults, such as the nightly runs, record too).

Each test of a scenario of `tests.faults.scenarios.SCENARIOS` calls the `reliability`
fixture with the outcome it measured (it asserts the outcome too: nothing lost,
nothing corrupted). With ``GALCAT_RELIABILITY_DOC=path`` set, the session writes the
table of every recorded scenario to that path: ``make reliability`` regenerates
``docs/reliability.md`` this way, and `test_reliability_doc.py` checks the committed
page against the registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.scenarios import SCENARIOS, render_table

_RECORDED: dict[str, dict] = {}


@pytest.fixture
def reliability():
    """``record(scenario, did, *, objects_lost=0, corrupted=0)``: one row of the page."""

    def record(scenario: str, did: str, *, objects_lost: int = 0, corrupted: int = 0) -> None:
        if scenario not in SCENARIOS:
            raise KeyError(f"scenario {scenario!r} is not in tests/faults/scenarios.py")
        _RECORDED[scenario] = {"did": did, "objects_lost": int(objects_lost),
                               "corrupted": int(corrupted)}

    return record


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("GALCAT_RELIABILITY_DOC")
    if not target or not _RECORDED:
        return
    Path(target).write_text(render_table(_RECORDED))
