"""The command line: thin commands over the library. Only this package touches the terminal.

One module per family of commands, registered on the `postmortem` group in `common`:
- `scan_cmd`: scan, stats, metrics (reading logs);
- `journal_cmd`: review, run, learn (the user's journal);
- `patterns_cmd`: explain, patterns list / check / new (the knowledge base).
"""
from . import journal_cmd, patterns_cmd, scan_cmd  # noqa: F401  (each registers its commands)
from .common import BadInput, Exit, cli, main

__all__ = ["BadInput", "Exit", "cli", "main"]
