"""Run a signature's examples against a whole knowledge base: the discipline behind the test
suite and `postmortem patterns check`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .knowledge import Example, KnowledgeBase, Signature
from .model import Report
from .scan import scan_bytes, scan_text

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
    report = scan_text(example.log, kb=kb, redact=False, keep_hints=sig.role == "hint")
    failure = judge(sig, example.expect, dict(example.vars), report, None, _hints(kb))
    return ExampleResult(sig.id, f"example[{example.index}]", example.expect, failure)


def check_log_file(sig: Signature, path: Path, kb: KnowledgeBase) -> ExampleResult:
    """`<id>/match-*.log` must match at its `#=MATCH=#` line; `<id>/nomatch-*.log` must not."""
    # Bytes, not text: universal newlines would turn every progress-bar `\r` into a line.
    lines = path.read_bytes().split(b"\n")
    marker = MATCH_MARKER.encode()
    marked_line = None
    for number, line in enumerate(lines, start=1):
        if line.startswith(marker):
            lines[number - 1] = line[len(marker):]
            marked_line = marked_line or number
    expect = "no-match" if path.name.startswith("nomatch") else "match"
    report = scan_bytes(b"\n".join(lines), kb=kb, source=path.name, redact=False,
                        keep_hints=sig.role == "hint")
    failure = judge(sig, expect, {}, report, marked_line, _hints(kb))
    if expect == "match" and marked_line is None:
        failure = f"no line is marked with '{MATCH_MARKER.strip()}'"
    return ExampleResult(sig.id, path.name, expect, failure)


def judge(sig: Signature, expect: str, variables: dict[str, str], report: Report,
          marked_line: int | None, hints: frozenset[str] = frozenset()) -> str | None:
    # A learned signature rides along on the built-in incident it shares evidence with.
    found = [i for i in report.incidents
             if i.signature == sig.id or any(r.signature == sig.id for r in i.recalled)]
    if expect == "no-match":
        if found:
            return f"matched at line {found[0].line} although it must not: {found[0].evidence!r}"
        return None
    if not found:
        got = ", ".join(f"{i.signature} ({i.evidence!r})" for i in report.incidents) or "nothing"
        return f"did not match; the scan found {got}"
    incident = found[0]
    for name, value in variables.items():
        if all(i.vars.get(name) != value for i in found):
            return f"var {name!r}: expected {value!r}, got {incident.vars.get(name)!r}"
    if marked_line is not None and all(i.line != marked_line for i in found):
        return f"matched at line {incident.line}, but the marked line is {marked_line}"
    allowed = {sig.id, *sig.related, *sig.explains}
    for other in report.incidents:
        if other.signature in allowed or other.explained_by is not None or other in found:
            continue
        if other.signature in hints:
            continue  # a harmless warning that may stand in any log that fails
        return f"the log also gave {other.signature} ({other.evidence!r}), not declared in related/explains"
    return None


def _hints(kb: KnowledgeBase) -> frozenset[str]:
    return frozenset(s.id for s in kb.signatures if s.role == "hint")


def example_logs(sig: Signature) -> list[Path]:
    folder = sig.path.parent / sig.id
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("match-*.log"), *folder.glob("nomatch-*.log")])


def check_signature(sig: Signature, kb: KnowledgeBase) -> list[ExampleResult]:
    results = [check_example(sig, ex, kb) for ex in sig.examples]
    results += [check_log_file(sig, path, kb) for path in example_logs(sig)]
    return results
