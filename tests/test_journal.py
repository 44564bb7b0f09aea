"""`postmortem review` and the journal: entries land under the right day, numbering goes on,
the same review twice changes nothing, and the user's file is never damaged."""
import datetime as dt
import os

import pytest
from click.testing import CliRunner

from postmortem import journal as journal_module
from postmortem.cli import cli
from postmortem.journal import (JournalChanged, JournalError, add_to_day, read_journal,
                                write_journal)
from postmortem.scan import scan_text

# A journal in the user's format (written for these tests): days at two heading levels, plain
# notes, a full entry with its hidden marker, a pasted Markdown block with its own numbering,
# and a page footer.
JOURNAL = """---
title: "复盘"
---

# Daily Review

## 20260301
1. 上午读论文，下午跑实验

2. 数据加载器卡死

* **错误现象**：`RuntimeError: DataLoader worker (pid 4121) is killed by signal: Bus error`。
* **解决方案**：把 `num_workers` 调到 2，容器加 `--shm-size=8g`。
* **经验教训**：**先查共享内存**。容器里 /dev/shm 默认很小。
<!-- postmortem: dataloader-shm 0a1b2c -->

3. 复盘模板
```markdown
1. 这个编号在代码块里
2. 不算数
```

# 20260302
1. 休息

---
"""

DTYPE_LOG = """{'loss': 1.204, 'grad_norm': 0.51, 'learning_rate': 2e-05, 'epoch': 0.1}
Traceback (most recent call last):
  File "/home/user/lora/train.py", line 187, in <module>
    main()
  File "/home/user/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/home/user/lora/tiny_lora.py", line 57, in forward
    base = F.linear(x, W_base)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
"""

EINSUM_LOG = """step 3/200 loss=2.113
Traceback (most recent call last):
  File "/home/user/lora/train.py", line 187, in <module>
    main()
  File "/home/user/lora/tiny_lora.py", line 38, in delta_weight
    R = torch.einsum('u,urr->rr', self.v, self.P)
  File "/home/user/venv/lib/python3.11/site-packages/torch/functional.py", line 407, in einsum
    return _VF.einsum(equation, operands)  # type: ignore[attr-defined]
RuntimeError: einsum(): output subscript r appears more than once in the output
"""

UNKNOWN_LOG = """epoch 0 step 12 loss=0.93
Traceback (most recent call last):
  File "/home/user/flood/predict.py", line 40, in <module>
    write_submission(preds)
  File "/home/user/flood/predict.py", line 31, in write_submission
    raise SubmissionFormatError("column water_level has 3 empty cells")
SubmissionFormatError: column water_level has 3 empty cells
"""

CLEAN_LOG = """step 200/200 loss=0.412
training done in 00:41:07
"""


@pytest.fixture
def env(tmp_path):
    # No developer's own learned signatures, no locale: the tests see the built-in knowledge base.
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "POSTMORTEM_LANG": "", "LC_ALL": "", "LANG": ""}


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env)


def review(args, env):
    """`postmortem review` in English (the fixture journal's own labels would choose Chinese)."""
    return invoke(["review", "--lang", "en", *args], env)


def write_logs(tmp_path, *texts):
    """Logs written one minute apart, in the order given (review orders them by mtime)."""
    paths = []
    base = dt.datetime(2026, 3, 1, 14, 0).timestamp()
    for index, text in enumerate(texts):
        path = tmp_path / f"attempt{index + 1}.log"
        path.write_text(text, encoding="utf-8")
        os.utime(path, (base + 60 * index, base + 60 * index))
        paths.append(str(path))
    return paths


