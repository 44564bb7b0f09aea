"""The start-up cache (cache.py): same signatures as a fresh load, and never a stale one."""
import os
import shutil
from pathlib import Path

import pytest

from postmortem import cache
from postmortem.knowledge import load_directory, resources

SIGNATURE = Path(resources.patterns_dir()) / "einsum-subscript.toml"


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("POSTMORTEM_NO_CACHE", raising=False)
    return tmp_path / "cache" / "postmortem"


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "patterns"
    target.mkdir()
    shutil.copy(SIGNATURE, target / SIGNATURE.name)
    return target


def entries(cache_home):
    return sorted(cache_home.glob("*.pickle")) if cache_home.is_dir() else []


def test_a_cached_load_gives_the_same_signatures_with_their_literals(cache_home, folder):
    first = load_directory(folder, eager=False)
    assert len(entries(cache_home)) == 1
    second = load_directory(folder, eager=False)
    assert repr(second) == repr(first) and second[0] is not first[0]
    assert [p.literals for p in second[0].message_patterns] == [p.literals for p in first[0].message_patterns]
    assert second[0].message_patterns[0].literals  # derived before caching, not on first use


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(cache_home, folder):
    path = folder / SIGNATURE.name
    assert load_directory(folder)[0].priority == 55
    stat = path.stat()
    path.write_text(path.read_text().replace("priority = 55", "priority = 56"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert load_directory(folder)[0].priority == 56
    assert len(entries(cache_home)) == 1  # the older entry of that folder is gone


def test_a_corrupt_entry_is_recomputed(cache_home, folder):
    load_directory(folder)
    [entry] = entries(cache_home)
    entry.write_bytes(b"not a pickle")
    entry.chmod(0o600)
    assert load_directory(folder)[0].id == "einsum-subscript"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_an_entry_others_can_write_is_not_trusted(cache_home, folder, monkeypatch):
    load_directory(folder)
    [entry] = entries(cache_home)
    entry.chmod(0o666)
    calls = []
    monkeypatch.setattr(cache, "_write", lambda *args: calls.append(args))
    load_directory(folder)
    assert calls, "the group/world-writable entry was used instead of being recomputed"


def test_no_cache_when_turned_off_or_unwritable(cache_home, folder, monkeypatch, tmp_path):
    monkeypatch.setenv("POSTMORTEM_NO_CACHE", "1")
    load_directory(folder)
    assert entries(cache_home) == []
    monkeypatch.delenv("POSTMORTEM_NO_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert load_directory(folder)[0].id == "einsum-subscript"
