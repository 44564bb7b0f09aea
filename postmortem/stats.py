"""What do we keep hitting: failures counted over many runs (`postmortem stats`).

A run is one log. Each log is scanned on its own and reduced to a `RunSummary` (its signatures
with their counts, its unrecognised errors masked so that numbers and paths do not split them,
whether it failed, and when it last wrote); the summaries become partial tables that add up
exactly (sums, minima, maxima), so that the process pool and a Dask cluster, which reduce them in
different orders, give the same table. pandas is imported here only, and only when a table is built.

- count: how many times the signature was printed, over all runs (8 ranks, 8 times);
- files: in how many runs it appeared;
- share_of_failed: of the failed runs (runs with at least one error-severity incident), the share
  that had it; shares add up to more than 100% when runs fail in several ways;
- first_seen / last_seen: over the runs that had it, when each run last wrote (its last logging
  timestamp, else the file's modification time).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .grouping import UNKNOWN, fill_placeholders, mask_variable_tokens
from .knowledge import KnowledgeBase
from .model import Report
from .redact import redact_text
from .texts import DEFAULT_LANG, ui_text

TOP_UNKNOWN = 10
MESSAGE_WIDTH = 160  # an unknown message is cut to this many characters for the table
TITLE_WIDTH = 48
STATS_JSON_VERSION = 1
SIGNATURE_COLUMNS = ["count", "files", "failed_files", "error_files", "first", "last"]
UNKNOWN_COLUMNS = ["count", "files", "first", "last"]
FORMATS = ("table", "md", "csv", "json")


@dataclass(frozen=True)
class RunSummary:
    """One log, reduced to what the table needs: small, picklable, no pandas."""

    source: str
    seen: float  # when the run last wrote, epoch seconds
    failed: bool
    signatures: tuple[tuple[str, bool, int], ...]  # (signature, any incident of it an error, count)
    unknown: tuple[tuple[str, int], ...]  # (masked message, count)


@dataclass
class Partial:
    """Tables over some runs that add up: combine two and you get the tables over both."""

    signatures: object  # pandas DataFrame indexed by signature, SIGNATURE_COLUMNS
    unknown: object  # pandas DataFrame indexed by masked message, UNKNOWN_COLUMNS
    runs: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)  # one line per unreadable log
    problems: list[str] = field(default_factory=list)  # the matcher's (a regex that timed out)


@dataclass
class Stats:
    signatures: object  # pandas DataFrame, one row per signature, most frequent first
    unknown: object  # pandas DataFrame, the top unknown messages
    runs: int
    failed: int
    skipped: list[str]


def summarize_run(report: Report, seen: float, redact: bool = False) -> RunSummary:
    """`redact`: take secrets and home paths out of the unknown messages (for an unredacted report)."""
    signatures: dict[str, list] = {}
    unknown: dict[str, int] = {}
    for incident in report.incidents:
        entry = signatures.setdefault(incident.signature, [False, 0])
        entry[0] = entry[0] or incident.severity == "error"
        entry[1] += incident.count
        if incident.signature == UNKNOWN:
            message = incident.evidence.split("\n", 1)[0]
            message = mask_variable_tokens(redact_text(message) if redact else message).strip()
            unknown[message] = unknown.get(message, 0) + incident.count
    return RunSummary(
        source=report.sources[0] if report.sources else "",
        seen=seen,
        failed=any(i.severity == "error" for i in report.incidents),
        signatures=tuple((sig, error, count) for sig, (error, count) in sorted(signatures.items())),
        unknown=tuple(sorted(unknown.items())),
    )


def partial_table(runs: Iterable[RunSummary], skipped: Iterable[str] = ()) -> Partial:
    import pandas as pd

    sig_rows, unknown_rows = [], []
    total = failed = 0
    for run in runs:
        total += 1
        failed += run.failed
        for sig, error, count in run.signatures:
            sig_rows.append((sig, count, 1, int(run.failed), int(error), run.seen, run.seen))
        for message, count in run.unknown:
            unknown_rows.append((message, count, 1, run.seen, run.seen))
    signatures = pd.DataFrame(sig_rows, columns=["signature", *SIGNATURE_COLUMNS])
    unknown = pd.DataFrame(unknown_rows, columns=["message", *UNKNOWN_COLUMNS])
    return Partial(_reduce(signatures, "signature"), _reduce(unknown, "message"), total, failed, list(skipped))


def combine_partials(partials: Iterable[Partial]) -> Partial:
    """Add partial tables up (in any grouping: the result is the same)."""
    import pandas as pd

    partials = list(partials)
    if not partials:
        return partial_table([])
    if len(partials) == 1:
        return partials[0]
    signatures = pd.concat([p.signatures.reset_index() for p in partials], ignore_index=True)
    unknown = pd.concat([p.unknown.reset_index() for p in partials], ignore_index=True)
    return Partial(
        _reduce(signatures, "signature"), _reduce(unknown, "message"),
        sum(p.runs for p in partials), sum(p.failed for p in partials),
        [line for p in partials for line in p.skipped],
        list(dict.fromkeys(line for p in partials for line in p.problems)),
    )


def _reduce(frame, key: str):
    rules = {"count": "sum", "files": "sum", "failed_files": "sum", "error_files": "sum",
             "first": "min", "last": "max"}
    aggregated = frame.groupby(key, sort=True).agg({c: rules[c] for c in frame.columns if c != key})
    return aggregated.astype({c: "int64" for c in aggregated.columns if c not in ("first", "last")})


def build_stats(partial: Partial, kb: KnowledgeBase, lang: str = DEFAULT_LANG, top: int = TOP_UNKNOWN) -> Stats:
    """The final tables: signatures most frequent first, and the top unknown messages."""
    table = partial.signatures.reset_index()
    table["title"] = [_title(sig, kb, lang) for sig in table["signature"]]
    table["category"] = [_category(sig, kb) for sig in table["signature"]]
    table["severity"] = ["error" if n else "warning" for n in table["error_files"]]
    table["share_of_failed"] = table["failed_files"] / partial.failed if partial.failed else 0.0
    table = table.sort_values(["files", "count", "signature"], ascending=[False, False, True], kind="stable")
    table = table[["signature", "title", "category", "severity", "files", "count", "share_of_failed",
                   "first", "last"]].rename(columns={"first": "first_seen", "last": "last_seen"})
    unknown = partial.unknown.reset_index()
    unknown = unknown.sort_values(["files", "count", "message"], ascending=[False, False, True], kind="stable")
    unknown = unknown.head(top)[["message", "files", "count", "first", "last"]].rename(
        columns={"first": "first_seen", "last": "last_seen"})
    for frame in (table, unknown):
        for column in ("first_seen", "last_seen"):
            frame[column] = [datetime.fromtimestamp(t) for t in frame[column]]  # local time, DST-aware
    return Stats(table.reset_index(drop=True), unknown.reset_index(drop=True), partial.runs, partial.failed,
                 list(partial.skipped))


def _title(signature: str, kb: KnowledgeBase, lang: str) -> str:
    if signature == UNKNOWN:
        return fill_placeholders(ui_text(lang, "unknown_title"), {"exception": "*"}, frozenset())
    sig = kb.get(signature)
    return sig.text(lang, "title") if sig is not None else signature


def _category(signature: str, kb: KnowledgeBase) -> str:
    sig = kb.get(signature)
    return sig.category if sig is not None else UNKNOWN


# -- rendering ----------------------------------------------------------------------------------

def render_stats(stats: Stats, fmt: str) -> str:
    if fmt == "json":
        return _render_json(stats)
    if fmt == "csv":
        return _plain(stats.signatures, iso=True).to_csv(index=False)
    summary = _summary_line(stats)
    signatures = _plain(stats.signatures, iso=False, percent=True, width=TITLE_WIDTH)
    unknown = _plain(stats.unknown, iso=False, width=MESSAGE_WIDTH)
    if fmt == "md":
        parts = [f"**{summary}**", "", _markdown_table(signatures)]
        if len(unknown):
            parts += ["", "**Top unknown errors** (numbers and paths masked)", "", _markdown_table(unknown)]
        return "\n".join(parts) + "\n"
    parts = [summary, ""]
    parts.append(_text_table(signatures) if len(signatures) else "no incidents")
    if len(unknown):
        parts += ["", "Top unknown errors (numbers and paths masked):", _text_table(unknown)]
    return "\n".join(parts) + "\n"


def _text_table(frame) -> str:
    """pandas' text table, with words flush left and numbers flush right, as people read them."""
    from pandas.api.types import is_numeric_dtype

    formatters = {}
    for column in frame.columns:
        width = max(len(column), *(len(str(v)) for v in frame[column]))
        align = ">" if is_numeric_dtype(frame[column]) or column == "share_of_failed" else "<"
        formatters[column] = f"{{!s:{align}{width}}}".format
    return frame.to_string(index=False, justify="left", formatters=formatters)


