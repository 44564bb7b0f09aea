"""Notebooks and Kaggle logs as logs: a document becomes log lines, and each line keeps its place.

A Jupyter notebook (`.ipynb`) holds the output of each code cell: `stream` outputs (stdout,
stderr) and `error` outputs (`ename`, `evalue`, and the `traceback` list that IPython printed,
ANSI colours and all). A Kaggle kernel log is a JSON array of `{"stream_name", "time", "data"}`
records whose `data` are fragments of each stream's text. Neither is a log as written to a
terminal, but both hold one: `open_document` turns the document into the bytes of that log (the
tracebacks as IPython prints them, the streams' text) for the normal chunked scanner, and a
`PlaceMap` from line numbers of those bytes to a place in the document ("cell 3", "12.3 s"),
which `cite_places` puts into each incident's `source` once the scan is done.

The format is found from the first bytes, not the file name (a pipe has none); `input_format`
overrides it. A notebook is read whole (it is one JSON document, and it fits in memory when
Jupyter could save it); a Kaggle log is read record by record, so its size does not matter, and a
log cut off in the middle of a record (a download that stopped) gives what it holds.
"""
from __future__ import annotations

import bisect
import codecs
import dataclasses
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

import regex

from .model import Incident
from .reader import InputError

INPUT_FORMATS = ("auto", "text", "ipynb", "kaggle")
SNIFF_BYTES = 4096  # enough for any whitespace a JSON writer puts before the first key
KAGGLE_READ_BYTES = 1 << 20
# A stream that writes no newline for this long (a tqdm bar drawn with `\r` for hours) is cut
# here, at its last `\r`, so that one record-spanning line costs bounded memory.
MAX_PENDING_CHARS = 1 << 20
TIME_DECIMALS = 1  # "12.3 s": Kaggle's log viewer shows seconds since the session started

# The first key of a notebook is one of nbformat's top-level keys; a JSON-lines log starts
# `{"level": ...`, `{"time": ...}` and is text.
NOTEBOOK_HEAD_RE = regex.compile(rb'^\s*\{\s*"(?:cells|metadata|nbformat|nbformat_minor|worksheets)"\s*:')
KAGGLE_HEAD_RE = regex.compile(rb'^\s*\[\s*\{\s*"(?:stream_name|time|data)"\s*:')
UTF8_BOM = codecs.BOM_UTF8
# Inside a JSON string a quote is always escaped, so `{"` can only open a record: where to
# start again after a record that does not parse.
RECORD_START = '{"'
SEPARATORS_RE = regex.compile(r"[\s,\[\]\ufeff]*")
SALVAGE_RE = {
    "stream_name": regex.compile(r'"stream_name"\s*:\s*"(\w+)"'),
    "time": regex.compile(r'"time"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'),
    "data": regex.compile(r'"data"\s*:\s*"((?:[^"\\]|\\.)*)'),
}


@dataclass
class PlaceMap:
    """Where the lines of a converted document came from.

    `starts[i]` is the first line (1-based, in the converted bytes) of place `labels[i]`. With
    `restart` the line cited is the line within the place (a cell's output); without, the line of
    the converted log (Kaggle's viewer numbers the lines of the whole log).
    """

    restart: bool
    starts: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, line: int, label: str) -> None:
        if self.labels and self.labels[-1] == label:
            return
        self.starts.append(line)
        self.labels.append(label)

    def place_of(self, line: int) -> tuple[str, int] | None:
        index = bisect.bisect_right(self.starts, line) - 1
        if index < 0:
            return None
        return self.labels[index], line - self.starts[index] + 1 if self.restart else line


@dataclass
class Document:
    """An input as the scanner reads it: log bytes, and the places of its lines (None for a log)."""

    stream: BinaryIO
    format: str
    places: PlaceMap | None = None


