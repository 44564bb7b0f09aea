"""Run a signature's examples against a whole knowledge base: the discipline behind the test
suite and `postmortem patterns check`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .knowledge import Example, KnowledgeBase, Signature
from .model import Report
from .scan import scan_text

MATCH_MARKER = "#=MATCH=# "


@dataclass(frozen=True)
class ExampleResult:
    signature: str
    name: str  # "example[0]" or the log file's name
    expect: str
    failure: str | None  # None when the example holds

    @property
    def ok(self) -> bool:
        return self.failure is None


def check_example(sig: Signature, example: Example, kb: KnowledgeBase) -> ExampleResult:
    report = scan_text(example.log, kb=kb, redact=False)
    failure = judge(sig, example.expect, dict(example.vars), report, marked_line=None)
    return ExampleResult(sig.id, f"example[{example.index}]", example.expect, failure)


def check_log_file(sig: Signature, path: Path, kb: KnowledgeBase) -> ExampleResult:
    """`<id>/match-*.log` must match at its `#=MATCH=#` line; `<id>/nomatch-*.log` must not."""
    raw = path.read_text(encoding="utf-8")
    marked_line = None
    lines = raw.split("\n")
    for number, line in enumerate(lines, start=1):
        if line.startswith(MATCH_MARKER):
            lines[number - 1] = line[len(MATCH_MARKER):]
            marked_line = marked_line or number
    expect = "no-match" if path.name.startswith("nomatch") else "match"
    report = scan_text("\n".join(lines), kb=kb, source=path.name, redact=False)
    failure = judge(sig, expect, {}, report, marked_line)
    if expect == "match" and marked_line is None:
        failure = f"no line is marked with '{MATCH_MARKER.strip()}'"
    return ExampleResult(sig.id, path.name, expect, failure)


def judge(sig: Signature, expect: str, variables: dict[str, str], report: Report,
          marked_line: int | None) -> str | None:
    found = [i for i in report.incidents if i.signature == sig.id]
    if expect == "no-match":
        if found:
            return f"matched at line {found[0].line} although it must not: {found[0].evidence!r}"
        return None
    if not found:
        got = ", ".join(f"{i.signature} ({i.evidence!r})" for i in report.incidents) or "nothing"
        return f"did not match; the scan found {got}"
    incident = found[0]
    for name, value in variables.items():
        if incident.vars.get(name) != value:
            return f"var {name!r}: expected {value!r}, got {incident.vars.get(name)!r}"
    if marked_line is not None and all(i.line != marked_line for i in found):
        return f"matched at line {incident.line}, but the marked line is {marked_line}"
    allowed = {sig.id, *sig.related, *sig.explains}
    for other in report.incidents:
        if other.signature in allowed or other.explained_by is not None:
            continue
        return f"the log also gave {other.signature} ({other.evidence!r}), not declared in related/explains"
    return None


def example_logs(sig: Signature) -> list[Path]:
    folder = sig.path.parent / sig.id
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("match-*.log"), *folder.glob("nomatch-*.log")])


def check_signature(sig: Signature, kb: KnowledgeBase) -> list[ExampleResult]:
    results = [check_example(sig, ex, kb) for ex in sig.examples]
    results += [check_log_file(sig, path, kb) for path in example_logs(sig)]
    return results
