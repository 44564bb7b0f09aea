"""The command line: thin commands over the library. Only this module touches the terminal."""
from __future__ import annotations

import contextlib
import csv
import difflib
import enum
import io
import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path

import click

from . import __version__
from .batch import LOG_RULE
from .examples import check_signature
from .files import replace_atomically
from .formats import INPUT_FORMATS
from .knowledge import KnowledgeBase, SignatureError, load_knowledge_base, load_signature, signature_files
from .reader import InputError
from .render import JSON_VERSION, incident_to_dict, render_json, render_markdown, template_environment
from .scan import scan
from .texts import LANGUAGES, default_lang, ui_strings

PROGRESS_MIN_BYTES = 4 << 20  # below this a scan is too quick for a progress bar to help


class Exit(enum.IntEnum):
    OK = 0
    INCIDENTS_FOUND = 1  # only with --exit-code
    CHECK_FAILED = 1
    BAD_INPUT = 2


class BadInput(click.ClickException):
    """Unreadable input or a bad signature file: one line on stderr, exit status 2."""

    exit_code = Exit.BAD_INPUT


lang_option = click.option(
    "--lang", type=click.Choice(LANGUAGES), default=None,
    help="Language of the draft. Default: $POSTMORTEM_LANG, then the locale (zh_* gives zh), else en.",
)
patterns_option = click.option(
    "--patterns", "patterns_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="A folder of extra signatures (repeatable); same id overrides a built-in one.",
)

jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None,
    help="Worker processes for many logs. Default: the number of cores; 1 scans in this process.",
)


def scheduler_option(when: str):
    return click.option(
        "--scheduler", metavar="ADDRESS",
        help=f"Run on a Dask cluster{' ' + when if when else ''}: its scheduler's ADDRESS "
             "(tcp://host:8786), or 'local' for a cluster on this machine. Needs postmortem[dask].",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postmortem")
def cli() -> None:
    """Draft the debugging-journal entry for a failed ML training run.

    \b
    Typical use:
      python train.py 2>&1 | tee run.log
      postmortem scan run.log              # Markdown draft on stdout
      postmortem scan run.log --lang zh    # 错误现象 / 根本原因 / 解决方案 / 经验教训
      cat run.log | postmortem scan        # from a pipe
      postmortem explain cuda-oom          # the full write-up of one signature
    """


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
        from . import sandbox  # jinja2's sandbox, only for a user's own template

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
    from .batch import REPORTS, ScanOptions, collect, find_logs, report_logs, scan_logs, total_bytes

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
                from .distributed import scan_on_dask

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
        from .distributed import DaskUnavailable, dask_client
    except ImportError:  # pragma: no cover - the module imports dask lazily
        raise BadInput("--scheduler needs Dask: pip install 'postmortem[dask]'") from None
    try:
        with dask_client(scheduler, jobs) as client:
            yield client
    except DaskUnavailable as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:  # the scheduler's address does not answer
        raise BadInput(f"--scheduler {scheduler}: {exc}") from None


@contextlib.contextmanager
def _output_stream(output: Path | None):
    """A writer to stdout, or to a temporary file beside FILE that replaces it once all is written."""
    if output is None:
        yield lambda text: click.echo(text, nl=False)
        return
    directory = output.parent if str(output.parent) else Path(".")
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, prefix=f".{output.name}.",
                                     suffix=".tmp", delete=False) as handle:
        try:
            yield handle.write
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, output)


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
    from .batch import SUMMARIES, ScanOptions, collect, find_logs, scan_logs, total_bytes
    from .stats import build_stats, partial_table, render_stats

    kb = _load_kb(patterns_dirs)
    lang = lang or default_lang()
    logs = _find_logs(find_logs, list(paths), since)
    options = ScanOptions(SUMMARIES, lang, True)
    with _batch_progress(0 if scheduler else total_bytes(logs)) as bar, _dask_client(scheduler, jobs) as client:
        if client is not None:
            from .distributed import stats_on_dask

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


