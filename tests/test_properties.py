"""Never crash, never depend on how the input arrived: property-based tests over the whole scan.

Inputs are arbitrary bytes, and arbitrary interleavings of real log lines (the samples, the long
logs beside the signatures, every signature example) cut at a random byte. The incidents must
not depend on the chunk size, on the pipe handing the bytes over in random pieces, on the
prefilter (every line read vs. only the lines holding a needle) or on its engine (re vs.
Hyperscan). Examples are bounded so that the whole file runs in well under a minute.
"""
import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postmortem.formats import PlaceMap, kaggle_log_lines, open_document
from postmortem.knowledge import load_knowledge_base
from postmortem.reader import InputError
from postmortem.redact import redact_text
from postmortem.scan import Scanner, build_report

ROOT = Path(__file__).resolve().parent.parent
KB = load_knowledge_base(include_user=False)
SCANNER = Scanner(KB, engine="re")
EVERY_LINE = Scanner(KB, engine="re", every_line=True)
try:
    import hyperscan  # noqa: F401
    HYPERSCAN = Scanner(KB, engine="hyperscan")
except ImportError:
    HYPERSCAN = None

# CI runs a fixed, small set of examples (fast, and a failure is reproducible); a developer hunting
# for bugs runs `HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py` (random, many more).
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SETTINGS = settings(settings.get_profile(PROFILE if PROFILE in ("ci", "thorough") else "ci"))


def _real_lines() -> list[bytes]:
    logs = [p.read_bytes() for p in sorted((ROOT / "samples").glob("*.log"))]
    logs += [p.read_bytes().replace(b"#=MATCH=# ", b"") for p in sorted((ROOT / "patterns").glob("*/*.log"))]
    logs += [example.log.encode("utf-8") for sig in KB.signatures for example in sig.examples]
    return logs


LOGS = _real_lines()
LINES = sorted({line for log in LOGS for line in log.split(b"\n") if line.strip()})


@st.composite
def interleaved_logs(draw) -> bytes:
    """Runs of consecutive lines from real logs (whole tracebacks survive), single lines from
    anywhere, rank prefixes, CRLF, the whole cut at a random byte."""
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            log = draw(st.sampled_from(LOGS)).split(b"\n")
            start = draw(st.integers(0, max(0, len(log) - 1)))
            run = log[start:start + draw(st.integers(1, 40))]
        else:
            run = [draw(st.sampled_from(LINES))]
        prefix = draw(st.sampled_from([b"", b"", b"[rank0]:", b"[rank1]:", b"[default3]:"]))
        parts.extend(prefix + line for line in run)
    newline = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    data = newline.join(parts) + newline
    return data[:draw(st.integers(0, len(data)))]


def incidents(scanner: Scanner, data: bytes, chunk_bytes: int | None = None, reads=None, input_format="text"):
    """The incidents as comparable tuples. `reads`: the stream hands over pieces of these sizes."""
    stream = _PieceStream(data, reads) if reads else io.BytesIO(data)
    document = open_document(stream, "run.log", input_format)
    if chunk_bytes is not None:
        scanner = dataclasses.replace(scanner, chunk_bytes=chunk_bytes)
    result = scanner.scan_stream(document.stream, "run.log")
    result.places = document.places
    report = build_report([result], KB, "en", redact=True)
    return [(i.signature, i.source, i.line, i.count, i.evidence, tuple(sorted(i.vars.items())), i.explained_by,
             i.location) for i in report.incidents]


