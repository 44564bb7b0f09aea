"""Load, validate and compile the knowledge base: `patterns/*.toml`, one signature a file.

A signature file is data. Loading checks it against the schema of `patterns/README.md` and
refuses a bad file with its path, the key and the reason (`SignatureError`); what comes out is
a compiled `Signature` with its regexes ready. The raw TOML dict never leaves this module.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from . import resources
from .cache import cached
from .detectors import DETECTORS, ThresholdError, check_thresholds

SCHEMA_VERSION = 1
LANGUAGES = ("en", "zh")
TEXT_KEYS = ("title", "symptom", "cause", "fix", "lesson")
SEVERITIES = ("error", "warning")
STATUSES = ("stable", "preview", "deprecated")
ROLES = ("cause", "wrapper", "hint")
EXPECTATIONS = ("match", "no-match", "todo-match")
TOP_KEYS = {
    "schema", "id", "category", "severity", "priority", "status", "related", "explains",
    "references", "role", "match", "en", "zh", "example", "learned",
}
REQUIRED_TOP_KEYS = ("schema", "id", "category", "severity", "references", "match", "en", "zh")
MATCH_KEYS = {"exception", "message", "line", "metric", "thresholds", "exclude", "group_by"}
EXAMPLE_KEYS = {"expect", "log", "vars", "why"}
# A personal signature that `postmortem learn` made from the user's journal: its authority is the
# user's own entry, named by date and journal, instead of a public reference.
LEARNED_KEYS = {"date", "journal", "entry", "quote"}
LEARNED_DATE_RE = regex.compile(r"^\d{4}-\d{2}-\d{2}$")
# Variables every incident has, whatever matched it.
BUILTIN_VARS = frozenset({"exception", "message", "file", "line", "function", "count"})
PLACEHOLDER_RE = regex.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ID_RE = regex.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
USER_PATTERNS_SUBDIR = Path("postmortem") / "patterns"


class SignatureError(Exception):
    """A signature file that does not follow the schema: '<path>: <key>: <reason>'."""

    def __init__(self, path: Path | str, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}")
        self.path, self.key, self.reason = str(path), key, reason


@dataclass(frozen=True)
class Example:
    expect: str
    log: str
    vars: Mapping[str, str] = field(default_factory=dict)
    index: int = 0


@dataclass(frozen=True)
class LearnedFrom:
    """Where a learned signature came from: one entry of the user's journal."""

    date: str  # YYYY-MM-DD
    journal: str  # the journal's path when it was learned
    entry: int = 0  # the entry's number within its day
    quote: str = ""  # the error as the user quoted it


@dataclass(frozen=True)
class Signature:
    """A compiled signature: what it matches and what it says."""

    id: str
    path: Path
    category: str
    severity: str
    priority: int
    status: str
    role: str
    related: tuple[str, ...]
    explains: tuple[str, ...]
    references: tuple[str, ...]
    exception_types: tuple[str, ...]
    message_patterns: tuple[LazyPattern, ...]
    line_patterns: tuple[LazyPattern, ...]
    exclude_patterns: tuple[LazyPattern, ...]
    metric: str | None
    group_by: tuple[str, ...]
    texts: Mapping[str, Mapping[str, str]]  # lang -> key -> text
    examples: tuple[Example, ...]
    thresholds: Mapping[str, float] = field(default_factory=dict)  # overrides for the metric detector
    learned: LearnedFrom | None = None  # set for the user's own signatures (`postmortem learn`)

    @property
    def captures(self) -> frozenset[str]:
        names: set[str] = set()
        for pattern in self.message_patterns + self.line_patterns:
            names.update(pattern.groupindex)
        return frozenset(names)

    def text(self, lang: str, key: str) -> str:
        return self.texts.get(lang, self.texts["en"])[key]


@dataclass(frozen=True)
class KnowledgeBase:
    signatures: tuple[Signature, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {s.id: s for s in self.signatures})

    def get(self, signature_id: str) -> Signature | None:
        return self._by_id.get(signature_id)  # type: ignore[attr-defined]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.signatures]


