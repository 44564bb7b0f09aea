"""Replacing a user's file (journal, report): the content in one step, the permissions kept."""
import os
import stat

import pytest

from postmortem.files import replace_atomically

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    journal = tmp_path / "review.md"
    journal.write_text("# 20260206\n")
    journal.chmod(0o640)
    replace_atomically(journal, b"# 20260206\n\n1. entry\n")
    assert journal.read_bytes() == b"# 20260206\n\n1. entry\n"
    assert mode(journal) == 0o640


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    old = os.umask(0o022)
    try:
        replace_atomically(tmp_path / "report.md", b"draft\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "report.md") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary file left behind