class _PieceStream(io.RawIOBase):
    """A pipe: each read gives at most the next of `sizes` bytes (then the rest one by one)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = data
        self._position = 0
        self._sizes = list(sizes)

    def readable(self):
        return True

    def readinto(self, buffer):
        size = self._sizes.pop(0) if self._sizes else 1
        piece = self._data[self._position:self._position + min(size, len(buffer))]
        self._position += len(piece)
        buffer[:len(piece)] = piece
        return len(piece)


# -- never crash ---------------------------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(data):
    incidents(SCANNER, data)


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_a_document_raise_nothing_but_a_clear_input_error(data):
    for input_format in ("auto", "ipynb", "kaggle"):
        try:
            incidents(SCANNER, data, input_format=input_format)
        except InputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("run.log: ")


@SETTINGS
@given(interleaved_logs())
def test_real_lines_interleaved_and_truncated_never_raise(data):
    incidents(SCANNER, data)


# -- the incidents do not depend on how the input arrived ------------------------------------------
@SETTINGS
@given(interleaved_logs(), st.integers(1, 64))
def test_chunk_boundaries_between_lines_do_not_change_the_incidents(data, extra):
    """Any chunk size that holds the longest line: chunks then cut between lines, anywhere."""
    longest = max((len(line) for line in data.split(b"\n")), default=0)
    assert incidents(SCANNER, data, chunk_bytes=longest + extra) == incidents(SCANNER, data)


@SETTINGS
@given(interleaved_logs(), st.lists(st.integers(1, 300), max_size=200))
def test_a_pipe_handing_over_random_pieces_does_not_change_the_incidents(data, reads):
    assert incidents(SCANNER, data, reads=reads or [1]) == incidents(SCANNER, data)


@SETTINGS
@given(interleaved_logs())
def test_the_prefilter_finds_what_reading_every_line_finds(data):
    assert incidents(SCANNER, data) == incidents(EVERY_LINE, data)


@pytest.mark.skipif(HYPERSCAN is None, reason="hyperscan is not installed (pip install postmortem[fast])")
@SETTINGS
@given(interleaved_logs())
def test_the_hyperscan_and_re_prefilters_agree(data):
    assert incidents(HYPERSCAN, data) == incidents(SCANNER, data)


# -- documents -----------------------------------------------------------------------------------
records = st.fixed_dictionaries(
    {"stream_name": st.sampled_from(["stdout", "stderr"]), "time": st.floats(0, 1e5, allow_nan=False),
     "data": st.one_of(st.sampled_from([l.decode("utf-8", "replace") + "\n" for l in LINES[:400]]),
                       st.text(max_size=80))})


@SETTINGS
@given(st.lists(records, max_size=40), st.lists(st.integers(1, 200), max_size=100), st.integers(0, 10_000))
def test_a_kaggle_log_reads_the_same_in_any_pieces_and_survives_any_cut(items, reads, cut):
    data = ("[" + "\n,".join(json.dumps(r) for r in items) + "]").encode()
    whole = b"".join(kaggle_log_lines(io.BytesIO(data), PlaceMap(restart=False)))
    pieces = b"".join(kaggle_log_lines(_PieceStream(data, reads or [7]), PlaceMap(restart=False)))
    assert pieces == whole
    assert whole.decode("utf-8").count("\n") >= sum(r["data"].count("\n") for r in items)
    b"".join(kaggle_log_lines(io.BytesIO(data[:cut]), PlaceMap(restart=False)))


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(
                        st.sampled_from(["cells", "outputs", "output_type", "text", "traceback", "ename", "evalue",
                                         "name", "worksheets", "cell_type", "nbformat"]), children, max_size=5),
                    max_leaves=30))
def test_any_json_shaped_like_a_notebook_never_raises(value):
    data = json.dumps({"cells": value if isinstance(value, list) else [value], "nbformat": 4}).encode()
    incidents(SCANNER, data, input_format="ipynb")


# -- redaction -----------------------------------------------------------------------------------
@SETTINGS
@given(st.text(max_size=400) | st.sampled_from([l.decode("utf-8", "replace") for l in LINES]))
def test_redaction_never_raises_and_a_second_pass_changes_nothing(text):
    once = redact_text(text)
    assert redact_text(once) == once


def test_the_pool_of_real_lines_is_big():
    assert len(LINES) > 2000 and len(LOGS) > 300
