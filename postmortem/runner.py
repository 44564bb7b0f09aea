"""Run a training command under watch: stream its output, tee it to a log, record how it ended.

`postmortem run -- python train.py` behaves like running the command itself (output live, Ctrl-C
reaches it, its exit status is ours) and leaves a log that ends with one summary line of ours:
how it ended, after how long, at what peak memory, and what evidence of an out-of-memory kill
there is. A SIGKILL is what the kernel's OOM killer sends, and it leaves no traceback, so that
line is the only evidence a scan of the log will find; it is worded so that the `host-oom-killed`
signature claims it (`signal 9: SIGKILL`), and `annotate_report` puts the figures in the symptom.

Output goes through a pseudo-terminal when ours is one, so the child line-buffers and draws its
progress bars as on a terminal (`\\r` redraws pass through untouched: bytes are copied as read),
else through a pipe with stdout and stderr merged.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .grouping import fingerprint
from .model import Incident, Report
from .texts import ui_strings, ui_text

SUMMARY_PREFIX = "[postmortem run]"
DEFAULT_LOG_DIR = Path("runs")
LOG_NAME_MAX = 48  # characters of the command kept in a default log name
READ_CHUNK_BYTES = 1 << 16
POLL_SECONDS = 0.1
# After the child has exited, a grandchild that inherited its output (a daemon, a stuck worker)
# may keep it open: read what is already there, but stop after this much silence.
DRAIN_SECONDS = 0.5
NEAR_LIMIT_FRACTION = 0.9  # a peak this close to the memory limit counts as evidence of an OOM kill
UNLIMITED_BYTES = 1 << 60  # cgroup v1 writes "no limit" as a huge number (0x7FFFFFFFFFFFF000)
KMSG_MAX_RECORDS = 20000  # bound on reading the kernel log
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
SIGKILL = 9
OOM_SIGNATURE = "host-oom-killed"


class RunError(Exception):
    """The command could not be started, or its log could not be created."""


@dataclass(frozen=True)
class MemoryFacts:
    """What the machine says about memory around the run; None where it could not be read."""

    limit_bytes: int | None = None
    limit_source: str = ""  # "cgroup v2 memory.max", "cgroup v1 memory.limit_in_bytes", "host RAM"
    oom_kills_before: int | None = None
    oom_kills_after: int | None = None
    counter_source: str = ""  # "cgroup v2 memory.events", "cgroup v1 memory.oom_control"
    kernel_record: str = ""  # the kernel's OOM line about the child, when the kernel log is readable

    @property
    def oom_kills(self) -> int | None:
        if self.oom_kills_before is None or self.oom_kills_after is None:
            return None
        return self.oom_kills_after - self.oom_kills_before


@dataclass(frozen=True)
class RunRecord:
    command: tuple[str, ...]
    log: Path
    started: dt.datetime
    duration: float  # seconds
    exit_status: int | None  # when the child exited
    signal: int | None  # when a signal ended it
    peak_rss_bytes: int | None
    memory: MemoryFacts = MemoryFacts()
    interrupted: bool = False  # a Ctrl-C (or TERM/HUP) was passed on to it
    pid: int = 0
    summary_at: int = 0  # the 1-based line of the log that holds the summary line

    @property
    def status(self) -> int:
        """The wrapper's own exit status: the child's, or 128 + the signal, as a shell reports it."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_status or 0

    @property
    def ok(self) -> bool:
        return self.signal is None and self.exit_status == 0

    @property
    def signal_name(self) -> str:
        return signal_name(self.signal) if self.signal is not None else ""

    @property
    def near_limit(self) -> bool:
        limit = self.memory.limit_bytes
        return bool(limit and self.peak_rss_bytes and self.peak_rss_bytes >= NEAR_LIMIT_FRACTION * limit)

    def oom_evidence(self) -> list[str]:
        """The facts that point at an OOM kill, as short English phrases for the summary line."""
        found = []
        if self.memory.oom_kills:
            found.append(f"{self.memory.counter_source} oom_kill {self.memory.oom_kills_before} -> "
                         f"{self.memory.oom_kills_after}")
        if self.memory.kernel_record:
            found.append(f"kernel: {self.memory.kernel_record}")
        if self.near_limit:
            found.append(f"peak within {round((1 - NEAR_LIMIT_FRACTION) * 100)}% of the limit")
        return found


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def format_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


