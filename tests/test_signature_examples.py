"""Every example of every signature, run against the whole built-in knowledge base.

One parametrised test: adding a signature (or an example, or a `patterns/<id>/*.log` file) adds
its tests. A `todo-match` example is a known gap: reported as an expected failure, never failing.
"""
import pytest

from postmortem.examples import check_example, check_log_file, example_logs
from postmortem.knowledge import load_knowledge_base

KB = load_knowledge_base(include_user=False)
CASES = [
    pytest.param(sig, example, id=f"{sig.id}-{example.index}-{example.expect}")
    for sig in KB.signatures for example in sig.examples
]
LOG_CASES = [pytest.param(sig, path, id=f"{sig.id}-{path.name}") for sig in KB.signatures for path in example_logs(sig)]


@pytest.mark.parametrize("sig, example", CASES)
def test_signature_example(sig, example):
    result = check_example(sig, example, KB)
    if example.expect == "todo-match":
        if not result.ok:
            pytest.xfail(f"known gap: {result.failure}")
        return
    assert result.ok, f"{sig.path} {result.name} (expect {example.expect}): {result.failure}"


@pytest.mark.parametrize("sig, path", LOG_CASES)
def test_signature_example_log(sig, path):
    result = check_log_file(sig, path, KB)
    assert result.ok, f"{path}: {result.failure}"
