"""From matches to incidents: dedupe, find the root cause, order, and fill in the texts.

- The same failure printed by 8 ranks or 500 times is one incident with a count: incidents are
  keyed by a fingerprint of the signature, its `group_by` variables and the in-app location,
  never by sizes, addresses or times.
- In one traceback chain the first exception a signature recognises is the root cause; later
  links that a signature also recognises are kept, `explained_by` it.
- A signature's `explains` list does the same across the log (a CUDA OOM on one rank explains
  the NCCL timeouts on the others), and a `wrapper` signature (torchrun's ChildFailedError
  summary) is dropped whenever a real cause is in the log; a `hint` signature (a harmless
  warning that matters only next to a failure, like tokenizers' fork warning) is dropped when
  the log shows no failure at all, so that clean runs stay clean.
- The user's learned signatures that claimed an incident's evidence become its `recalled`
  entries (the user's own date, fix and lesson), shown first in the draft.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import regex

from .knowledge import PLACEHOLDER_RE, KnowledgeBase, Signature
from .model import Evidence, Incident, Match, Recall
from .texts import ui_text

UNKNOWN = "unknown"
LOCALIZED_SEP, LOCALIZED_LANGS = "_", ("zh",)  # `detail_zh`: the Chinese of the variable `detail`
FINGERPRINT_LENGTH = 6
MISSING_VAR = "?"
OPTIONAL_SEGMENT_RE = regex.compile(r"\[\[(.*?)\]\]", regex.DOTALL)
# Drain-style masks, so that two unknown errors differing only in numbers or paths are one.
MASKS = (
    (regex.compile(r"0x[0-9a-fA-F]+"), "<hex>"),
    (regex.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-]+)+"), "<path>"),
    (regex.compile(r"\d+(?:\.\d+)?"), "<num>"),
)


@dataclass
class _Group:
    signature: str
    first: Evidence
    vars: dict[str, str]
    order: tuple[int, int]
    count: int = 0
    explained_by: str | None = None
    members: list[Evidence] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)  # learned signatures that claimed a member


def mask_variable_tokens(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def fingerprint(signature_id: str, key_parts: Iterable[str]) -> str:
    digest = hashlib.sha1("\x1f".join([signature_id, *key_parts]).encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


def group_incidents(
    matches: Iterable[Match],
    unmatched: Iterable[Evidence],
    kb: KnowledgeBase,
    lang: str = "en",
    source_order: Mapping[str, int] | None = None,
    keep_hints: bool = False,
) -> list[Incident]:
    """`matches` claimed by signatures; `unmatched` traceback evidence no signature claimed."""
    source_order = source_order or {}
    matches = list(matches)

    def order_of(ev: Evidence) -> tuple[int, int]:
        return (source_order.get(ev.source, 0), ev.line_number)

    # Chains: the first recognised link is the root; unrecognised links of a recognised chain go.
    chain_root: dict[tuple[str, int], Match] = {}
    for match in sorted(matches, key=lambda m: m.evidence.chain_index):
        ev = match.evidence
        if ev.chain_id is not None:
            chain_root.setdefault((ev.source, ev.chain_id), match)
    unknown_by_chain: dict[tuple[str, int], Evidence] = {}
    for ev in unmatched:
        key = (ev.source, ev.chain_id if ev.chain_id is not None else -1)
        if key in chain_root:
            continue
        # Report a chain nobody recognised by its root exception (the first link).
        if key not in unknown_by_chain or ev.chain_index < unknown_by_chain[key].chain_index:
            unknown_by_chain[key] = ev

    groups: dict[str, _Group] = {}
    for match in matches:
        ev = match.evidence
        sig = kb.get(match.signature_id)
        assert sig is not None
        explained_by = None
        if ev.chain_id is not None:
            root = chain_root[(ev.source, ev.chain_id)]
            if root is not match and root.signature_id != match.signature_id:
                explained_by = root.signature_id
        key = _match_key(sig, match)
        _add(groups, key, match.signature_id, ev, match.vars, order_of(ev), explained_by)
        groups[key].learned.extend(i for i in match.learned if i not in groups[key].learned)
    for ev in unknown_by_chain.values():
        location = ev.location
        key_parts = [ev.exc_type, mask_variable_tokens(ev.summary)]
        if location is not None:
            key_parts += [location.filename, location.name]
        _add(groups, fingerprint(UNKNOWN, key_parts), UNKNOWN, ev, {}, order_of(ev), None)

    _merge_echoes(groups, kb)
    present = {g.signature for g in groups.values()}
    _apply_explains(groups, kb, present)
    _drop_wrappers(groups, kb, keep_hints)
    ordered = _root_cause_first(groups)
    return [_build_incident(key, group, kb.get(group.signature), lang, _recalls(group, kb))
            for key, group in ordered]


def _recalls(group: _Group, kb: KnowledgeBase) -> tuple[Recall, ...]:
    """The user's past entries for this incident, oldest first (the first time they met it)."""
    recalls = []
    for sig_id in group.learned:
        sig = kb.get(sig_id)
        if sig is None or sig.learned is None:
            continue
        recalls.append(Recall(
            signature=sig.id, date=sig.learned.date, title=sig.text("en", "title"),
            fix=sig.text("en", "fix"), lesson=sig.text("en", "lesson"),
            journal=Path(sig.learned.journal).name,
        ))
    return tuple(sorted(recalls, key=lambda r: (r.date, r.signature)))


