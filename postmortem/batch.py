"""Many logs at once: find the logs under folders, scan them on a pool of processes, in order.

A lab's scheduler writes thousands of job logs a day; scanning them must cost about what the
bytes cost, not what starting Python costs. So the files are scanned by a pool of worker
processes started once: each worker compiles the knowledge base into a `Scanner` (matcher and
prefilter) in its initializer and reuses it for every file it is given. Files travel to the
workers in batches (many small files per message), results come back in the order the paths
were given, and a file that cannot be read becomes a warning, never the end of the run.

`scan_one` is the per-file function: the process pool maps it over files here, and the Dask
runner (`distributed.py`) maps the very same function over a cluster.
"""
from __future__ import annotations

import gzip
import os
import queue
import re
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from .formats import open_document
from .knowledge import KnowledgeBase
from .metrics import MetricCollector
from .model import Report
from .reader import InputError, open_source
from .scan import METRIC_SECTION_CATEGORIES, Scanner, SourceResult, build_report
from .texts import DEFAULT_LANG

# Which files under a folder are logs. Paths named on the command line are always scanned.
LOG_SUFFIXES = frozenset({".log", ".txt", ".out", ".err", ".gz"})
# PBS and SGE name a job's output `job.o12345` and its errors `job.e12345`.
JOB_OUTPUT_SUFFIX_RE = re.compile(r"^\.[oe]\d+$")
# A file without a suffix is a log when its first bytes hold no NUL byte (checkpoints, images and
# executables all do) and it is not empty (`_SUCCESS` markers and lock files are).
SNIFF_BYTES = 4096
LOG_RULE = ("*.log, *.txt, *.out, *.err, *.gz, PBS/SGE job output (*.o123, *.e123), and files without a "
            "suffix whose first 4 KiB are non-empty text (no NUL byte); hidden files and folders are skipped")

# Work is sent to the workers in batches of consecutive files, so that 10,000 small logs cost a
# few hundred messages, not 10,000; a batch closes at whichever limit comes first.
BATCH_MAX_FILES = 64
BATCH_MAX_BYTES = 32 << 20
BATCHES_PER_WORKER = 4  # enough batches that a slow one does not leave the other workers idle
IN_FLIGHT_PER_WORKER = 4  # batches submitted ahead: bounds the memory of a 100,000-file run
# Below these, starting worker processes costs more than it saves: scan in this process.
POOL_MIN_FILES = 4
POOL_MIN_BYTES = 8 << 20
PROGRESS_STEP_BYTES = 4 << 20  # a worker reports bytes at least this coarsely (fewer messages)
PROGRESS_POLL_SECONDS = 0.1
PROGRESS_FLUSH_SECONDS = 2.0  # how long the last progress messages are waited for at the end

# The tail of a log read for its last timestamp: when the run last wrote, even for a copied file.
TAIL_BYTES = 64 << 10
LOG_TIME_RE = re.compile(
    rb"^(?:\[[\w,]+\]:?\s*)?\[?(?:(\d{4})-(\d{2})-(\d{2})|(\d{2})/(\d{2})/(\d{4}))[ T](\d{2}):(\d{2}):(\d{2})"
    rb"(?:[.,]\d+)?(Z|[+-]\d{2}:?\d{2})?",
    re.MULTILINE,
)

RESULTS, REPORTS, SUMMARIES = "results", "reports", "summaries"


@dataclass(frozen=True)
class LogFile:
    """A log to scan: the name the user knows it by, and the absolute path a worker opens."""

    source: str
    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ScanOptions:
    """What a worker returns per file: the raw results (to group across files), a report per
    file, or the stats summary of the run (see stats.py)."""

    keep: str = RESULTS  # results | reports | summaries
    lang: str = DEFAULT_LANG
    redact: bool = True


@dataclass(frozen=True)
class FileScan:
    """What one file gave, in the form `ScanOptions.keep` asked for; `error` when unreadable."""

    source: str
    result: SourceResult | None = None
    report: Report | None = None
    summary: object | None = None  # stats.RunSummary
    error: str = ""
    problems: tuple[str, ...] = ()


