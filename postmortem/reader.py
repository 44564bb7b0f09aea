"""Bytes in, clean numbered lines out: the only module that opens the user's input.

Reading streams: one physical line at a time (long lines in bounded pieces), so a gigabyte log
costs no more memory than its longest line piece. Each physical line is decoded (UTF-8, else
the file's legacy encoding), stripped of ANSI escapes, its `\\r` progress-bar history resolved,
and its rank prefix and logging header removed; the physical line number is kept for citing.
"""
from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import regex

from .model import LogLine

STDIN_NAME = "<stdin>"
# A physical line longer than this is handled in pieces of this size, so that one 50 MB line
# without a newline costs bounded memory and linear time.
MAX_PIECE_BYTES = 1 << 20
READ_BUFFER_BYTES = 1 << 20
CHUNK_BYTES = 4 << 20  # the unit of bulk work: big enough to amortise, small enough to stream
GZIP_MAGIC = b"\x1f\x8b"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Tried in order when a line is not UTF-8. GB18030 is a superset of GBK and GB2312, the legacy
# encodings of Chinese Windows consoles; cp1252 decodes anything else without loss of length.
LEGACY_ENCODINGS = ("gb18030", "cp1252")

ANSI_RE = regex.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement (tqdm's multi-bar `\x1b[A`)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: hyperlinks, window titles
    r"|\x1b[@-Z\\-_]"  # two-character escapes
)
# A tqdm bar, as tqdm and the libraries that wrap it (Trainer, Lightning, accelerate) draw it:
# "desc:  42%|████▏     | 210/500 [00:10<00:14, 20.1it/s, loss=0.43]" or "123it [00:01, 99.0it/s]".
# Searched, not matched from the start: whatever precedes the bar is its description. Every
# run is bounded or anchored so that a pathological line (a megabyte of digits) stays linear.
PROGRESS_BAR_RE = regex.compile(
    r"(?:\d{1,3}%\|[^|\r\n]{0,200}\|\s*[\d.]{1,20}[kMGT]?/[\d.?]{1,20}[kMGT]?|(?<![\d.])[\d.]{1,20}[kMGT]?it)"
    r"\s*\[[^\]\r\n]{0,300}\]"
)
# Prefixes that launchers put before every line of a process: torchrun (`[rank3]:`,
# `[default0]:` with --tee), mpirun (`[1,0]<stderr>:`).
# A log quoted in an issue or an e-mail reply: `> Traceback ...`, `> >   File ...` (one space after
# each `>` belongs to the quote; the rest is the log's own indentation).
QUOTE_PREFIX_RE = regex.compile(r"^(?:> ?)+")
# A line of a pasted report wrapped whole in Markdown bold or an inline code span:
# `**RuntimeError: CUDA error: ...**`, `` `ValueError: ...` ``.
MARKDOWN_WRAP_RE = regex.compile(r"^(?P<mark>\*\*|`)(?P<inner>[^*`\s][^`]*?)(?P=mark)$")
# `[rank3]:`, `[default3]:` (torchrun --tee / --redirects), `[1,3]<stderr>:` (mpirun). torchrun
# under another launcher that also tags lines doubles the tag: `[rank0]:[rank0]: Traceback ...`.
# vLLM's workers: `(VllmWorkerProcess pid=2421) `, `(VllmWorker rank=5 pid=3073) `; docker
# compose's service column: `model-worker-1  | ` (`_1` in compose v1); accelerate's test runner's
# `stderr: ` and `stdout: `; the host that pdsh (the
# DeepSpeed multi-node launcher) puts before each line, `gpu-node-2: `, taken only before a
# traceback's lines (lower case, with a digit: not `Case0Error: ...`), so that `top1: 0.93`
# stays a metric.
# `stream` (a name the `regex` module lets several branches share) is the prefix that names it.
RANK_PREFIX_RE = regex.compile(
    r"^(?:\[(?:(?P<stream>(?:rank|default)\d+)|(?P<mpi>\d+,\d+)\]<std(?:out|err)>)\]?:\s?"
    r"(?:\[(?:rank|default)\d+\]:\s?)*"
    r"|\((?P<proc>[A-Za-z]\w*)(?: rank=\d+)? pid=(?P<pid>\d+)\) "
    r"|(?P<stream>[A-Za-z][\w.-]*[-_]\d+) +\| |(?P<stream>std(?:err|out)): "
    r"|(?P<stream>[a-z0-9][a-z0-9.-]*\d[a-z0-9.-]*|localhost): (?=Traceback \(|\s+File \"|\s{2}|[\w.]*(?:Error|Exception)\b))"
)
_DATE = r"(?:\d{4}-\d{2}-\d{2}|\d{2}/\d{2}(?:/\d{4})?)[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
_LEVEL = r"(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)"
# Logging headers: `2026-02-06 12:00:01,123 - INFO - __main__ - `, `02/06/2026 12:00:01 - INFO -
# name - ` (HF examples), `[2026-02-06 12:00:01,123] [INFO] [file.py:12:fn] ` (DeepSpeed),
# `2026-02-06T12:00:01.123Z ` (CI, k8s), `INFO:root:` (logging.basicConfig), FastChat's
# `2024-09-26 06:12:44 | ERROR | stderr | `, the logger's name before the level
# (`2026-02-11 09:14:02,118 - train - ERROR - `, mmengine's `02/11 09:14:02 - mmengine - ERROR - `),
# loguru's `2024-05-02 10:11:13.001 | ERROR    | __main__:run:42 - `, detectron2's
# `[02/11 09:14:02 d2.engine.train_loop]: `, and glog's
# `W1024 01:17:10.936000 1403 torch/_dynamo/convert_frame.py:1009] ` (PyTorch's own logging,
# c10d / NCCL in C++: level letter, MMDD, time, thread or process id, file:line; absl in TF/JAX
# writes `E0000 00:00:1717323125.412345    1234 cuda_dnn.cc:8310] `), and vLLM's
# `ERROR 08-14 11:02:44 worker_base.py:464] `, `INFO 05-01 12:00:00 [core.py:58] `.
LOG_HEADER_RE = regex.compile(
    rf"^(?:\[\d{{2}}/\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} [\w.]+\]:? "
    rf"|\[?{_DATE}\]?(?:\s*[-|]\s*[\w.<>]+(?=\s*[-|]\s*\[?{_LEVEL}\b))?(?:\s*[-|]?\s*\[?{_LEVEL}\]?)?"
    rf"(?:\s*[-|]\s*[\w.<>:]+\s*[-|])?(?:\s*\[[\w./-]+:\d+:\w+\])?\s*(?:[-|:]\s*)?"
    rf"|{_LEVEL}:[\w.]+:"
    rf"|[IWEF]\d{{4}} \d{{2}}:\d{{2}}:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ?"
    rf"|{_LEVEL} \d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)? \[?[^\s\]]+:\d+\] ?)"
)