# -- the log ------------------------------------------------------------------------------------
def default_log_path(command: Sequence[str], started: dt.datetime, directory: Path = DEFAULT_LOG_DIR) -> Path:
    """`runs/<timestamp>-<command>.log`, never the name of an existing file."""
    # The program and its script ("python-train.py"); inline code (`python -c "..."`) is no name.
    words = [Path(word).name for word in command if not word.startswith("-") and not any(c.isspace() for c in word)][:2]
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", "-".join(words)).strip("-.")[:LOG_NAME_MAX] or "command"
    stem = f"{started:%Y%m%d-%H%M%S}-{slug}"
    candidate = directory / f"{stem}.log"
    counter = 2
    while candidate.exists():
        candidate = directory / f"{stem}-{counter}.log"
        counter += 1
    return candidate


def _open_log(path: Path) -> BinaryIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")  # never overwrite a log: it may be the only copy of a failure
    except FileExistsError:
        raise RunError(f"{path}: already exists; postmortem run never overwrites a log (choose another --log)") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot create the log ({exc.strerror or exc})") from None


def command_text(command: Sequence[str]) -> str:
    """The command as a shell would take it, on one line (inline scripts keep their newlines as \\n)."""
    return shlex.join(command).replace("\r", "\\r").replace("\n", "\\n")


def header_line(command: Sequence[str], started: dt.datetime) -> str:
    return (f"{SUMMARY_PREFIX} command: {command_text(command)} | started {started.isoformat(timespec='seconds')}"
            f" | cwd {os.getcwd()}")


def summary_line(record: RunRecord) -> str:
    """The last line of the log: how the run ended, in words a signature can claim."""
    peak = f"{format_bytes(record.peak_rss_bytes)} peak RSS"
    limit = ""
    if record.memory.limit_bytes:
        limit = f" of {format_bytes(record.memory.limit_bytes)} {record.memory.limit_source}"
    if record.signal == SIGKILL:
        # "signal 9: SIGKILL" is the wording the host-oom-killed signature claims.
        how = f"killed by signal 9: SIGKILL at {peak}{limit}"
        evidence = record.oom_evidence()
        how += "; OOM evidence: " + ", ".join(evidence) if evidence else "; no OOM record found"
    elif record.signal is not None:
        verb = "interrupted" if record.interrupted else "killed"
        how = f"{verb} by signal {record.signal}: {record.signal_name}, {peak}{limit}"
    else:
        how = f"exited with status {record.exit_status}, {peak}{limit}"
        if record.memory.oom_kills:
            how += f"; {record.memory.counter_source} oom_kill {record.memory.oom_kills_before} -> " \
                   f"{record.memory.oom_kills_after}"
    return f"{SUMMARY_PREFIX} {how}; after {format_duration(record.duration)}: {command_text(record.command)}"


SUMMARY_STATUS_RE = re.compile(
    re.escape(SUMMARY_PREFIX) + r" (?:exited with status (?P<status>-?\d+)|(?:killed|interrupted) by signal (?P<signal>\d+))"
)
HEADER_COMMAND_RE = re.compile(re.escape(SUMMARY_PREFIX) + r" command: (?P<command>.*?) \| started ")


@dataclass(frozen=True)
class RunSummary:
    """What a log written by `postmortem run` says about its run."""

    command: str = ""
    exit_status: int | None = None
    signal: int | None = None


