"""Rendering details a journal keeps forever: prose on one line, code and lists untouched."""
from postmortem.render import _unwrap


def test_soft_wrapped_prose_becomes_one_line_in_english_and_chinese():
    assert _unwrap("the allocator could not\nfind a block") == "the allocator could not find a block"
    assert _unwrap("要求所有浮点操作数的\ndtype 一致，不一致就\n直接报错") == "要求所有浮点操作数的 dtype 一致，不一致就直接报错"


def test_code_blocks_lists_and_paragraph_breaks_stay():
    text = "Two cases:\n\n1. first case\n   wrapped on\n2. second\n\n```python\nx = 1\ny = 2\n```\nafter"
    assert _unwrap(text) == "Two cases:\n\n1. first case wrapped on\n2. second\n\n```python\nx = 1\ny = 2\n```\nafter"
