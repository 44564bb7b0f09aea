#!/usr/bin/env python3
"""postmortem beside grep on big training logs: time, peak memory, scaling, start-up.

    python benchmarks/bench_scan.py                 # 100 MB and 1 GB mixed logs
    python benchmarks/bench_scan.py --sizes 100     # quicker

Workloads come from ../shared/bench/make_log.py (deterministic: the same seed gives the same
bytes) and are cached in bench-data/ at the top of the repository. Each command runs as its own
process, timed from outside (best of --repeat), with its peak RSS from wait4(). Prints:
grep's time, postmortem's time, their ratio, peak RSS, the 100 MB -> 1 GB scaling ratio, the
small-log-vs-`import pandas` ratio, and the in-process time split by stage.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench-data"
MAKE_LOG = REPO.parent / "shared" / "bench" / "make_log.py"
GREP_PATTERN = "Traceback|Error|Killed|nan|inf|CUDA out of memory"
STAGES = {  # profiler function name -> stage
    "read_chunks": "read (chunks of bytes)",
    "hits": "prefilter (needle search)",
    "_read_lines": "decode, clean, parse, match candidate lines",
    "findings": "metric detectors",
    "build_report": "group, texts, redact",
}


def run(command: list[str], env: dict | None = None) -> tuple[float, int, bytes]:
    """Wall seconds, peak RSS in bytes, and stdout of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss * 1024, out


def best_of(repeat: int, command: list[str], env: dict | None = None) -> tuple[float, int, bytes]:
    results = [run(command, env) for _ in range(repeat)]
    return min(results, key=lambda r: r[0])


def workload(size_mb: int, kind: str = "mixed") -> Path:
    DATA.mkdir(exist_ok=True)
    path = DATA / f"{kind}-{size_mb}m.log"
    if not path.exists():
        if not MAKE_LOG.exists():
            sys.exit(f"{MAKE_LOG} is missing: the workloads are made by shared/bench/make_log.py")
        print(f"generating {path.name} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(MAKE_LOG), "--size-mb", str(size_mb), "--seed", "1",
                        "--kind", kind, "--out", str(path)], check=True)
    return path


def postmortem_command() -> list[str]:
    return [sys.executable, "-m", "postmortem"]


def stage_split(path: Path) -> list[tuple[str, float]]:
    import postmortem

    profiler = cProfile.Profile()
    profiler.enable()
    postmortem.scan(path)
    profiler.disable()
    stats = pstats.Stats(profiler)
    totals = {stage: 0.0 for stage in STAGES.values()}
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        if "postmortem" in filename and name in STAGES:
            totals[STAGES[name]] += cumulative
    return list(totals.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1024], help="MiB; default 100 1024")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "LC_ALL": "C"}

    rows = {}
    for size in args.sizes:
        path = workload(size)
        grep_s, _, grep_out = best_of(args.repeat, ["grep", "-cE", GREP_PATTERN, str(path)], env)
        pm_s, pm_rss, pm_out = best_of(args.repeat, postmortem_command() + ["scan", str(path), "--format", "json"])
        import json

        found = [(i["signature"], i["line"]) for i in json.loads(pm_out)["incidents"]]
        rows[size] = pm_s
        print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB")
        print(f"  grep -cE          {grep_s:7.2f} s   ({int(grep_out)} matching lines)")
        print(f"  postmortem scan   {pm_s:7.2f} s   peak RSS {pm_rss / 2**20:.0f} MiB   found {found}")
        print(f"  postmortem / grep {pm_s / grep_s:7.2f} x   ({path.stat().st_size / 1e6 / pm_s:.0f} MB/s)")
    if len(rows) > 1:
        small, large = min(rows), max(rows)
        print(f"scaling {small} MiB -> {large} MiB: {rows[large] / rows[small]:.2f} x time for "
              f"{large / small:.1f} x bytes")

    with tempfile.TemporaryDirectory() as tmp:
        small_log = Path(tmp) / "small.log"
        filler = "".join(f"2026-02-06 12:00:{i % 60:02d},000 - INFO - __main__ - loading shard {i}\n"
                         for i in range(1500))
        small_log.write_text(filler + (REPO / "samples" / "dtype-lora.log").read_text(encoding="utf-8")
                             if (REPO / "samples" / "dtype-lora.log").exists() else filler)
        pandas_s, _, _ = best_of(5, [sys.executable, "-c", "import pandas"])
        small_s, _, _ = best_of(5, postmortem_command() + ["scan", str(small_log)])
        print(f"small log ({small_log.stat().st_size / 1e3:.0f} KB) scan {small_s:.2f} s vs "
              f"`import pandas` {pandas_s:.2f} s: ratio {small_s / pandas_s:.2f}")

    largest = workload(max(args.sizes))
    print(f"time by stage, in-process, {largest.name} (cumulative, profiler on):")
    for stage, seconds in stage_split(largest):
        print(f"  {stage:<45} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
