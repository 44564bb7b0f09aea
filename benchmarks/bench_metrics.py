#!/usr/bin/env python3
"""Metric extraction + detection on a very long training log: time and peak memory.

    python benchmarks/bench_metrics.py                 # 10 million lines (about 0.9 GB, generated)
    python benchmarks/bench_metrics.py --lines 1000000 --sizes 100000,1000000

Generates a deterministic log of Hugging Face Trainer dicts (most lines), `step N loss=...`
logging lines, periodic eval dicts, a restart halfway, and a NaN streak near the end; then, in a
fresh process per size, reads it with postmortem's reader and feeds every line to
`MetricCollector` (the extraction), then runs every detector (`findings()`). It prints lines/s,
seconds and the peak RSS of that process (resource.getrusage), for each size, so that the growth
of memory with the length of the log can be read off directly. The findings are printed too: the
NaN streak must be found at the same step whatever the size.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def generate(path: Path, lines: int, seed: int = 1) -> None:
    """`lines` lines: per 100, 70 Trainer dicts, 29 logging lines, 1 eval dict; a restart at the
    half; a 40-line NaN streak at 95%."""
    rng = random.Random(seed)
    noise = [rng.uniform(-0.02, 0.02) for _ in range(4096)]
    half, nan_start = lines // 2, int(lines * 0.95)
    buffer: list[str] = []
    step = 0
    with open(path, "w", encoding="utf-8") as out:
        for n in range(lines):
            if n == half:
                step = 0  # the job restarted from scratch: steps and epochs go back
            step += 1
            epoch = round(step / 10_000, 4)
            loss = 0.4 + 2.0 * math.exp(-step / 200_000) + noise[step & 4095]
            kind = n % 100
            if nan_start <= n < nan_start + 40:
                buffer.append(f"{{'loss': nan, 'grad_norm': nan, 'learning_rate': 1e-05, 'epoch': {epoch}}}\n")
            elif kind == 99:
                buffer.append(f"{{'eval_loss': {loss + 0.08:.4f}, 'eval_runtime': 20.1, "
                              f"'eval_samples_per_second': 248.7, 'eval_steps_per_second': 31.1, 'epoch': {epoch}}}\n")
            elif kind >= 70:
                buffer.append(f"2026-02-06 12:00:01,123 - INFO - __main__ - epoch {int(epoch)} step {step} "
                              f"loss={loss:.4f} lr={2e-5 * (1 - n / lines):.3e}\n")
            else:
                buffer.append(f"{{'loss': {loss:.4f}, 'grad_norm': {1.0 + noise[(step * 7) & 4095] * 10:.4f}, "
                              f"'learning_rate': {2e-5 * (1 - n / lines)!r}, 'epoch': {epoch}}}\n")
            if len(buffer) >= 65_536:
                out.write("".join(buffer))
                buffer = []
        out.write("".join(buffer))


def measure(path: str) -> dict:
    """In this process: read + extract + detect; returns the figures."""
    sys.path.insert(0, str(REPO))
    from postmortem.metrics import MetricCollector
    from postmortem.model import Trace
    from postmortem.reader import read_log
    from postmortem.tracebacks import TracebackSplitter

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    collector = MetricCollector()
    splitter = TracebackSplitter()
    count = 0
    for line in read_log(path):
        count += 1
        for item in splitter.feed(line):
            if not isinstance(item, Trace):
                collector.feed(item)
    extracted = time.perf_counter()
    findings = collector.findings(path)
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "lines": count, "extract_s": round(extracted - start, 2), "detect_s": round(done - extracted, 3),
        "lines_per_s": round(count / (done - start)), "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_mb": round(before / 1024, 1), "kept_rows": collector.kept_total,
        "series": [(s.format, s.label, s.count) for s in collector.series],
        "findings": [(e.text, e.values.get("metric"), e.values.get("step")) for e in findings],
        "pandas_imported": "pandas" in sys.modules,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000, help="lines of the biggest log")
    parser.add_argument("--sizes", default="", help="comma-separated line counts to measure (default: 1%%, 10%%, 100%%)")
    parser.add_argument("--dir", default=None, help="where to write the logs (default: a temporary folder)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure one file in this process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        [args.lines // 100, args.lines // 10, args.lines]
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for size in sizes:
            path = Path(folder) / f"metrics-{size}.log"
            started = time.perf_counter()
            generate(path, size)
            made = time.perf_counter() - started
            result = subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True,
                                    capture_output=True, text=True)
            figures = json.loads(result.stdout)
            figures["file_mb"] = round(os.path.getsize(path) / 1e6, 1)
            figures["generate_s"] = round(made, 1)
            print(json.dumps(figures))
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