def sniff_format(head: bytes) -> str:
    """ipynb, kaggle or text, from the first bytes of an input."""
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM):]
    if NOTEBOOK_HEAD_RE.match(head):
        return "ipynb"
    if KAGGLE_HEAD_RE.match(head):
        return "kaggle"
    return "text"


def open_document(stream: BinaryIO, name: str, input_format: str = "auto") -> Document:
    """The log inside an input: the input itself for text, the converted outputs otherwise."""
    if input_format not in INPUT_FORMATS:
        raise InputError(f"{name}: unknown input format '{input_format}' (choose from {', '.join(INPUT_FORMATS)})")
    if input_format == "text":
        return Document(stream, "text")
    head = _read_exactly(stream, SNIFF_BYTES)
    found = sniff_format(head)
    chosen = found if input_format == "auto" else input_format
    rest = _Prepended(head, stream)
    if chosen == "ipynb":
        return _open_notebook(rest.read(), name)
    if chosen == "kaggle":
        places = PlaceMap(restart=False)
        return Document(_IterStream(kaggle_log_lines(rest, places)), "kaggle", places)
    if _rewinds(stream):
        return Document(stream, "text")  # read at full speed, without the sniffing wrapper
    return Document(io.BufferedReader(rest, buffer_size=SNIFF_BYTES), "text")  # type: ignore[arg-type]


def _rewinds(stream: BinaryIO) -> bool:
    try:
        if stream.seekable():
            stream.seek(0)
            return True
    except (OSError, ValueError):
        pass
    return False


# -- notebooks -------------------------------------------------------------------------------------
def _open_notebook(data: bytes, name: str) -> Document:
    try:
        notebook = json.loads(data.decode("utf-8-sig", errors="replace"))
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{name}: not a valid notebook (JSON error{where}); "
                         f"pass --input-format text to scan it as plain text") from None
    if not isinstance(notebook, dict):
        raise InputError(f"{name}: not a notebook (the JSON is not an object); "
                         f"pass --input-format text to scan it as plain text")
    places = PlaceMap(restart=True)
    out = io.BytesIO()
    line = 1
    for label, text in notebook_outputs(notebook):
        places.add(line, label)
        data = text.encode("utf-8", errors="replace")
        out.write(data)
        line += data.count(b"\n")
        # A blank line between cells ends a traceback message the way the next prompt would.
        out.write(b"\n")
        line += 1
    out.seek(0)
    return Document(out, "ipynb", places)


def notebook_outputs(notebook: Mapping) -> Iterator[tuple[str, str]]:
    """(place, text) for each code cell with output: its streams' text and its tracebacks as printed.

    Cells are numbered by position in the notebook, 1-based, markdown cells included: the
    `cell N` that a reader scrolling down counts. The execution count (`In [7]`) is not used:
    it changes with every run and is already in the traceback's `Cell In[7]` frame.
    """
    cells = notebook.get("cells")
    if not isinstance(cells, list):  # nbformat 3 kept its cells in worksheets
        cells = [c for ws in _list(notebook.get("worksheets")) if isinstance(ws, dict) for c in _list(ws.get("cells"))]
    for index, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            continue
        text = "".join(_output_texts(_list(cell.get("outputs"))))
        if text:
            yield f"cell {index}", text if text.endswith("\n") else text + "\n"


def _output_texts(outputs: list) -> Iterator[str]:
    last_text = last_stream = ""
    for output in outputs:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            text = _text(output.get("text"))
            stream = str(output.get("name", ""))
        elif kind in ("error", "pyerr"):  # pyerr: nbformat 3
            traceback = [_text(t) for t in _list(output.get("traceback"))]
            text = "\n".join(traceback) if traceback else f"{_text(output.get('ename'))}: {_text(output.get('evalue'))}"
            text += "\n"
            stream = "error"
        else:
            continue  # display data (HTML tables, images) holds no log text
        if not text:
            continue
        # A fragment without a newline runs on only into more of the same stream.
        if last_text and not last_text.endswith("\n") and stream != last_stream:
            yield "\n"
        yield text
        last_text, last_stream = text, stream


