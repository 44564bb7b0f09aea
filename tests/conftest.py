import os
import tempfile

import pytest

from postmortem.knowledge import load_knowledge_base

# The suite (and the CLI processes it starts) keeps its start-up cache (cache.py) to itself.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="postmortem-test-cache-")


@pytest.fixture(scope="session")
def kb():
    """The built-in knowledge base only: a developer's own signatures must not change the tests."""
    return load_knowledge_base(include_user=False)
