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


@dataclass(frozen=True, slots=True)
class Report:
    sources: tuple[str, ...]
    incidents: tuple[Incident, ...]
    lang: str = "en"
