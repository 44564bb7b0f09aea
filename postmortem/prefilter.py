"""Find the few lines of a big log worth reading, on raw bytes, before any decoding.

Almost every line of a training log is a progress bar or a metrics line. The prefilter searches
each chunk for *needles*: the literals that the traceback parser needs (`Traceback`, `Error`, ...)
and the literals that every signature's `line` regexes require, derived from the regexes
themselves. Only lines holding a needle are decoded, cleaned and matched; a line that holds
none cannot match any signature. Metric lines have needles of their own, so the scan can
treat them in bulk.

Engines: Hyperscan (SIMD multi-literal search, `pip install postmortem[fast]`) when it is
installed, else `re` patterns anchored on a few rare bytes (see "the pure-Python engine" below).
Both find the same lines; the tests compare them.
"""
from __future__ import annotations

import functools
import itertools
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
_NAMED_GROUP_RE = re.compile(r"\(\?P<\w+>")
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
    except re.error:
        # The `regex` module allows what sre refuses, mostly a group name used in two branches
        # (`(?:`\.(?P<call>to)`|Calling `(?P<call>cuda)`)`): names do not change the literals.
        try:
            parsed = sre_parse.parse(_NAMED_GROUP_RE.sub("(?:", pattern))
        except (re.error, OverflowError, RecursionError, ValueError):
            return None
    except (OverflowError, RecursionError, ValueError):
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
            literals = pattern.literals  # required_literals, cached with the signature
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
        found: list[tuple[int, int]] = []
        for pattern in self._anchored:
            found += _anchor_hits(chunk, pattern)
        for pattern in self._metric_anchored:  # one hit per line and pattern: they match to the line's end
            found += zip(map(re.Match.start, _metric_matches(chunk, pattern)), itertools.repeat(METRIC))
        for regex, lowered in self._orphans:
            haystack = chunk.lower() if lowered else chunk
            found += [(m.start(), self._kind_of[m.group(), lowered]) for m in regex.finditer(haystack)]
        found.sort()
        return found

    def _compile_re(self) -> None:
        kinds: dict[tuple[bytes, bool], int] = {}
        for data, needle in self._patterns:
            key = (data.lower() if needle.caseless else data, needle.caseless)
            kinds[key] = min(needle.kind, kinds.get(key, needle.kind))
        literals = sorted(_Literal(data, caseless, kind) for (data, caseless), kind in kinds.items())
        errors = tuple(literal for literal in literals if literal.kind != METRIC)
        metrics = tuple(literal for literal in literals if literal.kind == METRIC)
        self._anchored, orphans = _compile_anchor_patterns(errors, rest_of_line=False)
        self._metric_anchored, metric_orphans = _compile_anchor_patterns(metrics, rest_of_line=True)
        # A literal that starts with a newline has no anchor on the line where it starts: searched
        # the slow way, caseless ones in the lower-cased chunk.
        orphans = orphans + metric_orphans
        self._kind_of = {(literal.data, literal.caseless): literal.kind for literal in orphans}
        self._orphans = [(re.compile(_trie_pattern(sorted(literal.data for literal in orphans
                                                          if literal.caseless == lowered))), lowered)
                         for lowered in (False, True) if any(literal.caseless == lowered for literal in orphans)]

    def _compile_hyperscan(self) -> None:
        import hyperscan

        expressions = [_hyperscan_literal(data) for data, _ in self._patterns]
        flags = [hyperscan.HS_FLAG_CASELESS if n.caseless else 0 for _, n in self._patterns]
        self._kinds = [n.kind for _, n in self._patterns]
        self._db = hyperscan.Database()
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))),
                         elements=len(expressions), flags=flags)


# -- the pure-Python engine --------------------------------------------------------------------
# `re` is slow at one alternation of ~150 literals: at each byte that may start one it tries the
# alternation (~25 MB/s on a training log). It is fast at a pattern that starts with one literal
# byte: a tight loop in C skips to the next occurrence of that byte; and `bytes.find` of one byte
# is memchr. So the re engine picks a few *anchor* bytes such that every needle holds one, and
# searches one pattern per anchor byte: `K(?:illed(?<=Killed)()|...)`, what follows the anchor in
# the needles (prefix-factored), each needle checked whole by a lookbehind at its end, an empty
# group telling its kind. The search goes on one byte after each hit (overlapping needles are all
# seen), or at the next line when nothing more on this one matters. Anchors are chosen by a
# weighted set cover over a static model of how often each byte occurs in log text (a rare
# anchor means few attempts), never by the log at hand: the needles come from the knowledge base
# and change with it.

