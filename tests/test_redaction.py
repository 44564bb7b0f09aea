"""Redaction: every secret of the corpus is gone from the draft, the JSON and the journal, each
replaced by what it was (`<redacted:hf-token>`); no near-miss (a commit hash, a UUID, a model id)
is touched."""
import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from postmortem.cli import cli
from postmortem.model import Frame, Recall, Report
from postmortem.redact import KEEP_FIELDS, redact_incident, redact_report, redact_text
from postmortem.scan import scan

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "redaction"
OPEN, CLOSE = "⟦", "⟧"


def read_cases(name):
    cases = []
    for number, line in enumerate((CORPUS / name).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            cases.append((number, line))
    return cases


def secret_cases():
    cases = []
    for number, line in read_cases("secrets.txt"):
        kind, text = (part.strip() for part in line.split("|", 1))
        text = text.replace("\\n", "\n")
        secrets = []
        plain = ""
        rest = text
        while OPEN in rest:
            before, after = rest.split(OPEN, 1)
            secret, rest = after.split(CLOSE, 1)
            plain += before + secret
            secrets.append(secret)
        plain += rest
        assert secrets, f"secrets.txt:{number}: no {OPEN}secret{CLOSE} marked"
        cases.append(pytest.param(kind, plain, secrets, id=f"{number}-{kind}"))
    return cases


SECRETS = secret_cases()
NEAR_MISSES = [pytest.param(line, id=f"{number}") for number, line in read_cases("near-misses.txt")]
KINDS = sorted({case.values[0] for case in SECRETS} - {"home"})


def expect_redacted(output: str, kind: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in output
    assert ("~" if kind == "home" else f"<redacted:{kind}>") in output


@pytest.mark.parametrize("kind, text, secrets", SECRETS)
def test_every_secret_is_replaced_by_its_kind(kind, text, secrets):
    expect_redacted(redact_text(text), kind, secrets)


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_no_near_miss_is_touched(line):
    assert redact_text(line) == line


def test_the_corpus_covers_every_kind_the_issue_names():
    kinds = {case.values[0] for case in SECRETS}
    assert {"hf-token", "openai-key", "anthropic-key", "aws-access-key", "aws-secret-key", "github-token",
            "wandb-key", "kaggle-key", "url-password", "url-token", "bearer-token", "private-key", "home"} <= kinds
    assert len(SECRETS) >= 50 and len(NEAR_MISSES) >= 50


# -- through the whole tool: md, json, journal ---------------------------------------------------
def traceback_log(cases) -> str:
    """One unknown exception per case, the case as its message, in a realistic traceback."""
    blocks = ["{'loss': 0.91, 'grad_norm': 1.2, 'learning_rate': 2e-05, 'epoch': 0.1}"]
    for index, text in enumerate(cases):
        blocks.append(
            "Traceback (most recent call last):\n"
            f'  File "/home/alice/proj/case_{index}.py", line {index + 1}, in <module>\n'
            "    run_checks()\n"
            f"flood.checks.Case{index}Error: {text}\n"
        )
    return "\n".join(blocks) + "\n"


@pytest.fixture(scope="module")
def secret_outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redaction")
    log = folder / "run.log"
    log.write_text(traceback_log([case.values[1] for case in SECRETS]), encoding="utf-8")
    env = {"POSTMORTEM_LANG": "en"}
    runner = CliRunner()
    markdown = runner.invoke(cli, ["scan", str(log)], env=env)
    as_json = runner.invoke(cli, ["scan", str(log), "--format", "json"], env=env)
    journal = folder / "review.md"
    review = runner.invoke(cli, ["review", str(log), "--journal", str(journal), "--date", "2026-02-06"], env=env)
    for result in (markdown, as_json, review):
        assert result.exit_code == 0, result.output
    return {"md": markdown.output, "json": as_json.output, "journal": journal.read_text(encoding="utf-8")}


@pytest.mark.parametrize("output", ["md", "json", "journal"])
def test_no_secret_reaches_any_output(secret_outputs, output):
    text = secret_outputs[output]
    if output == "json":  # compare the decoded strings, not their JSON escapes
        text = "\n".join(str(i["evidence"]) + str(i["location"]) for i in json.loads(text)["incidents"])
    leaked = [(case.id, secret) for case in SECRETS for secret in case.values[2] if secret in text]
    assert leaked == []
    assert "/home/alice" not in text and "~/proj/case_0.py" in text


@pytest.mark.parametrize("output", ["md", "json", "journal"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_named_in_every_output(secret_outputs, output, kind):
    text = secret_outputs[output]
    if output == "json":
        text = "\n".join(i["evidence"] for i in json.loads(text)["incidents"])
    assert f"<redacted:{kind}>" in text


@pytest.mark.parametrize("output", ["md", "json", "journal"])
def test_near_misses_come_out_as_they_went_in(tmp_path, output):
    lines = [case.values[0] for case in NEAR_MISSES]
    log = tmp_path / "run.log"
    log.write_text(traceback_log(lines), encoding="utf-8")
    env = {"POSTMORTEM_LANG": "en"}
    if output == "journal":
        journal = tmp_path / "review.md"
        result = CliRunner().invoke(cli, ["review", str(log), "--journal", str(journal), "--date", "2026-02-06"],
                                    env=env)
        text = journal.read_text(encoding="utf-8")
    else:
        result = CliRunner().invoke(cli, ["scan", str(log), "--format", output], env=env)
        text = result.output
    assert result.exit_code == 0, result.output
    if output == "json":
        text = "\n".join(i["evidence"] for i in json.loads(text)["incidents"])
    missing = [line for line in lines if line not in text]
    assert missing == []


def test_no_redact_keeps_everything(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(traceback_log(["export HF_TOKEN=hf_FAKExxTOKENxxFORxxTESTSxxONLYxx0002"]), encoding="utf-8")
    out = CliRunner().invoke(cli, ["scan", str(log), "--no-redact"], env={"POSTMORTEM_LANG": "en"}).output
    assert "hf_FAKExxTOKENxxFORxxTESTSxxONLYxx0002" in out and "/home/alice/proj" in out


# -- every field, including the ones added later -------------------------------------------------
SECRET = "hf_FAKExxTOKENxxFORxxTESTSxxONLYxx0009"


def _fill(value):
    """Every str inside `value` (dataclasses, tuples, dicts) replaced by a text holding SECRET."""
    if isinstance(value, str):
        return f"see {SECRET} in /home/alice/x"
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _fill(getattr(value, f.name)) for f in dataclasses.fields(value)
                                             if f.name not in KEEP_FIELDS})
    if isinstance(value, tuple):
        return tuple(_fill(v) for v in value)
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    return value


def _strings(value, path="incident"):
    if isinstance(value, str):
        yield path, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}[{key!r}]")


def test_every_text_field_of_an_incident_is_redacted_metrics_and_recalls_included():
    [incident] = scan(DATA / "formats" / "kaggle-nan.log", redact=False).incidents
    assert incident.metrics is not None
    incident = dataclasses.replace(
        incident, location=Frame("/home/alice/x.py", 3, "f", "x = 1"), context=("a", "b"),
        recalled=(Recall("mine", "2026-01-02", "t", "fix", "lesson", "review.md"),))
    filled = _fill(incident)
    redacted = redact_incident(filled)
    leaks = [path for path, text in _strings(redacted) if SECRET in text or "/home/alice" in text]
    assert leaks == []
    assert any("<redacted:hf-token>" in text for _, text in _strings(redacted))


def test_identifiers_of_ours_are_kept():
    [incident] = scan(DATA / "formats" / "kaggle-nan.log").incidents
    redacted = redact_incident(incident)
    for name in ("signature", "fingerprint", "category", "severity", "references"):
        assert getattr(redacted, name) == getattr(incident, name)


@pytest.mark.parametrize("path, expected", [
    ("/home/alice/proj/train.py", "~/proj/train.py"),
    ("/Users/bob", "~"),
    ("C:\\Users\\carol\\proj\\train.py", "~\\proj\\train.py"),
    ("C:/Users/erin/proj/out", "~/proj/out"),
    ("'C:\\\\Users\\\\dave\\\\AppData'", "'~\\\\AppData'"),
    ("/mnt/c/Users/frank/proj", "~/proj"),
    ("/root/proj/train.py", "/root/proj/train.py"),
])
def test_a_home_path_keeps_its_shape(path, expected):
    assert redact_text(path) == expected


def test_the_report_s_source_names_are_redacted():
    report = Report(("/home/alice/runs/run.log", "/root/run.log"), ())
    assert redact_report(report).sources == ("~/runs/run.log", "/root/run.log")
