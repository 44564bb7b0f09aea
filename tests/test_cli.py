"""The command line as a user meets it: help, errors in one line, exit codes, languages."""
import json

from click.testing import CliRunner

from postmortem.cli import cli

DTYPE_LOG = '''{'loss': 1.2, 'grad_norm': 0.5, 'learning_rate': 2e-05, 'epoch': 0.1}
Traceback (most recent call last):
  File "/workspace/train.py", line 187, in <module>
    main()
  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/workspace/tiny_lora.py", line 57, in forward
    logits = self.score(hidden_states)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
'''


def invoke(args, input=None, env=None):
    return CliRunner().invoke(cli, args, input=input, env={"POSTMORTEM_LANG": "", "LC_ALL": "", "LANG": "",
                                                           **(env or {})})


def test_missing_file_is_one_line_and_exit_2(tmp_path):
    result = invoke(["scan", str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "nope.log" in result.output and "Traceback" not in result.output


def test_directory_without_logs_is_refused_with_exit_2(tmp_path):
    result = invoke(["scan", str(tmp_path)])  # a folder is searched for logs (test_batch.py)
    assert result.exit_code == 2
    assert "no logs found" in result.output


def test_exit_code_flag(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    assert invoke(["scan", str(log)]).exit_code == 0
    assert invoke(["scan", str(log), "--exit-code"]).exit_code == 1
    clean = tmp_path / "clean.log"
    clean.write_text("epoch 1 done\n")
    assert invoke(["scan", str(clean), "--exit-code"]).exit_code == 0


def test_zh_draft_has_the_journal_sections_and_the_in_app_location(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    out = invoke(["scan", str(log), "--lang", "zh"]).output
    for heading in ("**错误现象**：", "**根本原因**：", "**解决方案**：", "**经验教训**："):
        assert heading in out
    assert "`/workspace/tiny_lora.py:57`（`forward`）" in out


def test_language_defaults_to_the_locale(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    assert "**错误现象**" in invoke(["scan", str(log)], env={"LANG": "zh_CN.UTF-8"}).output
    assert "**Symptom**" in invoke(["scan", str(log)], env={"LANG": "en_US.UTF-8"}).output
    assert "**Symptom**" in invoke(["scan", str(log)], env={"LANG": "zh_CN.UTF-8", "POSTMORTEM_LANG": "en"}).output


def test_json_follows_the_contract(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    report = json.loads(invoke(["scan", str(log), "--format", "json"]).output)
    assert report["version"] == 1 and report["sources"] == [str(log)]
    [incident] = report["incidents"]
    assert set(incident) == {"signature", "title", "category", "severity", "count", "source", "line", "evidence",
                             "location", "vars", "symptom", "cause", "fix", "lesson", "references", "explained_by"}
    assert incident["signature"] == "dtype-mismatch"
    assert incident["line"] == 9
    assert incident["location"] == {"file": "/workspace/tiny_lora.py", "line": 57, "function": "forward"}
    assert incident["vars"] == {"left": "c10::BFloat16", "right": "float"}


def test_stdin_with_dash(tmp_path):
    result = invoke(["scan", "-", "--format", "json"], input=DTYPE_LOG)
    assert json.loads(result.output)["incidents"][0]["signature"] == "dtype-mismatch"


def test_clean_log_gives_empty_incidents(tmp_path):
    result = invoke(["scan", "-", "--format", "json"], input="step 1 loss=0.5\nall good, 0 errors\n")
    assert json.loads(result.output)["incidents"] == []


def test_output_file_is_never_silently_replaced(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    out = tmp_path / "draft.md"
    out.write_text("my notes")
    result = invoke(["scan", str(log), "-o", str(out)])
    assert result.exit_code == 2 and out.read_text() == "my notes"
    assert invoke(["scan", str(log), "-o", str(out), "--force"]).exit_code == 0
    assert "dtype-mismatch" in out.read_text()


def test_explain_suggests_close_ids():
    result = invoke(["explain", "dtype-mismach"])
    assert result.exit_code == 2
    assert "dtype-mismatch" in result.output


def test_explain_prints_every_section_in_zh():
    out = invoke(["explain", "dtype-mismatch", "--lang", "zh"]).output
    for heading in ("## 错误现象", "## 根本原因", "## 解决方案", "## 经验教训", "## 参考资料"):
        assert heading in out


def test_unknown_error_still_gives_exception_and_location():
    log = '''Traceback (most recent call last):
  File "/home/alice/proj/data.py", line 12, in load
    raise MyDatasetError("shard 3 has no header")
MyDatasetError: shard 3 has no header
'''
    report = json.loads(invoke(["scan", "-", "--format", "json"], input=log).output)
    [incident] = report["incidents"]
    assert incident["signature"] == "unknown"
    assert incident["evidence"] == "MyDatasetError: shard 3 has no header"
    assert incident["location"] == {"file": "~/proj/data.py", "line": 12, "function": "load"}
    assert "patterns new" in incident["fix"]
    # The message itself is the evidence, quoted once below the symptom, not twice.
    assert incident["symptom"] == "The run failed with `MyDatasetError`."


def test_every_command_teaches_by_example_and_the_list_is_not_cut():
    listing = invoke(["--help"]).output
    assert "..." not in listing.split("Commands:")[1]
    commands = [[name] for name in cli.commands if name != "patterns"]
    commands += [["patterns"]] + [["patterns", name] for name in cli.commands["patterns"].commands]
    for command in commands:
        text = invoke([*command, "--help"]).output
        examples = [line.strip() for line in text.splitlines() if line.startswith("  postmortem ")]
        assert any(line.startswith(" ".join(["postmortem", *command])) for line in examples), command


def test_output_into_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    for extra in ([], [str(log)]):  # one log, and several (the batch path)
        result = invoke(["scan", str(log), *extra, "-o", str(tmp_path / "no" / "draft.md")])
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "no such folder" in result.output


def test_empty_input_says_so_and_points_at_2_and_1(tmp_path):
    result = invoke(["scan"], input="")
    assert result.exit_code == 0
    assert "2>&1" in result.stderr and result.stderr.count("\n") == 1
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert "empty.log: the file is empty" in invoke(["scan", str(empty)]).stderr


def test_a_binary_file_is_named_as_such(tmp_path):
    blob = tmp_path / "model.bin"
    blob.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    result = invoke(["scan", str(blob)])
    assert result.exit_code == 0 and "NUL bytes" in result.stderr
    log = tmp_path / "run.log"
    log.write_text("epoch 1 done\n")
    assert invoke(["scan", str(log)]).stderr == ""


def test_explain_takes_the_id_in_any_case_or_with_underscores():
    result = invoke(["explain", "CUDA_OOM"])
    assert result.exit_code == 0 and result.output.startswith("# cuda-oom:")


def _main(monkeypatch, capsys, *args):
    from postmortem import cli as cli_module

    monkeypatch.setattr("sys.argv", ["postmortem", *args])
    try:
        cli_module.main()
    except SystemExit as exc:
        return exc.code, capsys.readouterr()
    raise AssertionError("main() always exits")


def test_usage_errors_are_one_line_from_the_installed_command(monkeypatch, capsys):
    status, captured = _main(monkeypatch, capsys, "scan", "--lang", "fr", "run.log")
    assert status == 2
    assert captured.err == ("Error: Invalid value for '--lang': 'fr' is not one of 'en', 'zh'. "
                            "Try `postmortem scan --help`.\n")
    status, captured = _main(monkeypatch, capsys, "--version")
    assert status == 0 and "postmortem" in captured.out


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys, tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("postmortem.cli.scan_cmd.scan", interrupted)
    status, captured = _main(monkeypatch, capsys, "scan", str(log))
    assert status == 130 and captured.err.strip() == "interrupted"


def test_review_counts_entries_in_english_that_reads(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(DTYPE_LOG)
    journal = tmp_path / "review.md"
    first = invoke(["review", str(log), "--journal", str(journal), "--date", "2026-02-06"])
    assert first.exit_code == 0 and "1 new entry under 20260206" in first.stderr
    again = invoke(["review", str(log), "--journal", str(journal), "--date", "2026-02-06"])
    assert "0 new entries under 20260206 (1 already there)" in again.stderr
