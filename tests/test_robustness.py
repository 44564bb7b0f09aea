"""Inputs that are not logs at all still get a clean answer, never a traceback of ours."""
import json
import os
import random
import subprocess
import sys

from click.testing import CliRunner

from postmortem.cli import cli


def scan_json(path):
    result = CliRunner().invoke(cli, ["scan", str(path), "--format", "json"], env={"POSTMORTEM_LANG": "en"})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    assert scan_json(path)["incidents"] == []


def test_random_bytes(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(1 << 20)))
    assert isinstance(scan_json(path)["incidents"], list)


def test_fifty_megabytes_without_a_newline_then_an_error(tmp_path):
    path = tmp_path / "one-line.log"
    with open(path, "wb") as handle:
        handle.write(b"=" * (50 << 20))
        handle.write(b"\nTraceback (most recent call last):\n  File \"/w/t.py\", line 1, in <module>\n    f()\n"
                     b"RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::Half != float\n")
    [incident] = scan_json(path)["incidents"]
    assert incident["signature"] == "dtype-mismatch" and incident["line"] == 5


def test_python_dash_m_runs_the_cli(tmp_path):
    path = tmp_path / "run.log"
    path.write_text("Killed\n")
    out = subprocess.run([sys.executable, "-m", "postmortem", "scan", str(path), "--format", "json"],
                         capture_output=True, text=True, env={**os.environ, "POSTMORTEM_LANG": "en"})
    assert out.returncode == 0, out.stderr
    assert [i["signature"] for i in json.loads(out.stdout)["incidents"]] == ["host-oom-killed"]


def test_a_gzip_that_is_not_gzip_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "run.log.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    result = CliRunner().invoke(cli, ["scan", str(path)])
    assert result.exit_code == 2
    assert "run.log.gz" in result.output and "Traceback" not in result.output
