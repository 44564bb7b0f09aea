"""Every row of samples/README.md: the sample yields exactly the signatures the table names,
in md and json, from a path and from a pipe."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from postmortem.cli import cli

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ROW_RE = re.compile(r"^\|\s*`(?P<file>[^`]+)`\s*\|\s*(?P<expected>[^|]+?)\s*\|")


def table_rows():
    readme = SAMPLES / "README.md"
    if not readme.exists():
        return []
    rows = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        match = ROW_RE.match(line)
        if match:
            expected = match["expected"].replace("`", "").strip()
            ids = [] if expected.lower() == "none" else [s.strip() for s in expected.split(",")]
            rows.append(pytest.param(match["file"], ids, id=match["file"]))
    return rows


ROWS = table_rows()


def run(args, input_bytes=None):
    result = CliRunner().invoke(cli, args, input=input_bytes, env={"POSTMORTEM_LANG": "en"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_covers_every_sample():
    listed = {row.values[0] for row in ROWS}
    on_disk = {p.name for p in SAMPLES.iterdir() if p.is_file() and p.name != "README.md"}
    assert on_disk and on_disk == listed


@pytest.mark.parametrize("name, expected", ROWS)
def test_sample_yields_exactly_its_signatures(name, expected):
    path = SAMPLES / name
    report = json.loads(run(["scan", str(path), "--format", "json"]))
    roots = [i["signature"] for i in report["incidents"] if i["explained_by"] is None]
    assert roots == expected
    markdown = run(["scan", str(path)])
    assert re.findall(r"<!-- postmortem: (\S+) ", markdown) == [i["signature"] for i in report["incidents"]]


@pytest.mark.parametrize("name, expected", ROWS)
def test_a_pipe_gives_the_same_as_the_path(name, expected):
    path = SAMPLES / name
    from_path = json.loads(run(["scan", str(path), "--format", "json"]))
    from_pipe = json.loads(run(["scan", "--format", "json"], input_bytes=path.read_bytes()))
    strip = lambda report: [{k: v for k, v in i.items() if k not in ("source", "fix", "symptom")}
                            for i in report["incidents"]]
    assert strip(from_pipe) == strip(from_path)
