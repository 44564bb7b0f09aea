"""What the commands share: the `postmortem` group, the common options, exit statuses, one-line
errors, the progress bars, writing a user's file, and `main`."""
from __future__ import annotations

import contextlib
import enum
import os
import sys
import tempfile
from pathlib import Path

import click

from .. import __version__
from ..files import replace_atomically
from ..knowledge import KnowledgeBase, SignatureError, load_knowledge_base
from ..texts import LANGUAGES

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

def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

def _new_entries(count: int) -> str:
    return f"{count} new {'entry' if count == 1 else 'entries'}"

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
