"""Reports out: Markdown drafts (jinja2 templates, en or zh) and the JSON contract."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import jinja2
import regex

from . import resources
from .cache import template_bytecode_cache
from .model import Incident, Report
from .texts import ui_strings

JSON_VERSION = 1
ITEM_INDENT = "  "  # continuation lines of a Markdown list item
# A line that starts a Markdown block of its own: never joined to the line before it.
BLOCK_START_RE = regex.compile(r"^(?:[-*+] |\d+[.)] |#|>|\||```)")


@dataclass(frozen=True)
class Entry:
    incident: Incident
    number: int
    cause_number: int | None


def _continue_item(text: object) -> str:
    """Indent every line after the first, so multi-line text stays inside its list item."""
    lines = str(text).split("\n")
    return "\n".join([lines[0]] + [ITEM_INDENT + line if line.strip() else "" for line in lines[1:]])


def _unwrap(text: object) -> str:
    """Join the soft line breaks of prose paragraphs; keep code, lists and blank lines as they are.

    Signature texts are wrapped at ~100 columns in their TOML files. In a journal that is one line
    per bullet, and a Markdown renderer turns each soft break into a space, which in Chinese reads
    as a stray gap: `要求所有浮点操作数的 dtype` must not become `要求所有浮点操作数的\ndtype`.
    """
    out: list[str] = []
    in_code = False
    for line in str(text).split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            out.append(line)
            continue
        previous = out[-1] if out else ""
        joinable = (
            not in_code and stripped and previous.strip() and not previous.strip().startswith("```")
            and not BLOCK_START_RE.match(stripped)
        )
        if joinable:
            out[-1] = previous.rstrip() + _joiner(previous.rstrip()[-1:], stripped[:1]) + stripped
        else:
            out.append(line)
    return "\n".join(out)


def _joiner(left: str, right: str) -> str:
    # Chinese runs on without spaces, and full-width punctuation needs none; between Chinese and
    # Latin text (`的 dtype`) and between Latin words a space stays, as the texts are written.
    if _is_cjk_punctuation(left) or _is_cjk_punctuation(right):
        return ""
    return "" if _is_cjk(left) and _is_cjk(right) else " "


def _is_cjk(char: str) -> bool:
    return bool(char) and "\u2e80" <= char <= "\u9fff"


def _is_cjk_punctuation(char: str) -> bool:
    return bool(char) and ("\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef")


def _capitalize_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _table_cell(text: object) -> str:
    """Text that stays inside one cell of a Markdown table: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code_span(text: object) -> str:
    """`text` as an inline code span, with enough backticks around it to hold its own."""
    text = str(text)
    ticks = "`"
    while ticks in text:
        ticks += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


@cache
def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        bytecode_cache=template_bytecode_cache(),
    )
    env.filters["continue_item"] = _continue_item
    env.filters["capitalize_first"] = _capitalize_first
    env.filters["unwrap"] = _unwrap
    env.filters["table_cell"] = _table_cell
    env.filters["code_span"] = _code_span
    return env


def numbered_entries(incidents: tuple[Incident, ...] | list[Incident], start: int = 1) -> list[Entry]:
    numbers: dict[str, int] = {}
    entries = []
    for offset, incident in enumerate(incidents):
        number = start + offset
        numbers.setdefault(incident.signature, number)
        cause = numbers.get(incident.explained_by) if incident.explained_by else None
        entries.append(Entry(incident, number, cause))
    return entries


def render_markdown(report: Report) -> str:
    template = template_environment().get_template("report.md.j2")
    text = template.render(
        s=ui_strings(report.lang), sources=list(report.sources), entries=numbered_entries(report.incidents)
    )
    return text.rstrip("\n") + "\n"


def render_entry(incident: Incident, number: int, lang: str, cause_number: int | None = None) -> str:
    """One journal entry, as `review` writes it into the journal."""
    template = template_environment().get_template("incident.md.j2")
    return template.render(s=ui_strings(lang), i=incident, n=number, cause_number=cause_number).strip("\n")


def render_attempts(attempts, entry_numbers: dict[str, int], lang: str) -> str:
    """The attempts table of a day (journal.Attempt rows, oldest log first)."""
    template = template_environment().get_template("attempts.md.j2")
    rows = [(a, entry_numbers.get(a.fingerprint)) for a in attempts]
    return template.render(s=ui_strings(lang), rows=rows).strip("\n")


def incident_to_dict(incident: Incident) -> dict:
    location = None
    if incident.location is not None:
        location = {"file": incident.location.filename, "line": incident.location.lineno,
                    "function": incident.location.name}
    return {
        "signature": incident.signature, "title": incident.title, "category": incident.category,
        "severity": incident.severity, "count": incident.count, "source": incident.source,
        "line": incident.line, "evidence": incident.evidence, "location": location,
        "vars": dict(incident.vars), "symptom": incident.symptom, "cause": incident.cause,
        "fix": incident.fix, "lesson": incident.lesson, "references": list(incident.references),
        "explained_by": incident.explained_by,
    }


def render_json(report: Report) -> str:
    payload = {
        "version": JSON_VERSION,
        "sources": list(report.sources),
        "incidents": [incident_to_dict(i) for i in report.incidents],
    }
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