# Letter frequencies of English text, percent.
_ENGLISH_PERCENT = {
    "e": 12.7, "t": 9.1, "a": 8.2, "o": 7.5, "i": 7.0, "n": 6.7, "s": 6.3, "h": 6.1, "r": 6.0,
    "d": 4.3, "l": 4.0, "c": 2.8, "u": 2.8, "m": 2.4, "w": 2.4, "f": 2.2, "g": 2.0, "y": 2.0,
    "p": 1.9, "b": 1.5, "v": 1.0, "k": 0.8, "j": 0.15, "x": 0.15, "q": 0.1, "z": 0.07,
}
# What an anchor byte costs, in ns per byte of chunk (CPython 3.11, x86_64). A rare anchor is
# found by `bytes.find` (memchr, ~15 GB/s), its pattern tried by `match` at each occurrence from
# Python; a frequent one by re's own scan for the pattern's first byte (~1.5 GB/s), tried in C.
_MEMCHR_PASS = 0.06
_PYTHON_TURN = 500.0  # per occurrence
_RE_PASS = 0.6
_RE_ATTEMPT = 60.0  # per occurrence
_PYTHON_TURNS = 4000  # occurrences of an anchor in a chunk for which re's scan is as fast as memchr


def _log_byte_frequencies() -> list[float]:
    """Share of each byte value in typical log text: English words (mostly lower case), numbers,
    spaces, the punctuation of metrics and paths, a little UTF-8 (progress bars, CJK)."""
    frequency = [1e-5] * 256  # control bytes
    for letter, percent in _ENGLISH_PERCENT.items():
        frequency[ord(letter)] = 0.40 * percent / 100
        frequency[ord(letter.upper())] = 0.02 * percent / 100
    for digit in b"0123456789":
        frequency[digit] = 0.02
    frequency[ord(" ")] = 0.13
    for byte in b".:,-_/'=\n":
        frequency[byte] = 0.015
    for byte in b"()[]{}|%\"\r\t+":
        frequency[byte] = 0.004
    for byte in b"!#$&*;<>?@\\^`~":
        frequency[byte] = 0.0005
    for byte in range(0x80, 0x100):
        frequency[byte] = 0.0003
    return frequency


_ANCHOR_COST = [min(_MEMCHR_PASS + share * _PYTHON_TURN, _RE_PASS + share * _RE_ATTEMPT)
                for share in _log_byte_frequencies()]


@dataclass(frozen=True, order=True)
class _Literal:
    data: bytes  # as it is searched: lower-cased when caseless
    caseless: bool
    kind: int

    @property
    def head(self) -> bytes:
        """The part before a newline: an anchor there lies on the line where the needle starts."""
        return self.data.split(b"\n", 1)[0]

    def anchor_options(self) -> set[frozenset[int]]:
        """The sets of anchor bytes that find this literal: one byte, or both cases of a letter."""
        return {frozenset((byte, byte - 32)) if self.caseless and 0x61 <= byte <= 0x7A else frozenset((byte,))
                for byte in self.head}


def _choose_anchors(literals: tuple[_Literal, ...]) -> set[int]:
    """Greedy weighted set cover: repeatedly add the anchor bytes with the lowest cost per newly
    covered literal. Literals without a head (starting with a newline) are left uncovered."""
    covers: dict[frozenset[int], int] = {}  # anchor option -> bit mask of the literals it finds
    for index, literal in enumerate(literals):
        for option in literal.anchor_options():
            covers[option] = covers.get(option, 0) | 1 << index
    reachable = 0
    for mask in covers.values():
        reachable |= mask
    chosen: set[int] = set()
    covered = 0
    while covered != reachable:
        best = None
        for option, mask in covers.items():
            gain = (mask & ~covered).bit_count()
            if gain:
                ratio = sum(_ANCHOR_COST[byte] for byte in option - chosen) / gain
                key = (ratio, sorted(option))
                if best is None or key < best[0]:
                    best = (key, option)
        chosen |= best[1]
        for option, mask in covers.items():
            if option <= chosen:
                covered |= mask
    return chosen


@dataclass
class _AnchorPattern:
    anchor: bytes
    regex: re.Pattern
    errors: re.Pattern | None  # the same for its error needles alone, when it has others
    longest: int  # the longest literal
    kinds: list[int]  # kind of each capturing group (index 0 unused)
    # (offset of the anchor in the literal, literal) of the lower kinds, checked again when a
    # match reports a higher kind: at one position the pattern reports the first needle it finds
    literals: list[tuple[int, _Literal]]
    min_kind: int


