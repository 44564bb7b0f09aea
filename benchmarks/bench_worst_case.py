#!/usr/bin/env python3
"""The worst inputs we can build, and what each costs per MB: a scan must stay linear on all.

    python benchmarks/bench_worst_case.py                  # full sizes (a 200 MB line, ...)
    python benchmarks/bench_worst_case.py --scale 0.1      # a tenth of each, quicker
    python benchmarks/bench_worst_case.py --only cr,ranks  # some cases
    python benchmarks/bench_worst_case.py --regexes        # also time every built-in regex on
                                                           # adversarial strings of n and 4n chars

Each input is written to a temporary file and scanned by `postmortem scan FILE --format json` in
its own process (a hang is cut off at --timeout), timed from outside with its peak RSS. Printed:
size, seconds, seconds per MB, peak RSS, incidents found. A linear scan keeps s/MB flat as
--scale grows; the --regexes table flags a pattern whose time grows faster than its input.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20
TRACE_TAIL = (b"Traceback (most recent call last):\n  File \"/home/user/proj/train.py\", line 57, in forward\n"
              b"    logits = self.score(hidden_states)\n"
              b"RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float\n")
WRITE_BLOCK = 4 * MB


def _repeat(unit: bytes, total: int) -> Iterator[bytes]:
    """`unit` repeated up to `total` bytes, in blocks (never the whole input in memory)."""
    block = unit * max(1, WRITE_BLOCK // len(unit))
    written = 0
    while written < total:
        piece = block[: total - written]
        written += len(piece)
        yield piece


# -- the cases: name -> (what, generator of bytes for a scale) ------------------------------------
def long_line(scale: float) -> Iterator[bytes]:
    """One 200 MB line, no newline, with an `Error` needle every 4 KB: every piece of it is a
    candidate line for the matcher, then a real traceback after it."""
    yield from _repeat(b"x" * 4090 + b"Error ", int(200 * MB * scale))
    yield b"\n" + TRACE_TAIL


def long_plain_line(scale: float) -> Iterator[bytes]:
    """One 200 MB line of a single byte, no needle: the prefilter's fast path."""
    yield from _repeat(b"=", int(200 * MB * scale))
    yield b"\n" + TRACE_TAIL


def carriage_returns(scale: float) -> Iterator[bytes]:
    """A million bare `\\r` in one line, then a million tqdm frames in one line."""
    n = int(1_000_000 * scale)
    yield b"\r" * n + b"\n"
    frame = b"\r 42%|####      | 420/1000 [00:10<00:14, 40.1it/s, loss=0.43]"
    yield from _repeat(frame, n * len(frame))
    yield b"\n" + TRACE_TAIL


def nested_brackets(scale: float) -> Iterator[bytes]:
    """Deep nesting of brackets inside an exception message and a metrics dict."""
    n = int(2_000_000 * scale)
    yield b"ValueError: " + b"(" * n + b"[" * n + b"{" * n + b"}" * n + b"]" * n + b")" * n + b"\n"
    yield b"{'loss': " + b"[" * n + b"nan" + b"]" * n + b"}\n"
    yield TRACE_TAIL


def error_words(scale: float) -> Iterator[bytes]:
    """A line of a million `Error:` words (every needle of the prefilter, on one line)."""
    yield from _repeat(b"Error: ", int(1_000_000 * scale) * 7)
    yield b"\n"
    yield from _repeat(b"RuntimeError: CUDA ", int(1_000_000 * scale) * 19)
    yield b"\n" + TRACE_TAIL


def deep_traceback(scale: float) -> Iterator[bytes]:
    """A traceback of 100k frames (a RecursionError printed without Python's own cut)."""
    n = int(100_000 * scale)
    yield b"Traceback (most recent call last):\n"
    frame = b'  File "/home/user/proj/tree.py", line 12, in walk\n    return walk(node.left)\n'
    yield from _repeat(frame, n * len(frame))
    yield b"RecursionError: maximum recursion depth exceeded\n"


def many_ranks(scale: float) -> Iterator[bytes]:
    """10^5 ranks printing the same traceback at once, line by line interleaved."""
    n = int(100_000 * scale)
    lines = TRACE_TAIL.split(b"\n")[:-1]
    for line in lines:
        yield b"".join(b"[rank%d]:%s\n" % (rank, line) for rank in range(n))


def whitespace_runs(scale: float) -> Iterator[bytes]:
    """Runs that break careless `\\s+$` / `\\d+\\.?\\d*` patterns: spaces, digits, dots, colons."""
    n = int(5_000_000 * scale)
    for unit in (b" ", b"1", b".", b":", b"a-", b"/a", b"\t "):
        yield b"RuntimeError: " + b"".join(_repeat(unit, n)) + b"x\n"
        yield b"loss=" + b"".join(_repeat(unit, n)) + b"\n"
    yield TRACE_TAIL


