#!/usr/bin/env python3
"""Speed of the prefilter's engines on a big training log, in MB/s of log searched.

    python benchmarks/bench_prefilter.py              # the 100 MB mixed log
    python benchmarks/bench_prefilter.py --size 1024  # the 1 GB one (streamed, one chunk at a time)

Both prefilters of a Scanner (`full`: every needle; `sparse`: without the metrics-line needles,
what a log over 64 MiB is searched with) and every engine: `re` (pure Python, the fallback where
Hyperscan has no wheel), `hyperscan` when installed, and `trie`, the single prefix-factored
alternation the re engine used before (for comparison). The chunks are those the reader hands
the scan (4 MiB, cut at a newline); each chunk is searched by every engine in turn, so that
load on the machine falls on all of them alike. Prints wall-clock MB/s (and CPU MB/s: on a busy
machine the difference is time spent waiting for a core), the hits, and the number of lines
holding a needle with their lowest kind, which must be the same for every engine.
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_scan import workload  # noqa: E402  (makes the log with shared/bench/make_log.py if missing)

from postmortem.knowledge import load_knowledge_base  # noqa: E402
from postmortem.prefilter import Prefilter, _trie_pattern, needles_for  # noqa: E402
from postmortem.reader import read_chunks  # noqa: E402


class TrieEngine:
    """The re engine before anchors: one alternation of all literals, caseless ones in chunk.lower()."""

    def __init__(self, needles) -> None:
        self.kind_of: dict[bytes, int] = {}
        exact, folded = set(), set()
        for needle in needles:
            for data in {needle.text.encode(), needle.text.encode("gb18030", errors="ignore")}:
                literal = data.lower() if needle.caseless else data
                (folded if needle.caseless else exact).add(literal)
                self.kind_of[literal] = min(needle.kind, self.kind_of.get(literal, needle.kind))
        self.exact = re.compile(_trie_pattern(sorted(exact)))
        self.folded = re.compile(_trie_pattern(sorted(folded))) if folded else None

    def hits(self, chunk: bytes) -> list[tuple[int, int]]:
        found = [(m.start(), self.kind_of[m.group()]) for m in self.exact.finditer(chunk)]
        if self.folded is not None:
            found += [(m.start(), self.kind_of[m.group()]) for m in self.folded.finditer(chunk.lower())]
            found.sort()
        return found


def line_kinds(chunk: bytes, hits: list[tuple[int, int]]) -> collections.Counter:
    """How many lines hold a needle, by the lowest kind on the line."""
    lines: dict[int, int] = {}
    for offset, kind in hits:
        start = chunk.rfind(b"\n", 0, offset) + 1
        lines[start] = min(kind, lines.get(start, kind))
    return collections.Counter(lines.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100, help="MiB of mixed log (100 or 1024; made if missing)")
    parser.add_argument("--path", type=Path, help="search this log instead")
    parser.add_argument("--engines", default="re,hyperscan,trie", help="comma-separated: re, hyperscan, trie")
    parser.add_argument("--no-check", action="store_true", help="skip counting lines (saves time on 1 GB)")
    args = parser.parse_args()
    path = args.path or workload(args.size)
    kb = load_knowledge_base(include_user=False)
    engines = {}
    for prefilter_name, metric_lines in (("full", True), ("sparse", False)):
        needles, _ = needles_for(kb, metric_lines=metric_lines)
        for engine in args.engines.split(","):
            start = time.perf_counter()
            if engine == "trie":
                built = TrieEngine(needles)
            else:
                try:
                    built = Prefilter(needles, engine)
                except ImportError:
                    print(f"{engine}: not installed, skipped")
                    continue
                if built.engine != engine:
                    continue
            engines[(engine, prefilter_name)] = (built, time.perf_counter() - start)
    wall = collections.Counter()
    cpu = collections.Counter()
    hit_counts = collections.Counter()
    lines = {key: collections.Counter() for key in engines}
    total = 0
    with open(path, "rb") as stream:
        for chunk in read_chunks(stream):
            total += len(chunk)
            for key, (engine, _) in engines.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                hits = engine.hits(chunk)
                wall[key] += time.perf_counter() - start_wall
                cpu[key] += time.process_time() - start_cpu
                hit_counts[key] += len(hits)
                if not args.no_check:
                    lines[key] += line_kinds(chunk, hits)
    print(f"{path.name}: {total / 1e6:.0f} MB in {total >> 22} chunks of 4 MiB")
    print(f"{'engine':10} {'prefilter':9} {'MB/s':>7} {'CPU MB/s':>9} {'build ms':>8} {'hits':>9}  lines by kind (error, non-finite, metric)")
    for key, (_, build) in engines.items():
        kinds = lines[key]
        counted = "-" if args.no_check else f"{kinds[0]}, {kinds[1]}, {kinds[2]}"
        print(f"{key[0]:10} {key[1]:9} {total / 1e6 / wall[key]:7.1f} {total / 1e6 / cpu[key]:9.1f} "
              f"{build * 1e3:8.0f} {hit_counts[key]:9d}  {counted}")
    if not args.no_check:
        for prefilter_name in ("full", "sparse"):
            counts = {key[0]: lines[key] for key in engines if key[1] == prefilter_name}
            agree = len({tuple(sorted(c.items())) for c in counts.values()}) <= 1
            print(f"{prefilter_name}: lines by kind {'the same for' if agree else 'DIFFER between'} {', '.join(counts)}")


if __name__ == "__main__":
    main()
