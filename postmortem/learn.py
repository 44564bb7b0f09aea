"""Learn from the user's own journal: each entry that quotes an error becomes a personal signature.

An entry whose symptom (错误现象 / Symptom) quotes an error in a code span, e.g.
`RuntimeError: Trying to backward through the graph a second time`, becomes
`learned/learned-<journal>-<YYYYMMDD>-<n>.toml`: the exception type kept, the message generalised
(numbers, paths, hex addresses and shapes become wildcards, the words stay), the user's own fix
and lesson as its texts, and the quoted line as its example. The journal is the source of truth:
learning again rewrites what changed, leaves the rest byte for byte, and removes the signatures
of entries that no longer quote an error.

A quote counts as an error when it reads like an exception (`SomeError: message`, a bare
`FileNotFoundError`), or when the built-in knowledge base recognises it as a failure line (the
shell's `Killed`). Anything else in backticks (a package name, a variable) is not an error.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import regex

from .files import replace_atomically
from .journal import JournalEntry, parse_entries, read_journal
from .knowledge import KnowledgeBase, SignatureError, compile_signature, load_knowledge_base, user_patterns_dir
from .toml_write import toml_regex, toml_string, toml_text

LEARNED_SUBDIR = "learned"
ID_PREFIX = "learned"
SLUG_MAX = 24
LEARNED_CATEGORY = "learned"
LEARNED_PRIORITY = 50
CODE_SPAN_RE = regex.compile(r"(?<!`)(?P<ticks>`+)(?!`)(?P<code>.+?)(?<!`)(?P=ticks)(?!`)")
EXCEPTION_QUOTE_RE = regex.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Warning|Interrupt|Exit|Failure))(?:\s*:\s*(?P<message>.*))?$"
)
ELLIPSIS_RE = regex.compile(r"\s*(?:\.{3,}|…+)\s*")
# Variable tokens of a message, in the order they are tried, each with the regex it becomes.
VARIABLE_TOKENS = (
    # A path: absolute, home, relative with ./ or ../, a Windows drive, or a relative one with a suffix.
    (r"(?:[A-Za-z]:\\|~/|\.{0,2}/)[^\s'\"`,;:()\[\]]*|[\w.\-]+(?:/[\w.\-]+)+\.\w+", r"[^\s'\"]+"),
    (r"\b0x[0-9a-fA-F]+\b", r"0x[0-9a-fA-F]+"),
    # torch.Size([2, 3]), [64, 128], (64, 128): any number of dimensions.
    (r"\[\s*-?\d+(?:\s*,\s*-?\d+)*\s*,?\s*\]", r"\[[-\d,\s]*\]"),
    (r"\(\s*-?\d+(?:\s*,\s*-?\d+)+\s*,?\s*\)", r"\([-\d,\s]*\)"),
    # 64x128, 3×224×224
    (r"(?<![\w.])\d+(?:\s*[x×]\s*\d+)+(?![\w.])", r"\d+(?:\s*[x×]\s*\d+)*"),
    (r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"),
    # A counter on a name: event_23, layer-7, shard_003.
    (r"(?<=[A-Za-z][_\-])\d+\b", r"\d+"),
)
VARIABLE_RE = regex.compile("|".join(f"(?P<t{i}>{pattern})" for i, (pattern, _) in enumerate(VARIABLE_TOKENS)))
# Where the entry is silent, the signature says so visibly instead of inventing text.
NOT_WRITTEN = {"en": "_(not written in the journal entry)_", "zh": "_（日记条目中没有写）_"}
TEXT_LANGS = ("en", "zh")


@dataclass(frozen=True)
class Quote:
    """An error quoted in a journal entry, and how a signature recognises it."""

    text: str
    exception: str = ""  # the type, last component ("UnpicklingError"), "" for a line quote
    message_regex: str = ""  # "" when the quote is a bare type
    line_regex: str = ""  # for quotes that are failure lines, not exceptions


@dataclass
class LearnResult:
    directory: Path
    learned: list[str] = field(default_factory=list)  # new signature files
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[JournalEntry, str]] = field(default_factory=list)  # (entry, why)

    @property
    def changed(self) -> bool:
        return bool(self.learned or self.updated or self.removed)


def learned_dir(into: str | os.PathLike | None = None) -> Path:
    return Path(into) if into is not None else user_patterns_dir() / LEARNED_SUBDIR


def learn_journal(
    journal_path: str | os.PathLike,
    into: str | os.PathLike | None = None,
    *,
    kb: KnowledgeBase | None = None,
) -> LearnResult:
    """Write (or update) one signature per quoted error of the journal's entries."""
    journal_path = Path(journal_path)
    journal = read_journal(journal_path)
    directory = learned_dir(into)
    result = LearnResult(directory)
    kb = kb or load_knowledge_base(include_user=False)
    journal_id = journal_slug(journal_path)
    wanted: dict[str, str] = {}
    for entry in parse_entries(journal.text):
        if "symptom" not in entry.fields:
            continue  # a note, not an incident entry
        if entry.date is None:
            result.skipped.append((entry, "not under a day heading (## YYYYMMDD)"))
            continue
        quotes = quoted_errors(entry, kb)
        if not quotes:
            result.skipped.append((entry, "no error quoted in a code span on its symptom"))
            continue
        if not entry.text("fix"):
            result.skipped.append((entry, "no fix written yet"))
            continue
        if "_(to be written)_" in entry.text("fix") or "_（待填写）_" in entry.text("fix"):
            result.skipped.append((entry, "its fix is still the placeholder"))
            continue
        base = f"{ID_PREFIX}-{journal_id}-{entry.date.replace('-', '')}-{entry.number}"
        for index, quote in enumerate(quotes, start=1):
            sig_id = base if index == 1 else f"{base}-{index}"
            text = render_signature(sig_id, entry, quote, journal_path)
            try:
                compile_signature(tomllib.loads(text), directory / f"{sig_id}.toml")
            except (SignatureError, tomllib.TOMLDecodeError) as exc:
                result.skipped.append((entry, f"the signature made from `{quote.text}` is invalid: {exc}"))
                continue
            wanted[sig_id] = text
    directory.mkdir(parents=True, exist_ok=True)
    for sig_id, text in sorted(wanted.items()):
        path = directory / f"{sig_id}.toml"
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            result.unchanged.append(sig_id)
            continue
        replace_atomically(path, text.encode("utf-8"))
        (result.updated if old is not None else result.learned).append(sig_id)
    # Entries edited so that they no longer quote an error, or deleted: their signatures go too.
    for path in sorted(directory.glob(f"{ID_PREFIX}-{journal_id}-*.toml")):
        if path.stem not in wanted and _learned_from(path) == str(journal_path.resolve()):
            path.unlink()
            result.removed.append(path.stem)
    return result