def kaggle_fragments(scale: float) -> Iterator[bytes]:
    """A Kaggle log of a million one-character records, then a traceback in records."""
    n = int(1_000_000 * scale)
    yield b'[{"stream_name":"stderr","time":0.5,"data":"s"}'
    record = b'\n,{"stream_name":"stderr","time":1.5,"data":"\\r"}'
    yield from _repeat(record, n * len(record))
    for line in TRACE_TAIL.split(b"\n")[:-1]:
        yield b'\n,{"stream_name":"stderr","time":9.5,"data":' + json.dumps(line.decode() + "\n").encode() + b"}"
    yield b"\n]"


def notebook_cells(scale: float) -> Iterator[bytes]:
    """A notebook of 100k cells, each with a stream output (a notebook is read whole)."""
    n = int(100_000 * scale)
    cells = [{"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout",
                                                "text": [f"step {i}: loss 0.5\n"]}]} for i in range(n)]
    cells.append({"cell_type": "code", "outputs": [{"output_type": "error", "ename": "RuntimeError", "evalue": "",
                                                    "traceback": TRACE_TAIL.decode().split("\n")}]})
    yield json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


CASES: dict[str, tuple[str, Callable[[float], Iterator[bytes]]]] = {
    "line": ("200 MB line, an `Error` needle every 4 KB", long_line),
    "plain-line": ("200 MB line of one byte, no needle", long_plain_line),
    "cr": ("10^6 bare \\r, then 10^6 tqdm frames in one line", carriage_returns),
    "brackets": ("2*10^6-deep ([{ }]) nesting in a message and a metrics dict", nested_brackets),
    "errors": ("10^6 `Error:` words in one line (+ 10^6 `RuntimeError: CUDA`)", error_words),
    "frames": ("a traceback of 10^5 frames", deep_traceback),
    "ranks": ("10^5 ranks' tracebacks, interleaved line by line", many_ranks),
    "runs": ("5*10^6-char runs of spaces, digits, dots, colons after an exception / `loss=`", whitespace_runs),
    "kaggle": ("a Kaggle log of 10^6 one-character records", kaggle_fragments),
    "notebook": ("a notebook of 10^5 cells", notebook_cells),
}


