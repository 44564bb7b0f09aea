"""`postmortem patterns new --from LOG:LINE`: a starter signature for an error we do not know.

The error at that line becomes the match (the exception type kept, its message generalised the
way `learn` does it: numbers, paths, hex and shapes become wildcards), the lines around it
become the first example, and the texts and references are left for the user to write:
`patterns check` refuses the file until they are, so a starter cannot pass for a finished one.
"""
from __future__ import annotations

import regex

from .knowledge import ID_RE, KnowledgeBase
from .learn import generalise_message
from .model import Incident
from .scan import scan_bytes
from .toml_write import toml_regex, toml_string, toml_text

EXAMPLE_LINES_BEFORE = 12  # noise kept before the evidence in the example log
EXAMPLE_LINES_AFTER = 2
TO_WRITE = "TODO: write this"
SLUG_RE = regex.compile(r"(?<=[a-z0-9])(?=[A-Z])|[^A-Za-z0-9]+")


class StarterError(Exception):
    """One line saying why no starter could be made."""


def starter_signature(data: bytes, source: str, line: int, kb: KnowledgeBase, sig_id: str | None = None) -> tuple[str, str]:
    """(id, TOML text) of a starter signature for the failure reported at `line` of the log."""
    report = scan_bytes(data, kb=kb, source=source, redact=False, keep_hints=True)
    incident = _incident_at(report.incidents, line)
    lines = data.decode("utf-8", errors="replace").split("\n")
    if incident is None:
        if not 1 <= line <= len(lines) or not lines[line - 1].strip():
            raise StarterError(f"{source}:{line}: no error there (the line is empty or past the end)")
        exception, message, evidence_line = "", lines[line - 1].strip(), line
    else:
        exception, _, message = incident.evidence.partition(": ")
        exception, evidence_line = exception.strip(), incident.line
        if " " in exception:  # a plain line, not "Type: message"
            exception, message = "", incident.evidence
    sig_id = sig_id or _slug(exception or message)
    if not ID_RE.match(sig_id):
        raise StarterError(f"--id {sig_id!r}: use lowercase words joined by '-', e.g. 'shard-header-missing'")
    if kb.get(sig_id) is not None:
        raise StarterError(f"--id {sig_id}: a signature with that id exists already ({kb.get(sig_id).path})")
    start = max(0, evidence_line - 1 - EXAMPLE_LINES_BEFORE)
    excerpt = "\n".join(lines[start:evidence_line + EXAMPLE_LINES_AFTER]).strip("\n") + "\n"
    return sig_id, _render(sig_id, exception, message, excerpt)


def _incident_at(incidents: tuple[Incident, ...], line: int) -> Incident | None:
    exact = [i for i in incidents if i.line == line]
    if exact:
        return exact[0]
    # A line inside a traceback stands for the exception the traceback ends with.
    after = [i for i in incidents if i.line >= line and i.signature == "unknown"]
    return min(after, key=lambda i: i.line) if after and min(i.line for i in after) - line < 80 else None


def _slug(text: str) -> str:
    words = [w.lower() for w in SLUG_RE.split(text.split(":")[0].split(".")[-1]) if w]
    return "-".join(words[:5]) or "my-error"


def _render(sig_id: str, exception: str, message: str, excerpt: str) -> str:
    first_line = message.split("\n", 1)[0].strip()
    lines = [
        "# Starter written by `postmortem patterns new`. Fill in every TODO and at least one",
        "# reference (the docs, release note or upstream issue behind the fix), then run",
        "# `postmortem patterns check <this folder>`; add a no-match example (a near miss).",
        "schema = 1",
        f"id = {toml_string(sig_id)}",
        'category = "TODO"',
        'severity = "error"',
        "priority = 50",
        'status = "preview"',
        "references = []",
        "",
        "[match]",
    ]
    if exception:
        lines.append(f"exception = [{toml_string(exception.split('.')[-1])}]")
        if first_line:
            lines.append(f"message = [{toml_regex(generalise_message(first_line))}]")
    else:
        lines.append(f"line = [{toml_regex(generalise_message(first_line))}]")
    symptom = "`{exception}`: {message}" if exception else "`{message}`"
    for lang in ("en", "zh"):
        lines += ["", f"[{lang}]"]
        for key in ("title", "symptom", "cause", "fix", "lesson"):
            lines.append(f"{key} = {toml_string(symptom if key == 'symptom' else TO_WRITE)}")
    lines += ["", "[[example]]", 'expect = "match"', f"log = {toml_text(excerpt)}"]
    return "\n".join(lines) + "\n"
