"""Archive faults: every object of the query is staged despite time-outs, 5xx, dropped
connections, bodies cut short; a truncated file or an HTML page is an error naming the
object and URL, never a cached bad file."""

from __future__ import annotations

import pytest

from galcat.surveys import get_survey
from galcat.surveys._http import ArchiveError

pytestmark = pytest.mark.slow

RETRIED = {
    "archive_timeout": ("x_results.aspx", ("timeout", "timeout")),
    "archive_5xx": ("x_results.aspx", ("503", "502")),
    "archive_dropped": ("x_results.aspx", ("drop",)),
    "archive_cut_body": ("x_results.aspx", ("cut", "cut")),
}


@pytest.mark.parametrize("scenario", list(RETRIED))
def test_transient_faults_are_retried_and_nothing_is_lost(scenario, fake, make_config,
                                                          reliability):
    match, actions = RETRIED[scenario]
    expected = get_survey("sdss").query(make_config("sdss"))["object_id"].tolist()
    fake.reset()
    config = make_config("sdss", archive={"cache_dir": None})
    fake.add_fault(match, *actions)
    got = get_survey("sdss").query(config)["object_id"].tolist()
    lost = len(set(expected) - set(got))
    reliability(scenario, f"retried with back-off ({len(actions)} failed attempt(s)), "
                "then every object arrived", objects_lost=lost)
    assert lost == 0 and sorted(got) == sorted(expected)


@pytest.mark.parametrize(("scenario", "match", "action", "message"), [
    ("archive_truncated_file", "frame-g-", "truncate", "truncated"),
    ("archive_html", "frame-g-", "html", "HTML page"),
])
def test_bad_files_are_named_errors_and_never_cached(scenario, match, action, message, fake,
                                                     make_config, tmp_path, reliability):
    config = make_config("sdss", archive={"cache_dir": str(tmp_path / "cache"), "retries": 0})
    sdss = get_survey("sdss")
    rows = sdss.query(config)
    fake.set_mode(match, action)
    with pytest.raises(ArchiveError, match=message) as err:
        sdss.cutouts(rows.head(1), config)
    assert "frame-g-" in str(err.value)
    fake.reset()
    batch = sdss.cutouts(rows.head(1), config)  # the bad file was not cached
    assert batch.n_objects == 1
    reliability(scenario, "an error naming the file and URL, the shard job stops and "
                "reruns; the bad answer was never cached, the rerun staged the object")
