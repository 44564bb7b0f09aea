"""Notebooks and Kaggle logs: each incident cites its cell or its time, from a file and from a pipe."""
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from postmortem.cli import cli
from postmortem.formats import PlaceMap, kaggle_log_lines, kaggle_records, open_document, sniff_format
from postmortem.reader import InputError
from postmortem.scan import Scanner, scan, scan_bytes

DATA = Path(__file__).resolve().parent / "data" / "formats"
NOTEBOOK = DATA / "two-failing-cells.ipynb"
KAGGLE = DATA / "kaggle-nan.log"
KAGGLE_CUT = DATA / "kaggle-truncated.log"


def run(args, input_bytes=None):
    result = CliRunner().invoke(cli, args, input=input_bytes, env={"POSTMORTEM_LANG": "en"})
    return result


def incidents_of(args, input_bytes=None):
    result = run([*args, "--format", "json"], input_bytes)
    assert result.exit_code == 0, result.output
    return [(i["signature"], i["source"], i["line"]) for i in json.loads(result.output)["incidents"]]


def kaggle_log(*records) -> bytes:
    return ("[" + "\n,".join(json.dumps(r) for r in records) + "]").encode()


# -- the done-when cases -------------------------------------------------------------------------
def test_a_notebook_with_two_failing_cells_gives_each_incident_its_cell():
    assert incidents_of(["scan", str(NOTEBOOK)]) == [
        ("dtype-mismatch", f"{NOTEBOOK}, cell 6", 30),
        ("cuda-oom", f"{NOTEBOOK}, cell 8", 16),
    ]


def test_a_notebook_from_a_pipe_gives_the_same_cells():
    assert incidents_of(["scan"], NOTEBOOK.read_bytes()) == [
        ("dtype-mismatch", "<stdin>, cell 6", 30),
        ("cuda-oom", "<stdin>, cell 8", 16),
    ]


def test_the_notebook_incident_keeps_the_in_app_cell_frame():
    report = scan(NOTEBOOK)
    dtype = report.incidents[0]
    assert dtype.location.filename == "Cell In[3]" and dtype.location.lineno == 14
    assert dtype.vars == {"left": "c10::BFloat16", "right": "float"}


def test_a_kaggle_log_of_a_nan_run_cites_the_time_it_went_nan():
    assert incidents_of(["scan", str(KAGGLE)]) == [("nan-output", f"{KAGGLE}, 105.4 s", 23)]


def test_a_kaggle_log_from_a_pipe_gives_the_same_time():
    assert incidents_of(["scan"], KAGGLE.read_bytes()) == [("nan-output", "<stdin>, 105.4 s", 23)]


def test_a_kaggle_log_cut_off_inside_a_record_still_gives_the_incident():
    assert not KAGGLE_CUT.read_text().rstrip().endswith("]")
    assert incidents_of(["scan", str(KAGGLE_CUT)]) == [("nan-output", f"{KAGGLE_CUT}, 105.4 s", 23)]


def test_several_inputs_at_once_each_cite_their_places(tmp_path):
    notebook, kaggle = tmp_path / "analysis.ipynb", tmp_path / "kernel.log"
    notebook.write_bytes(NOTEBOOK.read_bytes())
    kaggle.write_bytes(KAGGLE.read_bytes())
    assert incidents_of(["scan", str(notebook), str(kaggle), "-j", "1"]) == [
        ("dtype-mismatch", f"{notebook}, cell 6", 30),
        ("cuda-oom", f"{notebook}, cell 8", 16),
        ("nan-output", f"{kaggle}, 105.4 s", 23),
    ]


def test_jsonl_from_a_pipe_keeps_the_notebook_s_incidents():
    result = run(["scan", "--format", "jsonl"], NOTEBOOK.read_bytes())
    [line] = [json.loads(text) for text in result.output.splitlines()]
    assert line["source"] == "<stdin>"
    assert [i["source"] for i in line["incidents"]] == ["<stdin>, cell 6", "<stdin>, cell 8"]


def test_the_markdown_draft_names_the_cell():
    result = run(["scan", str(NOTEBOOK)])
    assert f"{NOTEBOOK.name}, cell 6, line 30" in result.output
    assert f"{NOTEBOOK.name}, cell 8, line 16" in result.output


# -- detection and overrides ---------------------------------------------------------------------
@pytest.mark.parametrize("head, expected", [
    (b'{\n "cells": [\n  {\n   "cell_type": "code",', "ipynb"),
    (b'\xef\xbb\xbf{"metadata": {}, "nbformat": 4, "cells": []}', "ipynb"),
    (b'{"nbformat": 3, "worksheets": []}', "ipynb"),
    (b'[{"stream_name":"stderr","time":6.409935486,"data":"0.00s - Debugger warning"}', "kaggle"),
    (b'[ {"time": 1.0, "stream_name": "stdout", "data": "x"}', "kaggle"),
    # JSON-lines logs and JSON arrays of other things are logs, not documents.
    (b'{"level": "info", "msg": "epoch 1", "loss": 0.5}\n', "text"),
    (b'[{"loss": 0.5, "step": 10}]', "text"),
    (b"Traceback (most recent call last):\n", "text"),
    (b"", "text"),
])
def test_the_format_is_found_from_the_first_bytes(head, expected):
    assert sniff_format(head) == expected