@dataclass
class BatchOutcome:
    """The files of a batch scan, in order, and what went wrong along the way."""

    scans: list[FileScan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per unreadable file
    problems: list[str] = field(default_factory=list)


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def find_logs(paths: Iterable[str | os.PathLike], since: datetime | None = None,
              on_warning: Callable[[str], None] | None = None) -> list[LogFile]:
    """Files named, and the logs under folders named (LOG_RULE), in a stable order.

    The order is the order of `paths`, a folder expanded in sorted order; a file named twice is
    scanned once. `since` keeps the files modified at or after it. A path that does not exist is
    an InputError: a typo must not look like a clean run.
    """
    found: list[LogFile] = []
    seen: set[str] = set()
    cutoff = since.timestamp() if since is not None else None

    def add(source: str, path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            if on_warning is not None:
                on_warning(f"{source}: skipped ({exc.strerror or exc})")
            return
        key = os.path.realpath(path)
        if key in seen or (cutoff is not None and stat.st_mtime < cutoff):
            return
        seen.add(key)
        found.append(LogFile(source, os.path.abspath(path), stat.st_size, stat.st_mtime))

    for given in paths:
        given = str(given)
        path = Path(given)
        if not path.exists() and not path.is_symlink():
            raise InputError(f"{given}: no such file or folder")
        if not path.is_dir():
            add(given, path)
            continue
        for relative in _logs_under(path, on_warning):
            add(os.path.join(given, relative), path / relative)
    return found


def _logs_under(folder: Path, on_warning: Callable[[str], None] | None) -> list[str]:
    def report(exc: OSError) -> None:
        if on_warning is not None:
            on_warning(f"{exc.filename}: skipped ({exc.strerror or exc})")

    found = []
    for directory, subdirs, files in os.walk(folder, onerror=report):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            full = os.path.join(directory, name)
            if is_log_name(name) or (not Path(name).suffix and _looks_like_text(full)):
                found.append(os.path.relpath(full, folder))
    return sorted(found, key=lambda p: Path(p).parts)


def is_log_name(name: str) -> bool:
    suffix = Path(name).suffix
    return suffix.lower() in LOG_SUFFIXES or bool(JOB_OUTPUT_SUFFIX_RE.match(suffix))


def _looks_like_text(path: str) -> bool:
    try:
        stream = open_source(path)
        try:
            head = stream.read(SNIFF_BYTES)
        finally:
            stream.close()
    except (InputError, OSError, EOFError, zlib.error):
        return False
    return bool(head) and b"\0" not in head


# -- the per-file function ----------------------------------------------------------------------

def scan_one(log: LogFile, scanner: Scanner, options: ScanOptions,
             on_bytes: Callable[[int], None] | None = None) -> FileScan:
    """Scan one log with a ready Scanner; an unreadable file gives a FileScan with `error` set.

    `on_bytes` is told the file's size on disk, in pieces, exactly once in total (a .gz file's
    decompressed bytes are not counted), so that a progress bar over sizes ends at 100%.
    """
    problems_before = len(scanner.matcher.problems)
    counted = 0

    def count(n: int) -> None:
        nonlocal counted
        n = min(n, log.size - counted)
        if n > 0 and on_bytes is not None:
            on_bytes(n)
        counted += max(n, 0)

    error = ""
    result = None
    try:
        stream = open_source(log.path)
        try:
            compressed = isinstance(stream, gzip.GzipFile)
            document = open_document(stream, log.source)  # a notebook or a Kaggle log: its log lines
            result = scanner.scan_stream(document.stream, log.source, None if compressed else count)
            result.places = document.places
        finally:
            stream.close()
    except InputError as exc:
        error = str(exc).replace(log.path, log.source, 1)
    except (OSError, EOFError, zlib.error) as exc:
        error = f"{log.source}: read failed ({exc})"
    except Exception as exc:  # noqa: BLE001 - one odd file must not cost the other 9,999 their results
        error = f"{log.source}: scan failed ({type(exc).__name__}: {exc}); please report this log"
    count(log.size)
    problems = tuple(scanner.matcher.problems[problems_before:])
    if result is None:
        return FileScan(log.source, error=error, problems=problems)
    if options.keep == RESULTS:
        return FileScan(log.source, result=_without_unused_metrics(result, scanner.kb), problems=problems)
    if options.keep == REPORTS:
        report = build_report([result], scanner.kb, options.lang, options.redact)
        return FileScan(log.source, report=report, problems=problems)
    from .stats import summarize_run

    # A summary keeps only the unknown messages of the report's texts: it redacts those alone.
    report = build_report([result], scanner.kb, options.lang, redact=False)
    summary = summarize_run(report, run_time(log), redact=options.redact)
    return FileScan(log.source, summary=summary, problems=problems)


def _without_unused_metrics(result: SourceResult, kb: KnowledgeBase) -> SourceResult:
    """Drop the metric series when no match of the log can use them (most logs): they are the
    bulk of what a worker would send back, and only incidents about training dynamics show them."""
    for match in result.matches:
        sig = kb.get(match.signature_id)
        if sig is not None and (sig.metric or sig.category in METRIC_SECTION_CATEGORIES):
            return result
    return replace(result, metrics=MetricCollector())


def run_time(log: LogFile) -> float:
    """When the run last wrote (epoch seconds): the last timestamp in the log's tail, read as local
    time unless it names its zone; the file's mtime when the tail has none or the log is gzipped."""
    try:
        stream = open_source(log.path)
        try:
            if isinstance(stream, gzip.GzipFile):
                return log.mtime
            stream.seek(max(0, log.size - TAIL_BYTES))
            tail = stream.read(TAIL_BYTES)
        finally:
            stream.close()
    except (InputError, OSError, ValueError):
        return log.mtime
    for match in reversed(list(LOG_TIME_RE.finditer(tail))):
        stamp = _timestamp(match)
        if stamp is not None:
            return stamp
    return log.mtime


def _timestamp(match: re.Match) -> float | None:
    g = [x.decode() if x else None for x in match.groups()]
    year, month, day = (g[0], g[1], g[2]) if g[0] else (g[5], g[3], g[4])  # HF examples: mm/dd/yyyy
    try:
        stamp = datetime(int(year), int(month), int(day), int(g[6]), int(g[7]), int(g[8]))
        if g[9]:
            zone = "+00:00" if g[9] == "Z" else g[9]
            stamp = datetime.fromisoformat(stamp.isoformat() + (zone if ":" in zone else zone[:3] + ":" + zone[3:]))
        return stamp.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def scan_batch(logs: Sequence[LogFile], scanner: Scanner, options: ScanOptions,
               on_bytes: Callable[[int], None] | None = None) -> list[FileScan]:
    return [scan_one(log, scanner, options, on_bytes) for log in logs]


# -- the process pool ---------------------------------------------------------------------------

_worker: dict = {}


def _start_worker(kb: KnowledgeBase, options: ScanOptions, progress) -> None:
    """Pool initializer: compile the knowledge base once per worker process."""
    _worker["scanner"] = Scanner(kb)
    _worker["options"] = options
    _worker["progress"] = progress


def _scan_batch_in_worker(logs: Sequence[LogFile]) -> tuple[list[FileScan], int, int]:
    """The batch's scans, the bytes reported through the progress queue on the way (a big log's
    chunks), and the bytes left to count, which travel with the result."""
    progress = _worker["progress"]
    sent = pending = 0

    def on_bytes(n: int) -> None:
        nonlocal pending, sent
        pending += n
        if pending >= PROGRESS_STEP_BYTES:
            progress.put(pending)
            sent += pending
            pending = 0

    scans = scan_batch(logs, _worker["scanner"], _worker["options"], on_bytes if progress is not None else None)
    return scans, sent, pending


def scan_logs(logs: Sequence[LogFile], kb: KnowledgeBase, options: ScanOptions = ScanOptions(), *,
              jobs: int | None = None, on_bytes: Callable[[int], None] | None = None,
              scanner: Scanner | None = None) -> Iterator[FileScan]:
    """Scan logs on `jobs` processes (default: the cores; 1: in this process), in order."""
    jobs = jobs or default_jobs()
    workers = min(jobs, len(logs))
    small = len(logs) < POOL_MIN_FILES and sum(log.size for log in logs) < POOL_MIN_BYTES
    if workers <= 1 or small:
        scanner = scanner or Scanner(kb)
        for log in logs:
            yield scan_one(log, scanner, options, on_bytes)
        return
    yield from _scan_on_pool(logs, kb, options, workers, on_bytes)


def _scan_on_pool(logs, kb, options, workers, on_bytes) -> Iterator[FileScan]:
    from concurrent.futures import Future, ProcessPoolExecutor  # only when there is a pool to run

    context = _pool_context()
    progress = _PoolProgress(context.Queue(), on_bytes) if on_bytes is not None else None
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                               initargs=(kb, options, progress.queue if progress else None))
    batches = iter(split_batches(logs, workers))
    in_flight: deque[Future] = deque()
    try:
        while True:
            while len(in_flight) < workers * IN_FLIGHT_PER_WORKER:
                batch = next(batches, None)
                if batch is None:
                    break
                in_flight.append(pool.submit(_scan_batch_in_worker, batch))
            if not in_flight:
                break
            head = in_flight.popleft()
            while progress is not None and not head.done():
                progress.drain(PROGRESS_POLL_SECONDS)
            scans, sent, rest = head.result()
            if progress is not None:
                progress.count_result(sent, rest)
            yield from scans
        if progress is not None:
            progress.finish()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress.queue.close()
            progress.queue.join_thread()


class _PoolProgress:
    """Bytes reported by the workers, each counted once, whichever of result and progress message
    arrives first (a queue's messages may trail the result that they precede)."""

    def __init__(self, progress_queue, on_bytes: Callable[[int], None]) -> None:
        self.queue = progress_queue
        self.on_bytes = on_bytes
        self.received = self.expected = 0

    def drain(self, wait: float) -> None:
        try:
            n = self.queue.get(timeout=wait) if wait else self.queue.get_nowait()
            while True:
                self.received += n
                self.on_bytes(n)
                n = self.queue.get_nowait()
        except queue.Empty:
            pass

    def count_result(self, sent: int, rest: int) -> None:
        self.expected += sent
        if rest:
            self.on_bytes(rest)

    def finish(self) -> None:
        deadline = time.monotonic() + PROGRESS_FLUSH_SECONDS
        while self.received < self.expected and time.monotonic() < deadline:
            self.drain(PROGRESS_POLL_SECONDS)


def _pool_context():
    import multiprocessing
    import threading

    # Fork where it is safe: workers start in milliseconds, with postmortem imported and the
    # knowledge base loaded. It is not safe with other threads running (a lock held at the fork
    # stays held in the child): then, and where fork does not exist, a fork server, whose
    # workers import postmortem once each.
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["postmortem.batch"])
        return context
    return multiprocessing.get_context("spawn")