def scan_file(path: Path, timeout: float) -> tuple[float, int, int | str]:
    """Seconds, peak RSS, and the number of incidents (or why there is none) of one scan."""
    command = [sys.executable, "-m", "postmortem", "scan", str(path), "--format", "json"]
    env = {**os.environ, "POSTMORTEM_LANG": "en"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                return time.perf_counter() - start, usage.ru_maxrss * 1024, "TIMEOUT"
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        out.seek(0)
        data = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        return elapsed, usage.ru_maxrss * 1024, f"exit {os.waitstatus_to_exitcode(status)}"
    return elapsed, usage.ru_maxrss * 1024, len(json.loads(data)["incidents"])


def run_cases(names: list[str], scale: float, timeout: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.log"
        empty.write_bytes(TRACE_TAIL)
        start_up = min(scan_file(empty, timeout)[0] for _ in range(3))
        print(f"start-up (a 4-line log): {start_up:.2f} s, subtracted from each case's s/MB")
        print(f"{'case':<11} {'size':>9} {'seconds':>8} {'s/MB':>7} {'peak RSS':>9}  incidents  what")
        for name in names:
            what, make = CASES[name]
            path = Path(folder) / f"{name}.log"
            with open(path, "wb") as handle:
                for piece in make(scale):
                    handle.write(piece)
            size = path.stat().st_size
            seconds, rss, found = scan_file(path, timeout)
            net = max(seconds - start_up, 0.0)
            print(f"{name:<11} {size / MB:>7.1f}MB {seconds:>8.2f} {net / max(size / MB, 1e-9):>7.3f} "
                  f"{rss / MB:>7.0f}MB  {found!s:>9}  {what}", flush=True)
            path.unlink()


# -- every regex on adversarial strings -----------------------------------------------------------
ADVERSARIAL_UNITS = (" ", "\t", "a", "A", "1", ".", ":", "-", "/", "\\", "_", "(", "[", "{", "'", '"', "a ",
                     "1.", "a:", "a-", "a/", "a.", "x=", "x: ", "0x", "Error: ", "File \"", "| ", "%|", "\r",
                     "it [", "nan ", "hf_", "sk-", "://", "@", "~", "<")
# After the run: nothing, or the literals patterns require (the `regex` module fails at once when a
# required literal is missing, which would hide the backtracking).
ADVERSARIAL_TAILS = ("\x00", "\x00it [|]:=Error~^@://x")
REGEX_BASE = 2000
GROWTH = 4  # inputs of n and GROWTH*n chars: a linear pattern takes ~GROWTH times as long
SUSPECT_RATIO = 2.5 * GROWTH


def all_regexes() -> list[tuple[str, object]]:
    """Every compiled pattern the scan uses: signatures' and the modules' own."""
    import importlib

    from postmortem.knowledge import load_knowledge_base

    found: list[tuple[str, object]] = []
    for sig in load_knowledge_base(include_user=False).signatures:
        for attr in ("message_patterns", "line_patterns", "exclude_patterns"):
            for pattern in getattr(sig, attr, ()) or ():
                found.append((f"{sig.id}.{attr}", pattern))
    for module_name in ("reader", "tracebacks", "evidence", "metrics", "detectors", "grouping", "redact",
                        "formats", "journal", "knowledge"):
        try:
            module = importlib.import_module(f"postmortem.{module_name}")
        except ImportError:
            continue
        for name, value in vars(module).items():
            if hasattr(value, "pattern") and hasattr(value, "search"):
                found.append((f"{module_name}.{name}", value))
            elif name in ("RULES", "HOME_RULES"):
                found += [(f"{module_name}.{name}[{r.kind or 'home'}]", r.pattern) for r in value]
            elif name == "MASKS":
                found += [(f"{module_name}.MASKS[{i}]", p) for i, (p, _) in enumerate(value)]
    return found


def _time_search(pattern, text: str, budget: float) -> float:
    start = time.perf_counter()
    try:
        if isinstance(pattern.pattern, bytes):
            for _ in pattern.finditer(text.encode("utf-8", "replace")):
                if time.perf_counter() - start > budget:
                    break
        else:
            for _ in pattern.finditer(text):
                if time.perf_counter() - start > budget:
                    break
    except (TypeError, ValueError):
        return 0.0
    return time.perf_counter() - start


def check_regexes(budget: float = 2.0) -> None:
    """For each pattern and each adversarial family, the time on n and GROWTH*n chars."""
    suspects = []
    patterns = all_regexes()
    worst: list[tuple[float, str, str]] = []
    for name, pattern in patterns:
        for unit, tail in ((u, t) for u in ADVERSARIAL_UNITS for t in ADVERSARIAL_TAILS):
            small = unit * (REGEX_BASE // len(unit)) + tail
            big = unit * (GROWTH * REGEX_BASE // len(unit)) + tail
            t_small = min(_time_search(pattern, small, budget) for _ in range(3))
            t_big = _time_search(pattern, big, budget)
            if t_big > 0.002 and t_big / max(t_small, 1e-6) > SUSPECT_RATIO:
                t_big = min(t_big, _time_search(pattern, big, budget))  # once more: noise
            ratio = t_big / max(t_small, 1e-6)
            worst.append((t_big, name, repr(unit + tail)))
            if t_big > 0.002 and ratio > SUSPECT_RATIO:
                suspects.append((name, repr(unit + tail), t_small, t_big, ratio))
    print(f"\n{len(patterns)} patterns x {len(ADVERSARIAL_UNITS) * len(ADVERSARIAL_TAILS)} adversarial runs, "
          f"{REGEX_BASE} and {GROWTH * REGEX_BASE} chars")
    print("slowest on the longer run:")
    for t_big, name, unit in sorted(worst, reverse=True)[:8]:
        print(f"  {t_big * 1000:8.2f} ms  {name}  on {unit}")
    if not suspects:
        print(f"no pattern grows faster than linear (time ratio > {SUSPECT_RATIO:g} for {GROWTH}x the input)")
        return
    print("SUPER-LINEAR (time ratio for 4x the input):")
    for name, unit, t_small, t_big, ratio in suspects:
        print(f"  {name:<44} on {unit:<28} {t_small * 1000:8.2f} ms -> {t_big * 1000:8.2f} ms  (x{ratio:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's size (default 1)")
    parser.add_argument("--only", default="", help="comma-separated case names: " + ", ".join(CASES))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a scan counts as hung")
    parser.add_argument("--regexes", action="store_true", help="also time every regex on adversarial runs")
    parser.add_argument("--no-cases", action="store_true", help="only the regex table")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if not args.no_cases:
        run_cases(names, args.scale, args.timeout)
    if args.regexes or args.no_cases:
        check_regexes()


if __name__ == "__main__":
    main()