@cli.command("explain", short_help="Print the full write-up of one signature.")
@click.argument("signature_id")
@lang_option
@patterns_option
def explain_command(signature_id, lang, patterns_dirs) -> None:
    """Print the full write-up of one signature (like `rustc --explain`).

    \b
    postmortem explain cuda-oom
    postmortem explain cuda-oom --lang zh
    postmortem patterns list                   # every id
    """
    kb = _load_kb(patterns_dirs)
    sig = kb.get(signature_id) or kb.get(signature_id.strip().lower().replace("_", "-"))
    if sig is None:
        close = difflib.get_close_matches(signature_id, kb.ids, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else " See `postmortem patterns list`."
        raise BadInput(f"no signature '{signature_id}'.{hint}")
    chosen = lang or default_lang()
    text = template_environment().get_template("explain.md.j2").render(
        s=ui_strings(chosen), sig=sig, t={k: sig.text(chosen, k) for k in
                                         ("title", "symptom", "cause", "fix", "lesson")},
    )
    click.echo(text.rstrip("\n"))


@cli.group("patterns", short_help="List, check or start signatures (the knowledge base).")
def patterns_group() -> None:
    """List the knowledge base, check a folder of your own signatures, or start one.

    \b
    postmortem patterns list
    postmortem patterns check ~/.config/postmortem/patterns
    postmortem patterns new --from run.log:1234
    """


@patterns_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@patterns_option
def patterns_list_command(fmt, patterns_dirs) -> None:
    """List every signature: id, category, severity, title.

    \b
    postmortem patterns list
    postmortem patterns list --format json
    """
    kb = _load_kb(patterns_dirs)
    rows = [
        {"id": s.id, "category": s.category, "severity": s.severity, "status": s.status,
         "title": s.text("en", "title"), "title_zh": s.text("zh", "title"),
         "references": list(s.references), "path": str(s.path),
         "examples": {e: sum(1 for x in s.examples if x.expect == e) for e in ("match", "no-match", "todo-match")}}
        for s in sorted(kb.signatures, key=lambda s: s.id)
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max((len(r["id"]) for r in rows), default=2)
    for row in rows:
        click.echo(f"{row['id']:<{width}}  {row['category']:<13} {row['severity']:<8} {row['title']}")
    click.echo(f"{len(rows)} signatures", err=True)


@patterns_group.command("check", short_help="Validate your own signatures and run their examples.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def patterns_check_command(directory) -> None:
    """Validate the signatures in DIRECTORY and run their examples against the whole knowledge base.

    \b
    postmortem patterns check ~/.config/postmortem/patterns

    Every problem is reported as FILE: KEY: REASON; the exit status is 1 when any is found.
    """
    failures = 0
    good = []
    for path in signature_files(directory):
        try:
            good.append(load_signature(path))
        except SignatureError as exc:
            failures += 1
            click.echo(f"{exc}", err=True)
    try:
        kb = load_knowledge_base([directory]) if not failures else _kb_with(good)
    except SignatureError as exc:
        raise BadInput(str(exc)) from None
    checked = 0
    for sig in good:
        for result in check_signature(kb.get(sig.id) or sig, kb):
            checked += 1
            if result.ok:
                continue
            if result.expect == "todo-match":
                click.echo(f"{sig.path}: {result.name}: known gap (todo-match): {result.failure}", err=True)
                continue
            failures += 1
            click.echo(f"{sig.path}: {result.name}: {result.failure}", err=True)
    click.echo(f"{_count(len(good), 'signature')}, {_count(checked, 'example')}, {_count(failures, 'problem')}")
    if failures:
        sys.exit(Exit.CHECK_FAILED)


@patterns_group.command("new")
@click.option("--from", "location", required=True, metavar="LOG:LINE",
              help="The log and the line of the error, as the unknown incident's draft cites it.")
@click.option("--id", "sig_id", help="The new signature's id (default: made from the exception type).")
@click.option("--into", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The folder to write <id>.toml into (it is refused if the file exists).")
@patterns_option
def patterns_new_command(location, sig_id, into, patterns_dirs) -> None:
    """Write a starter signature for the error at LOG:LINE.

    \b
    postmortem patterns new --from run.log:1234 --into my-patterns/

    The exception type and the generalised message become the match, the lines around it the
    first example; the texts and references are TODO until you write them, and `patterns check`
    refuses the file until then.
    """
    log, _, line = location.rpartition(":")
    if not log or not line.isdigit():
        raise BadInput(f"--from {location}: expected LOG:LINE, e.g. run.log:1234")
    path = Path(log)
    if not path.is_file():
        raise BadInput(f"{log}: no such file")
    kb = _load_kb(patterns_dirs)
    from . import starter  # learn's generaliser and the journal parser: not needed by other commands

    try:
        new_id, text = starter.starter_signature(path.read_bytes(), log, int(line), kb, sig_id)
    except starter.StarterError as exc:
        raise BadInput(str(exc)) from None
    target = into / f"{new_id}.toml"
    if target.exists():
        raise BadInput(f"{target}: already exists; choose another --id")
    into.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, text)
    click.echo(f"wrote {target}: fill in the TODOs and a reference, then `postmortem patterns check {into}`")


@cli.command("review", short_help="Add the day's incidents from logs to your journal.")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path),
              help="The journal (Markdown) to add the day's entries to; created if missing. "
                   "Without it, the day's section is printed.")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d", "%Y%m%d"]),
              help="The day to file the entries under. Default: the day the newest log was written.")