def _anchor_pattern(anchor: int, members: list[tuple[int, _Literal]], rest_of_line: bool) -> _AnchorPattern:
    """`A(?:...)` for the literals holding the anchor byte A at the given offsets; metrics-line
    patterns (`rest_of_line`) match on to the end of the line: one hit per line is enough."""
    kinds = [0]

    def symbols(literal: _Literal, rest: bytes) -> tuple[bytes, ...]:
        """The rest of a literal as regex atoms: a caseless letter as `[xX]`, not `(?i:x)`: re
        rejects a class at the head of an alternative without entering it, not an ignore-case one."""
        return tuple(b"[%c%c]" % (byte, byte - 32) if literal.caseless and 0x61 <= byte <= 0x7A
                     else re.escape(bytes([byte])) for byte in rest)

    def trie(entries: list[tuple[tuple[bytes, ...], _Literal]]) -> bytes:
        """Alternation of the rests (prefix-factored); where a rest ends, lookbehinds of the
        literals ending there, each with an empty group telling its kind."""
        ends = sorted((literal.kind, literal.data, literal.caseless) for rest, literal in entries if not rest)
        children: dict[bytes, list[tuple[tuple[bytes, ...], _Literal]]] = {}
        for rest, literal in entries:
            if rest:
                children.setdefault(rest[0], []).append((rest[1:], literal))
        branches = [atom + trie(sub) for atom, sub in sorted(children.items())]
        for kind, data, caseless in ends:
            kinds.append(kind)
            behind = b"(?<=" + re.escape(data) + b")"
            branches.append((b"(?i:" + behind + b")" if caseless else behind) + b"()")
        return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"

    body = trie([(symbols(literal, literal.data[offset + 1:]), literal) for offset, literal in members])
    pattern = re.escape(bytes([anchor])) + body + (b"[^\n]*" if rest_of_line else b"")
    min_kind = min(literal.kind for _, literal in members)
    errors = None
    if min_kind == ERROR and any(literal.kind != ERROR for _, literal in members):
        errors = _anchor_pattern(anchor, [m for m in members if m[1].kind == ERROR], rest_of_line).regex
    return _AnchorPattern(bytes([anchor]), re.compile(pattern), errors, max(len(m[1].data) for m in members),
                          kinds, sorted(members, key=lambda m: m[1].kind), min_kind)


@functools.lru_cache(maxsize=16)
def _compile_anchor_patterns(literals: tuple[_Literal, ...], rest_of_line: bool) -> tuple[list[_AnchorPattern], list[_Literal]]:
    """The anchor patterns of the literals, and the literals no anchor finds (starting with a newline)."""
    anchors = _choose_anchors(literals)
    members: dict[int, list[tuple[int, _Literal]]] = {}
    orphans = []
    for literal in literals:
        options = [option for option in literal.anchor_options() if option <= anchors]
        if not options:
            orphans.append(literal)
            continue
        best = min(options, key=lambda option: (sum(_ANCHOR_COST[b] for b in option), sorted(option)))
        for byte in best:
            in_literal = byte | 0x20 if literal.caseless and 0x41 <= byte <= 0x5A else byte  # caseless: lower-cased
            members.setdefault(byte, []).append((literal.head.index(in_literal), literal))
    patterns = [_anchor_pattern(byte, group, rest_of_line) for byte, group in sorted(members.items())]
    return patterns, orphans


def _anchor_hits(chunk: bytes, pattern: _AnchorPattern) -> list[tuple[int, int]]:
    """(offset, kind) of the pattern's needles in the chunk. While its anchor byte is rare, memchr
    finds each occurrence and the pattern is tried there; once it proves frequent (a turn of this
    loop costs as much as ~10 bytes of re's scan), re's own scan looks for the next match. After
    an error hit the rest of its line is skipped: nothing there can change what the line is."""
    anchor, regex, kinds = pattern.anchor, pattern.regex, pattern.kinds
    found = []
    find = chunk.find
    search = None
    turns = 0
    position = 0
    while True:
        if search is None:
            position = find(anchor, position)
            if position < 0:
                break
            match = regex.match(chunk, position)
            turns += 1
            if turns % 256 == 0 and turns * len(chunk) > _PYTHON_TURNS * position:
                search = regex.search  # a frequent anchor: re's scan finds the next match
            if match is None:
                position += 1
                continue
        else:
            match = search(chunk, position)
            if match is None:
                break
        start = match.start()
        kind = kinds[match.lastindex]
        if kind > pattern.min_kind:
            kind = _lowest_kind_at(chunk, start, pattern, kind)
        found.append((start, kind))
        position = chunk.find(b"\n", start) + 1 or len(chunk)
        if kind != ERROR and pattern.errors is not None:
            # Only an error needle could still change what the line is: one look for those.
            error = pattern.errors.search(chunk, start + 1, position + pattern.longest)
            if error is not None and error.start() < position:
                found.append((error.start(), ERROR))
    return found


def _metric_matches(chunk: bytes, pattern: _AnchorPattern) -> list[re.Match]:
    """The matches of a metrics-line pattern, each to the end of its line (found as above)."""
    anchor, regex = pattern.anchor, pattern.regex
    matches = []
    find = chunk.find
    position = find(anchor)
    turns = 0
    while position >= 0:
        match = regex.match(chunk, position)
        if match is not None:
            matches.append(match)
            position = match.end() - 1
        turns += 1
        if turns % 256 == 0 and turns * len(chunk) > _PYTHON_TURNS * position:
            matches += regex.finditer(chunk, position + 1)
            break
        position = find(anchor, position + 1)
    return matches


def _lowest_kind_at(chunk: bytes, position: int, pattern: _AnchorPattern, kind: int) -> int:
    """The lowest kind of the needles holding this anchor occurrence (the pattern reports the
    first it finds, not necessarily the lowest)."""
    for offset, literal in pattern.literals:
        if literal.kind >= kind:
            break
        start = position - offset
        piece = chunk[start:start + len(literal.data)] if start >= 0 else b""
        if (piece.lower() if literal.caseless else piece) == literal.data:
            return literal.kind
    return kind


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
