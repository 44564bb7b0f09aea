"""The pipeline in one call: read → parse → match → group → redact, for one or more logs.

`scan()` is the Python API that the CLI, the tests and other programs use.

A log is read in big chunks of bytes. The prefilter marks the lines holding a needle; only those
(and, while a traceback is open, every line after it until it ends) are decoded, cleaned and
parsed. `every_line=True` reads every line instead: the reference the tests compare against.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
import gzip
import importlib
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from .evidence import evidence_from_line, evidence_from_trace
from .formats import PlaceMap, cite_places, open_document
from .grouping import group_incidents
from .knowledge import KnowledgeBase, load_knowledge_base
from .detectors import resolve_thresholds
from .matcher import Matcher
from .metrics import MetricCollector
from .model import Evidence, Incident, LogLine, Match, Report, Trace
from .prefilter import ERROR, METRIC, NON_FINITE, Prefilter, needles_for
from .reader import (CHUNK_BYTES, InputError, LineDecoder, clean_line, display_name, open_source, read_chunks,
                     read_log, split_physical_line)
from .redact import redact_report
from .texts import DEFAULT_LANG
from .tracebacks import TracebackSplitter

# Incidents of these categories get a metrics section even when no detector found them (a NaN
# raised as an exception): the numbers show when the values went bad.
METRIC_SECTION_CATEGORIES = frozenset({"numerics"})


# Metrics lines are read one by one in a log of up to EXACT_MAX_BYTES, or until a log has shown
# EXACT_METRIC_LINES of them; beyond that a chunk's metrics lines are sampled (evenly spread),
# while every line holding a non-finite value, and the lines just before it, are still read.
# Small logs are exact; huge ones cost bounded time per chunk: 32 samples a 4 MiB chunk is ~8,000
# points a gigabyte, far more than a detector or a sparkline needs, at ~40 us a line to parse.
EXACT_MAX_BYTES = 64 << 20
EXACT_METRIC_LINES = 20_000  # ~60 us each: past this, a 10 MB tqdm-heavy log spent seconds on its metrics
METRIC_SAMPLES_PER_CHUNK = 32
LINES_BEFORE_NON_FINITE = 32
MAX_METRIC_LINE_CHARS = 64 << 10  # the longest Trainer/TRL dict is a few kB; a longer line is data
# A plain log this big is scanned on two cores: a forked worker scans the tail while this
# process scans the head, then takes in the worker's findings and, in order, its metrics lines.
PARALLEL_MIN_BYTES = 256 << 20
# In a log this big, newlines are counted with numpy: `bytes.count` is a scalar loop (~2.5 GB/s,
# a sixth of a gigabyte scan's time), numpy's is vectorised (~10 GB/s). Below this size importing
# numpy would cost more than it saves.
BULK_COUNT_MIN_BYTES = 256 << 20
WORKER_SHARE = 0.5  # of the bytes, for the worker
WORKER_CHAIN_OFFSET = 1 << 40  # keeps the worker's traceback chain ids apart from ours


@dataclass
class SourceResult:
    """What one log gave, before grouping: matches, unrecognised tracebacks, metric series."""

    source: str
    matches: list[Match] = field(default_factory=list)
    unmatched: list[Evidence] = field(default_factory=list)
    metrics: MetricCollector = field(default_factory=MetricCollector)
    places: PlaceMap | None = None  # a notebook's cells, a Kaggle log's times (formats.py)


@dataclass
class Scanner:
    """A knowledge base compiled for scanning: the matcher and the prefilter built from it."""

    kb: KnowledgeBase
    engine: str = "auto"  # prefilter engine: auto | hyperscan | re
    every_line: bool = False
    chunk_bytes: int = CHUNK_BYTES  # the tests vary it: incidents must not depend on it
    parallel_min_bytes: int = PARALLEL_MIN_BYTES  # the tests lower it: same incidents either way

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.kb)
        self.metric_thresholds = resolve_thresholds({s.metric: s.thresholds for s in self.kb.signatures if s.metric})
        needles, needs_every_line = needles_for(self.kb)
        self.every_line = self.every_line or needs_every_line
        self.prefilter = None if self.every_line else Prefilter(needles, self.engine)

    @functools.cached_property
    def sparse_prefilter(self) -> Prefilter | None:
        """The prefilter without the needles of ordinary metrics lines, for logs whose metrics
        are sampled; built on first use, since most logs are too small to need it."""
        if self.every_line:
            return None
        return Prefilter(needles_for(self.kb, metric_lines=False)[0], self.engine)

    def scan_stream(self, stream: BinaryIO, source: str,
                    on_bytes: Callable[[int], None] | None = None, size: int | None = None,
                    path: str | os.PathLike | None = None) -> SourceResult:
        """Scan one log; `size` (bytes, when known) lets a big log sample its metrics from the start.

        With the `path` of a plain file of PARALLEL_MIN_BYTES or more, a forked worker scans the
        tail's errors at the same time; the result is the same as one process would give.
        """
        sample = size is not None and size > EXACT_MAX_BYTES
        bulk = size is not None and size >= BULK_COUNT_MIN_BYTES
        if path is not None and size is not None and size >= self.parallel_min_bytes and _can_fork():
            split = _line_start_near(path, int(size * (1 - WORKER_SHARE)))
            if sample:
                self.sparse_prefilter  # built before the fork, so that the worker shares it
            if bulk:
                importlib.import_module("numpy")  # before the fork, not once in each process
            worker = _TailWorker(self, path, source, split, sample, bulk)
            state = _SourceScan(self, source, sample_metrics=sample, split=split, bulk_count=bulk)
            done = self._run(state, stream, on_bytes, stop_after=split)
            tail = worker.result()
            if tail is not None:
                state.take_tail(*tail)
                if on_bytes is not None:
                    on_bytes(size - done)
                state.finish()
                return state.result
            stream.seek(0)  # the worker failed: scan the whole log here after all
        state = _SourceScan(self, source, sample_metrics=sample, bulk_count=bulk)
        self._run(state, stream, on_bytes)
        state.finish()
        return state.result

    def _run(self, state: _SourceScan, stream: BinaryIO, on_bytes, stop_after: int | None = None) -> int:
        """Scan chunks; with `stop_after`, stop at the first chunk end past that byte where no
        traceback is open. Returns the bytes read."""
        for chunk in read_chunks(stream, self.chunk_bytes):
            state.scan_chunk(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
            if stop_after is not None and state.offset >= stop_after and not state.splitter.busy:
                break
        return state.offset


def scan(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    kb: KnowledgeBase | None = None,
    lang: str = DEFAULT_LANG,
    patterns_dirs: Iterable[str | os.PathLike] = (),
    redact: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    problems: list[str] | None = None,
    scanner: Scanner | None = None,
    input_format: str = "auto",
) -> Report:
    """Scan logs (paths, or "-" for stdin) and return the report, root causes first.

    `input_format`: auto (from the first bytes), text, ipynb or kaggle (formats.py).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    scanner = scanner or Scanner(kb or load_knowledge_base(patterns_dirs))
    results = []
    for source in sources:
        name = display_name(source)
        stream = open_source(source)
        try:
            document = open_document(stream, name, input_format)
            plain = str(source) != "-" and not document.places
            size = os.path.getsize(source) if plain else None
            seekable = plain and document.stream is stream and not isinstance(stream, gzip.GzipFile)
            results.append(scanner.scan_stream(document.stream, name, on_bytes, size,
                                               path=source if seekable else None))
            results[-1].places = document.places
        except (OSError, EOFError) as exc:
            raise InputError(f"{name}: read failed ({exc})") from None
        finally:
            if str(source) != "-":
                stream.close()
    if problems is not None:
        problems.extend(scanner.matcher.problems)
    return build_report(results, scanner.kb, lang, redact)


