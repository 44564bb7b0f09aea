"""Find the few lines of a big log worth reading, on raw bytes, before any decoding.

Almost every line of a training log is a progress bar or a metrics line. The prefilter searches
each chunk for *needles*: the literals that the traceback parser needs (`Traceback`, `Error`, ...)
and the literals that every signature's `line` regexes require, derived from the regexes
themselves. Only lines holding a needle are decoded, cleaned and matched; a line that holds
none cannot match any signature. Metric lines have needles of their own, so the scan can
treat them in bulk.

Engines: Hyperscan (SIMD multi-literal search, `pip install postmortem[fast]`) when it is
installed, else one `re` alternation. Both find the same lines; the tests compare them.
"""
from __future__ import annotations

import functools
import re
import re._parser as sre_parse  # the stdlib's own regex parser: to read literals out of patterns
from collections.abc import Iterable
from dataclasses import dataclass

from .knowledge import KnowledgeBase
from .metrics import METRIC_NEEDLES

# What the traceback parser and the evidence stage look for (tracebacks.py, evidence.py): a
# traceback's header, and the shapes of a bare exception or warning line (`ValueError: ...`, a
# line ending in `SomeError`, `file.py:3: UserWarning: ...`). Spelled with what follows the type
# name, so that metric names (`val/MeanSquaredError=0.1`) and class names (`ErrorCallback`) are
# not hits. `\x1b`: IPython and coloured loggers print the type in colour (`Error\x1b[0m: ...`).
PARSER_NEEDLES = ("Traceback", "Error:", "Exception:", "Warning:", "Error\x1b", "Exception\x1b",
                  "Warning\x1b", "Error\n", "Error\r", "Exception\n", "Exception\r")
# Lines that may carry metrics: metrics.py says which literals the lines it reads hold.
# Non-finite values: a metrics line holding one is always read, however many lines are sampled.
# Spelled with the delimiters metric printers put before a value, so that "financial" and
# "inference" are not hits.
NON_FINITE_NEEDLES = tuple(
    prefix + value
    for prefix in (": ", "=", "'", ": '")
    for value in ("nan", "NaN", "inf", "Inf", "-inf", "-Inf")
)
MIN_NEEDLE_LENGTH = 3  # a shorter literal would select most lines: read every line instead
# Hit kinds, in order of precedence when one line holds several.
ERROR, NON_FINITE, METRIC = 0, 1, 2
_MAXREPEAT = sre_parse.MAXREPEAT


@dataclass(frozen=True)
class Needle:
    text: str
    caseless: bool
    kind: int  # ERROR or METRIC


@functools.lru_cache(maxsize=4096)
def required_literals(pattern: str) -> tuple[tuple[str, bool], ...] | None:
    """Literals of which at least one occurs in any text the pattern matches: ((literal, caseless), ...).

    None when no literal of MIN_NEEDLE_LENGTH is required (the pattern then needs every line).
    Cached: the matcher and both prefilters ask for the same patterns, and parsing them is a
    good part of the start-up time.
    """
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError, ValueError):
        return None
    caseless = bool(parsed.state.flags & re.IGNORECASE)
    best = _best_requirement(list(parsed), caseless)
    if best is None or min(len(text) for text, _ in best) < MIN_NEEDLE_LENGTH:
        return None
    return tuple(best)


