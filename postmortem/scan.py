"""The pipeline in one call: read → parse → match → group → redact, for one or more logs.

`scan()` is the Python API that the CLI, the tests and other programs use.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .evidence import evidence_from_line, evidence_from_trace
from .grouping import group_incidents
from .knowledge import KnowledgeBase, load_knowledge_base
from .matcher import Matcher
from .metrics import MetricCollector
from .model import Evidence, LogLine, Match, Report, Trace
from .reader import display_name, read_log
from .redact import redact_incident
from .texts import DEFAULT_LANG
from .tracebacks import split_tracebacks


@dataclass
class SourceResult:
    """What one log gave, before grouping: matches, unrecognised tracebacks, metric series."""

    source: str
    matches: list[Match] = field(default_factory=list)
    unmatched: list[Evidence] = field(default_factory=list)
    metrics: MetricCollector | None = None


def scan(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    kb: KnowledgeBase | None = None,
    lang: str = DEFAULT_LANG,
    patterns_dirs: Iterable[str | os.PathLike] = (),
    redact: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    problems: list[str] | None = None,
) -> Report:
    """Scan logs (paths, or "-" for stdin) and return the report, root causes first."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if kb is None:
        kb = load_knowledge_base(patterns_dirs)
    matcher = Matcher(kb)
    results = [scan_lines(read_log(src, on_bytes=on_bytes), display_name(src), matcher) for src in sources]
    if problems is not None:
        problems.extend(matcher.problems)
    return build_report(results, kb, lang, redact)


def scan_text(text: str, *, kb: KnowledgeBase | None = None, lang: str = DEFAULT_LANG,
              source: str = "<text>", redact: bool = True) -> Report:
    """Scan a log held in a string (examples, tests, notebooks)."""
    import io

    from .reader import iter_lines

    kb = kb or load_knowledge_base()
    lines = iter_lines(io.BytesIO(text.encode("utf-8")), source)
    return build_report([scan_lines(lines, source, Matcher(kb))], kb, lang, redact)


def scan_lines(lines: Iterable[LogLine], source: str, matcher: Matcher) -> SourceResult:
    result = SourceResult(source, metrics=MetricCollector())
    chain_id = 0
    for item in split_tracebacks(lines):
        if isinstance(item, Trace):
            chain_id += 1
            for evidence in evidence_from_trace(item, source, chain_id):
                _claim(matcher, evidence, result)
            continue
        result.metrics.feed(item)
        if item.text:
            _claim(matcher, evidence_from_line(item), result, report_unmatched=False)
    for evidence in result.metrics.findings(source):
        _claim(matcher, evidence, result, report_unmatched=False)
    return result


def _claim(matcher: Matcher, evidence: Evidence, result: SourceResult, report_unmatched: bool = True) -> None:
    match = matcher.match(evidence)
    if match is not None:
        result.matches.append(match)
    elif report_unmatched and evidence.kind == "exception":
        result.unmatched.append(evidence)


def build_report(results: list[SourceResult], kb: KnowledgeBase, lang: str, redact: bool) -> Report:
    order = {r.source: i for i, r in enumerate(results)}
    incidents = group_incidents(
        [m for r in results for m in r.matches],
        [e for r in results for e in r.unmatched],
        kb, lang, order,
    )
    if redact:
        incidents = [redact_incident(i) for i in incidents]
    return Report(tuple(r.source for r in results), tuple(incidents), lang)
