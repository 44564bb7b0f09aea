"""Find Python tracebacks in a stream of log lines and turn them into `Trace` data.

`split_tracebacks` passes every line that is not part of a traceback through untouched, in
order, and yields a `Trace` where a traceback ends, so later stages see one stream of
`LogLine | Trace`. Each rank/process stream has its own parser state: tracebacks that eight
ranks print at the same time, line by line interleaved, come out as eight whole traces.

Understood: standard tracebacks with Python 3.11+ caret lines, chained exceptions (direct cause
and during handling), exception groups (`| ` borders), IPython/Jupyter tracebacks (`Cell In[3],
line 5`, IPython 8.0-8.3's `Input In [3], in <cell line: 2>()`, `----> 5`), Sacred's filtered
ones (`Traceback (most recent calls WITHOUT Sacred internals):`), and tracebacks cut off by the
end of the log. A live stack dumped innermost first (faulthandler's or gdb's `Traceback (most
recent call first):`) raised nothing: it is not read as one.

Also, within one stream:
- Two ranks printing the same traceback with no rank prefix to tell them apart (plain `torchrun`,
  `accelerate launch`): their lines mix, one rank a few lines ahead. A second header in the
  middle of the frames opens *twin* mode: the copy behind only repeats lines already read, which
  are dropped, except its exception line, which makes a trace of its own (the stack it repeats),
  so the failure counts twice instead of leaving a traceback cut off before its exception.
- `torch.multiprocessing.spawn` puts the child's traceback inside its exception's message
  ("-- Process 0 terminated with the following error:"): the child's traceback replaces the
  wrapper's, so the child's exception is the one reported.
- A bare exception line (a logger printing `str(exc)`) whose message goes on over the next lines
  is held until the message ends, and comes out as an `ExceptionLine` carrying those lines,
  followed by the lines themselves, unchanged.
- torch re-raises a DataLoader worker's (or a DataParallel replica's) exception with the worker's
  traceback as its message: "Caught X in DataLoader worker process 0." and "Original Traceback
  (most recent call last):" (torch 0.4-1.1: "RuntimeError: Traceback (most recent call last):").
  That traceback is read as stacks of their own, placed before the wrapper: the worker's
  exception is the root cause, and its frames say where in the dataset code it happened.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import regex

from .evidence import ExceptionLine, reads_as_exception, reads_as_warning
from .model import Frame, LogLine, Stack, Trace
from .reader import PROGRESS_BAR_RE

HEADER_RE = regex.compile(
    # Sacred prints its filtered traceback under "Traceback (most recent calls WITHOUT Sacred
    # internals):", or "Traceback (most recent calls):" when the exception came from Sacred itself.
    r"^\s*(?:\+\s*)?(?:Exception Group )?Traceback \(most recent call(?: last|s(?: WITHOUT [Ss]acred internals)?)\):?\s*$"
    # IPython: "RuntimeError                              Traceback (most recent call last)"; IPython 5
    # pasted without its colours (Sacred#237) lost the padding: "AttributeErrorTraceback (most ...)"
    r"|^\s*(?P<ipython_type>[A-Za-z_][\w.]*?)\s*Traceback \(most recent call last\)\s*$"
    # rich (accelerate, typer, many CLIs): "╭──── Traceback (most recent call last) ────╮"
    r"|^\s*╭─+ Traceback \(most recent call last\) ─+╮\s*$"
)
# Inside a rich box every line is "│ ... │"; a frame reads "│ /path/file.py:42 in forward │" (a
# long path wraps onto the next box line) and its code line "│ ❱ 42 │   code │".
RICH_BOX_LINE_RE = regex.compile(r"^\s*[│╰╭]")
RICH_CONTENT_RE = regex.compile(r"^\s*│ ?(?P<content>.*?)\s*│?\s*$")
RICH_FRAME_RE = regex.compile(r"^(?P<file>\S+?):(?P<line>\d+) in (?P<func>\S+)$")
RICH_CODE_RE = regex.compile(r"^❱\s*\d+\s*│\s?(?P<code>.*)$")
FRAME_RE = regex.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+?))?\s*$')
IPYTHON_FRAME_RE = regex.compile(
    r"^\s*(?:Cell (?P<cell>In\s*\[\d+\]), line (?P<cline>\d+)(?:, in (?P<cfunc>.+?))?"
    # IPython 8.0-8.3: "Input In [3], in <module>", "Input In [3], in <cell line: 2>()" (the line of
    # the statement; the "---->" arrow below gives the exact one), "Input In [3], in train(model)"
    r"|Input (?P<input>In\s*\[\d+\]), in (?P<ifunc>.+?)"
    r"|File (?P<file>\S.*?):(?P<line>\d+), in (?P<func>.+?)"
    r"|(?P<ofile><ipython-input-[^>]+>|\S+\.pyc?) in (?P<ofunc><?[\w.]+>?)\(.*)\s*$"
)
IPYTHON_CODE_RE = regex.compile(r"^\s*(?P<arrow>-+>\s*)?(?P<num>\d+)\s(?P<code>.*)$")
# `[\^~]+[\^~\s]*` could split a run of carets between its two parts in n ways: quadratic on a
# 10^5-character line. One caret, then the class, matches the same lines in linear time.
CARET_RE = regex.compile(r"^\s*[\^~][\^~\s]*$")
REPEAT_RE = regex.compile(r"^\s*(?:\[Previous line repeated \d+ more times?\]|\.\.\.)\s*$")
PLAIN_HEADER = "Traceback (most recent call last):"
CAUSE_MARKER = "The above exception was the direct cause of the following exception:"
CONTEXT_MARKER = "During handling of the above exception, another exception occurred:"
# Exception groups draw a border: "  | " before each line, "  +-+---- 1 ----" between members.
GROUP_BORDER_RE = regex.compile(r"^\s*(?:\+-[+-]*(?: \d+ -+| \.\.\. )?-*\s*$|\+?-+ \d+ -+\s*$)")
GROUP_PREFIX_RE = regex.compile(r"^(\s*[|+]\s)+")
EXCEPTION_RE = regex.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::(?:\s(?P<msg>.*))?)?$")
# A bare name only counts as an exception where it reads like one; "wandb: ..." interleaved from
# another stream must not end a traceback.
EXCEPTION_NAME_RE = regex.compile(
    r"(?:^[\w]+\.[\w.]+$)|(?:(?:Error|Exception|Warning|Interrupt|Exit|Iteration|Failed|Failure|"
    r"Timeout|Abort|Unsupported|Fault)$)|(?:^[A-Z][a-z]+[A-Z]\w*$)"
)
# Library code: everything an installed interpreter or package manager put there, including the
# console scripts of an environment (`env/bin/torchrun`, no `.py`; `Scripts\accelerate-script.py`).
LIBRARY_PATH_RE = regex.compile(
    r"(?:site-packages|dist-packages|[/\\]lib[/\\]python\d[\d.]*[/\\]|[/\\]Lib[/\\]"
    r"|[/\\]bin[/\\](?![^/\\]*\.py$)[\w.-]+$|[/\\]Scripts[/\\]"
    r"|^<(?!ipython-input|stdin|string|In \[))"
)
# torch.multiprocessing.spawn's ProcessRaisedException (a bare Exception before torch 1.8): its
# message is "\n\n-- Process 0 terminated with the following error:\n" and the child's traceback.
CHILD_TRACEBACK_RE = regex.compile(r"^\s*-- Process \d+ terminated with the following error:\s*$")
# torch re-raises an exception caught in a DataLoader worker (or a DataParallel replica, the pin
# memory thread) with the worker's formatted traceback as its message. torch >= 1.2 (ExceptionWrapper):
# "RuntimeError: Caught RuntimeError in DataLoader worker process 0." then this line and the frames;
# torch 0.4-1.1: "RuntimeError: Traceback (most recent call last):" and the frames.
ORIGINAL_HEADER = "Original Traceback (most recent call last):"
MAX_MESSAGE_LINES = 60
MAX_NOISE_LINES = 40  # lines that fit nothing before a traceback is given up as cut off
MAX_HELD_LINES = 12  # message lines after a blank line, held until a chain marker claims them
# Lines joined to a bare exception line's message: DDP's unused-parameters error is 5 lines, 6
# with TORCH_DISTRIBUTED_DEBUG=DETAIL. Few, so that a logged error does not swallow later output.
MAX_JOINED_LINES = 8


def is_in_app(filename: str) -> bool:
    return LIBRARY_PATH_RE.search(filename) is None


def split_tracebacks(lines: Iterable[LogLine]) -> Iterator[LogLine | Trace]:
    """Pass lines through; replace each traceback's lines by one `Trace` at its end."""
    splitter = TracebackSplitter()
    for line in lines:
        yield from splitter.feed(line)
    yield from splitter.finish()