def scan_text(text: str, **options) -> Report:
    """Scan a log held in a string (examples, tests, notebooks)."""
    return scan_bytes(text.encode("utf-8"), **options)


def scan_bytes(data: bytes, *, kb: KnowledgeBase | None = None, lang: str = DEFAULT_LANG,
               source: str = "<text>", redact: bool = True, scanner: Scanner | None = None,
               keep_hints: bool = False, input_format: str = "text") -> Report:
    """Scan a log held in memory, as raw bytes. `keep_hints`: report hints even alone."""
    scanner = scanner or Scanner(kb or load_knowledge_base())
    document = open_document(io.BytesIO(data), source, input_format)
    result = scanner.scan_stream(document.stream, source)
    result.places = document.places
    return build_report([result], scanner.kb, lang, redact, keep_hints)


class _SourceScan:
    """The running state of one log's scan, fed chunk by chunk."""

    def __init__(self, scanner: Scanner, source: str, sample_metrics: bool = False,
                 split: int | None = None, bulk_count: bool = False) -> None:
        self.scanner = scanner
        self.source = source
        self.sample_metrics = sample_metrics
        self.bulk_count = bulk_count  # count newlines with numpy (BULK_COUNT_MIN_BYTES)
        self._flags = None  # numpy's newline flags of the current chunk
        self.split = split  # where a worker took over the log, in a parallel scan
        self.split_line: int | None = None  # the number of the line at byte `split`
        # A worker keeps the lines its metrics would read, for the parent's collector.
        self.metric_lines: list[LogLine] | None = None
        self.offset = 0  # of the end of the chunks read so far
        self.result = SourceResult(source, metrics=MetricCollector(scanner.metric_thresholds))
        self.splitter = TracebackSplitter()
        self.decoder = LineDecoder()
        self.line_number = 1  # the number of the line that starts at the current offset
        self.chain_id = 0
        self.metric_lines_read = 0

    def scan_chunk(self, chunk: bytes) -> None:
        base = self.offset
        self.offset += len(chunk)
        newlines = self._newline_counter(chunk)
        if self.split is not None and self.split_line is None and self.offset > self.split:
            self.split_line = self.line_number + newlines(0, self.split - base)
        if self.scanner.prefilter is None:
            self._read_lines(chunk, 0, len(chunk), claim=True)
            return
        sampled = self.sample_metrics or self.metric_lines_read >= EXACT_METRIC_LINES
        prefilter = self.scanner.sparse_prefilter if sampled else self.scanner.prefilter
        hits = prefilter.hits(chunk)
        if sampled:
            hits = sorted(hits + _sample_offsets(chunk))
        cursor = 0
        index = 0
        while index < len(hits):
            offset, kind = hits[index]
            index += 1
            if offset < cursor:
                continue
            start = chunk.rfind(b"\n", cursor, offset) + 1 or cursor
            end = chunk.find(b"\n", offset) + 1 or len(chunk)
            # Several needles in one line: it is an error candidate if any of them is.
            following = bisect.bisect_left(hits, (end, ERROR), index)
            if following > index:
                kind = min(kind, min(k for _, k in hits[index:following]))
                index = following
            if self.splitter.busy:
                cursor = self._read_lines(chunk, cursor, start, claim=True, while_busy=True)
            if sampled and kind == NON_FINITE and not self.splitter.busy:
                # The value before a NaN is what the draft quotes ("last finite 5.6e+03 at step
                # 870"): read the lines just before it too, however sparse the sampling.
                back = _lines_back(chunk, start, cursor, LINES_BEFORE_NON_FINITE)
                self.line_number += newlines(cursor, back)
                cursor = self._read_lines(chunk, back, start, claim=False, last_frame_only=True)
            self.line_number += newlines(cursor, start)
            if kind != ERROR:
                self.metric_lines_read += 1
            busy = self.splitter.busy
            self._read_lines(chunk, start, end, claim=kind == ERROR or busy,
                             last_frame_only=sampled and kind == METRIC and not busy)
            cursor = end
        if self.splitter.busy:
            cursor = self._read_lines(chunk, cursor, len(chunk), claim=True, while_busy=True)
        self.line_number += newlines(cursor, len(chunk))

    def _newline_counter(self, chunk: bytearray) -> Callable[[int, int], int]:
        """count(start, stop): the newlines in chunk[start:stop]."""
        if not self.bulk_count:
            return lambda start, stop: chunk.count(b"\n", start, stop)
        import numpy

        if self._flags is None or len(self._flags) < len(chunk):
            self._flags = numpy.empty(len(chunk), dtype=bool)  # reused: one allocation per scan
        flags = self._flags[:len(chunk)]
        numpy.equal(numpy.frombuffer(chunk, numpy.uint8), ord("\n"), out=flags)
        return lambda start, stop: int(numpy.count_nonzero(flags[start:stop]))

    def take_tail(self, matches: list[Match], unmatched: list[Evidence], problems: list[str],
                  metric_lines: list[LogLine]) -> None:
        """Take in a worker's findings on the tail, renumbered from the split line, from where
        this scan stopped (what both read is ours), and feed its metrics lines in order."""
        shift = (self.split_line or 1) - 1
        end = self.line_number

        def moved(evidence: Evidence) -> Evidence:
            chain = None if evidence.chain_id is None else evidence.chain_id + WORKER_CHAIN_OFFSET
            return dataclasses.replace(evidence, line_number=evidence.line_number + shift, chain_id=chain)

        for match in matches:
            evidence = moved(match.evidence)
            if evidence.line_number >= end:
                self.result.matches.append(dataclasses.replace(match, evidence=evidence))
        self.result.unmatched += [e for e in map(moved, unmatched) if e.line_number >= end]
        feed = self.result.metrics.feed
        for line in metric_lines:  # thousands of them: the constructor, not dataclasses.replace
            if line.number + shift >= end:
                feed(LogLine(line.number + shift, line.text, line.stream, line.source, line.header))
        self.scanner.matcher.problems += [p for p in problems if p not in self.scanner.matcher.problems]

    def _read_lines(self, chunk: bytes, start: int, stop: int, claim: bool, while_busy: bool = False,
                    last_frame_only: bool = False) -> int:
        """Feed the physical lines in chunk[start:stop]; return where it stopped.

        `last_frame_only`: a sampled metrics line needs only its last `\r` frame, not the
        hundreds of progress-bar frames before it.
        """
        position = start
        while position < stop:
            if while_busy and not self.splitter.busy:
                break
            end = chunk.find(b"\n", position, stop) + 1 or stop
            data = chunk[position:end]
            if last_frame_only:
                data = data[data.rfind(b"\r", 0, len(data) - 2) + 1:]
                if len(data) > MAX_METRIC_LINE_CHARS:
                    data = b""  # a sampled "metrics line" a megabyte long is data: not worth decoding
            for text in split_physical_line(self.decoder.decode(data)):
                self._feed(clean_line(text, self.line_number, self.source), claim)
            if chunk[end - 1:end] == b"\n":
                self.line_number += 1
            position = end
        return position

    def _feed(self, line: LogLine, claim: bool) -> None:
        for item in self.splitter.feed(line):
            self._take(item, claim)

    def _take(self, item: LogLine | Trace, claim: bool) -> None:
        if isinstance(item, Trace):
            self._claim_trace(item)
            return
        if len(item.text) > MAX_METRIC_LINE_CHARS:
            pass  # a megabyte-long line is no metrics line, and parsing it as one is slow
        elif self.metric_lines is not None:
            self.metric_lines.append(item)
        else:
            self.result.metrics.feed(item)
        if claim and item.text:
            self._claim(evidence_from_line(item), report_unmatched=False)

    def _claim_trace(self, trace: Trace) -> None:
        self.chain_id += 1
        for evidence in evidence_from_trace(trace, self.source, self.chain_id):
            self._claim(evidence)

    def _claim(self, evidence: Evidence, report_unmatched: bool = True) -> None:
        match = self.scanner.matcher.match(evidence)
        if match is not None:
            self.result.matches.append(match)
        elif report_unmatched and evidence.kind == "exception":
            self.result.unmatched.append(evidence)

    def finish(self) -> None:
        for item in self.splitter.finish():
            self._take(item, claim=True)
        for evidence in self.result.metrics.findings(self.source):
            self._claim(evidence, report_unmatched=False)


