"""The plain data that flows between the stages: read → parse → match → group → render.

Every stage takes and returns these frozen dataclasses, so a test can build any stage's input
by hand and no stage needs to know how another one works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One logical line of a log, cleaned for matching, still citing where it came from."""

    number: int  # 1-based physical line number in the source
    text: str  # cleaned: no ANSI, no `\r` history, no rank prefix or logging header
    stream: str = ""  # the rank / process prefix it carried ("rank3"), "" when none
    source: str = ""  # the file (or "<stdin>") it was read from
    header: str = ""  # the logging header removed from it (a timestamp, a level): a new record


@dataclass(frozen=True, slots=True)
class Frame:
    filename: str
    lineno: int | None
    name: str
    line: str = ""  # the source line, when the traceback shows it
    in_app: bool = True


@dataclass(frozen=True, slots=True)
class Stack:
    """One exception with the frames that raised it (one link of a chain)."""

    exc_type: str  # qualified as printed: "torch.OutOfMemoryError", "_pickle.UnpicklingError"
    message: str  # all lines of the message, joined by "\n"
    frames: tuple[Frame, ...] = ()
    is_cause: bool = False  # "The above exception was the direct cause of the following"
    line_number: int = 0  # where the exception line is in the source

    @property
    def in_app_frame(self) -> Frame | None:
        """The innermost frame in the user's own code: where the user should look."""
        for frame in reversed(self.frames):
            if frame.in_app:
                return frame
        return None


@dataclass(frozen=True, slots=True)
class Trace:
    """A whole traceback: its chain of stacks, oldest (the root cause) first."""

    stacks: tuple[Stack, ...]
    line_number: int  # where "Traceback (most recent call last):" stood
    stream: str = ""
    truncated: bool = False  # the log ended before the exception line


EvidenceKind = Literal["exception", "warning", "line", "metric"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One thing in the log that a signature can claim."""

    kind: EvidenceKind
    text: str  # what a signature's regex is searched in (a message, a line)
    line_number: int
    source: str = ""
    stream: str = ""
    exc_type: str = ""  # for exceptions and warnings
    summary: str = ""  # the one line to quote as evidence ("RuntimeError: expected ...")
    location: Frame | None = None
    chain_id: int | None = None  # evidence from one traceback chain share an id
    chain_index: int = 0  # position in the chain, 0 = root cause
    values: dict[str, str] = field(default_factory=dict)  # metric detectors' findings


@dataclass(frozen=True, slots=True)
class Match:
    """A signature's claim on one piece of evidence."""

    signature_id: str
    evidence: Evidence
    vars: dict[str, str]
    # The user's own (learned) signatures that also claim this evidence, best first: their
    # memory goes first in the draft, while the incident keeps the built-in identity.
    learned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recall:
    """A past journal entry of the user's own that recognised the same error."""

    signature: str  # the learned signature's id
    date: str  # YYYY-MM-DD of the journal day it was learned from
    title: str  # the user's title for that entry
    fix: str  # the user's own fix, verbatim
    lesson: str  # the user's own lesson, verbatim
    journal: str  # the journal's file name


@dataclass(frozen=True, slots=True)
class Incident:
    """What the user reads: one failure, however many times it was printed."""

    signature: str  # a knowledge-base id, or "unknown"
    title: str
    category: str
    severity: Severity
    count: int
    source: str
    line: int
    evidence: str
    location: Frame | None
    vars: dict[str, str]
    symptom: str
    cause: str
    fix: str
    lesson: str
    references: tuple[str, ...]
    fingerprint: str
    explained_by: str | None = None
    context: tuple[str, ...] = ()  # for unknown incidents: the last error-looking lines
    recalled: tuple[Recall, ...] = ()  # the user's own past entries for this error, oldest first
    metrics: MetricSummary | None = None  # the run's numbers, for incidents about training dynamics


@dataclass(frozen=True, slots=True)
class Report:
    sources: tuple[str, ...]
    incidents: tuple[Incident, ...]
    lang: str = "en"


@dataclass(frozen=True, slots=True)
class MetricStat:
    """One metric of a series in the draft's table, values formatted for reading."""

    name: str
    first: str
    min: str
    max: str
    last: str
    at_failure: str  # "" when no step is marked


@dataclass(frozen=True, slots=True)
class Sparkline:
    name: str
    line: str  # ▁▂▃▄▅▆▇█, × where a value was NaN/Inf
    marker: str  # spaces and a ^ under the marked step, "" when none
    log_scale: bool = False


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """The metric series an incident is about: a table and sparklines for the draft, points for a plot."""

    series: str  # "train", "eval", "train run 2"
    format: str  # dict | bar | line | line-unnumbered
    step_kind: str  # explicit | bar | order (order: the log prints no step, rows are counted)
    steps: str  # "10–200"
    rows: int
    lines: str  # "12–930": where the series is in the log
    failure_step: str  # the marked step, "" when none
    failure: str  # what happened there ("loss became NaN")
    failure_zh: str
    stats: tuple[MetricStat, ...]
    sparklines: tuple[Sparkline, ...]
    points: tuple[tuple[str, tuple[float, ...], tuple[float, ...]], ...] = ()  # (metric, steps, values)
    plot: str = ""  # path of the PNG drawn by `scan --plot`, relative to the report
