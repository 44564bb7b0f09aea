"""The prefilter's engines find the same lines, with the same kind, as a naive search.

scan.py only uses which lines hold a needle and the lowest kind on each line (an error line is
read whole, a metrics line may be sampled), so that is what is compared: the pure-Python engine
(anchor bytes found by memchr or re, `postmortem/prefilter.py`), Hyperscan when it is installed,
and a reference that looks for every encoding of every needle with `bytes.find`, overlaps
included. Inputs: the samples, the example logs beside the signatures, the signatures' examples,
the logs modelled on public reports (tests/realworld), generated training logs, random chunks
cut anywhere, needles at the very start and end of a chunk, caseless needles in mixed case,
non-ASCII needles in UTF-8 and GB18030, a NaN and an error needle on one line.
"""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from postmortem.prefilter import ERROR, METRIC, NON_FINITE, Needle, Prefilter, _encodings, needles_for, required_literals

ROOT = Path(__file__).resolve().parent.parent
MAKE_LOG = ROOT.parent / "shared" / "bench" / "make_log.py"

try:
    import hyperscan  # noqa: F401
    HAVE_HYPERSCAN = True
except ImportError:
    HAVE_HYPERSCAN = False


def reference_hits(needles: list[Needle], chunk: bytes) -> list[tuple[int, int]]:
    """Every occurrence of every needle, overlapping ones too: one bytes.find loop per needle."""
    lowered = chunk.lower()
    found = []
    for needle in needles:
        for data in _encodings(needle.text):
            haystack, literal = (lowered, data.lower()) if needle.caseless else (chunk, data)
            position = haystack.find(literal)
            while position >= 0:
                found.append((position, needle.kind))
                position = haystack.find(literal, position + 1)
    return sorted(found)


def line_kinds(chunk: bytes, hits: list[tuple[int, int]]) -> dict[int, int]:
    """Start of each line holding a hit -> lowest kind of its hits (what scan.py uses)."""
    lines: dict[int, int] = {}
    for offset, kind in hits:
        assert 0 <= offset < len(chunk)
        start = chunk.rfind(b"\n", 0, offset) + 1
        lines[start] = min(kind, lines.get(start, kind))
    return lines


@pytest.fixture(scope="module")
def needle_sets(kb):
    full, _ = needles_for(kb)
    sparse, _ = needles_for(kb, metric_lines=False)
    return {"full": full, "sparse": sparse}


@pytest.fixture(scope="module")
def engines(needle_sets):
    built = {}
    for name, needles in needle_sets.items():
        built[name] = {"re": Prefilter(needles, "re")}
        if HAVE_HYPERSCAN:
            built[name]["hyperscan"] = Prefilter(needles, "hyperscan")
    return built


def assert_same_lines(needle_sets, engines, chunk: bytes) -> None:
    for name, needles in needle_sets.items():
        expected = line_kinds(chunk, reference_hits(needles, chunk))
        for engine, prefilter in engines[name].items():
            hits = prefilter.hits(chunk)
            assert hits == sorted(hits), (name, engine)
            assert prefilter.hits(bytearray(chunk)) == hits, "the reader hands over a bytearray"
            got = line_kinds(chunk, hits)
            if got != expected:
                differ = sorted(set(got.items()) ^ set(expected.items()))[:5]
                lines = [chunk[start:chunk.find(b"\n", start) + 1 or len(chunk)][:200] for start, _ in differ]
                pytest.fail(f"{name} needles, {engine} engine: lines differ at {differ}: {lines}")


def _real_logs(kb) -> list[bytes]:
    logs = [p.read_bytes() for p in sorted((ROOT / "samples").glob("*.log"))]
    logs += [p.read_bytes().replace(b"#=MATCH=# ", b"") for p in sorted((ROOT / "patterns").glob("*/*.log"))]
    logs += [example.log.encode("utf-8") for sig in kb.signatures for example in sig.examples]
    logs += [p.read_bytes() for p in sorted((ROOT / "tests" / "realworld").glob("*.log"))]
    return logs


def test_real_logs(kb, needle_sets, engines):
    logs = _real_logs(kb)
    assert len(logs) > 50
    for log in logs:
        assert_same_lines(needle_sets, engines, log)


def test_real_logs_cut_anywhere(kb, needle_sets, engines):
    """Chunks need not end at a newline: a needle cut by the chunk's end is in neither part."""
    rng = random.Random(6)
    data = b"".join(_real_logs(kb))
    position = 0
    while position < len(data):
        size = rng.randrange(1, 20_000)
        assert_same_lines(needle_sets, engines, data[position:position + size])
        position += size