def read_run_summary(path: str | os.PathLike, tail_bytes: int = 8192) -> RunSummary | None:
    """The header and summary lines of a log written by `postmortem run`, None for other logs."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(tail_bytes).decode("utf-8", "replace")
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    header = HEADER_COMMAND_RE.search(head.split("\n", 1)[0])
    if header is None:
        return None
    ending = None
    for ending in SUMMARY_STATUS_RE.finditer(tail):
        pass
    if ending is None:
        return RunSummary(header["command"])
    status = int(ending["status"]) if ending["status"] is not None else None
    sig = int(ending["signal"]) if ending["signal"] is not None else None
    return RunSummary(header["command"], status, sig)


# -- memory facts (Linux) -----------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dirs() -> tuple[tuple[Path, Path] | None, tuple[Path, Path] | None]:
    """((dir, mount point) of the v2 cgroup, same of the v1 memory cgroup) of this process,
    where mounted and visible."""
    cgroups = _read(Path("/proc/self/cgroup")) or ""
    mounts = _read(Path("/proc/self/mountinfo")) or ""
    v2_rel = v1_rel = None
    for line in cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_rel = parts[2]
        elif "memory" in parts[1].split(","):
            v1_rel = parts[2]
    v2_dir = v1_dir = None
    for line in mounts.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep + 1 >= len(fields):
            continue
        root, mount_point, fstype = fields[3], fields[4], fields[sep + 1]
        options = fields[-1].split(",")
        if fstype == "cgroup2" and v2_rel is not None and v2_dir is None:
            v2_dir = (_join_cgroup(Path(mount_point), root, v2_rel), Path(mount_point))
        elif fstype == "cgroup" and "memory" in options and v1_rel is not None and v1_dir is None:
            v1_dir = (_join_cgroup(Path(mount_point), root, v1_rel), Path(mount_point))
    return v2_dir, v1_dir


def _join_cgroup(mount_point: Path, root: str, relative: str) -> Path:
    # Without a cgroup namespace a container sees its own cgroup mounted as the root of the mount.
    if root != "/" and relative.startswith(root):
        relative = relative[len(root):]
    return mount_point / relative.lstrip("/")


def _walk_up(directory: Path, stop: Path) -> list[Path]:
    found = []
    while True:
        found.append(directory)
        if directory == stop or directory.parent == directory or stop not in directory.parents:
            return found
        directory = directory.parent


def _counter(text: str | None, key: str) -> int | None:
    if text is None:
        return None
    match = re.search(rf"^{key}\s+(\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def read_oom_counter() -> tuple[int | None, str]:
    v2, v1 = _cgroup_dirs()
    if v2 is not None:
        value = _counter(_read(v2[0] / "memory.events"), "oom_kill")
        if value is not None:
            return value, "cgroup v2 memory.events"
    if v1 is not None:
        value = _counter(_read(v1[0] / "memory.oom_control"), "oom_kill")
        if value is not None:
            return value, "cgroup v1 memory.oom_control"
    return None, ""


def read_memory_limit() -> tuple[int | None, str]:
    """The tightest memory limit over this process: its cgroups (and their parents), or host RAM."""
    candidates: list[tuple[int, str]] = []
    v2, v1 = _cgroup_dirs()
    if v2 is not None:
        for directory in _walk_up(*v2):
            value = (_read(directory / "memory.max") or "").strip()
            if value.isdigit():
                candidates.append((int(value), "cgroup v2 memory.max"))
    if v1 is not None:
        for directory in _walk_up(*v1):
            value = (_read(directory / "memory.limit_in_bytes") or "").strip()
            if value.isdigit() and int(value) < UNLIMITED_BYTES:
                candidates.append((int(value), "cgroup v1 memory.limit_in_bytes"))
    meminfo = _read(Path("/proc/meminfo"))
    if meminfo:
        match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
        if match:
            candidates.append((int(match.group(1)) * 1024, "host RAM"))
    if not candidates:
        return None, ""
    return min(candidates)


def read_kernel_oom_record(pid: int) -> str:
    """The kernel's OOM-kill line about `pid`, when /dev/kmsg is readable (it often is not)."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return ""
    pattern = re.compile(rf"(?:Killed process {pid} \(|oom-kill:.*\bpid={pid}\b)")
    found = ""
    try:
        for _ in range(KMSG_MAX_RECORDS):
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError:
                continue  # EPIPE: records were overwritten while reading; go on with the next
            if not record:
                break
            message = record.decode("utf-8", "replace").split(";", 1)[-1].strip()
            if pattern.search(message):
                found = message.split("\n", 1)[0]
    finally:
        os.close(fd)
    return found


