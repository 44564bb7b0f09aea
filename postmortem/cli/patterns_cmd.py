"""The knowledge base from the command line: `explain` one signature, `patterns list`, `check` a
folder of your own, `new` (a starter for an unknown error)."""
from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import click

from ..examples import check_signature
from ..knowledge import SignatureError, load_knowledge_base, load_signature, signature_files
from ..render import template_environment
from ..texts import default_lang, ui_strings
from .common import BadInput, Exit, _count, _kb_with, _load_kb, _write_atomically, cli, lang_option, patterns_option

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
    from .. import starter  # learn's generaliser and the journal parser: not needed by other commands

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