def _match_key(sig: Signature, match: Match) -> str:
    parts = [f"{name}={match.vars.get(name, '')}" for name in sig.group_by]
    location = match.evidence.location
    if location is not None and match.evidence.kind != "warning":
        parts += [location.filename, location.name]
    return fingerprint(sig.id, parts)


def _add(groups, key, signature_id, ev, variables, order, explained_by) -> None:
    group = groups.get(key)
    if group is None:
        group = groups[key] = _Group(signature_id, ev, dict(variables), order, explained_by=explained_by)
    elif order < group.order:
        group.first, group.vars, group.order = ev, dict(variables), order
    group.count += 1
    group.members.append(ev)


def _merge_echoes(groups: dict[str, _Group], kb: KnowledgeBase) -> None:
    """One failure, printed as a bare line and then raised as an exception, is one incident.

    A DataLoader prints "ERROR: Unexpected bus error encountered in worker" and then raises
    "DataLoader worker ... is killed by signal: Bus error": both claimed by one signature, the
    line without a location, the exception with one. The line folds into the exception's
    incident (same signature, same `group_by` values), adding its count and any variables.
    """
    def group_key(group: _Group) -> tuple:
        sig = kb.get(group.signature)
        names = sig.group_by if sig is not None else ()
        return (group.signature, tuple(group.vars.get(name, "") for name in names))

    located: dict[tuple, _Group] = {}
    for group in sorted(groups.values(), key=lambda g: g.order):
        if group.first.location is not None and group.signature != UNKNOWN:
            located.setdefault(group_key(group), group)
    for key in [k for k, g in groups.items() if g.first.location is None]:
        echo = groups[key]
        target = located.get(group_key(echo))
        if target is None:
            continue
        target.count += echo.count
        target.members.extend(echo.members)
        for name, value in echo.vars.items():
            target.vars.setdefault(name, value)
        target.learned.extend(i for i in echo.learned if i not in target.learned)
        del groups[key]


def _apply_explains(groups: dict[str, _Group], kb: KnowledgeBase, present: set[str]) -> None:
    """A failure explains the later ones its signature names: a CUDA OOM on one rank, the NCCL
    timeouts the other ranks report half an hour later. Not an earlier one: an abort printed after
    a watchdog timeout (`terminate called ...`, `Aborted`) is that timeout's end, not its cause."""
    first_seen: dict[str, tuple[int, int]] = {}
    for group in groups.values():
        if group.signature not in first_seen or group.order < first_seen[group.signature]:
            first_seen[group.signature] = group.order
    explainers: dict[str, list[str]] = {}
    for sig_id in sorted(present, key=lambda s: first_seen.get(s, (0, 0))):
        sig = kb.get(sig_id)
        if sig is not None:
            for explained in sig.explains:
                if explained != sig_id:
                    explainers.setdefault(explained, []).append(sig_id)
    for group in groups.values():
        if group.explained_by is not None:
            continue
        causes = [c for c in explainers.get(group.signature, ()) if first_seen.get(c, (0, 0)) <= group.order]
        if causes:
            group.explained_by = causes[0]


def _drop_wrappers(groups: dict[str, _Group], kb: KnowledgeBase, keep_hints: bool = False) -> None:
    """Wrappers give way to any real cause; hints are only context for an error."""
    def role(group: _Group) -> str:
        sig = kb.get(group.signature)
        return sig.role if sig is not None else "cause"

    if any(role(g) == "cause" for g in groups.values()):
        for key in [k for k, g in groups.items() if role(g) == "wrapper"]:
            del groups[key]
    if not keep_hints and not any(role(g) != "hint" for g in groups.values()):
        groups.clear()


