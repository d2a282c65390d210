"""Atomic writes (galcat.atomic): whole outputs or none, and no leftovers."""

from __future__ import annotations

import pytest

from galcat.atomic import (
    atomic_directory,
    atomic_file,
    commit_directory,
    replacing_directory,
    replacing_file,
)


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_replacing_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    final = tmp_path / "sub" / "table.txt"
    with replacing_file(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".table.txt.tmp-")
        tmp.write_text("one")
        assert not final.exists()  # nothing under the final name while writing
    assert final.read_text() == "one"
    with pytest.raises(RuntimeError, match="killed"), replacing_file(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "one"
    assert _siblings(final) == ["table.txt"]


def test_replacing_directory_swaps_whole_directories(tmp_path):
    final = tmp_path / "group.zarr"
    with replacing_directory(final) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("old")
    with pytest.raises(ValueError), replacing_directory(final) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("new")
        raise ValueError
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    with replacing_directory(final) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["b"]  # no mixture of old and new
    assert _siblings(final) == ["group.zarr"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    final = tmp_path / "out.zarr"
    stale_dir = tmp_path / ".out.zarr.tmp-deadbeef"
    stale_dir.mkdir()
    (stale_dir / "chunk").write_text("x")
    (tmp_path / ".out.zarr.tmp-cafe0000").write_text("x")
    tmp = atomic_directory(final)
    assert _siblings(final) == []
    tmp.mkdir()
    commit_directory(tmp, final)
    assert _siblings(final) == ["out.zarr"]
    assert atomic_file(final).parent == tmp_path