@click.option("--dry-run", is_flag=True, help="Print a unified diff of what would change in the journal; write nothing.")
@lang_option
@patterns_option
@click.option("--no-redact", is_flag=True, help="Keep tokens, keys and home-directory user names in the output.")
def review_command(logs, journal, day, dry_run, lang, patterns_dirs, no_redact) -> None:
    """Add the day's incidents from LOGS to the journal, under the day's heading.

    \b
    postmortem review runs/*.log --journal review.md
    postmortem review a.log b.log --journal review.md --dry-run

    The same review twice adds nothing; a new incident in a later log is added after the others.
    Several logs of the same problem also get an attempts table (oldest log first).
    """
    from .journal import JournalError, add_to_day, detect_language, read_journal, render_day, write_journal
    from .review import review_logs

    current = None
    if journal is not None:
        try:
            current = read_journal(journal)
        except JournalError as exc:
            raise BadInput(str(exc)) from None
    chosen = lang or (detect_language(current.text) if current is not None else None) or default_lang()
    kb = _load_kb(patterns_dirs)
    problems: list[str] = []
    try:
        day_review = review_logs(logs, kb=kb, lang=chosen, day=day.date() if day else None,
                                 redact=not no_redact, problems=problems)
    except InputError as exc:
        raise BadInput(str(exc)) from None
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    sources = ", ".join(day_review.sources)
    if current is None:
        if not day_review.incidents:
            click.echo(ui_strings(chosen)["no_incidents"].format(sources=sources), err=True)
            return
        click.echo(render_day(day_review.day, day_review.incidents, chosen, day_review.attempts), nl=False)
        return
    update = add_to_day(current.text, day_review.day, day_review.incidents, chosen, day_review.attempts,
                        newline=current.newline)
    heading = day_review.day.strftime("%Y%m%d")
    summary = f"{journal}: {_new_entries(len(update.added))} under {heading}"
    if update.skipped:
        summary += f" ({len(update.skipped)} already there)"
    if update.table and update.table != "unchanged":
        summary += f"; attempts table {update.table}"
    if dry_run:
        diff = difflib.unified_diff(current.text.splitlines(keepends=True), update.text.splitlines(keepends=True),
                                    fromfile=str(journal), tofile=f"{journal} (after review)")
        click.echo("".join(diff), nl=False)
        click.echo(f"dry run: {summary}; nothing written", err=True)
        return
    if update.changed:
        try:
            write_journal(current, update.text)
        except JournalError as exc:
            raise BadInput(str(exc)) from None
    elif not day_review.incidents:
        summary = f"{journal}: " + ui_strings("en")["no_incidents"].format(sources=sources) + " Nothing to add."
    click.echo(summary, err=True)


@cli.command("run", short_help="Run a command, log its output, draft the postmortem if it fails.",
             context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to tee the output. Default: runs/<timestamp>-<command>.log (never overwritten).")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path),
              help="On failure, also add the draft to today's section of this journal.")
