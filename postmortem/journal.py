"""The user's journal: read it, find a day, add entries, and write it back without losing a byte.

The journal is the user's own Markdown file (DESIGN.md, "Journal entry"): day headings
`## 20260206` at any level, numbered entries under them, each entry that postmortem wrote
ending with a hidden `<!-- postmortem: <signature> <fingerprint> -->` comment.

- Reading keeps the file's encoding (UTF-8 with or without BOM, GBK/GB18030), its line endings
  (CRLF journals exist) and whether it ends with a newline; anything that is not text is refused.
- Editing is pure text in, text out (`add_to_day`): the day's section is found (or appended),
  its numbering continued, and an incident whose fingerprint the day already holds is skipped,
  so the same review twice changes nothing. Every byte outside the insertion points is kept.
- Writing goes to a temporary file in the same folder, is fsynced and renamed over the journal,
  after one `.bak` of the previous version; if the journal changed on disk since it was read
  (an editor saved it meanwhile), nothing is written.
- Reading entries back (`parse_entries`) is what `postmortem learn` builds on.
"""
from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import regex

from .files import replace_atomically
from .model import Incident
from .render import render_attempts, render_entry

UTF8, UTF8_BOM, GB18030 = "utf-8", "utf-8-sig", "gb18030"
NEW_DAY_LEVEL = 2  # `## 20260206`, as DESIGN.md writes a day
BACKUP_SUFFIX = ".bak"
ATTEMPTS_ID = "attempts"  # the marker id of an attempts table
HASH_LENGTH = 6