def _root_cause_first(groups: dict[str, _Group]) -> list[tuple[str, _Group]]:
    """Causes in order of first appearance, each followed by what it explains."""
    items = sorted(groups.items(), key=lambda kv: kv[1].order)
    roots = [kv for kv in items if kv[1].explained_by is None or kv[1].explained_by not in
             {g.signature for g in groups.values()}]
    ordered: list[tuple[str, _Group]] = []
    placed: set[str] = set()
    for key, group in roots:
        ordered.append((key, group))
        placed.add(key)
        for other_key, other in items:
            if other_key not in placed and other.explained_by == group.signature:
                ordered.append((other_key, other))
                placed.add(other_key)
    ordered.extend(kv for kv in items if kv[0] not in placed)
    return ordered


def _build_incident(key: str, group: _Group, sig: Signature | None, lang: str,
                    recalled: tuple[Recall, ...] = ()) -> Incident:
    ev = group.first
    location = ev.location
    builtins = {
        "exception": ev.exc_type,
        "message": ev.text.split("\n", 1)[0] if ev.kind != "line" else ev.text,
        "file": location.filename if location else "",
        "line": str(location.lineno) if location and location.lineno else "",
        "function": location.name if location else "",
        "count": str(group.count),
    }
    if sig is None:
        texts = {k: ui_text(lang, f"unknown_{k}") for k in ("title", "symptom", "cause", "fix", "lesson")}
        values = builtins | {"summary": ev.summary, "source": ev.source, "at_line": str(ev.line_number)}
        texts = {k: fill_placeholders(v, values, frozenset()) for k, v in texts.items()}
        context = tuple(ev.text.split("\n")[1:6])
        return Incident(
            signature=UNKNOWN, title=texts["title"], category="unknown", severity="error",
            count=group.count, source=ev.source, line=ev.line_number, evidence=ev.summary,
            location=location, vars={}, symptom=texts["symptom"], cause=texts["cause"],
            fix=texts["fix"], lesson=texts["lesson"], references=(), fingerprint=key,
            explained_by=None, context=context,
        )
    values = localized_vars(builtins | group.vars, lang)
    captures = sig.captures
    texts = {k: fill_placeholders(sig.text(lang, k), values, captures) for k in
             ("title", "symptom", "cause", "fix", "lesson")}
    if ev.kind == "warning":
        severity = "warning"
    elif any(m.kind == "exception" and m.chain_id is not None for m in group.members):
        severity = "error"  # raised through a traceback: whatever the signature's level, it ended the run
    else:
        severity = sig.severity
    return Incident(
        signature=sig.id, title=texts["title"], category=sig.category, severity=severity,
        count=group.count, source=ev.source, line=ev.line_number, evidence=ev.summary,
        location=location, vars=localized_vars(group.vars, None), symptom=texts["symptom"],
        cause=texts["cause"], fix=texts["fix"], lesson=texts["lesson"], references=sig.references,
        fingerprint=key, explained_by=group.explained_by, recalled=recalled,
    )


def localized_vars(values: Mapping[str, str], lang: str | None) -> dict[str, str]:
    """A detector writes a sentence in each language: `detail` (English) and `detail_zh`. `{detail}`
    takes the one of `lang`; with lang None the translations are dropped (the incident's vars)."""
    suffixes = tuple(f"{LOCALIZED_SEP}{code}" for code in LOCALIZED_LANGS)
    plain = {k: v for k, v in values.items() if not k.endswith(suffixes)}
    if lang is not None:
        plain.update({k[: -len(lang) - 1]: v for k, v in values.items() if k.endswith(f"{LOCALIZED_SEP}{lang}")})
    return plain


def fill_placeholders(text: str, values: Mapping[str, str], captures: frozenset[str]) -> str:
    """Replace `{name}` by its value; a capture that did not take part renders as '?'.

    `[[ ... ]]` marks an optional segment: kept (without the brackets) when every variable in
    it has a value, dropped whole otherwise, so that one text serves patterns that capture
    different variables.
    """
    def optional(match: regex.Match) -> str:
        inner = match.group(1)
        names = PLACEHOLDER_RE.findall(inner)
        if not any(name in captures or name in values for name in names):
            return match.group(0)  # not a segment of ours: code such as `x[[0, 1]]`
        if all(values.get(name) for name in names if name in captures or name in values):
            return inner
        return ""

    text = OPTIONAL_SEGMENT_RE.sub(optional, text)

    def replace(match: regex.Match) -> str:
        name = match.group(1)
        if name in values and values[name] != "":
            return values[name]
        if name in captures or name in values:
            return MISSING_VAR
        return match.group(0)

    return PLACEHOLDER_RE.sub(replace, text)
