"""Reading logs: `scan` (one log, or many on a process pool or a Dask cluster), `stats` over many
runs, and `metrics`, the series a log's numbers make."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import stat
import sys
from pathlib import Path

import click

from ..batch import LOG_RULE
from ..formats import INPUT_FORMATS
from ..reader import InputError
from ..render import JSON_VERSION, incident_to_dict, render_json, render_markdown, template_environment
from ..scan import scan
from ..texts import default_lang, ui_strings
from .common import (BadInput, Exit, _batch_progress, _check_output_path, _load_kb, _output_stream, _progress,
                     _write_atomically, cli, jobs_option, lang_option, patterns_option, scheduler_option)

@cli.command("scan", short_help="Scan logs (files, folders, a pipe) and print the draft.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "jsonl"]), default="md", show_default=True,
              help="md: the journal draft; json: the machine-readable report; jsonl: one JSON line per log.")
@lang_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to FILE instead of stdout (refuses to replace a file; see --force).")
@click.option("--force", is_flag=True, help="With -o: replace FILE if it exists.")
@click.option("--exit-code", is_flag=True, help="Exit with status 1 when an incident is found (like git diff).")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default="auto", show_default=True,
              help="What the input is (auto: from its first bytes). ipynb: a Jupyter notebook, incidents cite "
                   "`nb.ipynb, cell 3`; kaggle: a Kaggle kernel log, incidents cite the time `kernel.log, 12.3 s`.")
@click.option("--template", "template_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Render with your own jinja2 template FILE instead of --format (sandboxed; it sees what "
                   "the built-in report.md.j2 sees, plus `incidents`, the JSON report's dicts).")
@jobs_option
@scheduler_option("with --format jsonl")
@patterns_option
@click.option("--no-redact", is_flag=True, help="Keep tokens, keys and home-directory user names in the output.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also draw the curves of each training-dynamics incident as PNGs in DIRECTORY, linked "
                   "from the draft (needs pip install 'postmortem[plot]').")
def scan_command(paths, input_format, template_path,
                 fmt, lang, output, force, exit_code, jobs, scheduler, patterns_dirs, no_redact,
                 plot_dir) -> None:
    """Scan logs and print the draft postmortem.

    \b
    postmortem scan run.log                    # the Markdown draft on stdout
    python train.py 2>&1 | postmortem scan     # 2>&1: a traceback goes to stderr
    postmortem scan runs/ --format jsonl       # every log under runs/, one JSON line each

    PATHS are logs (plain or .gz), notebooks, Kaggle logs and folders; "-" or no path reads
    stdin. A folder is searched recursively for LOG_RULE. Several logs give one report, in the
    order given, folders sorted.

    Exit status: 0 scanned (a log that cannot be read is a warning on stderr), 1 incidents found
    (with --exit-code), 2 bad input (nothing could be read).
    """
    sources = list(paths) or ["-"]
    if sources == ["-"] and sys.stdin.isatty():
        raise BadInput("no log given: pass a path, or pipe a log in (python train.py 2>&1 | postmortem scan)")
    if scheduler is not None and fmt != "jsonl":
        raise BadInput("--scheduler works with --format jsonl (and with `postmortem stats`)")
    if output is not None:
        _check_output_path(output, sources, force)
    if plot_dir is not None:
        _check_plotting(fmt)
    kb = _load_kb(patterns_dirs)
    lang = lang or default_lang()
    if "-" not in sources and (fmt == "jsonl" or len(sources) > 1 or any(os.path.isdir(s) for s in sources)):
        found = _scan_many(sources, fmt, kb, lang, not no_redact, jobs, scheduler, output, plot_dir)
        if exit_code and found:
            sys.exit(Exit.INCIDENTS_FOUND)
        return
    problems: list[str] = []
    progress = _progress(sources)
    try:
        with progress as on_bytes:
            report = scan(sources, kb=kb, lang=lang, redact=not no_redact,
                          on_bytes=on_bytes, problems=problems, input_format=input_format)
    except InputError as exc:
        raise BadInput(str(exc)) from None
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    if not report.incidents and fmt == "md" and template_path is None:  # JSON is read by programs
        hint = _nothing_found_hint(sources[0], progress.bytes_read)
        if hint:
            click.echo(hint, err=True)
    report = _with_plots(report, plot_dir, output)
    if template_path is not None:
        from .. import sandbox  # jinja2's sandbox, only for a user's own template

        try:
            text = sandbox.render_user_template(report, template_path)
        except sandbox.TemplateError as exc:
            raise BadInput(str(exc)) from None
    elif fmt == "jsonl":
        # A notebook's incidents cite "nb.ipynb, cell 3": they belong to the line of nb.ipynb.
        text = "".join(_jsonl_line(source, [i for i in report.incidents
                                            if i.source == source or i.source.startswith(f"{source}, ")])
                       for source in report.sources)
    else:
        text = render_json(report) if fmt == "json" else render_markdown(report)
    if output is None:
        click.echo(text, nl=False)
    else:
        _write_atomically(output, text)
    if exit_code and report.incidents:
        sys.exit(Exit.INCIDENTS_FOUND)

def _scan_many(sources, fmt, kb, lang, redact, jobs, scheduler, output, plot_dir=None) -> bool:
    """Scan logs and folders of logs on a process pool (or a Dask cluster); True if any incident."""
    from ..batch import REPORTS, ScanOptions, collect, find_logs, report_logs, scan_logs, total_bytes

    logs = _find_logs(find_logs, sources)
    with _batch_progress(0 if scheduler else total_bytes(logs)) as bar:
        warn = bar.warn if len(logs) > 1 else None
        if fmt != "jsonl":
            report, outcome = report_logs(logs, kb, lang=lang, redact=redact, jobs=jobs,
                                          on_bytes=bar.on_bytes, on_warning=warn)
            _check_something_read(len(outcome.scans), outcome.skipped)
            for problem in outcome.problems:
                bar.warn(problem)
            report = _with_plots(report, plot_dir, output)
            text = render_json(report) if fmt == "json" else render_markdown(report)
            if output is None:
                click.echo(text, nl=False)
            else:
                _write_atomically(output, text)
            return bool(report.incidents)
        options = ScanOptions(REPORTS, lang, redact)
        with _dask_client(scheduler, jobs) as client:
            if client is not None:
                from ..distributed import scan_on_dask

                scans = scan_on_dask(client, logs, kb, options)
            else:
                scans = scan_logs(logs, kb, options, jobs=jobs, on_bytes=bar.on_bytes)
            found = read = 0
            skipped: list[str] = []
            problems: list[str] = []
            with _output_stream(output) as write:
                for scan_ in scans:
                    outcome = collect([scan_], warn)
                    skipped += outcome.skipped
                    problems += [p for p in outcome.problems if p not in problems]
                    for item in outcome.scans:
                        read += 1
                        found += len(item.report.incidents)
                        # The report's own name of the log: redacted like everything else it says.
                        source = item.report.sources[0] if item.report.sources else item.source
                        write(_jsonl_line(source, item.report.incidents))
                _check_something_read(read, skipped)
            for problem in problems:
                bar.warn(problem)
            return bool(found)

def _jsonl_line(source: str, incidents) -> str:
    payload = {"version": JSON_VERSION, "source": source, "incidents": [incident_to_dict(i) for i in incidents]}
    return json.dumps(payload, ensure_ascii=False) + "\n"

def _find_logs(find_logs, sources, since=None) -> list:
    try:
        logs = find_logs(sources, since=since, on_warning=lambda line: click.echo(f"warning: {line}", err=True))
    except InputError as exc:
        raise BadInput(str(exc)) from None
    if not logs and since is None:
        raise BadInput(f"{', '.join(sources)}: no logs found (looked for {LOG_RULE})")
    return logs

def _check_something_read(read: int, skipped: list[str]) -> None:
    """Exit 2 when every log was unreadable: one log's own reason, else how many."""
    if read == 0 and skipped:
        raise BadInput(skipped[0] if len(skipped) == 1 else f"none of the {len(skipped)} logs could be read")