DAY_HEADING_RE = regex.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<day>\d{8})[ \t]*#*[ \t]*$")
HEADING_RE = regex.compile(r"^(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t]*#*[ \t]*$")
FENCE_RE = regex.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
ITEM_RE = regex.compile(r"^(?P<number>\d{1,9})[.)](?:[ \t]+(?P<title>.*))?$")
NUMBERED_HEADING_RE = regex.compile(r"^#{1,6}[ \t]+(?P<number>\d{1,9})[.)][ \t]+(?P<title>.*?)[ \t]*#*[ \t]*$")
MARKER_RE = regex.compile(r"<!--\s*postmortem:\s*(?P<id>[\w.\-]+)\s+(?P<fingerprint>[0-9a-f]+)\s*-->")
THEMATIC_BREAK_RE = regex.compile(r"^[ \t]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
# Fenced blocks holding pasted Markdown (a review written elsewhere) are read as journal text.
MARKDOWN_INFO = frozenset({"markdown", "md"})


class JournalError(Exception):
    """A journal that cannot be read or written safely; the message names the file and why."""


class JournalChanged(JournalError):
    """The journal changed on disk between reading and writing: nothing was written."""


# -- reading and writing the file ---------------------------------------------------------------
@dataclass(frozen=True)
class JournalFile:
    """A journal as read from disk, with what is needed to write it back the same way."""

    path: Path
    text: str  # decoded, line endings as in the file
    encoding: str = UTF8  # UTF8, UTF8_BOM or GB18030
    newline: str = "\n"  # the file's dominant line ending, used for inserted lines
    digest: str | None = None  # sha256 of the bytes read; None when the file did not exist
    raw: bytes = b""

    @property
    def exists(self) -> bool:
        return self.digest is not None


def read_journal(path: str | os.PathLike) -> JournalFile:
    """Read a journal; a missing one reads as empty (it will be created)."""
    path = Path(path)
    if path.is_dir():
        raise JournalError(f"{path}: is a folder, expected a Markdown journal")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalFile(path, "")
    except OSError as exc:
        raise JournalError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text, encoding = decode_journal(data, path)
    return JournalFile(path, text, encoding, dominant_newline(text), hashlib.sha256(data).hexdigest(), data)


def decode_journal(data: bytes, path: Path | str = "journal") -> tuple[str, str]:
    """(text, encoding) of a journal's bytes, or JournalError when it is not text we can keep."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise JournalError(f"{path}: is UTF-16 text; save it as UTF-8 and run again")
    if b"\x00" in data:
        raise JournalError(f"{path}: is not a text file (it holds NUL bytes)")
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data.decode(UTF8_BOM), UTF8_BOM
        except UnicodeDecodeError as exc:
            raise JournalError(f"{path}: has a UTF-8 mark but is not valid UTF-8 at byte {exc.start}") from None
    try:
        return data.decode(UTF8), UTF8
    except UnicodeDecodeError as exc:
        utf8_error = exc
    # A UTF-8 file with one bad byte must not be taken for GBK: re-encoding it would mix encodings.
    decoded = data.decode(UTF8, errors="replace")
    good_multibyte = sum(1 for ch in decoded if ord(ch) > 0x7F and ch != "\ufffd")
    if good_multibyte > decoded.count("\ufffd"):
        raise JournalError(f"{path}: is not valid UTF-8 at byte {utf8_error.start}; fix that byte and run again")
    try:
        text = data.decode(GB18030)
    except UnicodeDecodeError:
        raise JournalError(f"{path}: is not valid text (neither UTF-8 nor GBK/GB18030)") from None
    if text.encode(GB18030) != data:
        raise JournalError(f"{path}: does not decode and re-encode identically as GBK/GB18030")
    return text, GB18030


def dominant_newline(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def write_journal(journal: JournalFile, text: str) -> None:
    """Replace the journal by `text`, safely: temp file + fsync + rename, one `.bak` kept.

    Refuses (JournalChanged) when the file on disk is no longer what `journal` read.
    """
    path = journal.path
    if path.is_symlink():
        path = path.resolve()  # write through the link, keep the link
    data = text.encode(journal.encoding)

    def before_rename(temp_name: str) -> None:
        if journal.exists:
            os.chmod(temp_name, os.stat(path).st_mode & 0o7777)
        _check_unchanged(journal, path)
        if journal.exists:
            _replace_atomically(backup_path(path), journal.raw)
        # Checked again as late as possible: an editor may have saved while the backup was written.
        _check_unchanged(journal, path)

    _replace_atomically(path, data, before_rename)


def _replace_atomically(path: Path, data: bytes, before_rename=None) -> None:
    try:
        replace_atomically(path, data, before_rename)
    except OSError as exc:
        raise JournalError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _check_unchanged(journal: JournalFile, path: Path) -> None:
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if journal.exists:
        if current is None:
            raise JournalChanged(f"{journal.path}: was deleted or moved while postmortem worked; nothing was written")
        if hashlib.sha256(current).hexdigest() != journal.digest:
            raise JournalChanged(
                f"{journal.path}: changed on disk since postmortem read it (saved in an editor?); "
                "nothing was written. Run the command again."
            )
    elif current is not None:
        raise JournalChanged(f"{journal.path}: was created by someone else while postmortem worked; nothing was written")


# -- the structure of the text ------------------------------------------------------------------
@dataclass(frozen=True)
class _Line:
    text: str  # without its line ending
    ending: str  # "\n", "\r\n", "\r" or "" (last line without a newline)
    in_code: bool  # inside a fenced block or the front matter, fence lines included


def split_lines(text: str) -> list[_Line]:
    """The journal's lines, each knowing whether it is code (never parsed, never edited)."""
    lines: list[_Line] = []
    fence: str | None = None
    front_matter = text.startswith("---")
    for index, raw in enumerate(text.splitlines(keepends=True)):
        body = raw.rstrip("\r\n")
        ending = raw[len(body):]
        if front_matter:
            # YAML front matter (`---` ... `---` at the top, as Jekyll journals have) is not the journal.
            lines.append(_Line(body, ending, True))
            if index > 0 and body.strip() == "---":
                front_matter = False
            continue
        fence_match = FENCE_RE.match(body)
        if fence is None and fence_match is not None:
            fence = fence_match["fence"]
            lines.append(_Line(body, ending, True))
            continue
        if fence is not None:
            lines.append(_Line(body, ending, True))
            if fence_match is not None and fence_match["fence"][0] == fence[0] \
                    and len(fence_match["fence"]) >= len(fence) and not fence_match["info"]:
                fence = None
            continue
        lines.append(_Line(body, ending, False))
    return lines


def _heading_level(line: _Line) -> int | None:
    if line.in_code or not line.text.startswith("#"):
        return None
    match = HEADING_RE.match(line.text)
    return len(match["hashes"]) if match is not None else None


def day_key(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def find_day(lines: Sequence[_Line], day: dt.date) -> tuple[int, int] | None:
    """(heading index, end index) of the day's section: up to the next heading at its level or
    above, or the next day heading at any level."""
    key = day_key(day)
    for start, line in enumerate(lines):
        if line.in_code:
            continue
        match = DAY_HEADING_RE.match(line.text)
        if match is None or match["day"] != key:
            continue
        level = len(match["hashes"])
        for end in range(start + 1, len(lines)):
            other = _heading_level(lines[end])
            if other is not None and (other <= level or DAY_HEADING_RE.match(lines[end].text)):
                return start, end
        return start, len(lines)
    return None


def _items(lines: Sequence[_Line], start: int, end: int) -> Iterator[tuple[int, int]]:
    """(line index, number) of the section's top-level numbered items, outside code."""
    for index in range(start, end):
        line = lines[index]
        if line.in_code:
            continue
        match = ITEM_RE.match(line.text) or NUMBERED_HEADING_RE.match(line.text)
        if match is not None:
            yield index, int(match["number"])


def _markers(lines: Sequence[_Line], start: int, end: int) -> Iterator[tuple[int, str, str]]:
    """(line index, id, fingerprint) of the hidden postmortem comments in a range."""
    for index in range(start, end):
        if lines[index].in_code or "postmortem:" not in lines[index].text:
            continue
        for match in MARKER_RE.finditer(lines[index].text):
            yield index, match["id"], match["fingerprint"]


# -- adding to a day ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One log of a day's sequence of attempts at the same problem, for the attempts table."""

    log: str  # the log's name as shown
    outcome: str  # what happened, in the draft's language
    error: str = ""  # the evidence line of its first incident, "" when it passed
    fingerprint: str = ""  # that incident's fingerprint: its entry number is looked up


@dataclass(frozen=True)
class JournalUpdate:
    text: str
    added: tuple[Incident, ...] = ()  # entries written
    skipped: tuple[Incident, ...] = ()  # already in the day's section
    table: str = ""  # "added", "replaced", "kept" (the user edited the old one: a new one follows it), "unchanged" or ""
    new_day: bool = False  # the day's heading was created

    @property
    def changed(self) -> bool:
        return bool(self.added) or self.table in ("added", "replaced", "kept")


def add_to_day(
    text: str,
    day: dt.date,
    incidents: Sequence[Incident],
    lang: str,
    attempts: Sequence[Attempt] = (),
    newline: str | None = None,
) -> JournalUpdate:
    """Add the incidents not yet in the day's section (and the attempts table) to `text`.

    Entries are numbered after the day's last number; a day without a heading gets `## YYYYMMDD`
    at the end of the journal. Nothing outside the insertion points changes.
    """
    newline = newline or dominant_newline(text)
    lines = split_lines(text)
    section = find_day(lines, day)
    new_day = section is None
    if section is None:
        start, end = len(lines), len(lines)
    else:
        start, end = section
    existing = {fp: index for index, _id, fp in _markers(lines, start, end)}
    numbers = dict(_entry_numbers(lines, start, end))  # fingerprint -> entry number
    by_signature: dict[str, int] = {}
    for index, sig_id, fp in _markers(lines, start, end):
        if fp in numbers:
            by_signature.setdefault(sig_id, numbers[fp])
    next_number = max((n for _i, n in _items(lines, start, end)), default=0) + 1

    added: list[Incident] = []
    skipped: list[Incident] = []
    blocks: list[str] = []
    for incident in incidents:
        if incident.fingerprint in existing or incident.fingerprint in numbers:
            skipped.append(incident)
            continue
        if any(i.fingerprint == incident.fingerprint for i in added):
            continue
        cause_number = by_signature.get(incident.explained_by) if incident.explained_by else None
        blocks.append(render_entry(incident, next_number, lang, cause_number))
        numbers[incident.fingerprint] = next_number
        by_signature.setdefault(incident.signature, next_number)
        added.append(incident)
        next_number += 1

    table_state = ""
    replace_range: tuple[int, int] | None = None
    table_block = ""
    if attempts:
        table_block = render_attempts(attempts, {fp: n for fp, n in numbers.items()}, lang)
        table_block = f"{table_block}\n<!-- postmortem: {ATTEMPTS_ID} {text_hash(table_block)} -->"
        table_state, replace_range = _place_table(lines, start, end, table_block)
        if table_state == "unchanged":
            table_block = ""
        elif table_state == "replaced":
            pass
        else:
            blocks.append(table_block)
            table_block = ""

    if not blocks and not table_block:
        return JournalUpdate(text, (), tuple(skipped), table_state, False)

    out = [(line.text, line.ending) for line in lines]
    if table_block and replace_range is not None:
        # Replacing the old table before inserting keeps the insertion indices below it valid:
        # the table always sits inside the section, the insertion point at or after its end.
        first, last = replace_range
        ending = out[last][1]
        new_lines = table_block.split("\n")
        out[first:last + 1] = [(t, newline) for t in new_lines[:-1]] + [(new_lines[-1], ending)]
        shift = len(new_lines) - (last - first + 1)
        end += shift
        lines = split_lines("".join(t + e for t, e in out))  # structure of the edited text
    if blocks:
        if new_day:
            heading = f"{'#' * NEW_DAY_LEVEL} {day_key(day)}"
            out = _insert(out, len(out), [heading, *_join_blocks(blocks)], newline, blank_before=bool(out))
        else:
            at = _insertion_point(lines, start, end)
            out = _insert(out, at, _join_blocks(blocks), newline, blank_before=True)
    new_text = "".join(t + e for t, e in out)
    return JournalUpdate(new_text, tuple(added), tuple(skipped), table_state, new_day and bool(added or blocks))


def render_day(day: dt.date, incidents: Sequence[Incident], lang: str, attempts: Sequence[Attempt] = ()) -> str:
    """The day's section alone, as `review` would write it into an empty journal."""
    return add_to_day("", day, incidents, lang, attempts).text


def text_hash(text: str) -> str:
    normalised = text.replace("\r\n", "\n").strip()
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _entry_numbers(lines: Sequence[_Line], start: int, end: int) -> Iterator[tuple[str, int]]:
    """(fingerprint, number) of the section's entries that carry a marker."""
    items = list(_items(lines, start, end))
    for index, sig_id, fp in _markers(lines, start, end):
        if sig_id == ATTEMPTS_ID:
            continue
        owner = [n for i, n in items if i <= index]
        if owner:
            yield fp, owner[-1]


def _place_table(lines: Sequence[_Line], start: int, end: int, block: str) -> tuple[str, tuple[int, int] | None]:
    """What to do with the attempts table: "unchanged", "replaced" (its old unedited table is at
    the returned lines), "added" (none yet) or "kept" (the user edited the old one: keep it, add)."""
    new_hash = MARKER_RE.search(block)["fingerprint"]
    state = "added"
    for index, sig_id, fp in _markers(lines, start, end):
        if sig_id != ATTEMPTS_ID:
            continue
        if fp == new_hash:
            return "unchanged", None
        first = _table_start(lines, start, index)
        old_body = "\n".join(line.text for line in lines[first:index])
        if first is not None and text_hash(old_body) == fp:
            return "replaced", (first, index)
        state = "kept"
    return state, None


def _table_start(lines: Sequence[_Line], start: int, marker: int) -> int:
    """The first line of the block that ends at `marker`: back to the blank line before it."""
    first = marker
    while first - 1 > start and lines[first - 1].text.strip():
        first -= 1
    return first


def _insertion_point(lines: Sequence[_Line], start: int, end: int) -> int:
    """After the section's last line of content; trailing blank lines and a closing thematic
    break (`---` between days, or a page footer) stay after the new entries."""
    at = end
    while at - 1 > start and (not lines[at - 1].text.strip()
                              or (THEMATIC_BREAK_RE.match(lines[at - 1].text) and not lines[at - 1].in_code)):
        at -= 1
    return at


def _join_blocks(blocks: Sequence[str]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        out.append("")
        out.extend(block.split("\n"))
    return out


def _insert(out: list[tuple[str, str]], at: int, new_lines: list[str], newline: str,
            blank_before: bool) -> list[tuple[str, str]]:
    """Insert lines at index `at`, with a blank line before them and one after when text follows."""
    out = list(out)
    new_lines = list(new_lines)
    if blank_before and at > 0 and new_lines and new_lines[0] != "" and out[at - 1][0].strip():
        new_lines.insert(0, "")
    if not blank_before and new_lines and new_lines[0] == "":
        new_lines = new_lines[1:]
    if at < len(out) and out[at][0].strip():
        new_lines.append("")
    final_line_had_no_newline = at == len(out) and at > 0 and out[at - 1][1] == ""
    if final_line_had_no_newline:
        out[at - 1] = (out[at - 1][0], newline)
    pairs = [(text, newline) for text in new_lines]
    if final_line_had_no_newline and pairs:
        pairs[-1] = (pairs[-1][0], "")  # the file did not end with a newline: neither does it now
    out[at:at] = pairs
    return out


def detect_language(text: str) -> str | None:
    """"zh" or "en" when the journal's entries use that language's field labels, else None."""
    zh = sum(text.count(f"**{label}**") for label in ("错误现象", "解决方案", "经验教训", "根本原因"))
    en = sum(text.count(f"**{label}**") for label in ("Symptom", "Fix", "Lesson", "Cause"))
    if zh or en:
        return "zh" if zh >= en else "en"
    return None


# -- reading entries back (for `postmortem learn`) -------------------------------------------------
FIELD_RE = regex.compile(r"^[ \t]*[*\-+][ \t]+\*\*(?P<label>[^*]+?)\*\*[ \t]*(?P<rest>.*)$")
FIELD_LABELS = {
    "symptom": ("错误现象", "现象", "症状", "报错", "symptom", "error"),
    "cause": ("根本原因", "原因", "cause", "root cause"),
    "fix": ("解决方案", "解决办法", "解决", "修正", "修复", "fix", "solution"),
    "lesson": ("经验教训", "教训", "lesson"),
}
LABEL_PUNCTUATION = ":：. 　"


@dataclass
class JournalEntry:
    """One numbered entry of the journal, its fields as the user wrote them (Markdown)."""

    date: str | None  # YYYY-MM-DD of its day heading, None outside a day
    number: int
    title: str
    line: int  # 1-based line of its first line
    fields: dict[str, str] = field(default_factory=dict)  # symptom / cause / fix / lesson
    symptom_prose: list[str] = field(default_factory=list)  # lines of the symptom outside code blocks
    marker: tuple[str, str] | None = None  # (signature, fingerprint) of a postmortem entry
    is_heading: bool = False  # written as a heading (`#### 3. title`) rather than a list item

    def text(self, name: str) -> str:
        return self.fields.get(name, "").strip()


def parse_entries(text: str) -> list[JournalEntry]:
    """The journal's numbered entries with their labelled fields.

    Fenced blocks of pasted Markdown (```markdown) are read like the journal itself, since a
    review drafted elsewhere is often pasted that way; other fenced blocks stay code.
    """
    entries: list[JournalEntry] = []
    day: str | None = None
    day_level = 0
    current: JournalEntry | None = None
    current_field: str | None = None
    fences: list[tuple[str, bool]] = []  # (fence, is_markdown) from outermost
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        fence = FENCE_RE.match(line)
        opaque = any(not is_md for _f, is_md in fences)
        if fence is not None:
            if fences and not fence["info"] and fence["fence"][0] == fences[-1][0][0] \
                    and len(fence["fence"]) >= len(fences[-1][0]):
                fences.pop()
                if current is not None and current_field and opaque:
                    current.fields[current_field] += "\n" + line
                continue
            if not opaque:
                is_md = fence["info"].lower().split(" ")[0] in MARKDOWN_INFO
                fences.append((fence["fence"], is_md))
                if not is_md and current is not None and current_field:
                    current.fields[current_field] += "\n" + line
                continue
        if opaque:
            if current is not None and current_field:
                current.fields[current_field] += "\n" + line
            continue
        day_match = DAY_HEADING_RE.match(line)
        if day_match is not None:
            day = f"{day_match['day'][:4]}-{day_match['day'][4:6]}-{day_match['day'][6:]}"
            day_level = len(day_match["hashes"])
            current, current_field = None, None
            continue
        heading_item = NUMBERED_HEADING_RE.match(line)
        item = heading_item or ITEM_RE.match(line)
        # Under entries written as headings (`#### 3. title`), a numbered list is part of a field.
        if item is not None and heading_item is None and current is not None and current.is_heading \
                and current_field:
            item = None
        if item is not None:
            current = JournalEntry(day, int(item["number"]), _plain_title(item["title"] or ""), number,
                                   is_heading=heading_item is not None)
            current_field = None
            entries.append(current)
            continue
        heading = HEADING_RE.match(line) if line.startswith("#") else None
        if heading is not None:
            if len(heading["hashes"]) <= day_level:
                day, day_level = None, 0
            current, current_field = None, None
            continue
        if current is None:
            continue
        marker = MARKER_RE.search(line)
        if marker is not None:
            current.marker = (marker["id"], marker["fingerprint"])
            continue
        labelled = FIELD_RE.match(line)
        if labelled is not None:
            name = _field_name(labelled["label"])
            if name is not None:
                current_field = name
                current.fields[name] = labelled["rest"].lstrip(LABEL_PUNCTUATION)
                if name == "symptom":
                    current.symptom_prose.append(current.fields[name])
                continue
            if not line.startswith((" ", "\t")):
                current_field = None  # a top-level bullet with a label of its own ends a field
                continue
        if current_field:
            current.fields[current_field] += "\n" + line
            if current_field == "symptom":
                current.symptom_prose.append(line)
    return entries


def _field_name(label: str) -> str | None:
    label = label.strip().strip(LABEL_PUNCTUATION).lower()
    for name, labels in FIELD_LABELS.items():
        if any(label.startswith(known) for known in labels):
            return name
    return None


def _plain_title(title: str) -> str:
    title = title.strip()
    if title.startswith("**") and title.endswith("**") and len(title) > 4:
        title = title[2:-2].strip()
    return title.replace("<br>", "").strip()