class TracebackSplitter:
    """`split_tracebacks` one line at a time, for callers that skip lines while it is idle."""

    def __init__(self) -> None:
        self._parsers: dict[str, _StreamParser] = {}
        # The streams inside a traceback, kept up to date line by line: asking every stream's
        # parser on each line cost O(streams) a line, quadratic in a log of many ranks.
        self._busy_streams: set[str] = set()

    @property
    def busy(self) -> bool:
        """True while some stream is inside a traceback: then every line must be fed."""
        return bool(self._busy_streams)

    def feed(self, line: LogLine) -> Iterator[LogLine | Trace]:
        parser = self._parsers.get(line.stream)
        if parser is None:
            parser = self._parsers[line.stream] = _StreamParser(line.stream)
        yield from parser.feed(line)
        if parser.state == "idle":
            self._busy_streams.discard(parser.stream)
        else:
            self._busy_streams.add(parser.stream)

    def finish(self) -> Iterator[LogLine | Trace]:
        for parser in list(self._parsers.values()):
            yield from parser.finish()
        self._busy_streams.clear()


@dataclass
class _PendingStack:
    frames: list[Frame] = field(default_factory=list)
    exc_type: str = ""
    message_lines: list[str] = field(default_factory=list)
    is_cause: bool = False
    line_number: int = 0
    code_expected: bool = False
    path_head: str = ""  # rich: a frame's path wrapped onto two box lines