def _random_case(rng: random.Random, text: bytes) -> bytes:
    return bytes(byte ^ 0x20 if 0x61 <= (byte | 0x20) <= 0x7A and rng.random() < 0.5 else byte for byte in text)


def _random_chunk(rng: random.Random, needles: list[Needle]) -> bytes:
    """Needles (whole, cut short, missing their first byte, in random case), noise words, digits,
    punctuation, newlines and carriage returns, odd bytes."""
    words = [b"loss", b"nan", b"inf", b"Error", b"error", b"INFO", b"\xe2\x96\x88", b"0.25", b"'", b": ",
             b"=", b" ", b" ", b"\n", b"\r", b"\r\n", b"{", b"}", b"|", b"Killed", b"exit", b"\x1b[0m"]
    parts = []
    for _ in range(rng.randrange(1, 60)):
        roll = rng.random()
        if roll < 0.3:
            needle = rng.choice(needles)
            data = rng.choice(_encodings(needle.text))
            if rng.random() < 0.3:
                data = data[:rng.randrange(len(data))] if rng.random() < 0.5 else data[1:]
            if needle.caseless or rng.random() < 0.1:
                data = _random_case(rng, data)
            parts.append(data)
        elif roll < 0.9:
            parts.append(rng.choice(words))
        else:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))))
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(4))
def test_random_chunks(needle_sets, engines, seed):
    rng = random.Random(seed)
    everything = needle_sets["full"]
    for _ in range(150):
        assert_same_lines(needle_sets, engines, _random_chunk(rng, everything))


def test_needles_at_chunk_edges(needle_sets, engines):
    """Each needle as the whole chunk, at its very start and very end, and one byte short."""
    for needle in needle_sets["full"]:
        for data in _encodings(needle.text):
            for chunk in (data, data + b"\n", b"x" + data, b"\n" + data, data[:-1], data[1:],
                          b"abc " + data + b" def\n" + data[:-1]):
                assert_same_lines(needle_sets, engines, chunk)


def test_caseless_needles_in_mixed_case(needle_sets, engines):
    rng = random.Random(3)
    caseless = [needle for needle in needle_sets["full"] if needle.caseless]
    assert caseless, "the knowledge base has caseless needles (the signal, segfault and abort lines)"
    prefilter = engines["full"]["re"]
    for needle in caseless:
        for _ in range(10):
            text = _random_case(rng, needle.text.encode())
            chunk = b"step 10 ok\nrank 3: " + text + b" (core dumped)\nstep 11\n"
            assert line_kinds(chunk, prefilter.hits(chunk)) == {11: ERROR}
            assert_same_lines(needle_sets, engines, chunk)


def test_lowest_kind_wins_on_a_line(needle_sets, engines):
    """A metrics line that also holds a NaN or an error is read as the more important kind."""
    full = engines["full"]["re"]
    for line, kind in ((b"{'loss': 2.5, 'grad_norm': 1.1}\n", METRIC),
                       (b"nanoGPT step 3: loss 2.5, infinite loader\n", METRIC),  # nan, inf: no delimiter
                       (b"{'loss': nan, 'grad_norm': 1.1}\n", NON_FINITE),
                       (b"{'loss': 'nan', 'grad_norm': 1.1}\n", NON_FINITE),
                       (b"step 3 loss=nan lr=1e-4\n", NON_FINITE),
                       (b"step 3 loss=nan Killed\n", ERROR),
                       (b"{'loss': 2.5} Traceback (most recent call last):\n", ERROR)):
        chunk = b"noise\n" + line + b"noise\n"
        expected = line_kinds(chunk, reference_hits(full.needles, chunk))
        assert expected[6] == kind, line
        assert line_kinds(chunk, full.hits(chunk)) == expected
        assert_same_lines(needle_sets, engines, chunk)


def test_non_ascii_needles_in_utf8_and_gb18030():
    """A needle written in Chinese is found in a UTF-8 log and in a GB18030 (GBK) one, and a
    caseless one that mixes ASCII letters and CJK in any ASCII case."""
    needles = [Needle("显存不足", False, ERROR), Needle("CUDA内存不足", True, ERROR),
               Needle("训练损失", False, METRIC), Needle("Traceback", False, ERROR)]
    prefilter = Prefilter(needles, "re")
    for encoding in ("utf-8", "gb18030"):
        text = "第 3 步 训练损失=2.5\n错误: 显存不足\ncuda内存不足 again\n普通的一行\n".encode(encoding)
        assert line_kinds(text, prefilter.hits(text)) == line_kinds(text, reference_hits(needles, text))
        assert sorted(line_kinds(text, prefilter.hits(text)).values()) == [ERROR, ERROR, METRIC]
        if HAVE_HYPERSCAN:
            assert line_kinds(text, Prefilter(needles, "hyperscan").hits(text)) == line_kinds(text, prefilter.hits(text))


