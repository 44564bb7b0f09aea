"""Pathological lines cost linear time: a long run that a careless regex backtracks over must not
turn one line into minutes. Each case is timed on an input of n and of 4n characters: linear
work takes about 4 times as long, quadratic work 16 times (and a 10^6-character line, hours)."""
import io
import json
import time

import pytest

from postmortem.formats import PlaceMap, kaggle_log_lines
from postmortem.redact import redact_text
from postmortem.scan import Scanner, scan_bytes

N = 5_000
GROWTH = 4
MAX_RATIO = 10  # linear work grows ~4x for 4x the input, quadratic ~16x
FAST_ENOUGH = 0.5  # seconds for the 4n input: below this, noise decides the ratio, and it is fine anyway


@pytest.fixture(scope="module")
def scanner(kb):
    return Scanner(kb)


def assert_linear(run, make):
    """`run(make(n))` grows linearly with n."""
    small, big = make(N), make(GROWTH * N)
    run(small)  # warm-up: imports, compiled patterns
    start = time.perf_counter()
    run(small)
    t_small = time.perf_counter() - start
    start = time.perf_counter()
    run(big)
    t_big = time.perf_counter() - start
    assert t_big < FAST_ENOUGH or t_big / max(t_small, 1e-4) < MAX_RATIO, (t_small, t_big)


LINES = {
    "caret-line": lambda n: 'Traceback (most recent call last):\n  File "/w/t.py", line 1, in f\n    ' + "~" * n + "x",
    "nested-brackets": lambda n: "RuntimeError: " + "(" * n + "[" * n + "]" * n + ")" * n,
    "error-words": lambda n: "Error: " * n,
    "carriage-returns": lambda n: "\r" * n + "Killed",
    "spaces-in-a-message": lambda n: "ValueError: " + " " * n + "x",
    "nested-metrics-dict": lambda n: "{'loss': " + "[" * n + "nan" + "]" * n + "}",
    "digits-and-dots": lambda n: "loss=" + "1." * n,
    "tqdm-frames": lambda n: "\r 42%|####      | 420/1000 [00:10<00:14, 40.1it/s, loss=0.43]" * (n // 20),
    "ranks": lambda n: "\n".join(f"[rank{r}]:RuntimeError: CUDA out of memory." for r in range(n // 10)),
}


@pytest.mark.parametrize("name", LINES)
def test_a_pathological_line_scans_in_linear_time(scanner, name):
    assert_linear(lambda text: scan_bytes((text + "\n").encode(), scanner=scanner), LINES[name])


# Once quadratic (see benchmarks/bench_worst_case.py --regexes): the bar regexes of the reader
# and of the metrics parser.
def test_a_run_of_digits_before_it_bracket_is_linear(scanner):
    assert_linear(lambda text: scan_bytes(text.encode(), scanner=scanner),
                  lambda n: "train loss " + "1" * (n // 2) + "it [\n")


def test_a_run_of_spaces_in_a_bar_like_line_is_linear(scanner):
    assert_linear(lambda text: scan_bytes(text.encode(), scanner=scanner),
                  lambda n: "loss" + " " * (n // 5) + "|]x[]\n")


REDACTION = {
    "assignments": lambda n: "a:" * n,
    "token-prefixes": lambda n: "hf_" * n,
    "url-schemes": lambda n: "://" * n,
    "flags": lambda n: "--a " * n,
    "key-headers": lambda n: "-----BEGIN PRIVATE KEY-----" * (n // 10),
    "password-words": lambda n: "password " * n,
    "home-prefixes": lambda n: "/home/" * n,
    "windows-homes": lambda n: "C:\\Users\\" * n,
    "authorization": lambda n: "Authorization: Bearer " * (n // 10),
    "one-long-value": lambda n: "x=" + "a" * n * 5,
    "netrc": lambda n: "machine a login b " * n,
}


@pytest.mark.parametrize("name", REDACTION)
def test_redaction_is_linear(name):
    assert_linear(redact_text, REDACTION[name])


def kaggle(data: bytes) -> bytes:
    return b"".join(kaggle_log_lines(io.BytesIO(data), PlaceMap(restart=False)))


KAGGLE = {
    "one-record-never-closed": lambda n: b'[{"stream_name":"stderr","time":1.5,"data":"' + b"a" * (n * 50),
    "record-starts-only": lambda n: b"[" + b'{"a":' * n,
    "deep-nesting": lambda n: b'[{"data":' + b"[" * n,
    "garbage": lambda n: b"[" + b"garbage " * n,
    "fragments-of-one-line": lambda n: ("[" + ",".join(
        json.dumps({"stream_name": "stderr", "time": 1.0, "data": "x"}) for _ in range(n)) + "]").encode(),
}


@pytest.mark.parametrize("name", KAGGLE)
def test_a_kaggle_log_is_read_in_linear_time(name):
    assert_linear(kaggle, KAGGLE[name])
