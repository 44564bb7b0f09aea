"""Logs from public issue trackers and real library output (tests/realworld/README.md).

The file name says what a scan must report: `<signature-id>--*.log` that signature (other
incidents only where the signature declares them), `clean--*.log` nothing, `unknown--*.log`
an unknown incident and no signature.
"""
from pathlib import Path

import pytest

from postmortem.examples import judge, _hints
from postmortem.knowledge import load_knowledge_base
from postmortem.scan import scan_bytes

KB = load_knowledge_base(include_user=False)
FOLDER = Path(__file__).parent / "realworld"
LOGS = sorted(FOLDER.glob("*.log"))


def test_the_folder_has_logs():
    assert LOGS, f"no logs in {FOLDER}"


@pytest.mark.parametrize("path", LOGS, ids=[p.name for p in LOGS])
def test_real_log(path):
    expect, _, _slug = path.stem.partition("--")
    data = path.read_bytes()
    assert data.startswith(b"# source: http"), f"{path.name}: the first line must be '# source: <URL>'"
    report = scan_bytes(data, kb=KB, source=path.name, redact=False)
    found = [(i.signature, i.line, i.evidence) for i in report.incidents]
    if expect == "clean":
        assert not found, f"{path.name}: a clean run gave {found}"
    elif expect == "unknown":
        assert found and all(s == "unknown" for s, _, _ in found), f"{path.name}: expected unknown only, got {found}"
    else:
        sig = KB.get(expect)
        assert sig is not None, f"{path.name}: no signature '{expect}'"
        failure = judge(sig, "match", {}, report, None, _hints(KB))
        assert failure is None, f"{path.name}: {failure}"
