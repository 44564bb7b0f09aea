"""The journal: `review` (the day's incidents into it), `run` (a command, its log, and the draft
when it fails), `learn` (its entries into personal signatures)."""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click

from ..reader import InputError
from ..render import render_markdown
from ..scan import scan
from ..texts import default_lang, ui_strings
from .common import BadInput, _load_kb, _new_entries, cli, lang_option, patterns_option

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
    from ..journal import JournalError, add_to_day, detect_language, read_journal, render_day, write_journal
    from ..review import review_logs

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

    from ..runner import (RunError, annotate_report, format_bytes, format_duration, run_command,
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

def _journal_language(journal: Path | None) -> str | None:
    """The language a journal is written in, judged by its own field labels."""
    from ..journal import JournalError, detect_language, read_journal

    if journal is None:
        return None
    try:
        return detect_language(read_journal(journal).text)
    except JournalError:
        return None

def _add_to_journal(journal: Path, day, report) -> None:
    from ..journal import JournalError, add_to_day, read_journal, write_journal

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
    from ..journal import JournalError
    from ..learn import learn_journal

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