class _StreamParser:
    """The state machine for one stream: idle → frames → message → (chain marker → frames)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._reset()

    def _reset(self) -> None:
        self.state = "idle"
        self.stacks: list[Stack] = []
        self.current: _PendingStack | None = None
        self.start_line = 0
        self.noise = 0
        self.next_is_cause = False
        self.marker_seen = False
        self.in_group = False
        self.tail: list[LogLine] = []  # lines after a blank that may still belong to the message
        # Interleaved copies of this traceback (other ranks'): the headers that opened them, the
        # lines read so far (stripped), the exception lines read (-> index of their stack in
        # self.stacks) and, per copy, the indices of the stacks whose exception it repeated.
        self.twins = 0
        self.seen_lines: set[str] = set()
        self.exception_lines: dict[str, int] = {}
        self.repeats: dict[int, int] = {}  # stack index -> how many copies repeated its exception
        self.twin_traces: list[list[int]] = []
        self.repeated = 0  # the exceptions repeated, all copies together
        self.copy_header: LogLine | None = None  # a header that seems a lagging copy's (see below)
        # A bare exception line, and the lines continuing its message (state "held").
        self.held: LogLine | None = None
        self.held_more: list[LogLine] = []
        # Stacks (indices in self.stacks) whose message is another process's traceback, read as
        # stacks of their own after them: the worker's exception caused the wrapper's.
        self.wrappers: list[int] = []

    # -- driving ------------------------------------------------------------------------------
    def feed(self, line: LogLine) -> Iterator[LogLine | Trace]:
        if self.state == "held":
            if self._continues_held(line):
                self.held_more.append(line)
                if len(self.held_more) >= MAX_JOINED_LINES:
                    yield from self._release_held()
                return
            yield from self._release_held()
        if self.state == "idle":
            if self._start(line):
                return
            if reads_as_exception(line.text.strip()):
                self.state, self.held, self.held_more = "held", line, []
                return
            yield line
            return
        text = line.text
        if self.in_group or (text.lstrip().startswith(("|", "+")) and self.state != "message"):
            if GROUP_BORDER_RE.match(text):
                # "+-+---- 1 ----" opens a member; a border with no number closes the group.
                self.in_group = any(c.isdigit() for c in text)
                self._close_stack()
                self.state = "chain"
                return
            unprefixed = GROUP_PREFIX_RE.sub("", text, count=1)
            if unprefixed != text:
                self.in_group = True
                text = unprefixed
        stripped = text.strip()
        if self.copy_header is not None and stripped:
            # The header was a copy's if the copy goes on repeating lines; else a new traceback.
            header, self.copy_header = self.copy_header, None
            if stripped not in self.seen_lines:
                self._close_stack()
                yield from self._emit_and_replay(header)
                yield from self.feed(line)
                return
        if self.twins and not self.in_group and self._is_twin_line(line, text):
            return
        if stripped:
            self.seen_lines.add(stripped)
        if self.state == "message":
            if stripped == ORIGINAL_HEADER and not self.in_group:
                self._open_nested_traceback(line)
                return
            if self._continues_message(line, text):
                assert self.current is not None
                self.current.message_lines.append(text)
                return
            # The message ended; a chain marker, another member of a group, or anything else
            # (which ends the traceback) may follow.
            self._close_stack()
            self.state = "chain"
        if self.state == "chain":
            if GROUP_BORDER_RE.match(text) or (not stripped and not self.tail):
                return
            if stripped in (CAUSE_MARKER, CONTEXT_MARKER):
                self._absorb_tail()
                self.next_is_cause = stripped == CAUSE_MARKER
                self.marker_seen = True
                return
            if HEADER_RE.match(text) and self._announces_child_traceback():
                # The wrapper's message is the child's traceback: that traceback is the one to
                # read, and the wrapper (frames of the launcher, no message of its own) goes.
                self.stacks.pop()
                self.tail = []
                if not self.stacks:
                    self.start_line = line.number
                self._begin_stack(line)
                return
            if (self.marker_seen or self.in_group) and HEADER_RE.match(text):
                self._begin_stack(line)
                return
            exception = EXCEPTION_RE.match(stripped)
            if self.in_group and exception is not None and EXCEPTION_NAME_RE.search(exception["type"]):
                # A group member that was never raised is printed without a traceback.
                self._begin_stack(line)
                self._set_exception(exception, line)
                return
            if self._may_continue_message(line):
                # Some messages hold a blank line (huggingface_hub's HTTP errors); what follows
                # it is the message's only if a chain marker comes next. Hold it until we know.
                self.tail.append(line)
                return
            yield from self._emit_and_replay(line)
            return
        # state == "frames"
        yield from self._feed_frames(line, text)

    def finish(self) -> Iterator[LogLine | Trace]:
        if self.state == "idle":
            return
        if self.state == "held":
            yield from self._release_held()
            return
        truncated = self.state == "frames" or (self.state == "chain" and self.marker_seen)
        if self.current is not None and (self.current.frames or self.current.exc_type):
            self._close_stack()
        tail = self.tail
        if self.stacks or self.twin_traces:
            yield from self._emit(truncated=truncated)
        else:
            self._reset()
        for line in tail:
            yield from self.feed(line)
        yield from self.finish()

    def _may_continue_message(self, line: LogLine) -> bool:
        return (
            bool(self.stacks) and not self.in_group and not self.marker_seen and not line.header
            and len(self.tail) < MAX_HELD_LINES and not HEADER_RE.match(line.text)
            and PROGRESS_BAR_RE.search(line.text) is None
        )

    def _absorb_tail(self) -> None:
        if not self.tail or not self.stacks:
            self.tail = []
            return
        last = self.stacks[-1]
        extra = "\n".join(line.text for line in self.tail).rstrip("\n")
        self.stacks[-1] = dataclasses.replace(last, message=f"{last.message}\n\n{extra}".strip("\n"))
        self.tail = []

    def _emit_and_replay(self, line: LogLine) -> Iterator[LogLine | Trace]:
        """End the traceback before `line`; the held lines were ordinary output after all."""
        held = self.tail
        yield from self._emit()
        for old in [*held, line]:
            yield from self.feed(old)

    def _announces_child_traceback(self) -> bool:
        """The last exception's message ends with torch.multiprocessing.spawn's announcement of
        the child's traceback (after a blank line, it waits in the tail)."""
        if not self.stacks or self.in_group:
            return False
        last = self.tail[-1].text if self.tail else self.stacks[-1].message.rsplit("\n", 1)[-1]
        return CHILD_TRACEBACK_RE.match(last) is not None

    # -- a bare exception line ----------------------------------------------------------------
    @staticmethod
    def _continues_held(line: LogLine) -> bool:
        """`line` goes on with a bare exception line's message: no new record (a logging header,
        a blank line, a traceback, another exception or warning, a progress bar)."""
        text = line.text
        stripped = text.strip()
        if not stripped or line.header or "Traceback" in text and HEADER_RE.match(text):
            return False
        if stripped in (CAUSE_MARKER, CONTEXT_MARKER) or reads_as_exception(stripped):
            return False
        return not reads_as_warning(stripped) and PROGRESS_BAR_RE.search(text) is None

    def _release_held(self) -> Iterator[LogLine]:
        held, more = self.held, self.held_more
        assert held is not None
        self.state, self.held, self.held_more = "idle", None, []
        if more:
            yield ExceptionLine(held.number, held.text, held.stream, held.source, held.header,
                                tuple(line.text for line in more))
        else:
            yield held
        yield from more

    # -- another rank's copy of the traceback -------------------------------------------------
    def _is_twin_line(self, line: LogLine, text: str) -> bool:
        """In twin mode: `line` is the copy behind repeating what was read (dropped; an
        exception line counts for that copy), or a chain marker out of place. Headers, markers
        and blank lines recur in a chain: the state machine reads them as usual."""
        stripped = text.strip()
        if HEADER_RE.match(text):
            # After an exception, no chain marker read: while a copy has not yet repeated every
            # exception, the header may be that copy's (of the next link). The line after it says.
            if self.state in ("message", "chain") and not self.marker_seen and self._copy_lags():
                self.copy_header = line
                return True
            return False
        if not stripped:
            return False
        if stripped in (CAUSE_MARKER, CONTEXT_MARKER):
            return self.state != "chain"
        index = self.exception_lines.get(stripped)
        if index is None and self.state != "frames" and self._stacks_read():
            # A near-identical copy: its exception's message differs ("GPU 1" for "GPU 0").
            exception = EXCEPTION_RE.match(stripped)
            if exception is not None and not text[:1].isspace() and exception["type"] == self._last_type():
                index = self._stacks_read() - 1
        if index is not None:
            self._repeat_exception(index)
            return True
        return stripped in self.seen_lines

    def _stacks_read(self) -> int:
        """Stacks whose exception line has been read, closed or not."""
        return len(self.stacks) + (1 if self.current is not None and self.current.exc_type else 0)

    def _last_type(self) -> str:
        if self.current is not None and self.current.exc_type:
            return self.current.exc_type
        return self.stacks[-1].exc_type if self.stacks else ""

    def _copy_lags(self) -> bool:
        # A copy repeats each exception at most once: all caught up when every one has them all.
        return len(self.twin_traces) < self.twins or self.repeated < len(self.twin_traces) * self._stacks_read()

    def _repeat_exception(self, index: int) -> None:
        copy = self.repeats.get(index, 0)
        self.repeats[index] = copy + 1
        while len(self.twin_traces) <= copy:
            self.twin_traces.append([])
        self.twin_traces[copy].append(index)
        self.repeated += 1

    # -- states -------------------------------------------------------------------------------
    def _start(self, line: LogLine) -> bool:
        text = line.text
        if "Traceback" not in text:
            return False
        stripped = GROUP_PREFIX_RE.sub("", text, count=1)
        if not HEADER_RE.match(stripped) and not stripped.rstrip().endswith(PLAIN_HEADER):
            # A header after other output on the same line (an input() prompt, a print without
            # newline) still starts a traceback.
            return False
        self.state = "frames"
        self.start_line = line.number
        self.in_group = "Exception Group" in text
        self._begin_stack(line)
        return True

    def _begin_stack(self, line: LogLine) -> None:
        self.state = "frames"
        self.noise = 0
        self.current = _PendingStack(is_cause=self.next_is_cause, line_number=line.number)
        self.next_is_cause = False
        self.marker_seen = False

    def _feed_frames(self, line: LogLine, text: str) -> Iterator[LogLine | Trace]:
        current = self.current
        assert current is not None
        if RICH_BOX_LINE_RE.match(text):
            self._feed_rich_box_line(current, text)
            return
        frame = FRAME_RE.match(text)
        if frame is not None:
            current.frames.append(
                Frame(frame["file"], int(frame["line"]), frame["func"] or "", "", is_in_app(frame["file"]))
            )
            current.code_expected = True
            return
        ipy = IPYTHON_FRAME_RE.match(text)
        if ipy is not None:
            if ipy["cell"]:
                filename, lineno, func = ipy["cell"].replace(" ", ""), int(ipy["cline"]), ipy["cfunc"] or "<module>"
                filename = f"Cell {filename}"
            elif ipy["input"]:
                # The line comes with the "---->" arrow; module-level code is "<cell line: 2>()".
                filename, lineno, func = f"Input {ipy['input'].replace(' ', '')}", None, ipy["ifunc"]
                func = "<module>" if func.startswith(("<module>", "<cell line")) else func.split("(", 1)[0]
            elif ipy["file"]:
                # IPython 8 prints the signature: "in TinyLoRA.forward(self, x)"; keep the name.
                filename, lineno, func = ipy["file"], int(ipy["line"]), ipy["func"].split("(", 1)[0]
            else:
                filename, lineno, func = ipy["ofile"], None, ipy["ofunc"]
            current.frames.append(Frame(filename, lineno, func, "", is_in_app(filename)))
            current.code_expected = False
            return
        stripped = text.strip()
        if not stripped or CARET_RE.match(text) or REPEAT_RE.match(text):
            return
        code = IPYTHON_CODE_RE.match(text)
        if code is not None and current.frames and not current.code_expected:
            if code["arrow"]:
                last = current.frames[-1]
                current.frames[-1] = Frame(
                    last.filename, last.lineno or int(code["num"]), last.name, code["code"].strip(), last.in_app
                )
            return
        if HEADER_RE.match(text) and not self.in_group:
            # Another rank's copy of this traceback begins before this one ended.
            self.twins += 1
            return
        if current.code_expected and text[:1].isspace():
            last = current.frames[-1]
            current.frames[-1] = Frame(last.filename, last.lineno, last.name, stripped, last.in_app)
            current.code_expected = False
            return
        exception = EXCEPTION_RE.match(stripped)
        if exception is not None and self._looks_like_exception(exception["type"], current):
            self._set_exception(exception, line)
            return
        current.code_expected = False
        self.noise += 1
        if self.noise > MAX_NOISE_LINES:
            # The traceback was cut off; what it had is still worth reporting.
            self._close_stack()
            yield from self._emit(truncated=True)
        if HEADER_RE.match(text):  # (in an exception group) a traceback after one cut off
            yield from self.feed(line)
            return
        yield line

    def _feed_rich_box_line(self, current: _PendingStack, text: str) -> None:
        """A line of rich's boxed traceback: a frame, its highlighted code line, or decoration."""
        content = RICH_CONTENT_RE.match(text)
        body = content["content"] if content is not None and text.lstrip().startswith("│") else ""
        if not body:
            current.path_head = ""
            return
        frame = RICH_FRAME_RE.match(current.path_head + body) or RICH_FRAME_RE.match(body)
        if frame is not None:
            filename = frame["file"]
            current.frames.append(Frame(filename, int(frame["line"]), frame["func"], "", is_in_app(filename)))
            current.path_head = ""
            return
        code = RICH_CODE_RE.match(body)
        if code is not None and current.frames:
            last = current.frames[-1]
            source = code["code"].replace("│", " ").strip()  # rich draws indent guides with │
            current.frames[-1] = Frame(last.filename, last.lineno, last.name, source, last.in_app)
            return
        # The first half of a path that rich wrapped: "/opt/.../errors/__init__." then "py:346 in wrapper".
        current.path_head = body if ("/" in body or "\\" in body) and " " not in body else ""

    def _set_exception(self, exception: regex.Match, line: LogLine) -> None:
        current = self.current
        assert current is not None
        current.exc_type = exception["type"]
        current.message_lines = [exception["msg"] or ""]
        current.line_number = line.number
        current.code_expected = False
        self.state = "message"
        self.exception_lines.setdefault(line.text.strip(), len(self.stacks))
        if (exception["msg"] or "").strip() == PLAIN_HEADER and not self.in_group:
            self._open_nested_traceback(line)

    def _open_nested_traceback(self, line: LogLine) -> None:
        """The exception being read is a wrapper whose message goes on with another process's
        traceback (torch's DataLoader re-raise): close it without that line and read the
        traceback that follows as stacks of their own, the wrapper to come after them."""
        current = self.current
        assert current is not None
        current.message_lines = [m for m in current.message_lines if m.strip() != PLAIN_HEADER]
        self._close_stack()
        self.wrappers.append(len(self.stacks) - 1)
        self._begin_stack(line)

    @staticmethod
    def _looks_like_exception(name: str, current: _PendingStack) -> bool:
        if EXCEPTION_NAME_RE.search(name):
            return True
        # Structurally an exception line: straight after the frames, a capitalised name.
        return bool(current.frames) and name[:1].isupper()

    def _continues_message(self, line: LogLine, text: str) -> bool:
        assert self.current is not None
        if len(self.current.message_lines) >= MAX_MESSAGE_LINES:
            return False
        if not text.strip() or line.header:
            return False
        stripped = text.strip()
        if stripped in (CAUSE_MARKER, CONTEXT_MARKER) or HEADER_RE.match(text):
            return False
        if self.in_group and GROUP_BORDER_RE.match(text):
            return False
        return PROGRESS_BAR_RE.search(text) is None

    # -- building -----------------------------------------------------------------------------
    def _close_stack(self) -> None:
        current = self.current
        if current is None:
            return
        if current.frames or current.exc_type:
            message = "\n".join(current.message_lines).strip("\n")
            self.stacks.append(
                Stack(current.exc_type, message, tuple(current.frames), current.is_cause, current.line_number)
            )
        self.current = None

    def _wrappers_after_their_cause(self, stacks: list[Stack]) -> list[Stack]:
        """A wrapper re-raised what its worker's traceback shows: the worker's exception is the
        root cause, so it goes first, and the wrapper after it (caused by it)."""
        stacks = list(stacks)
        for index in reversed(self.wrappers):
            if index < len(stacks) - 1:
                wrapper = stacks.pop(index)
                stacks.append(dataclasses.replace(wrapper, is_cause=True))
        return stacks

    def _emit(self, truncated: bool = False) -> list[Trace]:
        """The traceback read, then one trace for each twin that reached its exception."""
        stacks = self._wrappers_after_their_cause(self.stacks)
        # An exception group is raised *because of* its members: list them first, the group last.
        groups = [s for s in stacks if s.exc_type.endswith("ExceptionGroup")]
        if groups and len(groups) < len(stacks):
            stacks = [s for s in stacks if s not in groups] + groups
        traces = [Trace(tuple(stacks), self.start_line, self.stream, truncated)] if stacks else []
        for repeated in self.twin_traces:  # the copies: each the stacks whose exception it repeated
            twin = tuple(self.stacks[i] for i in repeated if i < len(self.stacks))
            if twin:
                traces.append(Trace(twin, twin[0].line_number, self.stream))
        self._reset()
        return traces