def test_review_of_two_logs_adds_exactly_the_new_entries_under_the_day_with_continued_numbering(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    logs = write_logs(tmp_path, DTYPE_LOG, EINSUM_LOG)
    result = review([*logs, "--journal", str(journal), "--date", "2026-03-01"], env)
    assert result.exit_code == 0, result.stderr
    after = journal.read_text(encoding="utf-8")
    head, _, tail = JOURNAL.partition("# 20260302")
    # Everything before the insertion point and the whole next day are untouched.
    assert after.startswith(head.rstrip("\n"))
    assert after.endswith("# 20260302" + tail)
    added = after[len(head.rstrip("\n")):-len("# 20260302" + tail)]
    assert added.count("<!-- postmortem: ") == 3  # two entries and the attempts table
    assert "\n4. Mixed dtypes in one operation\n" in added
    assert "\n5. einsum equation does not fit its operands\n" in added
    assert "<!-- postmortem: dtype-mismatch " in added and "<!-- postmortem: einsum-subscript " in added
    assert "2 new entries under 20260301" in result.stderr


def test_a_second_identical_review_changes_no_byte(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    logs = write_logs(tmp_path, DTYPE_LOG, EINSUM_LOG)
    args = ["review", *logs, "--journal", str(journal), "--date", "2026-03-01"]
    assert invoke(args, env).exit_code == 0
    first = journal.read_bytes()
    stamp = journal.stat().st_mtime_ns
    result = invoke(args, env)
    assert result.exit_code == 0
    assert journal.read_bytes() == first
    assert journal.stat().st_mtime_ns == stamp  # not even rewritten
    assert "0 new entries" in result.stderr and "2 already there" in result.stderr


def test_a_new_incident_in_a_later_log_of_the_day_is_appended_after_the_others(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    first, second = write_logs(tmp_path, DTYPE_LOG, UNKNOWN_LOG)
    review([first, "--journal", str(journal), "--date", "2026-03-01"], env)
    review([first, second, "--journal", str(journal), "--date", "2026-03-01"], env)
    lines = journal_module.split_lines(journal.read_text(encoding="utf-8"))
    start, end = journal_module.find_day(lines, dt.date(2026, 3, 1))
    numbers = [n for _i, n in journal_module._items(lines, start, end)]
    markers = [sig for _i, sig, _fp in journal_module._markers(lines, start, end)]
    assert numbers == [1, 2, 3, 4, 5]
    assert markers == ["dataloader-shm", "dtype-mismatch", "unknown"]


def test_an_unknown_error_carries_a_visible_placeholder_not_invented_text(tmp_path, env):
    [log] = write_logs(tmp_path, UNKNOWN_LOG)
    result = review([log, "--date", "2026-03-01"], env)
    assert "SubmissionFormatError: column water_level has 3 empty cells" in result.stdout
    assert "**Fix**: _(to be written)_" in result.stdout
    assert "**Lesson**: _(to be written)_" in result.stdout


def test_without_a_journal_the_days_section_is_printed(tmp_path, env):
    [log] = write_logs(tmp_path, DTYPE_LOG)
    result = invoke(["review", log, "--date", "2026-03-01", "--lang", "zh"], env)
    assert result.exit_code == 0
    assert result.stdout.startswith("## 20260301\n\n1. 张量 dtype 不一致\n\n* **错误现象**：")


def test_the_day_defaults_to_the_day_the_newest_log_was_written(tmp_path, env):
    [log] = write_logs(tmp_path, DTYPE_LOG)
    assert review([log], env).stdout.startswith("## 20260301\n")


def test_a_day_without_a_heading_gets_one_at_the_end(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    [log] = write_logs(tmp_path, DTYPE_LOG)
    review([log, "--journal", str(journal), "--date", "2026-03-05"], env)
    after = journal.read_text(encoding="utf-8")
    assert after.startswith(JOURNAL)
    assert after[len(JOURNAL):].startswith("\n## 20260305\n\n1. Mixed dtypes in one operation\n")
    assert after.endswith("-->\n")


def test_a_missing_journal_is_created(tmp_path, env):
    journal = tmp_path / "new" / "review.md"
    journal.parent.mkdir()
    [log] = write_logs(tmp_path, DTYPE_LOG)
    assert review([log, "--journal", str(journal), "--date", "2026-03-01"], env).exit_code == 0
    assert journal.read_text(encoding="utf-8").startswith("## 20260301\n\n1. Mixed dtypes in one operation\n")


def test_a_crlf_journal_stays_crlf(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_bytes(JOURNAL.replace("\n", "\r\n").encode("utf-8"))
    logs = write_logs(tmp_path, DTYPE_LOG, EINSUM_LOG)
    assert review([*logs, "--journal", str(journal), "--date", "2026-03-01"], env).exit_code == 0
    data = journal.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") > JOURNAL.count("\n")


def test_a_gbk_journal_keeps_its_encoding(tmp_path, env):
    journal = tmp_path / "review.md"
    original = JOURNAL.encode("gb18030")
    journal.write_bytes(original)
    [log] = write_logs(tmp_path, DTYPE_LOG)
    result = invoke(["review", log, "--journal", str(journal), "--date", "2026-03-02"], env)
    assert result.exit_code == 0, result.stderr
    data = journal.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode("gb18030")
    assert "\n2. 张量 dtype 不一致\n" in text  # the journal's own labels chose Chinese
    assert data.startswith(original.partition("---\n".encode())[0])


def test_a_byte_order_mark_and_a_missing_final_newline_are_kept(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_bytes(b"\xef\xbb\xbf" + JOURNAL.rstrip("\n").encode("utf-8"))
    [log] = write_logs(tmp_path, DTYPE_LOG)
    review([log, "--journal", str(journal), "--date", "2026-03-09"], env)
    data = journal.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf---") and data.count(b"\xef\xbb\xbf") == 1
    assert not data.endswith(b"\n")


def test_numbers_inside_a_fenced_block_do_not_count():
    lines = journal_module.split_lines(JOURNAL)
    start, end = journal_module.find_day(lines, dt.date(2026, 3, 1))
    assert [n for _i, n in journal_module._items(lines, start, end)] == [1, 2, 3]


def test_a_journal_that_changed_after_it_was_read_is_refused_and_left_intact(tmp_path, kb):
    path = tmp_path / "review.md"
    path.write_text(JOURNAL, encoding="utf-8")
    current = read_journal(path)
    update = add_to_day(current.text, dt.date(2026, 3, 1), scan_text(DTYPE_LOG, kb=kb).incidents, "en")
    edited = JOURNAL + "\n4. 晚上补了一条笔记\n"
    path.write_text(edited, encoding="utf-8")  # the user saves in an editor meanwhile
    with pytest.raises(JournalChanged, match="changed on disk"):
        write_journal(current, update.text)
    assert path.read_text(encoding="utf-8") == edited
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.md"]  # no temp file, no backup


def test_a_journal_that_changes_during_the_write_is_refused_and_left_intact(tmp_path, kb, monkeypatch):
    path = tmp_path / "review.md"
    path.write_text(JOURNAL, encoding="utf-8")
    current = read_journal(path)
    update = add_to_day(current.text, dt.date(2026, 3, 1), scan_text(DTYPE_LOG, kb=kb).incidents, "en")
    real_fsync = os.fsync
    edited = JOURNAL.replace("1. 休息", "1. 休息，顺便整理了笔记")

    def fsync_while_the_user_saves(fd):
        # The editor's save lands after the new text is on disk, before the rename.
        path.write_text(edited, encoding="utf-8")
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync_while_the_user_saves)
    with pytest.raises(JournalChanged):
        write_journal(current, update.text)
    assert path.read_text(encoding="utf-8") == edited
    assert [p.name for p in tmp_path.iterdir()] == ["review.md"]


def test_a_successful_write_keeps_one_backup_of_the_previous_version(tmp_path, kb):
    path = tmp_path / "review.md"
    path.write_text(JOURNAL, encoding="utf-8")
    for log, text in ((DTYPE_LOG, JOURNAL), (EINSUM_LOG, None)):
        current = read_journal(path)
        update = add_to_day(current.text, dt.date(2026, 3, 1), scan_text(log, kb=kb).incidents, "en")
        write_journal(current, update.text)
        assert (tmp_path / "review.md.bak").read_text(encoding="utf-8") == current.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review.md", "review.md.bak"]


def test_a_file_that_is_not_text_is_refused_with_one_clear_line(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    [log] = write_logs(tmp_path, DTYPE_LOG)
    result = review([log, "--journal", str(journal)], env)
    assert result.exit_code == 2
    assert "not a text file" in result.stderr and result.stderr.count("\n") == 1
    assert journal.read_bytes().startswith(b"\x89PNG")


def test_a_utf8_journal_with_one_bad_byte_is_not_taken_for_gbk(tmp_path):
    path = tmp_path / "review.md"
    path.write_bytes(JOURNAL.encode("utf-8").replace("休息".encode(), b"\xff\xfe"))
    with pytest.raises(JournalError, match="not valid UTF-8 at byte"):
        read_journal(path)


def test_dry_run_prints_a_unified_diff_and_writes_nothing(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    [log] = write_logs(tmp_path, DTYPE_LOG)
    result = review([log, "--journal", str(journal), "--date", "2026-03-01", "--dry-run"], env)
    assert result.stdout.startswith(f"--- {journal}\n+++ {journal} (after review)\n@@ ")
    assert "+4. Mixed dtypes in one operation" in result.stdout
    assert journal.read_text(encoding="utf-8") == JOURNAL
    assert not (tmp_path / "review.md.bak").exists()


def test_attempts_of_the_same_problem_get_a_table_in_the_order_the_logs_were_written(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    # Written out of order: attempt2.log is the oldest.
    first, second, third = write_logs(tmp_path, EINSUM_LOG, DTYPE_LOG, CLEAN_LOG)
    os.utime(second, (os.stat(first).st_mtime - 600,) * 2)
    args = ["review", "--lang", "en", first, third, second, "--journal", str(journal), "--date", "2026-03-01"]
    assert invoke(args, env).exit_code == 0
    text = journal.read_text(encoding="utf-8")
    table = text[text.index("| Attempt |"):text.index("<!-- postmortem: attempts")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[1] for row in rows] == ["attempt2.log", "attempt1.log", "attempt3.log"]
    assert "failed: Mixed dtypes in one operation (see 4.)" in rows[0]
    assert "`RuntimeError: einsum(): output subscript r appears more than once in the output`" in rows[1]
    assert "no failure recognised" in rows[2]
    before = journal.read_bytes()
    invoke(args, env)
    assert journal.read_bytes() == before


def test_an_unedited_attempts_table_is_replaced_when_a_later_attempt_is_reviewed(tmp_path, env):
    journal = tmp_path / "review.md"
    journal.write_text(JOURNAL, encoding="utf-8")
    first, second, third = write_logs(tmp_path, DTYPE_LOG, EINSUM_LOG, DTYPE_LOG.replace("0.1}", "0.2}"))
    review([first, second, "--journal", str(journal), "--date", "2026-03-01"], env)
    review([first, second, third, "--journal", str(journal), "--date", "2026-03-01"], env)
    text = journal.read_text(encoding="utf-8")
    assert text.count("| Attempt |") == 1
    assert "| 3 | attempt3.log |" in text


def test_unrelated_logs_get_no_attempts_table(tmp_path, env):
    logs = write_logs(tmp_path, DTYPE_LOG, UNKNOWN_LOG)
    assert "| Attempt |" not in review([*logs, "--date", "2026-03-01"], env).stdout