def _text(value: object) -> str:
    """nbformat multiline strings: a string, or a list of strings to be joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return "" if value is None else str(value)


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


# -- Kaggle logs -----------------------------------------------------------------------------------
def kaggle_records(stream: BinaryIO) -> Iterator[dict]:
    """The records of a Kaggle log, one at a time; a cut-off last record gives what it holds.

    Records are decoded from a buffer that holds at least one whole record: memory is bounded by
    the longest record, not the log. Garbage between records is skipped.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    json_decoder = json.JSONDecoder()
    buffer = ""
    position = 0
    at_end = False
    want = KAGGLE_READ_BYTES
    while True:
        position = SEPARATORS_RE.match(buffer, position).end()
        if position >= len(buffer):
            if at_end:
                return
            buffer, position = "", 0
            data = stream.read(want)
            at_end = not data
            buffer = decoder.decode(data, final=at_end)
            continue
        if buffer[position] != "{":
            # Not a record: skip to the next one.
            found = buffer.find(RECORD_START, position + 1)
            if found < 0:
                if at_end:
                    return
                buffer, position, at_end = _read_more(stream, decoder, buffer[-1:], want)
                continue
            position = found
            continue
        try:
            record, end = json_decoder.raw_decode(buffer, position)
        except RecursionError:
            # Nesting no record has: skip the rest of its line rather than retry at each `{"` in it.
            end_of_line = buffer.find("\n", position)
            if end_of_line < 0 and not at_end:
                buffer, position, at_end = _read_more(stream, decoder, "", want)
                continue
            position = len(buffer) if end_of_line < 0 else end_of_line
            continue
        except json.JSONDecodeError:
            if not at_end and buffer.find("\n", position) < 0:
                # A record is one line, and this one goes on past the buffer (not damaged): read
                # on before looking for the next record, whose start `{"` may be in this one's text.
                want = max(want, 2 * (len(buffer) - position))
                buffer, position, at_end = _read_more(stream, decoder, buffer[position:], want)
                continue
            restart = buffer.find(RECORD_START, position + 1)
            if restart >= 0:
                # A damaged record with whole ones after it: keep what it holds, go on.
                salvaged = _salvage(buffer[position:restart])
                if salvaged is not None:
                    yield salvaged
                position = restart
                continue
            if at_end:
                salvaged = _salvage(buffer[position:])
                if salvaged is not None:
                    yield salvaged
                return
            # Probably a record longer than the buffer: read as much again (linear overall).
            want = max(want, 2 * (len(buffer) - position))
            buffer, position, at_end = _read_more(stream, decoder, buffer[position:], want)
            continue
        position = end
        if isinstance(record, dict):
            yield record
        if position > KAGGLE_READ_BYTES:
            buffer, position = buffer[position:], 0


def _read_more(stream: BinaryIO, decoder, kept: str, want: int) -> tuple[str, int, bool]:
    data = stream.read(want)
    at_end = not data
    return kept + decoder.decode(data, final=at_end), 0, at_end


def _salvage(text: str) -> dict | None:
    """The fields of a record cut off or damaged: its stream, its time, and its data so far."""
    found = {key: pattern.search(text) for key, pattern in SALVAGE_RE.items()}
    if found["data"] is None:
        return None
    raw = found["data"].group(1)
    if raw.endswith("\\") and not raw.endswith("\\\\"):
        raw = raw[:-1]
    raw = regex.sub(r"\\u[0-9a-fA-F]{0,3}$", "", raw)  # a \u escape cut in the middle
    try:
        data = json.loads(f'"{raw}"')
    except json.JSONDecodeError:
        data = raw
    record: dict = {"data": data}
    if found["stream_name"] is not None:
        record["stream_name"] = found["stream_name"].group(1)
    if found["time"] is not None:
        record["time"] = float(found["time"].group(1))
    return record


