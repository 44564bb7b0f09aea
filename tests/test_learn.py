"""`postmortem learn`: the user's own journal entries become personal signatures, and the next
draft for the same error starts with what the user wrote then."""
import tomllib
from pathlib import Path

import pytest
import regex
from click.testing import CliRunner

from postmortem.cli import cli
from postmortem.knowledge import SignatureError, compile_signature, load_knowledge_base
from postmortem.learn import generalise_message, learn_journal
from postmortem.scan import scan_text

# A journal in the user's format, written for these tests.
JOURNAL = """# Daily Review

## 20260301
1. 上午看了 GRU 的论文

2. 门控单元的输入维度

* **错误现象**：`RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x128 and 64x64)`，出现在 `cell.py`。
* **解决方案**：门控的输入是 `torch.cat([x, h])`，线性层的 `in_features` 要写 `input_dim + hidden_dim`。
* **经验教训**：**拼接之后重新数维度**。每次 `cat` 之后把形状写在注释里。

3. 读取事件文件失败

* **错误现象**：
  - `FileNotFoundError: [Errno 2] No such file or directory: '/data/flood/test/event_17/nodes.csv'`
  - 路径是按训练集拼的。
* **根本原因**：`raw_dir` 写死成了 train 目录。
* **解决方案**：给 Dataset 加 `split` 参数，由它决定 `raw_dir`。
* **经验教训**：**路径跟着参数走**。

4. 换了一个包

* **错误现象**：安装 `geopandas` 一直卡在 solving environment。
* **解决方案**：不用它了。
* **经验教训**：**少一个依赖少一分麻烦**。

# 20260302

1. Submission rejected

* **Symptom**: `ValueError: Submission has 48213 null values in column water_level`
* **Fix**: Clamped the rollout with `torch.nan_to_num` and checked `df.isna().sum()` before writing.
* **Lesson**: **Check the file you submit, not only the loss.**

2. 推理被杀

* **错误现象**：`Killed`
* **解决方案**：每个事件算完立刻写 CSV，不再攒在列表里。
* **经验教训**：**内存按有限来设计**。
"""

GRU_LOG = """epoch 3 step 120 loss=0.377
Traceback (most recent call last):
  File "/home/user/flood/train.py", line 88, in <module>
    out, h = model(x, h)
  File "/home/user/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/home/user/flood/cell.py", line 41, in forward
    z = torch.sigmoid(self.lin_z(torch.cat([x, h], dim=-1)))
  File "/home/user/venv/lib/python3.11/site-packages/torch/nn/modules/linear.py", line 125, in forward
    return F.linear(input, self.weight, self.bias)
RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x256 and 128x128)
"""


@pytest.fixture
def env(tmp_path):
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "POSTMORTEM_LANG": "", "LC_ALL": "", "LANG": ""}


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / "review.md"
    path.write_text(JOURNAL, encoding="utf-8")
    return path


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env)


def learned_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.toml"))}


def test_learn_writes_one_signature_per_quoted_error_and_reports_what_it_skipped(tmp_path, journal, env):
    into = tmp_path / "learned"
    result = invoke(["learn", str(journal), "--into", str(into)], env)
    assert result.exit_code == 0, result.stderr
    assert list(learned_files(into)) == [
        "learned-review-20260301-2.toml", "learned-review-20260301-3.toml",
        "learned-review-20260302-1.toml", "learned-review-20260302-2.toml",
    ]
    assert result.stdout.startswith("4 learned, 0 updated, 0 unchanged, 0 removed, 1 skipped")
    assert "skipped  2026-03-01 4. 换了一个包: no error quoted" in result.stderr