@contextlib.contextmanager
def _dask_client(scheduler: str | None, jobs: int | None):
    if scheduler is None:
        yield None
        return
    try:
        from ..distributed import DaskUnavailable, dask_client
    except ImportError:  # pragma: no cover - the module imports dask lazily
        raise BadInput("--scheduler needs Dask: pip install 'postmortem[dask]'") from None
    try:
        with dask_client(scheduler, jobs) as client:
            yield client
    except DaskUnavailable as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:  # the scheduler's address does not answer
        raise BadInput(f"--scheduler {scheduler}: {exc}") from None

@cli.command("stats", short_help="Count failures over many runs: which signatures, since when.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), default="table",
              show_default=True, help="csv: the signatures table only; json: both tables and the run counts.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                                                      "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
              metavar="DATE", help="Only the logs modified at or after DATE (YYYY-MM-DD[ HH:MM[:SS]], local time).")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many unknown error messages to list.")
@jobs_option
@scheduler_option("")
@lang_option
@patterns_option
def stats_command(paths, fmt, since, top, jobs, scheduler, lang, patterns_dirs) -> None:
    """Count failures over many runs: which signatures, in how many runs, since when.

    \b
    postmortem stats runs/ --since 2026-02-01
    postmortem stats runs/ --format csv > failures.csv

    PATHS are logs and folders (searched recursively for LOG_RULE); a run is one log, and a run
    failed when it has an error-severity incident. One row per signature: count (times printed),
    files (runs that had it), share_of_failed (of the failed runs, the share that had it),
    first_seen / last_seen (when those runs last wrote: their last logging timestamp, else the
    file's modification time). Then the most frequent unknown errors, with numbers, paths and
    addresses masked so that one error is one row.

    A log that cannot be read is reported on stderr and skipped. Exit status: 0, or 2 on bad input.
    """
    from ..batch import SUMMARIES, ScanOptions, collect, find_logs, scan_logs, total_bytes
    from ..stats import build_stats, partial_table, render_stats

    kb = _load_kb(patterns_dirs)
    lang = lang or default_lang()
    logs = _find_logs(find_logs, list(paths), since)
    options = ScanOptions(SUMMARIES, lang, True)
    with _batch_progress(0 if scheduler else total_bytes(logs)) as bar, _dask_client(scheduler, jobs) as client:
        if client is not None:
            from ..distributed import stats_on_dask

            partial = stats_on_dask(client, logs, kb, options)
            for line in partial.skipped:
                bar.warn(line)
        else:
            outcome = collect(scan_logs(logs, kb, options, jobs=jobs, on_bytes=bar.on_bytes), bar.warn)
            partial = partial_table([s.summary for s in outcome.scans], outcome.skipped)
            partial.problems = outcome.problems
    if logs and partial.runs == 0:
        _check_something_read(0, partial.skipped)
    for problem in partial.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(render_stats(build_stats(partial, kb, lang, top), fmt), nl=False)