def test_needle_starting_with_a_newline():
    """Such a needle has no anchor on the line where it starts: searched on its own."""
    needles = [Needle("\nKilled", False, ERROR), Needle("\nsegmentation fault", True, ERROR),
               Needle("loss", False, METRIC)]
    prefilter = Prefilter(needles, "re")
    chunk = b"a loss\nKilled\nb\nKilled\nSegmentation Fault\n"
    assert line_kinds(chunk, prefilter.hits(chunk)) == line_kinds(chunk, reference_hits(needles, chunk))


@pytest.mark.skipif(not MAKE_LOG.exists(), reason="shared/bench/make_log.py is not beside the repository")
@pytest.mark.parametrize("kind", ["mixed", "trainer", "tqdm"])
def test_generated_training_logs(needle_sets, engines, tmp_path, kind):
    """The benchmark's kind of log (tqdm bars with \\r, metric dicts, logging lines, scary but
    harmless words, a NaN streak and a traceback), in 4 MiB chunks cut at a newline as the reader
    cuts them."""
    out = tmp_path / f"{kind}.log"
    subprocess.run([sys.executable, str(MAKE_LOG), "--size-mb", "3", "--seed", "2", "--kind", kind,
                    "--out", str(out)], check=True, capture_output=True)
    data = out.read_bytes()
    position = 0
    while position < len(data):
        end = data.rfind(b"\n", position, position + (1 << 20)) + 1
        if end <= position or len(data) - position <= 1 << 20:
            end = len(data)
        assert_same_lines(needle_sets, engines, data[position:end])
        position = end


def test_anchors_cover_every_needle(needle_sets, engines):
    """Every needle of the knowledge base is found through an anchor byte (none is left to the
    slow catch-all search), and the anchors are few."""
    for name in needle_sets:
        prefilter = engines[name]["re"]
        assert prefilter._orphans == []
        anchors = [pattern.anchor for pattern in prefilter._anchored + prefilter._metric_anchored]
        assert len(anchors) == len(set(anchors)) or name == "full"
        assert len(prefilter._anchored) <= 16


def test_an_error_after_a_non_finite_value_on_the_same_line(needle_sets, engines):
    """After a NaN hit the engine looks only for error needles on the rest of the line: each
    error needle after a non-finite one (and each non-finite one before an error needle), the two
    overlapping, and the other way round."""
    needles = needle_sets["sparse"]
    non_finite = [n.text.encode() for n in needles if n.kind == NON_FINITE]
    errors = [n.text.encode() for n in needles if n.kind == ERROR]
    pairs = [(non_finite[i % len(non_finite)], error) for i, error in enumerate(errors)]
    pairs += [(value, errors[i % len(errors)]) for i, value in enumerate(non_finite)]
    for pattern in engines["sparse"]["re"]._anchored:  # all pairs that share an anchor byte
        members = [literal for _, literal in pattern.literals]
        pairs += [(a.data, b.data) for a in members for b in members if a.kind == NON_FINITE and b.kind == ERROR]
    for value, error in pairs:
        for chunk in (b"step 1" + value + b" then " + error + b" end\n",
                      value + error + b"\n" + error + value,
                      b"a\n" + error + b" " + value + b" " + value + b"\n"):
            assert_same_lines(needle_sets, engines, chunk)


def test_no_built_in_signature_makes_the_scan_read_every_line():
    """A `line` pattern without a literal of 3+ characters makes every line of every log be read
    (ten times slower): the built-in knowledge base must have none. A `regex`-only construct
    (a group name used in two branches) must not hide a pattern's literals either."""
    from postmortem.knowledge import load_knowledge_base

    kb = load_knowledge_base(include_user=False)
    without = [(s.id, p.pattern) for s in kb.signatures for p in s.line_patterns if p.literals is None]
    assert without == []
    assert required_literals(r"(?:`\.(?P<call>to)`|Calling `(?P<call>cuda)\(\)`) is not supported") == \
        ((" is not supported", False),)
