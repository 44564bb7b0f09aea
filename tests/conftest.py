import pytest

from postmortem.knowledge import load_knowledge_base


@pytest.fixture(scope="session")
def kb():
    """The built-in knowledge base only: a developer's own signatures must not change the tests."""
    return load_knowledge_base(include_user=False)
