"""Fixtures of the fault suite: the fake archive and its configs (tests/archive)."""

from tests.archive.conftest import (  # noqa: F401 (fixtures shared with the archive tests)
    _server,
    archive_files,
    fake,
    local_config,
    local_dir,
    make_config,
    truth,
)
