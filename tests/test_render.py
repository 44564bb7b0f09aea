"""Rendering details a journal keeps forever: prose on one line, code and lists untouched."""
from postmortem.render import _unwrap


def test_soft_wrapped_prose_becomes_one_line_in_english_and_chinese():
    assert _unwrap("the allocator could not\nfind a block") == "the allocator could not find a block"
    assert _unwrap("要求所有浮点操作数的\ndtype 一致，不一致就\n直接报错") == "要求所有浮点操作数的 dtype 一致，不一致就直接报错"


def test_code_blocks_lists_and_paragraph_breaks_stay():
    text = "Two cases:\n\n1. first case\n   wrapped on\n2. second\n\n```python\nx = 1\ny = 2\n```\nafter"
    assert _unwrap(text) == "Two cases:\n\n1. first case wrapped on\n2. second\n\n```python\nx = 1\ny = 2\n```\nafter"


def _incident(**texts):
    from postmortem.model import Incident

    fields = {"symptom": "It broke.", "cause": "Because.", "fix": "Fix it.", "lesson": "Learn."} | texts
    return Incident(signature="demo", title="Demo", category="runtime", severity="error", count=1,
                    source="run.log", line=3, evidence="RuntimeError: demo", location=None, vars={},
                    references=(), fingerprint="abc123", **fields)


def test_a_fix_that_is_a_numbered_list_starts_below_its_label():
    # "**Fix**: 1. a" then "2. b" is one paragraph in Markdown: a "2." cannot interrupt it.
    from postmortem.render import render_entry

    for lang, label in (("en", "* **Fix**:"), ("zh", "* **解决方案**：")):
        text = render_entry(_incident(fix="1. **Confirm** it.\n2. **Raise** the limit."), 1, lang)
        assert f"{label}\n  1. **Confirm** it.\n  2. **Raise** the limit.\n" in text
    prose = render_entry(_incident(fix="Pin the version."), 1, "en")
    assert "* **Fix**: Pin the version.\n" in prose