class _TailWorker:
    """A forked process scanning a log's errors from byte `split` to its end."""

    def __init__(self, scanner: Scanner, path, source: str, split: int, sample: bool, bulk: bool) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_scan_tail, args=(scanner, path, source, split, sample, bulk, send),
                                        daemon=True)
        self._process.start()
        send.close()

    def result(self) -> tuple[list[Match], list[Evidence], list[str], list[LogLine]] | None:
        try:
            found = self._receive.recv()
        except (EOFError, OSError):
            found = None
        self._process.join()
        return found


def _scan_tail(scanner: Scanner, path, source: str, split: int, sample: bool, bulk: bool, send) -> None:
    try:
        with open(path, "rb", buffering=1 << 20) as stream:
            stream.seek(split)
            state = _SourceScan(scanner, source, sample_metrics=sample, bulk_count=bulk)
            state.metric_lines = []
            scanner._run(state, stream, None)
            state.finish()  # its metrics are the parent's to read: its own collector stays empty
        send.send((state.result.matches, state.result.unmatched, scanner.matcher.problems, state.metric_lines))
    except BaseException:  # the parent scans the whole log itself when the worker sends nothing
        send.close()
        raise


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


def _line_start_near(path, offset: int) -> int:
    """The offset of the first line that starts at or after `offset`."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        skipped = stream.readline()
    return offset + len(skipped)


def _lines_back(chunk: bytes, start: int, floor: int, count: int) -> int:
    """The offset of the line `count` lines before the one at `start`, not before `floor`."""
    position = start
    for _ in range(count):
        if position <= floor:
            return floor
        previous = chunk.rfind(b"\n", floor, position - 1)
        position = previous + 1 if previous != -1 else floor
    return max(position, floor)


def _sample_offsets(chunk: bytes) -> list[tuple[int, int]]:
    """Evenly spread offsets in a chunk, as METRIC hits: the sampled metrics lines."""
    step = max(1, len(chunk) // METRIC_SAMPLES_PER_CHUNK)
    return [(offset, METRIC) for offset in range(0, len(chunk), step)]


def build_report(results: list[SourceResult], kb: KnowledgeBase, lang: str, redact: bool,
                 keep_hints: bool = False) -> Report:
    order = {r.source: i for i, r in enumerate(results)}
    incidents = group_incidents(
        [m for r in results for m in r.matches],
        [e for r in results for e in r.unmatched],
        kb, lang, order, keep_hints,
    )
    incidents = attach_metric_summaries(incidents, {r.source: r.metrics for r in results}, kb)
    incidents = cite_places(incidents, {r.source: r.places for r in results})
    report = Report(tuple(r.source for r in results), tuple(incidents), lang)
    return redact_report(report) if redact else report


def attach_metric_summaries(incidents: Iterable[Incident], collectors: dict[str, MetricCollector],
                            kb: KnowledgeBase) -> list[Incident]:
    """Give the incidents about training dynamics (a metric detector's, or a numerics error such
    as a NaN) the metrics section of the series they concern."""
    attached = []
    for incident in incidents:
        sig = kb.get(incident.signature)
        collector = collectors.get(incident.source)
        if sig is not None and collector is not None and collector.has_rows and \
                (sig.metric or sig.category in METRIC_SECTION_CATEGORIES):
            summary = collector.summary_for(incident.line, sig.metric)
            if summary is not None:
                incident = dataclasses.replace(incident, metrics=summary)
        attached.append(incident)
    return attached


def extract_metrics(source: str | os.PathLike, kb: KnowledgeBase | None = None) -> MetricCollector:
    """The metric series of one log (`postmortem metrics`): every line outside tracebacks."""
    thresholds = resolve_thresholds({s.metric: s.thresholds for s in kb.signatures if s.metric} if kb else None)
    collector = MetricCollector(thresholds)
    splitter = TracebackSplitter()
    for line in read_log(source):
        for item in splitter.feed(line):
            if not isinstance(item, Trace):
                collector.feed(item)
    return collector