def _summary_line(stats: Stats) -> str:
    share = f" ({stats.failed / stats.runs:.0%})" if stats.runs else ""
    line = f"{stats.runs} runs, {stats.failed} failed{share}, {stats.runs - stats.failed} without an error"
    if stats.skipped:
        line += f"; {len(stats.skipped)} unreadable, skipped"
    return line


def _plain(frame, iso: bool, percent: bool = False, width: int | None = None):
    frame = frame.copy()
    for column in ("first_seen", "last_seen"):
        frame[column] = [t.isoformat(timespec="seconds") if iso else t.strftime("%Y-%m-%d %H:%M")
                         for t in frame[column]]
    if "share_of_failed" in frame:
        frame["share_of_failed"] = [f"{s:.0%}" if percent else round(float(s), 4) for s in frame["share_of_failed"]]
    if width is not None:
        for column in ("title", "message"):
            if column in frame:
                frame[column] = [_cut(t, width) for t in frame[column]]
    return frame


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _markdown_table(frame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" if frame[c].dtype.kind in "iuf" else "---" for c in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _render_json(stats: Stats) -> str:
    def records(frame) -> list[dict]:
        plain = _plain(frame, iso=True)
        return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in plain.to_dict(orient="records")]

    payload = {
        "version": STATS_JSON_VERSION,
        "runs": {"total": stats.runs, "failed": stats.failed, "skipped": len(stats.skipped)},
        "signatures": records(stats.signatures),
        "unknown": records(stats.unknown),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