def _best_requirement(items: list, caseless: bool) -> list[tuple[str, bool]] | None:
    """The strongest requirement of a sequence: a set of alternative literals, one must occur."""
    candidates: list[list[tuple[str, bool]]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append([("".join(run), caseless)])
            run.clear()

    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            run.append(chr(arg).lower() if caseless else chr(arg))
        elif name == "AT":
            continue  # zero-width: the literals on both sides are still adjacent
        elif name == "IN" and len(arg) == 1 and str(arg[0][0]) == "LITERAL":
            run.append(chr(arg[0][1]).lower() if caseless else chr(arg[0][1]))
        elif name == "SUBPATTERN":
            _group, add_flags, del_flags, sub = arg
            sub_caseless = (caseless or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
            sub_items = list(sub)
            if sub_items and all(str(o) == "LITERAL" for o, _ in sub_items) and sub_caseless == caseless:
                run.extend(chr(a).lower() if caseless else chr(a) for _, a in sub_items)
                continue
            close_run()
            inner = _best_requirement(sub_items, sub_caseless)
            if inner:
                candidates.append(inner)
        elif name == "BRANCH":
            close_run()
            alternatives: list[tuple[str, bool]] = []
            for branch in arg[1]:
                inner = _best_requirement(list(branch), caseless)
                if inner is None:
                    alternatives = []
                    break
                alternatives.extend(inner)
            if alternatives:
                candidates.append(alternatives)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            close_run()
            low, _high, sub = arg
            if low >= 1:
                inner = _best_requirement(list(sub), caseless)
                if inner:
                    candidates.append(inner)
        else:
            close_run()
    close_run()
    if not candidates:
        return None
    return max(candidates, key=lambda alts: min(len(text) for text, _ in alts))


def needles_for(kb: KnowledgeBase, metric_lines: bool = True) -> tuple[list[Needle], bool]:
    """All needles of a knowledge base, and whether some line pattern needs every line read.

    `metric_lines=False` leaves out the needles of ordinary metrics lines (once a log has more
    of them than are worth reading one by one, they are sampled instead).
    """
    needles = {Needle(text, False, ERROR) for text in PARSER_NEEDLES}
    needles |= {Needle(text, False, NON_FINITE) for text in NON_FINITE_NEEDLES}
    if metric_lines:
        needles |= {Needle(text, False, METRIC) for text in METRIC_NEEDLES}
    every_line = False
    for sig in kb.signatures:
        for pattern in sig.line_patterns:
            literals = required_literals(pattern.pattern)
            if literals is None:
                every_line = True
                continue
            needles |= {Needle(text, caseless, ERROR) for text, caseless in literals}
    return sorted(needles, key=lambda n: (n.kind, n.text, n.caseless)), every_line


class Prefilter:
    """Offsets of needle hits in a chunk of bytes, with the kind of each hit."""

    def __init__(self, needles: Iterable[Needle], engine: str = "auto") -> None:
        self.needles = list(needles)
        encoded = [(_encodings(n.text), n) for n in self.needles]
        self._patterns = [(data, n) for datas, n in encoded for data in datas]
        self.engine = _pick_engine(engine)
        if self.engine == "hyperscan":
            self._compile_hyperscan()
        else:
            self._compile_re()

    def hits(self, chunk: bytes) -> list[tuple[int, int]]:
        """Sorted (offset, kind) of every needle hit in `chunk`."""
        if self.engine == "hyperscan":
            found: list[tuple[int, int]] = []

            def on_match(pattern_id, start, end, flags, context):
                found.append((end - 1, self._kinds[pattern_id]))  # hyperscan reports match ends

            self._db.scan(chunk, match_event_handler=on_match)
            found.sort()
            return found
        kind_of = self._kind_of
        found = [(m.start(), kind_of[m.group()]) for m in self._exact_re.finditer(chunk)]
        if self._folded_re is not None:
            found += [(m.start(), kind_of[m.group()]) for m in self._folded_re.finditer(chunk.lower())]
            found.sort()
        return found

    def _compile_re(self) -> None:
        # Case-sensitive literals are searched as they are, case-insensitive ones in the
        # lower-cased chunk: `(?i:...)` would cost `re` its fast scan for the first byte.
        self._kind_of: dict[bytes, int] = {}
        exact, folded = set(), set()
        for data, needle in self._patterns:
            literal = data.lower() if needle.caseless else data
            (folded if needle.caseless else exact).add(literal)
            self._kind_of[literal] = min(needle.kind, self._kind_of.get(literal, needle.kind))
        self._exact_re = re.compile(_trie_pattern(sorted(exact)) or b"(?!)")
        self._folded_re = re.compile(_trie_pattern(sorted(folded))) if folded else None

    def _compile_hyperscan(self) -> None:
        import hyperscan

        expressions = [_hyperscan_literal(data) for data, _ in self._patterns]
        flags = [hyperscan.HS_FLAG_CASELESS if n.caseless else 0 for _, n in self._patterns]
        self._kinds = [n.kind for _, n in self._patterns]
        self._db = hyperscan.Database()
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))),
                         elements=len(expressions), flags=flags)


def _trie_pattern(literals: list[bytes]) -> bytes:
    """One regex for many literals, their common prefixes factored out: `re` then tries one
    branch per distinct next byte instead of every literal at every position (3x faster)."""
    trie: dict = {}
    for literal in literals:
        node = trie
        for byte in literal:
            node = node.setdefault(byte, {})
        node[None] = {}

    def build(node: dict) -> bytes:
        branches = [re.escape(bytes([byte])) + build(child) for byte, child in sorted(
            (k, v) for k, v in node.items() if k is not None)]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        # A literal that ends here matches without the longer ones that continue it.
        return b"(?:" + body + b")?" if None in node else body

    return build(trie)


def _hyperscan_literal(data: bytes) -> bytes:
    """A literal as a Hyperscan expression: every byte but letters and digits as `\\xHH`, which
    its parser reads the same way whatever the byte (a newline, a quote, a GB18030 byte)."""
    return b"".join(bytes([byte]) if bytes([byte]).isalnum() else b"\\x%02x" % byte for byte in data)


def _encodings(text: str) -> list[bytes]:
    """A needle as it can appear in the raw bytes: UTF-8, and GB18030 for non-ASCII text."""
    forms = [text.encode("utf-8")]
    if not text.isascii():
        forms.append(text.encode("gb18030", errors="ignore"))
    return forms


def _pick_engine(engine: str) -> str:
    if engine in ("re", "hyperscan"):
        return engine
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return "re"
    return "hyperscan"
