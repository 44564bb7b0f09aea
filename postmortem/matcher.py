"""Decide which signature, if any, claims each piece of evidence.

Every regex runs with a timeout: a catastrophic pattern (a user's, most likely) disables its
signature for the rest of the scan and is reported, instead of hanging the scan.

The user's learned signatures (`postmortem learn`) are consulted for every piece of evidence,
before and regardless of the built-in priorities: the ones that claim it ride along on the match
(`Match.learned`), so the draft can open with the user's own memory of the error. The incident
keeps the built-in identity when a built-in signature also claims the evidence, which keeps
fingerprints (and the journal's no-duplicates rule) stable whether or not the user has learned.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


from .knowledge import KnowledgeBase, LazyPattern, Signature
from .model import Evidence, Match

REGEX_TIMEOUT_SECONDS = 1.0
MAX_TIMEOUTS = 3  # per signature and scan, before it is switched off


@dataclass
class Matcher:
    kb: KnowledgeBase
    timeout: float = REGEX_TIMEOUT_SECONDS
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._disabled: set[str] = set()
        self._timeouts: dict[str, int] = {}
        ranked = sorted(self.kb.signatures, key=lambda s: (-s.priority, s.id))
        ranked = [s for s in ranked if s.status != "deprecated"]
        self._builtin = _Channels([s for s in ranked if s.learned is None])
        self._learned = _Channels([s for s in ranked if s.learned is not None])
        self._learned_each = [_Channels([s]) for s in self._learned.signatures]

    def match(self, evidence: Evidence) -> Match | None:
        found = self._claim(self._builtin, evidence)
        if not self._learned.signatures:
            return found
        learned = [m for m in (self._claim(c, evidence) for c in self._learned_each) if m is not None]
        if not learned:
            return found
        if found is None:
            first = learned[0]
            return dataclasses.replace(first, learned=tuple(m.signature_id for m in learned))
        return dataclasses.replace(found, learned=tuple(m.signature_id for m in learned))

    def _claim(self, channels: _Channels, evidence: Evidence) -> Match | None:
        if evidence.kind == "metric":
            for sig in channels.metric_sigs:
                if sig.metric == evidence.text and sig.id not in self._disabled:
                    return Match(sig.id, evidence, dict(evidence.values))
            return None
        if evidence.kind in ("exception", "warning"):
            found = self._match_exception(channels, evidence)
            if found is not None or evidence.chain_id is not None:
                return found
        return self._match_line(channels, evidence)

    def _match_exception(self, channels: _Channels, evidence: Evidence) -> Match | None:
        folded = evidence.text.lower()
        present = {needle for needle in channels.all_message_needles if needle in folded}
        for sig, needles, per_pattern in zip(channels.exception_sigs, channels.message_needles,
                                             channels.message_pattern_needles):
            if sig.id in self._disabled or not _type_matches(sig, evidence.exc_type):
                continue
            if needles is not None and not needles & present:
                continue
            variables: dict[str, str] | None = {}
            if sig.message_patterns:
                variables = self._search_all(sig, _worth_trying(sig.message_patterns, per_pattern, present),
                                             evidence.text)
            if variables is not None and not self._excluded(sig, evidence):
                return Match(sig.id, evidence, variables)
        return None

    def _match_line(self, channels: _Channels, evidence: Evidence) -> Match | None:
        text = evidence.summary
        folded = text.lower()
        # A line can only match a signature whose required literals it holds: one pass over
        # the distinct literals, then a set intersection per signature, instead of its regexes.
        present = {needle for needle in channels.all_needles if needle in folded}
        for sig, needles, per_pattern in zip(channels.line_sigs, channels.line_needles,
                                             channels.line_pattern_needles):
            if sig.id in self._disabled or (needles is not None and not needles & present):
                continue
            variables = self._search_all(sig, _worth_trying(sig.line_patterns, per_pattern, present), text)
            if variables is not None and not self._excluded(sig, evidence):
                return Match(sig.id, evidence, variables)
        return None

    def _search_all(self, sig: Signature, patterns, text: str) -> dict[str, str] | None:
        for pattern in patterns:
            found = self._safe_search(sig, pattern, text)
            if found:
                return {k: v for k, v in found.groupdict().items() if v is not None}
        return None

    def _excluded(self, sig: Signature, evidence: Evidence) -> bool:
        return any(
            self._safe_search(sig, p, evidence.text) or self._safe_search(sig, p, evidence.summary)
            for p in sig.exclude_patterns
        )

    def _safe_search(self, sig: Signature, pattern: LazyPattern, text: str):
        try:
            return pattern.search(text, timeout=self.timeout)
        except TimeoutError:
            # One pathological line costs that line only; a regex that keeps timing out is
            # switched off, so that it cannot cost a second per line of a long log.
            self._timeouts[sig.id] = self._timeouts.get(sig.id, 0) + 1
            if self._timeouts[sig.id] >= MAX_TIMEOUTS:
                self._disabled.add(sig.id)
                self.problems.append(
                    f"{sig.path}: a regex took longer than {self.timeout:g}s on {MAX_TIMEOUTS} lines; "
                    f"signature '{sig.id}' is disabled for the rest of this scan"
                )
            else:
                self.problems.append(
                    f"{sig.path}: a regex took longer than {self.timeout:g}s on one line; "
                    f"signature '{sig.id}' skipped that line"
                )
            return None


class _Channels:
    """Signatures sorted by the evidence channel they listen to, best first."""

    def __init__(self, signatures: list[Signature]) -> None:
        self.signatures = signatures
        self.exception_sigs = [s for s in signatures if s.exception_types or s.message_patterns]
        self.line_sigs = [s for s in signatures if s.line_patterns]
        self.metric_sigs = [s for s in signatures if s.metric]
        # Literals (lower-cased) a text must hold for a signature, and for each of its patterns,
        # to be worth a regex search: a line holding one literal of a signature with twenty
        # patterns (host-oom-killed's "Killed") is searched only by the patterns that need it.
        self.line_pattern_needles = [[_folded_needles((p,)) for p in s.line_patterns] for s in self.line_sigs]
        self.line_needles = [_union(n) for n in self.line_pattern_needles]
        # Message patterns get the same shortcut; a signature without them matches on the type.
        self.message_pattern_needles = [[_folded_needles((p,)) for p in s.message_patterns]
                                        for s in self.exception_sigs]
        self.message_needles = [_union(n) if n else None for n in self.message_pattern_needles]
        self.all_needles = _all_literals(self.line_pattern_needles)
        self.all_message_needles = _all_literals(self.message_pattern_needles)


def _union(needles: list[frozenset[str] | None]) -> frozenset[str] | None:
    """A signature's literals: None when one of its patterns requires none."""
    return None if any(n is None for n in needles) else frozenset().union(*needles)


def _all_literals(per_signature: list[list[frozenset[str] | None]]) -> frozenset[str]:
    return frozenset().union(*(n for patterns in per_signature for n in patterns if n is not None))


def _type_matches(sig: Signature, exc_type: str) -> bool:
    if not sig.exception_types:
        return True
    return any(exc_type == name or exc_type.endswith("." + name) for name in sig.exception_types)


def _worth_trying(patterns: tuple[LazyPattern, ...], needles: list[frozenset[str] | None],
                  present: set[str]) -> list[LazyPattern]:
    """The patterns whose required literals the text holds (or that require none), in order."""
    return [p for p, n in zip(patterns, needles) if n is None or n & present]


def _folded_needles(patterns: tuple[LazyPattern, ...]) -> frozenset[str] | None:
    """Literals (lower-cased) of which a text must hold one to match any of the patterns;
    None when some pattern requires no literal."""
    needles: set[str] = set()
    for pattern in patterns:
        literals = pattern.literals
        if literals is None:
            return None
        needles.update(text.lower() for text, _caseless in literals)
    return frozenset(needles)
