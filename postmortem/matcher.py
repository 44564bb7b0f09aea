"""Decide which signature, if any, claims each piece of evidence.

Every regex runs with a timeout: a catastrophic pattern (a user's, most likely) disables its
signature for the rest of the scan and is reported, instead of hanging the scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import regex

from .knowledge import KnowledgeBase, Signature
from .model import Evidence, Match

REGEX_TIMEOUT_SECONDS = 1.0
INLINE_FLAGS_RE = regex.compile(r"^\(\?([aiLmsux]+)\)")


@dataclass
class Matcher:
    kb: KnowledgeBase
    timeout: float = REGEX_TIMEOUT_SECONDS
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._disabled: set[str] = set()
        ranked = sorted(self.kb.signatures, key=lambda s: (-s.priority, s.id))
        ranked = [s for s in ranked if s.status != "deprecated"]
        self._exception_sigs = [s for s in ranked if s.exception_types or s.message_patterns]
        self._line_sigs = [s for s in ranked if s.line_patterns]
        self._metric_sigs = [s for s in ranked if s.metric]
        self._line_prefilter = _combine([p for s in self._line_sigs for p in s.line_patterns])

    def match(self, evidence: Evidence) -> Match | None:
        if evidence.kind == "metric":
            for sig in self._metric_sigs:
                if sig.metric == evidence.text and sig.id not in self._disabled:
                    return Match(sig.id, evidence, dict(evidence.values))
            return None
        if evidence.kind in ("exception", "warning"):
            found = self._match_exception(evidence)
            if found is not None or evidence.chain_id is not None:
                return found
        return self._match_line(evidence)

    def _match_exception(self, evidence: Evidence) -> Match | None:
        for sig in self._exception_sigs:
            if sig.id in self._disabled or not _type_matches(sig, evidence.exc_type):
                continue
            variables: dict[str, str] | None = {}
            if sig.message_patterns:
                variables = self._search_all(sig, sig.message_patterns, evidence.text)
            if variables is not None and not self._excluded(sig, evidence):
                return Match(sig.id, evidence, variables)
        return None

    def _match_line(self, evidence: Evidence) -> Match | None:
        text = evidence.summary
        if self._line_prefilter is not None and not self._safe_search(None, self._line_prefilter, text):
            return None
        for sig in self._line_sigs:
            if sig.id in self._disabled:
                continue
            variables = self._search_all(sig, sig.line_patterns, text)
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

    def _safe_search(self, sig: Signature | None, pattern: regex.Pattern, text: str):
        try:
            return pattern.search(text, timeout=self.timeout)
        except TimeoutError:
            if sig is None:
                # The combined prefilter is only a shortcut: fall back to the patterns one by one.
                self._line_prefilter = None
                return True
            self._disabled.add(sig.id)
            self.problems.append(
                f"{sig.path}: a regex took longer than {self.timeout:g}s on one line; "
                f"signature '{sig.id}' is disabled for this scan"
            )
            return None


def _type_matches(sig: Signature, exc_type: str) -> bool:
    if not sig.exception_types:
        return True
    return any(exc_type == name or exc_type.endswith("." + name) for name in sig.exception_types)


def _combine(patterns: list[regex.Pattern]) -> regex.Pattern | None:
    """One alternation of all line patterns: one search per line instead of one per pattern."""
    if not patterns:
        return None
    parts = []
    for pattern in patterns:
        source = pattern.pattern
        flags = INLINE_FLAGS_RE.match(source)
        if flags is not None:
            source = f"(?{flags.group(1)}:{source[flags.end():]})"
        parts.append(f"(?:{source})")
    try:
        return regex.compile("|".join(parts), regex.MULTILINE)
    except regex.error:
        return None