def split_batches(logs: Sequence[LogFile], workers: int) -> list[list[LogFile]]:
    """Consecutive files in batches: at most BATCH_MAX_FILES / BATCH_MAX_BYTES each, and small
    enough that every worker gets several (a big file is a batch of its own)."""
    target_files = max(1, min(BATCH_MAX_FILES, len(logs) // (workers * BATCHES_PER_WORKER)))
    batches: list[list[LogFile]] = []
    current: list[LogFile] = []
    size = 0
    for log in logs:
        if current and (len(current) >= target_files or size + log.size > BATCH_MAX_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(log)
        size += log.size
    if current:
        batches.append(current)
    return batches


# -- what the commands use ----------------------------------------------------------------------

def collect(scans: Iterable[FileScan], on_warning: Callable[[str], None] | None = None) -> BatchOutcome:
    """Keep the readable files' scans, report the unreadable ones (as they come) and the problems."""
    outcome = BatchOutcome()
    for scan in scans:
        for problem in scan.problems:
            if problem not in outcome.problems:
                outcome.problems.append(problem)
        if scan.error:
            outcome.skipped.append(scan.error)
            if on_warning is not None:
                on_warning(scan.error)
            continue
        outcome.scans.append(scan)
    return outcome


def report_logs(logs: Sequence[LogFile], kb: KnowledgeBase, *, lang: str = DEFAULT_LANG, redact: bool = True,
                jobs: int | None = None, on_bytes: Callable[[int], None] | None = None,
                on_warning: Callable[[str], None] | None = None) -> tuple[Report, BatchOutcome]:
    """One report over many logs, as `scan(paths)` gives: incidents grouped across files, each
    naming its source. Unreadable files are left out (see BatchOutcome.skipped)."""
    outcome = collect(scan_logs(logs, kb, ScanOptions(RESULTS, lang, redact), jobs=jobs, on_bytes=on_bytes),
                      on_warning)
    report = build_report([s.result for s in outcome.scans], kb, lang, redact)
    return report, outcome


def total_bytes(logs: Iterable[LogFile]) -> int:
    return sum(log.size for log in logs)