def test_learned_signatures_pass_patterns_check(tmp_path, journal, env):
    into = tmp_path / "learned"
    invoke(["learn", str(journal), "--into", str(into)], env)
    result = invoke(["patterns", "check", str(into)], env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "4 signatures, 4 examples, 0 problems"


def test_a_learned_signature_keeps_the_type_generalises_the_message_and_quotes_the_user(tmp_path, journal):
    into = tmp_path / "learned"
    learn_journal(journal, into)
    raw = tomllib.loads((into / "learned-review-20260301-3.toml").read_text(encoding="utf-8"))
    assert raw["match"]["exception"] == ["FileNotFoundError"]
    [message] = raw["match"]["message"]
    assert regex.search(message, "[Errno 2] No such file or directory: '/data/flood/test/event_3/edges.csv'")
    assert raw["learned"] == {"date": "2026-03-01", "journal": str(journal.resolve()), "entry": 3,
                              "quote": "FileNotFoundError: [Errno 2] No such file or directory: "
                                       "'/data/flood/test/event_17/nodes.csv'"}
    for lang in ("en", "zh"):
        assert raw[lang]["fix"] == "给 Dataset 加 `split` 参数，由它决定 `raw_dir`。"
        assert raw[lang]["lesson"] == "**路径跟着参数走**。"
        assert raw[lang]["cause"] == "`raw_dir` 写死成了 train 目录。"
    assert raw["references"] == []
    assert raw["example"] == [{"expect": "match", "log": raw["learned"]["quote"] + "\n"}]


def test_an_entry_without_a_cause_says_so_visibly(tmp_path, journal):
    into = tmp_path / "learned"
    learn_journal(journal, into)
    raw = tomllib.loads((into / "learned-review-20260301-2.toml").read_text(encoding="utf-8"))
    assert raw["en"]["cause"] == "_(not written in the journal entry)_"
    assert raw["zh"]["cause"] == "_（日记条目中没有写）_"


@pytest.mark.parametrize("quoted, other, unrelated", [
    ("mat1 and mat2 shapes cannot be multiplied (32x128 and 64x64)",
     "mat1 and mat2 shapes cannot be multiplied (8x3072 and 768x10)",
     "expected mat1 and mat2 to have the same dtype, but got: float != c10::Half"),
    ("CUDA error: an illegal memory access was encountered at 0x7f3a2c000000",
     "CUDA error: an illegal memory access was encountered at 0x55d1e0",
     "CUDA error: device-side assert triggered"),
    ("The size of tensor a (128) must match the size of tensor b (64) at non-singleton dimension 1",
     "The size of tensor a (7) must match the size of tensor b (3) at non-singleton dimension 0",
     "The size of tensor a must match"),
    ("Expected input batch_size (64) to match target batch_size (32).",
     "Expected input batch_size (16) to match target batch_size (4).",
     "Expected input batch_size to match"),
    ("shape '[-1, 784]' is invalid for input of size 3000",
     "shape '[-1, 784]' is invalid for input of size 6272",
     "shape is invalid"),
    ("add_self_loops attribute set to True...",
     "'add_self_loops' attribute set to True; GATv2Conv(16, 16) does not support it on bipartite graphs",
     "add_self_loops=False"),
])
def test_generalised_messages_match_other_numbers_paths_and_shapes_but_not_other_errors(quoted, other, unrelated):
    pattern = generalise_message(quoted)
    assert regex.search(pattern, quoted)
    assert regex.search(pattern, other) or quoted.startswith("add_self_loops")
    assert not regex.search(pattern, unrelated)


def test_learning_the_same_journal_twice_changes_nothing(tmp_path, journal, env):
    into = tmp_path / "learned"
    invoke(["learn", str(journal), "--into", str(into)], env)
    before = learned_files(into)
    stamps = {p.name: p.stat().st_mtime_ns for p in into.iterdir()}
    result = invoke(["learn", str(journal), "--into", str(into)], env)
    assert result.stdout.startswith("0 learned, 0 updated, 4 unchanged, 0 removed")
    assert learned_files(into) == before
    assert {p.name: p.stat().st_mtime_ns for p in into.iterdir()} == stamps


def test_an_edited_entry_updates_its_signature_and_a_withdrawn_quote_removes_it(tmp_path, journal, env):
    into = tmp_path / "learned"
    invoke(["learn", str(journal), "--into", str(into)], env)
    edited = JOURNAL.replace("由它决定 `raw_dir`。", "由它决定 `raw_dir`，测试集单独一个目录。")
    edited = edited.replace("`ValueError: Submission has 48213 null values in column water_level`",
                            "null values again (I forgot to copy the message)")
    journal.write_text(edited, encoding="utf-8")
    result = invoke(["learn", str(journal), "--into", str(into)], env)
    assert result.stdout.startswith("0 learned, 1 updated, 2 unchanged, 1 removed, 2 skipped")
    assert "测试集单独一个目录" in (into / "learned-review-20260301-3.toml").read_text(encoding="utf-8")
    assert not (into / "learned-review-20260302-1.toml").exists()


def test_a_later_scan_shows_the_users_own_fix_first_above_the_built_in_write_up(tmp_path, journal, env):
    into = tmp_path / "learned"
    invoke(["learn", str(journal), "--into", str(into)], env)
    log = tmp_path / "train.log"
    log.write_text(GRU_LOG, encoding="utf-8")
    out = invoke(["scan", str(log), "--patterns", str(into)], env).stdout
    recall = out.index("* **You met this on 2026-03-01** (“门控单元的输入维度”, review.md):")
    assert out.index("Your fix then: 门控的输入是 `torch.cat([x, h])`") > recall
    assert recall < out.index("* **Symptom**") < out.index("* **Cause**")
    # The built-in signature keeps the incident (and its fingerprint): its write-up follows.
    assert "<!-- postmortem: shape-mismatch " in out
    assert "**Lesson**: **" in out and "拼接之后重新数维度" in out


def test_learned_signatures_in_the_users_folder_are_used_without_flags(tmp_path, journal, env):
    invoke(["learn", str(journal)], env)  # default: $XDG_CONFIG_HOME/postmortem/patterns/learned/
    assert (tmp_path / "config" / "postmortem" / "patterns" / "learned" / "learned-review-20260301-2.toml").exists()
    log = tmp_path / "train.log"
    log.write_text(GRU_LOG, encoding="utf-8")
    assert "You met this on 2026-03-01" in invoke(["scan", str(log)], env).stdout


def test_an_error_only_the_user_knows_becomes_an_incident_of_its_own(tmp_path, journal):
    into = tmp_path / "learned"
    learn_journal(journal, into)
    kb = load_knowledge_base([into], include_user=False)
    log = "writing submission.csv\nValueError: Submission has 17 null values in column water_level\n"
    [incident] = scan_text(log, kb=kb).incidents
    assert incident.signature == "learned-review-20260302-1"
    assert incident.title == "Submission rejected"
    assert incident.fix.startswith("Clamped the rollout with `torch.nan_to_num`")
    assert [r.signature for r in incident.recalled] == ["learned-review-20260302-1"]


def test_reviewing_again_after_learning_adds_no_duplicate_entry(tmp_path, journal, env):
    log = tmp_path / "train.log"
    log.write_text(GRU_LOG, encoding="utf-8")
    review = ["review", str(log), "--journal", str(journal), "--date", "2026-03-03"]
    invoke(review, env)
    before = journal.read_bytes()
    invoke(["learn", str(journal)], env)
    invoke(review, env)
    assert journal.read_bytes() == before


LEARNED_TOML = """
schema = 1
id = "learned-review-20260301-2"
category = "learned"
severity = "error"
references = []

[learned]
date = "2026-03-01"
journal = "/home/user/review.md"
entry = 2

[match]
exception = ["RuntimeError"]
message = ['mat1\\s+and\\s+mat2\\s+shapes\\s+cannot\\s+be\\s+multiplied']

[en]
title = "t"
symptom = "s"
cause = "c"
fix = "f"
lesson = "l"

[zh]
title = "t"
symptom = "s"
cause = "c"
fix = "f"
lesson = "l"
"""


def test_only_a_learned_signature_may_go_without_references(tmp_path):
    path = tmp_path / "learned-review-20260301-2.toml"
    signature = compile_signature(tomllib.loads(LEARNED_TOML), path)
    assert signature.learned.date == "2026-03-01" and signature.references == ()
    built_in = tomllib.loads(LEARNED_TOML)
    del built_in["learned"]
    with pytest.raises(SignatureError, match="references"):
        compile_signature(built_in, path)
    bad_date = tomllib.loads(LEARNED_TOML)
    bad_date["learned"]["date"] = "20260301"
    with pytest.raises(SignatureError, match="learned.date"):
        compile_signature(bad_date, path)


def test_a_learned_signature_is_refused_in_the_built_in_knowledge_base(tmp_path, monkeypatch):
    from postmortem import resources

    (tmp_path / "learned-review-20260301-2.toml").write_text(LEARNED_TOML, encoding="utf-8")
    monkeypatch.setattr(resources, "patterns_dir", lambda: tmp_path)
    with pytest.raises(SignatureError, match="belongs in the user's"):
        load_knowledge_base(include_user=False)