def journal_slug(path: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "journal"


def quoted_errors(entry: JournalEntry, kb: KnowledgeBase) -> list[Quote]:
    """The errors quoted in code spans on the entry's symptom, in order, without repeats."""
    found: list[Quote] = []
    for line in entry.symptom_prose:
        for span in CODE_SPAN_RE.finditer(line):
            quote = classify_quote(span["code"].strip(), kb)
            if quote is not None and all(q.text != quote.text for q in found):
                found.append(quote)
    return found


def classify_quote(text: str, kb: KnowledgeBase) -> Quote | None:
    if not text or "\n" in text:
        return None
    exception = EXCEPTION_QUOTE_RE.match(text)
    if exception is not None:
        type_name = exception["type"].rsplit(".", 1)[-1]
        message = (exception["message"] or "").strip()
        return Quote(text, type_name, generalise_message(message) if message else "")
    if _is_failure_line(text, kb):
        # The user quoted the whole line: a longer line with the same first word is something else.
        return Quote(text, line_regex=r"^\s*" + _whitespace_flexible(text) + r"\s*$")
    return None


def _is_failure_line(text: str, kb: KnowledgeBase) -> bool:
    from .scan import scan_text  # a late stage: only learn needs the whole pipeline here

    report = scan_text(text, kb=kb, redact=False)
    return any(i.signature != "unknown" for i in report.incidents)


def generalise_message(message: str) -> str:
    """A regex for the message: variable tokens become wildcards, the words stay, escaped.

    A quote cut short with "..." or "…" matches any continuation there.
    """
    message = ELLIPSIS_RE.sub(" \x00 ", message).strip()
    parts = []
    for piece in message.split("\x00"):
        piece = piece.strip()
        if piece:
            parts.append(_generalise_piece(piece))
    return ".*?".join(parts)


def _generalise_piece(text: str) -> str:
    out = []
    position = 0
    for match in VARIABLE_RE.finditer(text):
        out.append(_whitespace_flexible(text[position:match.start()]))
        kind = int(match.lastgroup[1:])
        out.append(VARIABLE_TOKENS[kind][1])
        position = match.end()
    out.append(_whitespace_flexible(text[position:]))
    return "".join(out)


def _whitespace_flexible(text: str) -> str:
    return r"\s+".join(re.escape(word) for word in re.split(r"\s+", text)) if text.strip() else (
        r"\s+" if text else "")


def render_signature(sig_id: str, entry: JournalEntry, quote: Quote, journal_path: Path) -> str:
    """The TOML of a learned signature: the user's texts in both languages, the quote as example."""
    def texts(lang: str) -> dict[str, str]:
        return {
            "title": _no_placeholders(entry.title or quote.text),
            "symptom": _no_placeholders(entry.text("symptom") or f"`{quote.text}`"),
            "cause": entry.text("cause") or NOT_WRITTEN[lang],
            "fix": entry.text("fix") or NOT_WRITTEN[lang],
            "lesson": entry.text("lesson") or NOT_WRITTEN[lang],
        }

    lines = [
        f"# Learned by `postmortem learn` from {journal_path.name}, {entry.date} entry {entry.number}.",
        "# Edit the journal entry, not this file: learning again rewrites it from the journal.",
        "schema = 1",
        f"id = {toml_string(sig_id)}",
        f"category = {toml_string(LEARNED_CATEGORY)}",
        'severity = "error"',
        f"priority = {LEARNED_PRIORITY}",
        'status = "stable"',
        "references = []",
        "",
        "[learned]",
        f"date = {toml_string(entry.date or '')}",
        f"journal = {toml_string(str(journal_path.resolve()))}",
        f"entry = {entry.number}",
        f"quote = {toml_string(quote.text)}",
        "",
        "[match]",
    ]
    if quote.exception:
        lines.append(f"exception = [{toml_string(quote.exception)}]")
        if quote.message_regex:
            lines.append(f"message = [{toml_regex(quote.message_regex)}]")
    else:
        lines.append(f"line = [{toml_regex(quote.line_regex)}]")
    for lang in TEXT_LANGS:
        # The user's own words in both tables: the draft quotes them in whatever language it is in.
        lines += ["", f"[{lang}]"]
        lines += [f"{key} = {toml_text(text)}" for key, text in texts(lang).items()]
    lines += ["", "[[example]]", 'expect = "match"', f"log = {toml_text(quote.text + chr(10))}"]
    return "\n".join(lines) + "\n"


def _no_placeholders(text: str) -> str:
    # `{name}` in a title or symptom would be a placeholder without a capture: keep it literal.
    return text.replace("{", "(").replace("}", ")")


def _learned_from(path: Path) -> str | None:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    learned = raw.get("learned")
    return learned.get("journal") if isinstance(learned, dict) else None


def learned_ids(result: LearnResult) -> Iterable[str]:
    return [*result.learned, *result.updated, *result.unchanged]