def test_input_format_text_reads_a_notebook_as_plain_text():
    incidents = incidents_of(["scan", str(NOTEBOOK), "--input-format", "text"])
    assert all(", cell " not in source for _, source, _ in incidents)


def test_input_format_ipynb_on_a_log_is_one_line_and_exit_2(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("epoch 1 loss 0.5\n")
    result = run(["scan", str(log), "--input-format", "ipynb"])
    assert result.exit_code == 2
    assert "run.log: not a valid notebook" in result.output and "Traceback" not in result.output


def test_input_format_kaggle_on_a_plain_log_finds_no_records(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::Half != float\n")
    assert incidents_of(["scan", str(log), "--input-format", "kaggle"]) == []
    assert incidents_of(["scan", str(log)])[0][0] == "dtype-mismatch"


def test_a_notebook_that_is_not_valid_json_is_refused_with_the_place():
    with pytest.raises(InputError, match=r"nb\.ipynb: not a valid notebook \(JSON error at line 2"):
        open_document(io.BytesIO(b'{"cells": [\n  {"outputs": ]}'), "nb.ipynb")


# -- notebooks -----------------------------------------------------------------------------------
def test_nbformat_3_pyerr_outputs_are_read():
    notebook = {"nbformat": 3, "worksheets": [{"cells": [
        {"cell_type": "markdown", "source": "intro"},
        {"cell_type": "code", "outputs": [{"output_type": "pyerr", "ename": "RuntimeError",
                                           "evalue": "CUDA out of memory. Tried to allocate 2.00 GiB",
                                           "traceback": ["\x1b[0;31mRuntimeError\x1b[0m: CUDA out of memory. "
                                                         "Tried to allocate 2.00 GiB"]}]},
    ]}]}
    report = scan_bytes(json.dumps(notebook).encode(), source="old.ipynb", input_format="auto")
    assert [(i.signature, i.source, i.line) for i in report.incidents] == [("cuda-oom", "old.ipynb, cell 2", 1)]


def test_an_error_without_a_traceback_is_read_from_ename_and_evalue():
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "error", "ename": "RuntimeError", "traceback": [],
         "evalue": "expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float"}]}],
        "nbformat": 4, "nbformat_minor": 5, "metadata": {}}
    report = scan_bytes(json.dumps(notebook).encode(), source="nb.ipynb", input_format="ipynb")
    assert [(i.signature, i.source) for i in report.incidents] == [("dtype-mismatch", "nb.ipynb, cell 1")]


def test_a_stream_fragment_without_newline_does_not_glue_onto_the_traceback():
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["epoch 1 ", "loss 0.5"]},
        {"output_type": "error", "ename": "ValueError", "evalue": "x",
         "traceback": ["\x1b[0;31mValueError\x1b[0m                                Traceback (most recent call last)",
                       "Cell \x1b[0;32mIn[2], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m \x1b[43mf\x1b[49m()\n",
                       "\x1b[0;31mValueError\x1b[0m: Found input variables with inconsistent numbers of samples"]}]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    document = open_document(io.BytesIO(json.dumps(notebook).encode()), "nb.ipynb")
    lines = document.stream.read().decode().split("\n")
    assert lines[0] == "epoch 1 loss 0.5"
    assert "Traceback (most recent call last)" in lines[1]


