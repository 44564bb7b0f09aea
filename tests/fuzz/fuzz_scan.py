"""Coverage-guided fuzzing of the scan with atheris (a developer tool, not a test dependency).

    pip install atheris
    python tests/fuzz/fuzz_scan.py -max_total_time=300                     # five minutes
    python tests/fuzz/fuzz_scan.py -max_total_time=600 -dict=tests/fuzz/scan.dict corpus/
    python tests/fuzz/fuzz_scan.py crash-<hash>                            # replay a finding

Each input goes through the whole pipeline: format detection, the notebook and Kaggle
converters, the reader, the prefilter, the traceback parser, the matcher, grouping, redaction
and both renderers. The first byte picks how the rest is presented: as a log, wrapped in a
notebook's error output, as Kaggle records, or after a real traceback header. Any exception other
than a one-line InputError is a finding; a hang is one too (libFuzzer's -timeout, 25 s here).
With no corpus folder given, the samples seed one in the temporary folder.
"""
from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["postmortem"]):
    from postmortem.formats import open_document
    from postmortem.knowledge import load_knowledge_base
    from postmortem.reader import InputError
    from postmortem.render import render_json, render_markdown
    from postmortem.scan import Scanner, build_report

ROOT = Path(__file__).resolve().parents[2]
KB = load_knowledge_base(include_user=False)
SCANNER = Scanner(KB, engine="re")
PREFIX = b"Traceback (most recent call last):\n  File \"/home/user/proj/train.py\", line 57, in forward\n"
SEED_BYTES = 4096


def present(mode: int, payload: bytes) -> tuple[bytes, str]:
    """The payload as one of the inputs the tool meets."""
    text = payload.decode("utf-8", errors="replace")
    if mode == 1:
        notebook = {"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stderr", "text": text[: len(text) // 2]},
            {"output_type": "error", "ename": "RuntimeError", "evalue": text[-40:],
             "traceback": text[len(text) // 2:].split("\n")}]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        return json.dumps(notebook).encode(), "auto"
    if mode == 2:
        pieces = [text[i:i + 17] for i in range(0, len(text), 17)]
        records = [{"stream_name": ("stdout", "stderr")[i % 2], "time": i * 0.5, "data": p} for i, p in enumerate(pieces)]
        data = ("[" + "\n,".join(json.dumps(r) for r in records) + "]").encode()
        return data[: len(data) - (payload[:1] or b"\0")[0] % 7], "auto"  # sometimes cut off
    if mode == 3:
        return PREFIX + payload, "text"
    return payload, "auto"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    payload, input_format = present(data[0] % 4, data[1:])
    stream = io.BytesIO(payload)
    try:
        document = open_document(stream, "fuzz.log", input_format)
    except InputError as exc:
        if "\n" in str(exc):
            raise AssertionError(f"an input error must be one line: {exc!r}") from None
        return
    result = SCANNER.scan_stream(document.stream, "fuzz.log")
    result.places = document.places
    report = build_report([result], KB, "en", redact=True)
    render_markdown(report)
    json.loads(render_json(report))


def seeds() -> list[bytes]:
    found = []
    for path in sorted((ROOT / "samples").glob("*.log")) + sorted((ROOT / "patterns").glob("*/*.log")):
        data = path.read_bytes().replace(b"#=MATCH=# ", b"")
        found.append(b"\0" + data[-SEED_BYTES:])
    for path in sorted((ROOT / "tests" / "data" / "formats").iterdir()):
        found.append(b"\0" + path.read_bytes()[:SEED_BYTES * 4])
    return found


def main() -> None:
    args = list(sys.argv)
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=25")
    if not any(not a.startswith("-") for a in args[1:]):
        corpus = Path(tempfile.gettempdir()) / "postmortem-fuzz-corpus"
        corpus.mkdir(exist_ok=True)
        for index, seed in enumerate(seeds()):
            (corpus / f"seed-{index:03d}").write_bytes(seed)
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