# -- running ------------------------------------------------------------------------------------
def run_command(
    command: Sequence[str],
    log_path: Path | None = None,
    *,
    output: BinaryIO | None = None,
    use_pty: bool | None = None,
    env: dict[str, str] | None = None,
    on_start=None,
) -> RunRecord:
    """Run `command`, copying its output to `output` (default: our stdout) and to the log."""
    if not command:
        raise RunError("no command given: postmortem run -- python train.py")
    output = output if output is not None else sys.stdout.buffer
    started = dt.datetime.now().astimezone()
    log_path = log_path or default_log_path(command, started)
    if use_pty is None:
        use_pty = _stdout_is_terminal(output)
    oom_before, counter_source = read_oom_counter()
    log = _open_log(log_path)
    try:
        log.write((header_line(command, started) + "\n").encode("utf-8"))
        log.flush()
        child_env = dict(os.environ if env is None else env)
        if not use_pty:
            # Through a pipe Python would buffer its output in blocks: keep it live.
            child_env.setdefault("PYTHONUNBUFFERED", "1")
        t0 = time.monotonic()
        # Forwarding starts before the child does: a Ctrl-C while it starts must not kill only us.
        with _SignalForwarder() as forwarder:
            proc, reader_fd = _start(command, use_pty, child_env, output)
            forwarder.attach(proc.pid)
            if on_start is not None:
                on_start(proc.pid)
            status, usage, newlines, ends_with_newline = _pump(proc, reader_fd, output, log)
        interrupted = forwarder.forwarded
        duration = time.monotonic() - t0
        exit_status = os.waitstatus_to_exitcode(status)
        sig = -exit_status if exit_status < 0 else None
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) if usage is not None else None
        oom_after, _ = read_oom_counter()
        limit, limit_source = read_memory_limit()
        kernel = read_kernel_oom_record(proc.pid) if sig == SIGKILL else ""
        record = RunRecord(
            command=tuple(command), log=log_path, started=started, duration=duration,
            exit_status=None if sig is not None else exit_status, signal=sig, peak_rss_bytes=peak,
            memory=MemoryFacts(limit, limit_source, oom_before, oom_after, counter_source, kernel),
            interrupted=interrupted, pid=proc.pid,
            # the header, the child's lines (and its unfinished last one), a blank line, the summary
            summary_at=3 + newlines + (0 if ends_with_newline else 1),
        )
        # A blank line first, so that the summary never glues onto a progress bar left on the line.
        log.write((("\n" if ends_with_newline else "\n\n") + summary_line(record) + "\n").encode("utf-8"))
        log.flush()
        os.fsync(log.fileno())
    finally:
        log.close()
    return record