@lang_option
@patterns_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command_cli(log_path, journal, lang, patterns_dirs, command) -> None:
    """Run COMMAND, stream and log its output, and draft the postmortem if it fails.

    \b
    postmortem run -- python train.py --epochs 3
    postmortem run --journal review.md -- torchrun --nproc-per-node 2 train.py

    Ctrl-C is passed on to the command. The exit status is the command's (128 + N for signal N).
    """
    import dataclasses

    from .runner import (RunError, annotate_report, format_bytes, format_duration, run_command,
                         summary_line, unrecognised_exit)

    if log_path is not None and log_path.exists():
        raise BadInput(f"{log_path}: already exists; postmortem run never overwrites a log")
    kb = _load_kb(patterns_dirs)  # a broken signature file should stop us before a long run, not after
    try:
        record = run_command(list(command), log_path)
    except RunError as exc:
        raise BadInput(str(exc)) from None
    if record.ok:
        click.echo(f"postmortem run: finished in {format_duration(record.duration)}, exit status 0, "
                   f"peak RSS {format_bytes(record.peak_rss_bytes)}; log {record.log}", err=True)
        sys.exit(0)
    chosen = lang or _journal_language(journal) or default_lang()
    report = annotate_report(scan([record.log], kb=kb, lang=chosen), record)
    if record.interrupted:
        # The user stopped it: their own Ctrl-C is no failure to draft. What failed before it (a
        # hang after one rank's OOM, say) still is.
        report = dataclasses.replace(report, incidents=tuple(
            i for i in report.incidents if not (i.signature == "unknown" and i.evidence.startswith("KeyboardInterrupt"))))
        if not report.incidents:
            click.echo("", err=True)
            click.echo(summary_line(record), err=True)
            click.echo(f"postmortem run: stopped by you; nothing failed before that. Log {record.log}", err=True)
            sys.exit(record.status)
    if not report.incidents:
        report = dataclasses.replace(report, incidents=(unrecognised_exit(record, record.summary_at, chosen),))
    click.echo("", err=True)
    click.echo(summary_line(record), err=True)
    click.echo(render_markdown(report), err=True, nl=False)
    if journal is not None:
        _add_to_journal(journal, record.started.date(), report)
    sys.exit(record.status)


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _new_entries(count: int) -> str:
    return f"{count} new {'entry' if count == 1 else 'entries'}"


def _journal_language(journal: Path | None) -> str | None:
    """The language a journal is written in, judged by its own field labels."""
    from .journal import JournalError, detect_language, read_journal

    if journal is None:
        return None
    try:
        return detect_language(read_journal(journal).text)
    except JournalError:
        return None


def _add_to_journal(journal: Path, day, report) -> None:
    from .journal import JournalError, add_to_day, read_journal, write_journal

    try:
        current = read_journal(journal)
        update = add_to_day(current.text, day, report.incidents, report.lang, newline=current.newline)
        if update.changed:
            write_journal(current, update.text)
    except JournalError as exc:
        click.echo(f"Error: {exc}", err=True)
        return
    click.echo(f"{journal}: {_new_entries(len(update.added))} under {day.strftime('%Y%m%d')}"
               + (f" ({len(update.skipped)} already there)" if update.skipped else ""), err=True)