# The rule for which files in a folder are logs is stated once, in batch.py.
for _command in (scan_command, stats_command):
    _command.help = _command.help.replace("LOG_RULE", LOG_RULE)

@cli.command("metrics", short_help="Export the metric series read from a log.")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "md"]), default="csv", show_default=True,
              help="csv/json: every extracted row (non-finite values as nan, inf, -inf); md: per series, "
                   "a table and sparklines.")
@patterns_option
def metrics_command(path, fmt, patterns_dirs) -> None:
    """Export the metric series postmortem reads from a log (PATH, or "-" for stdin).

    \b
    postmortem metrics run.log > run.csv
    postmortem metrics run.log --format md     # a table and sparklines per series

    One row per logged step: format (dict, bar, line, line-unnumbered), run (a restart starts a
    new one), split (train/eval), step, epoch, the log's line number, then one column per metric.
    On very long logs the rows are a bounded sample that keeps every NaN/Inf run's boundaries and
    each metric's extremes.
    """
    from ..render import JSON_VERSION
    from ..scan import extract_metrics

    try:
        collector = extract_metrics(path, _load_kb(patterns_dirs))
    except InputError as exc:
        raise BadInput(str(exc)) from None
    if not collector.has_rows:
        click.echo(f"{path}: no metric lines found", err=True)
        return
    if fmt == "md":
        text = template_environment().get_template("metrics-export.md.j2").render(
            s=ui_strings(default_lang()), source=path, summaries=collector.summaries())
        click.echo(text.rstrip("\n"))
        return
    records = list(collector.records())
    if fmt == "csv":
        columns = list(dict.fromkeys(key for record in records for key in record))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _json_number(v) for k, v in record.items()} for record in records)
        click.echo(buffer.getvalue(), nl=False)
        return
    rows = [{k: _json_number(v) for k, v in record.items()} for record in records]
    click.echo(json.dumps({"version": JSON_VERSION, "source": path, "rows": rows}, ensure_ascii=False, indent=1))

def _json_number(value):
    """JSON has no NaN or Infinity: non-finite floats are written as the strings Python prints."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value

def _check_plotting(fmt: str) -> None:
    from ..plot import PlotUnavailable, check_plotting

    if fmt == "jsonl":
        raise BadInput("--plot works with --format md or json")
    try:
        check_plotting()
    except PlotUnavailable as exc:
        raise BadInput(str(exc)) from None

def _with_plots(report, plot_dir: Path | None, output: Path | None):
    if plot_dir is None:
        return report
    from ..plot import plot_report

    return plot_report(report, plot_dir, link_from=output.parent if output is not None else Path("."))

def _nothing_found_hint(source: str, bytes_read: int) -> str | None:
    """Why a scan may have found nothing, when the input itself says so: one line, or None.

    The usual surprise is a pipe without `2>&1`: the traceback went to the terminal, not to us.
    """
    if source == "-":
        if bytes_read == 0:  # counted after a notebook or Kaggle log is turned into log lines
            return ("warning: no log lines on stdin; a traceback goes to stderr, so pipe both: "
                    "python train.py 2>&1 | postmortem scan")
        if _stdin_is_pipe():
            return ("note: nothing recognised in the pipe; if the run printed a traceback, it went to stderr: "
                    "python train.py 2>&1 | postmortem scan")
        return None
    try:
        with open(source, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if not head:
        return f"warning: {source}: the file is empty"
    if not head.startswith(b"\x1f\x8b") and b"\0" in head:
        return (f"warning: {source}: contains NUL bytes: a binary file, or UTF-16 text without a byte-order mark, "
                "not a plain log")
    return None

def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