def test_cells_are_numbered_by_position_markdown_included():
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["# Title"]},
        {"cell_type": "code", "execution_count": 12, "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "a\nb\n"}]},
        {"cell_type": "code", "execution_count": None, "outputs": []},
        {"cell_type": "code", "execution_count": 3, "outputs": [
            {"output_type": "stream", "name": "stderr", "text": "c\n"}]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    document = open_document(io.BytesIO(json.dumps(notebook).encode()), "nb.ipynb")
    text = document.stream.read().decode()
    places = [document.places.place_of(n) for n in range(1, text.count("\n") + 1)]
    assert places[:2] == [("cell 2", 1), ("cell 2", 2)]
    assert ("cell 4", 1) in places


# -- Kaggle logs ---------------------------------------------------------------------------------
def test_fragments_are_joined_per_stream_before_lines_are_cut():
    data = kaggle_log(
        {"stream_name": "stdout", "time": 1.0, "data": "{'loss': 0.5, "},
        {"stream_name": "stderr", "time": 1.1, "data": "  3%|3 | 3/100 [00:01<00:30]"},
        {"stream_name": "stdout", "time": 1.2, "data": "'epoch': 0.1}\nnext"},
        {"stream_name": "stderr", "time": 1.3, "data": "\n"},
        {"stream_name": "stdout", "time": 2.0, "data": " line\n"},
    )
    places = PlaceMap(restart=False)
    lines = b"".join(kaggle_log_lines(io.BytesIO(data), places)).decode().splitlines()
    assert lines == ["{'loss': 0.5, 'epoch': 0.1}", "  3%|3 | 3/100 [00:01<00:30]", "next line"]
    assert [places.place_of(n)[0] for n in (1, 2, 3)] == ["1.0 s", "1.1 s", "1.2 s"]


def test_a_traceback_split_across_records_is_one_incident_at_the_time_of_its_exception():
    data = kaggle_log(
        {"stream_name": "stderr", "time": 50.25, "data": "Traceback (most recent call last):\n  File \"/kaggle/working/"},
        {"stream_name": "stderr", "time": 50.26, "data": "train.py\", line 88, in <module>\n    out = model(x)\n"},
        {"stream_name": "stdout", "time": 50.27, "data": "saving checkpoint\n"},
        {"stream_name": "stderr", "time": 51.5, "data": "RuntimeError: expected mat1 and mat2 to have the same dtype, "
                                                         "but got: c10::Half != float\n"},
    )
    report = scan_bytes(data, source="kernel.log", input_format="auto")
    [incident] = report.incidents
    assert (incident.signature, incident.source) == ("dtype-mismatch", "kernel.log, 51.5 s")
    assert incident.location.filename == "/kaggle/working/train.py"


def test_damaged_records_and_garbage_between_records_are_skipped():
    data = (b'[{"stream_name":"stdout","time":1.0,"data":"epoch 1\\n"}\n'
            b',{"stream_name":"stdout","time":2.0,"data":"broken \\q escape\\n"}\n'
            b',garbage here\n'
            b',{"stream_name":"stdout","time":3.0,"data":"epoch 3\\n"}]')
    records = list(kaggle_records(io.BytesIO(data)))
    assert [r["data"] for r in records][0] == "epoch 1\n"
    assert records[-1]["data"] == "epoch 3\n"


def test_a_record_cut_in_a_unicode_escape_keeps_what_came_before():
    data = b'[{"stream_name":"stderr","time":4.5,"data":"Killed\\nnext \\u00'
    [record] = list(kaggle_records(io.BytesIO(data)))
    assert record == {"stream_name": "stderr", "time": 4.5, "data": "Killed\nnext "}


def test_a_record_longer_than_a_read_is_decoded_whole():
    long_line = "x" * (3 << 20)
    data = kaggle_log({"stream_name": "stdout", "time": 1.0, "data": long_line + "\n"},
                      {"stream_name": "stdout", "time": 2.0, "data": "Killed\n"})
    report = scan_bytes(data, source="k.log", input_format="kaggle")
    assert [(i.signature, i.source, i.line) for i in report.incidents] == [("host-oom-killed", "k.log, 2.0 s", 2)]


def test_a_stream_that_never_ends_its_line_is_cut_at_a_carriage_return():
    frames = [{"stream_name": "stderr", "time": i / 10, "data": f"\r{i:>6}it [00:01, 99.0it/s]"} for i in range(60_000)]
    places = PlaceMap(restart=False)
    pieces = list(kaggle_log_lines(io.BytesIO(kaggle_log(*frames)), places))
    assert len(pieces) >= 2 and max(len(p) for p in pieces) < (2 << 20)


def test_chunk_size_does_not_change_a_notebook_s_incidents(kb):
    data = NOTEBOOK.read_bytes()
    expected = [(i.signature, i.source, i.line) for i in scan_bytes(data, kb=kb, input_format="auto").incidents]
    small = Scanner(kb, chunk_bytes=512)
    assert [(i.signature, i.source, i.line) for i in
            scan_bytes(data, scanner=small, input_format="auto").incidents] == expected


class _Trickle(io.RawIOBase):
    """A pipe that gives a few bytes a read."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data, self._size = data, size

    def readable(self):
        return True

    def readinto(self, buffer):
        piece, self._data = self._data[:min(self._size, len(buffer))], self._data[min(self._size, len(buffer)):]
        buffer[:len(piece)] = piece
        return len(piece)


def test_a_kaggle_record_whose_text_holds_a_record_start_is_not_cut_when_it_arrives_in_pieces():
    # `"data": "{"` ends with `{"`, the start of a record: a half-read record must be read on,
    # not taken for a damaged one (hypothesis found it).
    records = [{"stream_name": "stdout", "time": 0.0, "data": "epoch 1\n"},
               {"stream_name": "stdout", "time": 1.0, "data": "{"}]
    data = ("[" + "\n,".join(json.dumps(r) for r in records) + "]").encode()
    whole = b"".join(kaggle_log_lines(io.BytesIO(data), PlaceMap(restart=False)))
    assert whole == b"epoch 1\n{\n"
    assert b"".join(kaggle_log_lines(_Trickle(data, 7), PlaceMap(restart=False))) == whole
