"""Replacing a file so that nothing is ever half-written: the user's journal, a report, a signature.

Write beside the target, fsync, rename over it, fsync the folder; on any failure the temporary
file goes and the target is untouched.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, data: bytes, before_rename: Callable[[str], None] | None = None) -> None:
    """Put `data` at `path` in one step. `before_rename(temp_name)` may check or refuse (raise)."""
    directory = path.parent if str(path.parent) else Path(".")
    mode = _mode_for(path)
    handle, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp_name, mode)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if before_rename is not None:
            before_rename(temp_name)
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _mode_for(path: Path) -> int:
    """The replaced file keeps its permissions; a new one gets what `open()` would give it
    (mkstemp's 0600 would make a shared journal or report private)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every platform lets a folder be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
