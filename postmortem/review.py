"""A day's review: the logs of a day, scanned one by one, as entries and an attempts table.

A day of work is often several logs of the same problem (attempt 1 failed with X, attempt 2 with
Y, attempt 3 passed). Each log is scanned on its own, so that what each attempt gave is known;
the incidents are then merged by fingerprint (the same failure in two logs is one entry) in the
order the logs were written, and, when the logs are attempts at the same thing, an attempts
table records how it went.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .journal import Attempt
from .knowledge import KnowledgeBase, load_knowledge_base
from .model import Incident, Report
from .reader import display_name
from .runner import read_run_summary, signal_name
from .scan import scan
from .texts import DEFAULT_LANG, ui_text


@dataclass(frozen=True)
class DayReview:
    day: dt.date
    sources: tuple[str, ...]  # oldest log first
    incidents: tuple[Incident, ...]
    attempts: tuple[Attempt, ...] = ()  # empty unless the logs are attempts at the same problem
    reports: tuple[Report, ...] = ()  # one per log, in the order of `sources`


def review_logs(
    paths: Sequence[str | os.PathLike],
    *,
    kb: KnowledgeBase | None = None,
    lang: str = DEFAULT_LANG,
    day: dt.date | None = None,
    redact: bool = True,
    problems: list[str] | None = None,
) -> DayReview:
    """Scan each log, oldest first; the day is `day`, else the day the newest log was written."""
    kb = kb or load_knowledge_base()
    ordered = sorted(paths, key=_written_at)
    reports = tuple(scan([p], kb=kb, lang=lang, redact=redact, problems=problems) for p in ordered)
    sources = tuple(display_name(p) for p in ordered)
    if day is None:
        newest = max((_written_at(p) for p in ordered), default=0.0)
        day = dt.date.fromtimestamp(newest) if newest else dt.date.today()
    incidents = merge_incidents(reports)
    attempts = attempts_of(ordered, reports, lang) if is_sequence(ordered, reports) else ()
    return DayReview(day, sources, incidents, attempts, reports)


def merge_incidents(reports: Sequence[Report]) -> tuple[Incident, ...]:
    """The incidents of several logs, one per fingerprint, first seen first; counts add up."""
    merged: dict[str, Incident] = {}
    for report in reports:
        for incident in report.incidents:
            seen = merged.get(incident.fingerprint)
            if seen is None:
                merged[incident.fingerprint] = incident
            else:
                recalled = seen.recalled + tuple(r for r in incident.recalled if r not in seen.recalled)
                merged[incident.fingerprint] = dataclasses.replace(
                    seen, count=seen.count + incident.count, recalled=recalled)
    return tuple(merged.values())


def is_sequence(paths: Sequence[str | os.PathLike], reports: Sequence[Report]) -> bool:
    """Are these logs attempts at the same problem? Two logs failing with the same signature or
    in the same file of the user's code, or `postmortem run` logs of one command."""
    if len(reports) < 2 or not any(r.incidents for r in reports):
        return False
    commands = [getattr(read_run_summary(p), "command", None) for p in paths]
    if all(commands) and len(set(commands)) == 1:
        return True
    seen: dict[str, int] = {}
    for index, report in enumerate(reports):
        keys = set()
        for incident in report.incidents:
            if incident.signature != "unknown":
                keys.add(f"sig:{incident.signature}")
            if incident.location is not None:
                keys.add(f"file:{Path(incident.location.filename).name}")
        for key in keys:
            if key in seen and seen[key] != index:
                return True
            seen[key] = index
    return False


def attempts_of(paths: Sequence[str | os.PathLike], reports: Sequence[Report], lang: str) -> tuple[Attempt, ...]:
    rows = []
    for path, report in zip(paths, reports):
        name = Path(display_name(path)).name
        root = report.incidents[0] if report.incidents else None
        if root is not None:
            outcome = ui_text(lang, "outcome_failed").format(title=root.title)
            rows.append(Attempt(name, outcome, root.evidence, root.fingerprint))
            continue
        summary = read_run_summary(path)
        if summary is not None and summary.exit_status == 0:
            outcome = ui_text(lang, "outcome_passed")
        elif summary is not None and summary.signal is not None:
            outcome = ui_text(lang, "outcome_killed").format(signal=signal_name(summary.signal))
        elif summary is not None and summary.exit_status is not None:
            outcome = ui_text(lang, "outcome_exit").format(status=summary.exit_status)
        else:
            outcome = ui_text(lang, "outcome_clean")
        rows.append(Attempt(name, outcome))
    return tuple(rows)


def _written_at(path: str | os.PathLike) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