class InputError(Exception):
    """Input that cannot be read; the message is one line naming what and where."""


def display_name(source: str | os.PathLike) -> str:
    return STDIN_NAME if str(source) == "-" else str(source)


def open_source(source: str | os.PathLike) -> BinaryIO:
    """Open a path, or stdin for "-", as a binary stream; gzip is detected from its magic bytes."""
    if str(source) == "-":
        raw: BinaryIO = sys.stdin.buffer
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a log file")
        try:
            raw = open(path, "rb", buffering=READ_BUFFER_BYTES)
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
    head = buffered.peek(2)[:2]
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered)  # type: ignore[return-value]
    if head in UTF16_BOMS:
        return io.BufferedReader(_Utf16AsUtf8(buffered))  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]


class _Utf16AsUtf8(io.RawIOBase):
    """A UTF-16 log read as UTF-8 bytes: what Windows PowerShell 5's `>` and `Out-File` write
    (with a byte-order mark). Line ends and `\r` stay as they were."""

    def __init__(self, raw: BinaryIO) -> None:
        self._text = io.TextIOWrapper(raw, encoding="utf-16", errors="replace", newline="")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self._pending) < len(buffer):
            text = self._text.read(max(len(buffer) // 2, 1 << 16))
            if not text:
                break
            self._pending += text.encode("utf-8")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def read_log(
    source: str | os.PathLike,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[LogLine]:
    """Yield the cleaned logical lines of a log file, "-" for stdin."""
    name = display_name(source)
    stream = open_source(source)
    try:
        yield from iter_lines(stream, name, on_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{name}: read failed ({exc})") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_chunks(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytearray]:
    """Big chunks of whole lines: each chunk but the last ends with a newline.

    A chunk is topped up to the end of its last line with one `readline`, which costs far less
    than carrying the tail over to the next chunk. A line longer than MAX_PIECE_BYTES is cut
    (the piece carries no newline, so the next chunk goes on with the same physical line),
    which bounds memory on a file with no newline at all.

    The chunks are one buffer, filled again for each: a chunk is valid until the next one is
    asked for. A fresh 4 MiB object per chunk cost a gigabyte scan a quarter of a million page
    faults (a fifth of its time in the kernel).
    """
    buffer = bytearray(chunk_bytes)
    while True:
        if len(buffer) > chunk_bytes:
            del buffer[chunk_bytes:]  # the last top-up; the allocation stays
        elif len(buffer) < chunk_bytes:
            buffer = bytearray(chunk_bytes)  # after a short read
        size = stream.readinto(buffer)
        if not size:
            return
        if size < chunk_bytes:
            del buffer[size:]
        if buffer[-1] != 0x0A:
            buffer += stream.readline(MAX_PIECE_BYTES)
        yield buffer


def iter_lines(
    stream: BinaryIO, name: str = "", on_bytes: Callable[[int], None] | None = None
) -> Iterator[LogLine]:
    decoder = LineDecoder()
    number = 1
    while True:
        piece = stream.readline(MAX_PIECE_BYTES)
        if not piece:
            return
        if on_bytes is not None:
            on_bytes(len(piece))
        for text in split_physical_line(decoder.decode(piece)):
            yield clean_line(text, number, name)
        if piece.endswith(b"\n"):
            number += 1


class LineDecoder:
    """UTF-8 first; a line that is not UTF-8 fixes the file's legacy encoding for the rest."""

    def __init__(self) -> None:
        self.legacy: str | None = None

    def decode(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if self.legacy is None:
            for encoding in LEGACY_ENCODINGS:
                try:
                    data.decode(encoding)
                except UnicodeDecodeError:
                    continue
                self.legacy = encoding
                break
            else:
                self.legacy = LEGACY_ENCODINGS[0]
        return data.decode(self.legacy, errors="replace")


def split_physical_line(text: str) -> list[str]:
    """Resolve one physical line into the logical lines a reader of the terminal would see.

    `\\r` rewrites: of a run of progress-bar frames only the last is kept; any other text written
    between frames (a metrics dict, an error) is kept as a line of its own, and text glued after
    a bar (`...it/s]Traceback (most recent call last):`) is split from it.
    """
    text = text.rstrip("\n")
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    if "\r" not in text:
        return _split_glued_bar(text) if "|" in text or "it [" in text else [text]
    segments = text.split("\r")
    # A tqdm line holds hundreds of whole frames; pick out the few other segments at C speed.
    others = [i for i, seg in enumerate(segments)
              if seg.strip() and not (seg.rstrip().endswith("]") and ("%|" in seg or "it [" in seg))]
    lines: list[str] = []
    previous = -1
    for index in [*others, len(segments)]:
        last_bar = _last_nonblank(segments, previous + 1, index)
        if last_bar is not None:
            lines.append(last_bar)
        previous = index
        if index == len(segments):
            break
        lines.extend(_split_glued_bar(segments[index]))
    return lines or [""]


def _last_nonblank(segments: list[str], start: int, stop: int) -> str | None:
    for index in range(stop - 1, start - 1, -1):
        if segments[index].strip():
            return segments[index]
    return None


def _split_glued_bar(segment: str) -> list[str]:
    """["bar", "text glued after it"] when a bar is followed by other output, else [segment]."""
    if segment.rstrip().endswith("]") or ("%|" not in segment and "it [" not in segment):
        return [segment]
    match = PROGRESS_BAR_RE.search(segment)
    if match is None:
        return [segment]
    rest = segment[match.end():]
    if not rest.strip():
        return [segment]
    return [segment[: match.end()], rest]


def clean_line(text: str, number: int, source: str = "") -> LogLine:
    text = text.rstrip()
    stream = header_text = ""
    if text[:1] == ">":
        text = QUOTE_PREFIX_RE.sub("", text, count=1)
    if text[:1] in "*`" and len(text) > 4:
        match = MARKDOWN_WRAP_RE.match(text)
        if match is not None:
            text = match["inner"]
    match = RANK_PREFIX_RE.match(text)
    if match is not None:
        stream = match["stream"] or (f"mpi{match['mpi']}" if match["mpi"] else f"{match['proc']}-{match['pid']}")
        text = text[match.end():]
    if text[:1].isdigit() or text[:1] in "[IDWECF":
        header = LOG_HEADER_RE.match(text)
        if header is not None and header.end() > 0:
            header_text = header.group()
            text = text[header.end():]
    return LogLine(number=number, text=text, stream=stream, source=source, header=header_text)