def _stdout_is_terminal(output: BinaryIO) -> bool:
    try:
        return os.isatty(output.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _start(command: Sequence[str], use_pty: bool, env: dict[str, str], output: BinaryIO):
    if use_pty:
        import pty
        import termios

        master, slave = pty.openpty()
        try:
            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.ONLCR  # keep the child's "\n" as "\n" in the log (no "\r\n")
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            _copy_window_size(output, slave)
        except (termios.error, OSError):
            pass
        stdout = stderr = slave
    else:
        master = slave = None
        stdout, stderr = subprocess.PIPE, subprocess.STDOUT
    try:
        # Its own session: the terminal's Ctrl-C reaches only us, and we pass it on, so that the
        # log still gets our summary line however the child ends.
        proc = subprocess.Popen(list(command), stdout=stdout, stderr=stderr, env=env, start_new_session=True)
    except (OSError, ValueError) as exc:
        if master is not None:
            os.close(master)
            os.close(slave)
        raise RunError(f"cannot run {command[0]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if slave is not None:
        os.close(slave)
        return proc, master
    return proc, proc.stdout.fileno()


def _copy_window_size(output: BinaryIO, slave: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(output.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    except (OSError, AttributeError, ValueError):
        pass


class _SignalForwarder:
    """Pass Ctrl-C (and TERM, HUP, QUIT) on to the child's process group instead of dying of it."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self.forwarded = False
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _SignalForwarder:
        for name in FORWARDED_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def attach(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def _handle(self, signum, _frame) -> None:
        self.forwarded = True
        if self.pid is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except OSError:
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass


def _pump(proc: subprocess.Popen, fd: int, output: BinaryIO, log: BinaryIO):
    """Copy the child's output until it has exited and gone quiet."""
    status = usage = None
    output_ok = True
    quiet_since = None
    newlines, last_byte = 0, b"\n"
    try:
        while True:
            if status is None:
                pid, wait_status, wait_usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    status, usage = wait_status, wait_usage
                    proc.returncode = os.waitstatus_to_exitcode(wait_status)
            ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if ready:
                try:
                    chunk = os.read(fd, READ_CHUNK_BYTES)
                except OSError:  # EIO: the pty's last writer closed it
                    chunk = b""
                if not chunk:
                    if status is None:
                        _, status, usage = os.wait4(proc.pid, 0)
                        proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                log.write(chunk)
                log.flush()  # the log is live: `tail -f` on it shows what the terminal shows
                newlines += chunk.count(b"\n")
                last_byte = chunk[-1:]
                if output_ok:
                    try:
                        output.write(chunk)
                        output.flush()
                    except (BrokenPipeError, ValueError, OSError):
                        output_ok = False  # our reader went away: keep the log going
                quiet_since = None
            elif status is not None:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= DRAIN_SECONDS:
                    break
    finally:
        try:
            os.close(fd) if proc.stdout is None else proc.stdout.close()
        except OSError:
            pass
    return status, usage, newlines, last_byte == b"\n"


# -- the draft ----------------------------------------------------------------------------------
def annotate_report(report: Report, record: RunRecord) -> Report:
    """Put the run's figures into the symptom of a SIGKILL's host-oom-killed incident."""
    if record.signal != SIGKILL:
        return report
    lang = report.lang
    facts = describe_kill(record, lang)
    space = ui_strings(lang)["space"]
    incidents = tuple(
        dataclasses.replace(i, symptom=f"{i.symptom}{space}{facts}")
        if i.signature == OOM_SIGNATURE and facts not in i.symptom else i
        for i in report.incidents
    )
    return dataclasses.replace(report, incidents=incidents)


def describe_kill(record: RunRecord, lang: str) -> str:
    """"Killed by SIGKILL at 23.4 GiB peak RSS of 24.0 GiB (cgroup v2 memory.max). <evidence>" """
    of_limit = ""
    if record.memory.limit_bytes:
        of_limit = ui_text(lang, "run_of_limit").format(
            limit=format_bytes(record.memory.limit_bytes), source=record.memory.limit_source)
    parts = [ui_text(lang, "run_killed_at").format(
        signal=record.signal_name, peak=format_bytes(record.peak_rss_bytes), of_limit=of_limit)]
    if record.memory.oom_kills:
        parts.append(ui_text(lang, "run_evidence_counter").format(
            source=record.memory.counter_source, before=record.memory.oom_kills_before,
            after=record.memory.oom_kills_after))
    if record.memory.kernel_record:
        parts.append(ui_text(lang, "run_evidence_kernel").format(record=record.memory.kernel_record))
    if record.near_limit:
        parts.append(ui_text(lang, "run_evidence_near").format(percent=round((1 - NEAR_LIMIT_FRACTION) * 100)))
    if len(parts) == 1:
        parts.append(ui_text(lang, "run_evidence_none"))
    return ui_strings(lang)["space"].join(parts)


def unrecognised_exit(record: RunRecord, line: int, lang: str) -> Incident:
    """An incident for a failed run whose log no signature recognises (and that has no traceback)."""
    ending = f"{record.signal_name}" if record.signal is not None else f"exit status {record.exit_status}"
    summary = summary_line(record)
    values = {"exception": ending, "summary": summary, "source": str(record.log), "at_line": str(line)}
    texts = {k: ui_text(lang, f"unknown_{k}").format(**values) for k in ("title", "symptom", "cause", "fix", "lesson")}
    return Incident(
        signature="unknown", title=texts["title"], category="unknown", severity="error", count=1,
        source=str(record.log), line=line, evidence=summary, location=None, vars={},
        symptom=texts["symptom"], cause=texts["cause"], fix=texts["fix"], lesson=texts["lesson"],
        references=(), fingerprint=fingerprint("unknown", [ending, command_text(record.command)]),
    )