# -- loading ----------------------------------------------------------------------------------
def user_patterns_dir() -> Path:
    """`$XDG_CONFIG_HOME/postmortem/patterns`, by default `~/.config/postmortem/patterns`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / USER_PATTERNS_SUBDIR


def load_knowledge_base(
    extra_dirs: Iterable[Path | str] = (), include_user: bool = True, include_builtin: bool = True,
    problems: list[str] | None = None,
) -> KnowledgeBase:
    """Built-in signatures, then the user's, then `extra_dirs`; a later file with the same id wins.

    A bad file raises SignatureError, except in the user's own folder when `problems` is given:
    there it is skipped and reported, so that a half-written `patterns new` starter does not stop
    every scan (a folder named with `--patterns` is asked for, and stays strict).
    """
    dirs: list[Path] = []
    if include_builtin:
        dirs.append(resources.patterns_dir())
    user_dir = user_patterns_dir() if include_user else None
    if user_dir is not None and user_dir.is_dir():
        dirs.append(user_dir)
    dirs.extend(Path(d) for d in extra_dirs)
    by_id: dict[str, Signature] = {}
    for directory in dirs:
        builtin = include_builtin and directory == dirs[0]
        try:
            signatures = load_directory(directory, eager=not builtin)
        except SignatureError:
            if problems is None or directory != user_dir:
                raise
            signatures = _load_the_good_ones(directory, problems)
        for signature in signatures:
            if signature.learned is not None and include_builtin and directory == dirs[0]:
                raise SignatureError(signature.path, "learned",
                                     "a learned signature belongs in the user's patterns/learned/ folder, "
                                     "not in the built-in knowledge base")
            by_id[signature.id] = signature
    return KnowledgeBase(tuple(by_id.values()))


def _load_the_good_ones(directory: Path, problems: list[str]) -> list[Signature]:
    signatures = []
    for path in signature_files(directory):
        try:
            signatures.append(load_signature(path))
        except SignatureError as exc:
            problems.append(f"{exc} (skipped: fix it, or move it out of {directory})")
    return signatures


def signature_files(directory: Path | str) -> list[Path]:
    """Signature files of a folder and its subfolders (user folders have `learned/`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SignatureError(directory, "patterns", "not a folder")
    return sorted(p for p in directory.rglob("*.toml") if p.is_file())


def load_directory(directory: Path | str, eager: bool = True) -> list[Signature]:
    """The signatures of a folder, from the disk cache when no file has changed (cache.py)."""
    files = signature_files(directory)

    def load() -> list[Signature]:
        signatures = [load_signature(path, eager) for path in files]
        for signature in signatures:  # derived once here, kept in the cache with the signature
            for pattern in signature.line_patterns + signature.message_patterns:
                pattern.literals
        return signatures

    code = [__file__, _prefilter_module_file()]
    return cached("signatures", f"{Path(directory).resolve()}:{eager}", files, code, load)


def load_signature(path: Path | str, eager: bool = True) -> Signature:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SignatureError(path, "toml", str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(path, "file", str(exc)) from None
    return compile_signature(raw, path, eager)


def compile_signature(raw: Mapping[str, Any], path: Path, eager: bool = True) -> Signature:
    """Validate a raw TOML dict against the schema and compile it.

    `eager=False` (the built-in knowledge base) leaves the regexes to compile on first use and
    skips the checks that need them compiled; the test suite runs those on every built-in file.
    """
    def fail(key: str, reason: str) -> SignatureError:
        return SignatureError(path, key, reason)

    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in REQUIRED_TOP_KEYS:
        if key not in raw:
            raise fail(key, "missing")
    if raw["schema"] != SCHEMA_VERSION:
        raise fail("schema", f"must be {SCHEMA_VERSION}, got {raw['schema']!r}")
    sig_id = _string(raw, "id", fail)
    if not ID_RE.match(sig_id):
        raise fail("id", "lowercase words joined by '-', e.g. 'cuda-oom'")
    if path.suffix == ".toml" and path.stem != sig_id:
        raise fail("id", f"must equal the file name '{path.stem}'")
    severity = _choice(raw, "severity", SEVERITIES, fail)
    status = _choice(raw, "status", STATUSES, fail, default="stable")
    role = _choice(raw, "role", ROLES, fail, default="cause")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or not 0 <= priority <= 100:
        raise fail("priority", "a whole number from 0 to 100")
    learned = _learned(raw.get("learned"), fail)
    references = _string_list(raw, "references", fail)
    if not references and learned is None:
        raise fail("references", "at least one source (docs, release notes, upstream issue)")
    for ref in references:
        if not ref.startswith(("https://", "http://")):
            raise fail("references", f"not a URL: {ref!r}")

    match = raw["match"]
    if not isinstance(match, Mapping):
        raise fail("match", "must be a table")
    unknown = set(match) - MATCH_KEYS
    if unknown:
        raise fail(f"match.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(sorted(MATCH_KEYS))})")
    exception_types = tuple(_string_list(match, "exception", fail, prefix="match."))
    message = _compile_all(match, "message", fail, eager)
    line = _compile_all(match, "line", fail, eager)
    exclude = _compile_all(match, "exclude", fail, eager)
    metric = match.get("metric")
    if metric is not None and metric not in DETECTORS:
        raise fail("match.metric", f"the name of a metric detector: one of {', '.join(DETECTORS)}")
    thresholds = match.get("thresholds", {})
    if not isinstance(thresholds, Mapping) or (thresholds and metric is None):
        raise fail("match.thresholds", "a table of numbers, for a signature with a metric detector")
    try:
        thresholds = check_thresholds(metric, thresholds) if metric else {}
    except ThresholdError as exc:
        raise fail("match.thresholds", str(exc)) from None
    if not (exception_types or message or line or metric):
        raise fail("match", "needs at least one of exception, message, line, metric")
    group_by = tuple(_string_list(match, "group_by", fail, prefix="match."))

    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        table = raw[lang]
        if not isinstance(table, Mapping):
            raise fail(lang, "must be a table")
        unknown = set(table) - set(TEXT_KEYS)
        if unknown:
            raise fail(f"{lang}.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(TEXT_KEYS)})")
        texts[lang] = {}
        for key in TEXT_KEYS:
            value = table.get(key)
            if not isinstance(value, str) or not value.strip():
                raise fail(f"{lang}.{key}", "missing or empty")
            texts[lang][key] = value.strip()

    captures: set[str] = set()
    for pattern in (message + line) if eager else ():
        captures.update(pattern.groupindex)
    for name in group_by if eager else ():
        if name not in captures and not metric:
            raise fail("match.group_by", f"'{name}' is not a named capture of any pattern")
    if eager and not metric:
        known = captures | BUILTIN_VARS
        for lang in LANGUAGES:
            for key in ("title", "symptom"):
                for name in PLACEHOLDER_RE.findall(texts[lang][key]):
                    if name not in known:
                        raise fail(f"{lang}.{key}", f"placeholder {{{name}}} has no capture of that name")

    examples = tuple(_examples(raw.get("example", []), fail))
    return Signature(
        id=sig_id, path=path, category=_string(raw, "category", fail), severity=severity,
        priority=priority, status=status, role=role,
        related=tuple(_string_list(raw, "related", fail)),
        explains=tuple(_string_list(raw, "explains", fail)),
        references=tuple(references), exception_types=exception_types, message_patterns=message,
        line_patterns=line, exclude_patterns=exclude, metric=metric, group_by=group_by,
        texts=texts, examples=examples, learned=learned, thresholds=thresholds,
    )


def _learned(raw: Any, fail) -> LearnedFrom | None:
    """The `[learned]` table: the user's dated journal entry stands in for `references`."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise fail("learned", "must be a table")
    unknown = set(raw) - LEARNED_KEYS
    if unknown:
        raise fail(f"learned.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(sorted(LEARNED_KEYS))})")
    date = raw.get("date")
    if not isinstance(date, str) or not LEARNED_DATE_RE.match(date):
        raise fail("learned.date", "the journal day it was learned from, as YYYY-MM-DD")
    journal = raw.get("journal")
    if not isinstance(journal, str) or not journal.strip():
        raise fail("learned.journal", "the path of the journal it was learned from")
    entry = raw.get("entry", 0)
    if not isinstance(entry, int) or entry < 0:
        raise fail("learned.entry", "the entry's number within its day")
    quote = raw.get("quote", "")
    if not isinstance(quote, str):
        raise fail("learned.quote", "the quoted error, a string")
    return LearnedFrom(date, journal, entry, quote)


def _examples(raw: Any, fail) -> Iterable[Example]:
    if not isinstance(raw, list):
        raise fail("example", "must be an array of tables ([[example]])")
    for index, item in enumerate(raw):
        key = f"example[{index}]"
        if not isinstance(item, Mapping):
            raise fail(key, "must be a table")
        unknown = set(item) - EXAMPLE_KEYS
        if unknown:
            raise fail(f"{key}.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(sorted(EXAMPLE_KEYS))})")
        expect = item.get("expect")
        if expect not in EXPECTATIONS:
            raise fail(f"{key}.expect", f"one of {', '.join(EXPECTATIONS)}")
        log = item.get("log")
        if not isinstance(log, str) or not log.strip():
            raise fail(f"{key}.log", "missing or empty")
        variables = item.get("vars", {})
        if not isinstance(variables, Mapping) or not all(isinstance(v, str) for v in variables.values()):
            raise fail(f"{key}.vars", "a table of strings")
        yield Example(expect, log, dict(variables), index)


def _string(raw: Mapping[str, Any], key: str, fail) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "must be a non-empty string")
    return value


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], fail, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise fail(key, f"one of {', '.join(choices)}, got {value!r}")
    return value


def _string_list(raw: Mapping[str, Any], key: str, fail, prefix: str = "") -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(prefix + key, "must be a list of strings")
    return value


class LazyPattern:
    """A signature's regex, compiled on first use.

    A scan of a small log runs a handful of the knowledge base's hundreds of patterns (the
    matcher skips a signature whose literals a line lacks), and compiling them all would cost
    more than the scan. Built-in signatures load lazily (the test suite compiles every one);
    a user's are compiled on load, so that a bad one is refused with its file and key.
    """

    def __init__(self, pattern: str, literals: tuple | None | bool = False) -> None:
        self.pattern = pattern
        self._compiled: regex.Pattern | None = None
        self._literals = literals  # False: not derived yet

    @property
    def literals(self) -> tuple[tuple[str, bool], ...] | None:
        """The literals one of which any match holds (prefilter.required_literals); None: none."""
        if self._literals is False:
            from .prefilter import required_literals  # prefilter imports this module
            self._literals = required_literals(self.pattern)
        return self._literals

    def compile(self) -> regex.Pattern:
        if self._compiled is None:
            self._compiled = regex.compile(self.pattern, regex.MULTILINE)
        return self._compiled

    def search(self, string: str, *args, **kwargs):
        return self.compile().search(string, *args, **kwargs)

    @property
    def groupindex(self) -> Mapping[str, int]:
        return self.compile().groupindex

    def __getstate__(self) -> tuple:  # pickled as its source, compiled again where it is used
        return self.pattern, self._literals

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r})"


def _prefilter_module_file() -> str:
    return str(Path(__file__).with_name("prefilter.py"))  # its required_literals fills `literals`


def _compile_all(match: Mapping[str, Any], key: str, fail, eager: bool) -> tuple[LazyPattern, ...]:
    patterns = []
    for index, source in enumerate(_string_list(match, key, fail, prefix="match.")):
        pattern = LazyPattern(source)
        if eager:
            try:
                pattern.compile()
            except regex.error as exc:
                raise fail(f"match.{key}[{index}]", f"regex does not compile: {exc}") from None
        patterns.append(pattern)
    return tuple(patterns)