@cli.command("learn", short_help="Turn your journal's entries into personal signatures.")
@click.argument("journal", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--into", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the learned signatures. Default: $XDG_CONFIG_HOME/postmortem/patterns/learned/.")
def learn_command(journal, into) -> None:
    """Turn the journal's entries that quote an error into personal signatures.

    \b
    postmortem learn review.md

    An entry whose symptom (错误现象 / Symptom) quotes an error in backticks becomes a signature
    with your own fix and lesson; a later scan that meets the error shows them first.
    Learning the same journal again changes nothing; an edited entry updates its signature.
    """
    from .journal import JournalError
    from .learn import learn_journal

    if not journal.is_file():
        raise BadInput(f"{journal}: no such file")
    try:
        result = learn_journal(journal, into)
    except JournalError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or into}: cannot write ({exc.strerror or exc})") from None
    for label, ids in (("learned", result.learned), ("updated", result.updated), ("removed", result.removed)):
        for sig_id in ids:
            click.echo(f"{label:8} {sig_id}", err=True)
    for entry, why in result.skipped:
        click.echo(f"skipped  {entry.date or '-'} {entry.number}. {entry.title}: {why}", err=True)
    click.echo(f"{len(result.learned)} learned, {len(result.updated)} updated, {len(result.unchanged)} unchanged, "
               f"{len(result.removed)} removed, {len(result.skipped)} skipped; signatures in {result.directory}")


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
    from .render import JSON_VERSION
    from .scan import extract_metrics

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
    from .plot import PlotUnavailable, check_plotting

    if fmt == "jsonl":
        raise BadInput("--plot works with --format md or json")
    try:
        check_plotting()
    except PlotUnavailable as exc:
        raise BadInput(str(exc)) from None


def _with_plots(report, plot_dir: Path | None, output: Path | None):
    if plot_dir is None:
        return report
    from .plot import plot_report

    return plot_report(report, plot_dir, link_from=output.parent if output is not None else Path("."))


def _kb_with(extra) -> KnowledgeBase:
    base = load_knowledge_base()
    by_id = {s.id: s for s in base.signatures}
    by_id.update({s.id: s for s in extra})
    return KnowledgeBase(tuple(by_id.values()))


def _load_kb(patterns_dirs) -> KnowledgeBase:
    problems: list[str] = []
    try:
        kb = load_knowledge_base(patterns_dirs, problems=problems)
    except SignatureError as exc:
        raise BadInput(str(exc)) from None
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    return kb


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


def _check_output_path(output: Path, sources: list[str], force: bool) -> None:
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise BadInput(f"{output}: no such folder {folder}")
    if output.exists() and not force:
        raise BadInput(f"{output}: already exists; pass --force to replace it")
    for source in sources:
        if source != "-" and Path(source).exists() and Path(source).resolve() == output.resolve():
            raise BadInput(f"{output}: is one of the logs being scanned")


def _write_atomically(path: Path, text: str) -> None:
    try:
        replace_atomically(path, text.encode("utf-8"))
    except OSError as exc:
        raise BadInput(f"{path}: cannot be written ({exc.strerror or exc})") from None


class _progress:
    """A tqdm bar over bytes on stderr, only for a terminal and for inputs worth waiting for."""

    def __init__(self, sources: list[str]) -> None:
        total = 0
        for source in sources:
            try:
                total += os.path.getsize(source) if source != "-" else 0
            except OSError:
                pass
        self.bar = None
        self.bytes_read = 0  # an empty input is worth a warning (see _nothing_found_hint)
        if total >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="scanning", file=sys.stderr, leave=False)

    def _on_bytes(self, count: int) -> None:
        self.bytes_read += count
        if self.bar is not None:
            self.bar.update(count)

    def __enter__(self):
        return self._on_bytes

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


class _batch_progress:
    """The bar over the bytes of many logs; warnings printed above it, not through it."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if total >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
            from tqdm import tqdm

            # No monitor thread: with no other thread running, the worker pool can fork (fast).
            tqdm.monitor_interval = 0
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="scanning", file=sys.stderr, leave=False)
        self.on_bytes = self.bar.update if self.bar is not None else None

    def warn(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(f"warning: {line}", file=sys.stderr)
        else:
            click.echo(f"warning: {line}", err=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def main() -> None:
    # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and status 1, and the shell
    # convention (and `postmortem run`) is 130.
    try:
        status = cli.main(prog_name="postmortem", standalone_mode=False)
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
            exc.show()  # a bare `postmortem`: the help is the answer
        else:  # one line, like every other error of ours
            message = exc.format_message().rstrip()
            if not message.endswith((".", "?", "!")):
                message += "."
            where = f" Try `{exc.ctx.command_path} --help`." if exc.ctx is not None else ""
            click.echo(f"Error: {message}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # `postmortem scan big.log | head` closed the pipe: not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(status if isinstance(status, int) else 0)  # --help and --version give 0
