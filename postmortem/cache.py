"""A disk cache for what start-up derives from signature files, so that a scan of a small log
does not parse ~60 TOML files and a few hundred regexes every time (a third of its run time).

An entry is a pickle in `$XDG_CACHE_HOME/postmortem/` (by default `~/.cache/postmortem/`), named
by a hash of everything it was derived from: the bytes of each source file, the code that reads
them, postmortem's and Python's versions. An edited signature is therefore a different entry;
the older entry for the same folder is removed when the new one is written.

It is only ever an optimisation: a missing, unreadable, corrupt or foreign entry is recomputed,
an unwritable folder is skipped, and `POSTMORTEM_NO_CACHE=1` turns it off.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from . import __version__
from .files import replace_atomically

FORMAT = 1  # bump when what is cached changes shape in a way the code hash would not catch
T = TypeVar("T")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "postmortem"


def template_bytecode_cache():
    """Jinja's cache of compiled templates in our cache folder (a scan's first render compiles
    them: ~20 ms), or None when the cache is off or the folder cannot be made."""
    if os.environ.get("POSTMORTEM_NO_CACHE"):
        return None
    import jinja2

    folder = cache_dir() / "templates"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def cached(kind: str, scope: str, sources: Iterable[Path], code: Iterable[str], compute: Callable[[], T]) -> T:
    """`compute()`, or its result from an earlier call with the same inputs.

    `kind` and `scope` (e.g. a folder's path) name the slot, which keeps one entry; `sources` are
    the files the result is derived from and `code` the modules' files that derive it.
    """
    if os.environ.get("POSTMORTEM_NO_CACHE"):
        return compute()
    try:
        slot = f"{kind}-{_digest([scope.encode()])[:16]}"
        key = _digest([str(FORMAT).encode(), __version__.encode(), sys.version.encode(),
                       *_contents(code), *_contents(sources, named=True)])
    except OSError:
        return compute()
    path = cache_dir() / f"{slot}-{key[:32]}.pickle"
    found = _read(path)
    if found is not None:
        return found
    result = compute()
    _write(path, slot, result)
    return result


def _contents(paths: Iterable[Path | str], named: bool = False) -> list[bytes]:
    parts = []
    for path in paths:
        if named:
            parts.append(str(path).encode())
        parts.append(Path(path).read_bytes())
    return parts


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _read(path: Path):
    try:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            # Unpickling runs code: only an entry this user wrote and nobody else can change.
            if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
                return None
            return pickle.load(stream)
    except Exception:  # missing, unreadable, corrupt, or written by an incompatible version
        return None


def _write(path: Path, slot: str, result) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_atomically(path, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        for older in path.parent.glob(f"{slot}-*.pickle"):
            if older != path:
                older.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError):
        pass
