"""The live smoke script (bench/live_archive_smoke.py) works: run against the fake
archive here, so that it does not rot while CI, being offline, never runs it live."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.archive.conftest import ROOT


def test_live_smoke_script_against_the_fake(fake):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "live_archive_smoke.py"), "--skyserver", fake.url,
         "--sas", f"{fake.url}/sas", "--mast", fake.url, "--timeout", "10"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["ok"] is True
    checks = result["live_archive_smoke"]
    assert checks["sdss_sql"]["rows"] == 3 and checks["sdss_sql"]["d4000_finite"] == 3
    assert checks["manga_drpall"]["range"] == "206"
    assert checks["jades_dr2"]["range"] == "206" and checks["jades_dr5"]["range"] == "206"
    assert checks["mast_portal"]["portal_requests"] == 4  # EXECUTING, then COMPLETE, twice
    assert [h["method"] for h in fake.hits("x_results.aspx")] == ["POST"]


def test_live_smoke_script_reports_a_failure(fake):
    fake.set_mode("photometry_v5.0", "norange")  # a DR5 catalogue served whole...
    fake.set_mode("x_results.aspx", "html")  # ...and SkyServer down for maintenance
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "live_archive_smoke.py"), "--skyserver", fake.url,
         "--sas", f"{fake.url}/sas", "--mast", fake.url, "--timeout", "10"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    checks = result["live_archive_smoke"]
    assert not checks["sdss_sql"]["ok"] and "maintenance" in checks["sdss_sql"]["error"]
    assert checks["jades_dr5"]["ok"] and checks["jades_dr5"]["range"] == "200 (Range ignored)"
    assert checks["jades_dr2"]["range"] == "206"
