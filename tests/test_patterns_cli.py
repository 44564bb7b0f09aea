"""`postmortem patterns ...` and `explain`: the discipline users get for their own signatures."""
import json

from click.testing import CliRunner

from postmortem.cli import cli

GOOD = '''schema = 1
id = "{id}"
category = "data"
severity = "error"
references = ["https://docs.python.org/3/library/exceptions.html"]

[match]
exception = ["ShardHeaderError"]

[en]
title = "A shard has no header"
symptom = "`{{message}}`"
cause = "The shard writer died before writing the header."
fix = "Rewrite the shard."
lesson = "**Validate shards when writing them.**"

[zh]
title = "分片缺少文件头"
symptom = "`{{message}}`"
cause = "写分片的进程在写文件头之前退出了。"
fix = "重新生成该分片。"
lesson = "**写分片时就校验。**"

[[example]]
expect = "{expect}"
log = """
Traceback (most recent call last):
  File "/home/u/proj/load.py", line 3, in <module>
    read()
ShardHeaderError: shard 3 has no header
"""
'''


def invoke(args):
    return CliRunner().invoke(cli, args, env={"POSTMORTEM_LANG": "en", "XDG_CONFIG_HOME": "/nonexistent"})


def test_check_reports_a_broken_toml_a_missing_key_and_a_failing_example(tmp_path):
    (tmp_path / "broken-toml.toml").write_text('schema = 1\nid = "broken-toml"\n[match\n')
    (tmp_path / "missing-key.toml").write_text(GOOD.format(id="missing-key", expect="match")
                                               .replace('category = "data"\n', ""))
    (tmp_path / "wrong-example.toml").write_text(GOOD.format(id="wrong-example", expect="no-match"))
    result = invoke(["patterns", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "broken-toml.toml: toml:" in result.output
    assert "missing-key.toml: category: missing" in result.output
    assert "wrong-example.toml: example[0]: matched at line" in result.output


def test_check_passes_a_good_folder(tmp_path):
    (tmp_path / "shard-header.toml").write_text(GOOD.format(id="shard-header", expect="match"))
    result = invoke(["patterns", "check", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 signature, 1 example, 0 problems" in result.output


def test_user_signature_is_used_by_scan_and_explain_names_its_file(tmp_path):
    (tmp_path / "shard-header.toml").write_text(GOOD.format(id="shard-header", expect="match"))
    log = tmp_path / "run.log"
    log.write_text('Traceback (most recent call last):\n  File "/w/load.py", line 3, in <module>\n'
                   "    read()\nShardHeaderError: shard 9 has no header\n")
    report = json.loads(invoke(["scan", str(log), "--patterns", str(tmp_path), "--format", "json"]).output)
    assert [i["signature"] for i in report["incidents"]] == ["shard-header"]
    explained = invoke(["explain", "shard-header", "--patterns", str(tmp_path)]).output
    assert str(tmp_path / "shard-header.toml") in explained


def test_a_broken_user_signature_is_one_line_with_file_and_key(tmp_path):
    (tmp_path / "bad.toml").write_text(GOOD.format(id="bad", expect="match").replace("[zh]", "[zz]"))
    result = invoke(["scan", "-", "--patterns", str(tmp_path)])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "Traceback" not in result.output


def test_explain_suggests_the_closest_id():
    result = invoke(["explain", "cuda-asert"])
    assert result.exit_code == 2
    assert "cuda-device-assert" in result.output


def test_patterns_list_json_has_both_languages_and_references():
    rows = json.loads(invoke(["patterns", "list", "--format", "json"]).output)
    assert len(rows) >= 45
    for row in rows:
        assert row["references"], row["id"]
        assert row["title"] and row["title_zh"], row["id"]
        assert row["examples"]["match"] >= 2 and row["examples"]["no-match"] >= 1, row["id"]


def test_a_catastrophic_user_regex_is_disabled_and_the_scan_goes_on(tmp_path):
    catastrophic = GOOD.format(id="slow-one", expect="match").replace(
        'exception = ["ShardHeaderError"]', "line = ['^(a|aa)+$']")
    catastrophic = catastrophic[:catastrophic.index("[[example]]")]
    (tmp_path / "slow-one.toml").write_text(catastrophic)
    log = tmp_path / "run.log"
    log.write_text("a" * 60 + "!\n" + 'Traceback (most recent call last):\n  File "/w/t.py", line 1, in <module>\n'
                   "    f()\nRuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::Half != float\n")
    result = invoke(["scan", str(log), "--patterns", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0
    assert "slow-one" in result.output and "skipped that line" in result.output  # the warning on stderr
    report = json.loads(result.output[result.output.index("{"):])
    assert [i["signature"] for i in report["incidents"]] == ["dtype-mismatch"]


def test_patterns_new_turns_an_unknown_into_a_signature_in_one_step(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("epoch 1 loss=0.4\n" 'Traceback (most recent call last):\n  File "/home/u/proj/load.py", line 3, in <module>\n'
                   "    read()\nflood.schema.EventSchemaError: event_23: rainfall has 412 steps but nodes have 433\n")
    [unknown] = json.loads(invoke(["scan", str(log), "--format", "json"]).output)["incidents"]
    assert unknown["signature"] == "unknown" and f"{log}:{unknown['line']}" in unknown["fix"]
    folder = tmp_path / "mine"
    result = invoke(["patterns", "new", "--from", f"{log}:{unknown['line']}", "--into", str(folder)])
    assert result.exit_code == 0, result.output
    starter = folder / "event-schema-error.toml"
    text = starter.read_text()
    assert "exception = [\"EventSchemaError\"]" in text and r"\d+" in text
    # Unfinished: no reference yet, so the check refuses it ...
    assert invoke(["patterns", "check", str(folder)]).exit_code == 1
    # ... and once written, it recognises the same error with other numbers.
    starter.write_text(text.replace("references = []", 'references = ["https://example.org/flood-schema"]'))
    assert invoke(["patterns", "check", str(folder)]).exit_code == 0
    other = tmp_path / "other.log"
    other.write_text('Traceback (most recent call last):\n  File "/home/u/proj/load.py", line 3, in <module>\n'
                     "    read()\nflood.schema.EventSchemaError: event_7: rainfall has 90 steps but nodes have 91\n")
    report = json.loads(invoke(["scan", str(other), "--patterns", str(folder), "--format", "json"]).output)
    assert [i["signature"] for i in report["incidents"]] == ["event-schema-error"]


def test_every_builtin_signature_passes_the_eager_checks():
    """The built-in knowledge base loads lazily (regexes compile on first use); here every
    regex compiles and every placeholder and group_by name has its capture."""
    from postmortem.knowledge import load_directory
    from postmortem.resources import patterns_dir

    for sig in load_directory(patterns_dir(), eager=True):
        for pattern in sig.message_patterns + sig.line_patterns + sig.exclude_patterns:
            assert pattern.compile() is not None, (sig.id, pattern.pattern)


def test_a_broken_signature_in_the_users_folder_is_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "config" / "postmortem" / "patterns"
    folder.mkdir(parents=True)
    (folder / "half-written.toml").write_text('schema = 1\nid = "half-written"\n')
    log = tmp_path / "run.log"
    log.write_text("RuntimeError: CUDA error: device-side assert triggered\n")
    result = CliRunner().invoke(
        cli, ["scan", str(log), "--format", "json"], env={"POSTMORTEM_LANG": "en", "XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert result.exit_code == 0, result.output
    assert "half-written.toml" in result.stderr and "skipped" in result.stderr
    assert [i["signature"] for i in json.loads(result.stdout)["incidents"]] == ["cuda-device-assert"]
    # a folder the user names on the command line is asked for: it stays strict
    strict = CliRunner().invoke(cli, ["scan", str(log), "--patterns", str(folder)],
                                                env={"POSTMORTEM_LANG": "en", "XDG_CONFIG_HOME": "/nonexistent"})
    assert strict.exit_code == 2 and "half-written.toml" in strict.stderr