def kaggle_log_lines(stream: BinaryIO, places: PlaceMap) -> Iterator[bytes]:
    """The log of a Kaggle session as its viewer shows it: each stream's fragments joined into
    lines, lines in the order they were completed, each placed at the time its first fragment
    was written."""
    pending: dict[str, _Pending] = {}
    line = 1
    for record in kaggle_records(stream):
        data = record.get("data")
        if not isinstance(data, str) or not data:
            continue
        name = str(record.get("stream_name", ""))
        when = _time(record.get("time"))
        current = pending.get(name)
        if current is None:
            current = pending[name] = _Pending(started=when)
        elif not current.size:
            current.started = when  # the stream's next line begins in this record
        if "\n" not in data:
            current.add(data)
            if current.size > MAX_PENDING_CHARS:
                text = current.take()
                cut = text.rfind("\r", 0, len(text) - 1) + 1 or len(text)
                places.add(line, _time_label(current.started))
                line += 1
                yield text[:cut].encode("utf-8", errors="replace") + b"\n"
                current.add(text[cut:])
                current.started = when
            continue
        first, *middle, rest = data.split("\n")
        current.add(first)
        places.add(line, _time_label(current.started))
        line += 1
        yield current.take().encode("utf-8", errors="replace") + b"\n"
        if middle:
            places.add(line, _time_label(when))
            line += len(middle)
            yield "\n".join(middle).encode("utf-8", errors="replace") + b"\n"
        current.started = when
        current.add(rest)
    for current in sorted(pending.values(), key=lambda p: (p.started is None, p.started or 0.0)):
        if current.size:
            places.add(line, _time_label(current.started))
            line += 1
            yield current.take().encode("utf-8", errors="replace") + b"\n"


@dataclass
class _Pending:
    """A stream's line so far: fragments, joined only when the line ends (no quadratic joining)."""

    started: float | None
    parts: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.size += len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts, self.size = [], 0
        return text


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _time_label(seconds: float | None) -> str:
    return "time unknown" if seconds is None else f"{seconds:.{TIME_DECIMALS}f} s"


# -- citing ----------------------------------------------------------------------------------------
def cite_places(incidents: Iterable[Incident], places: Mapping[str, PlaceMap | None]) -> list[Incident]:
    """Each incident from a converted document cites its place: `nb.ipynb, cell 3` and the line
    within that cell's output; `kernel.log, 12.3 s` and the line of the log."""
    cited = []
    for incident in incidents:
        place_map = places.get(incident.source)
        place = place_map.place_of(incident.line) if place_map is not None else None
        if place is not None:
            label, line = place
            incident = dataclasses.replace(incident, source=f"{incident.source}, {label}", line=line)
        cited.append(incident)
    return cited


# -- streams ---------------------------------------------------------------------------------------
def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end: a pipe may hand them over a few at a time."""
    parts = []
    remaining = size
    while remaining > 0:
        data = stream.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


class _Prepended(io.RawIOBase):
    """The bytes read to sniff the format, then the rest of the stream."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _IterStream(io.RawIOBase):
    """A binary stream over an iterator of byte strings (the converted log, made as it is read)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._current = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def _next_piece(self) -> bool:
        while self._offset >= len(self._current):
            try:
                self._current = next(self._pieces)
            except StopIteration:
                self._current, self._offset = b"", 0
                return False
            self._offset = 0
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Whole pieces when they fit: no copy per byte for the big reads the scanner makes."""
        if size is None or size < 0:
            size = 1 << 62
        parts = []
        total = 0
        while total < size and self._next_piece():
            view = memoryview(self._current)[self._offset: self._offset + size - total]
            self._offset += len(view)
            parts.append(view.tobytes() if len(view) < len(self._current) else self._current)
            total += len(view)
        return b"".join(parts)
