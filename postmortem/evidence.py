"""Turn parsed items (traces, plain lines) into `Evidence` that signatures can claim.

A traceback gives one piece of evidence per exception in its chain. A line outside tracebacks
is an exception when it reads like one (`ValueError: ...` printed by a logger), a warning when
it has the shape `warnings.warn` prints (`file.py:12: UserWarning: ...`), and a plain line
otherwise. A bare exception line whose message goes on over the next lines (a logger printing
`str(exc)`) arrives as an `ExceptionLine` carrying those lines: its evidence text is the whole
message, while its summary, what a line signature reads, stays the line itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import regex

from .model import Evidence, Frame, LogLine, Trace

STANDALONE_EXCEPTION_RE = regex.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception))(?::\s(?P<msg>.*))?$"
)
WARNING_RE = regex.compile(
    r"^(?:(?P<file>\S.*?):(?P<lineno>\d+):\s)?(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]*Warning):\s(?P<msg>.*)$"
)


@dataclass(frozen=True, slots=True)
class ExceptionLine(LogLine):
    """A bare exception line and the lines after it that continue its message (tracebacks.py)."""

    continuation: tuple[str, ...] = ()


def reads_as_exception(text: str) -> bool:
    """`text` (stripped) is a bare exception line: `ValueError: ...`, or a line ending in `SomeError`."""
    return _exception_match(text) is not None


def reads_as_warning(text: str) -> bool:
    """`text` (stripped) has the shape `warnings.warn` prints: `file.py:12: UserWarning: ...`."""
    return _warning_match(text) is not None


def _exception_match(text: str):
    # The substring tests first: most lines hold neither, and they cost far less than the regex.
    if text.endswith(("Error", "Exception")) or "Error: " in text or "Exception: " in text:
        return STANDALONE_EXCEPTION_RE.match(text)
    return None


def _warning_match(text: str):
    return WARNING_RE.match(text) if "Warning: " in text else None


def evidence_from_trace(trace: Trace, source: str, chain_id: int) -> list[Evidence]:
    fallback = next((s.in_app_frame for s in reversed(trace.stacks) if s.in_app_frame), None)
    found = []
    for index, stack in enumerate(trace.stacks):
        first_line = stack.message.split("\n", 1)[0]
        summary = f"{stack.exc_type}: {first_line}" if first_line else stack.exc_type
        found.append(
            Evidence(
                kind="warning" if stack.exc_type.endswith("Warning") else "exception",
                text=stack.message,
                line_number=stack.line_number or trace.line_number,
                source=source,
                stream=trace.stream,
                exc_type=stack.exc_type,
                summary=summary or "Traceback (cut off before the exception)",
                location=stack.in_app_frame or fallback,
                chain_id=chain_id,
                chain_index=index,
            )
        )
    return found


def evidence_from_line(line: LogLine) -> Evidence:
    text = line.text.strip()
    match = _exception_match(text)
    if match is not None:
        message = match["msg"] or ""
        if isinstance(line, ExceptionLine) and line.continuation:
            message = "\n".join((message, *line.continuation))
        return _evidence(line, "exception", message, match["type"], text)
    match = _warning_match(text)
    if match is not None:
        location = None
        if match["file"]:
            location = Frame(match["file"], int(match["lineno"]), "", "", True)
        return _evidence(line, "warning", match["msg"], match["type"], text, location)
    return _evidence(line, "line", text, "", text)


def _evidence(
    line: LogLine, kind, text: str, exc_type: str, summary: str, location: Frame | None = None
) -> Evidence:
    return Evidence(
        kind=kind, text=text, line_number=line.number, source=line.source, stream=line.stream,
        exc_type=exc_type, summary=summary, location=location,
    )
