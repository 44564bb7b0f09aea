"""Writing TOML by hand for generated signatures (tomllib reads TOML but cannot write it)."""
from __future__ import annotations

import json


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, except DEL, which TOML wants escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_regex(pattern: str) -> str:
    # Literal strings keep regex backslashes readable, as patterns/README.md asks.
    if "'" not in pattern and "\n" not in pattern:
        return f"'{pattern}'"
    return toml_string(pattern)


def toml_text(text: str) -> str:
    if "\n" in text and "'''" not in text and not text.endswith("'") and printable(text):
        return f"'''\n{text}'''" if text.endswith("\n") else f"'''\n{text}\n'''"
    return toml_string(text)


def printable(text: str) -> bool:
    return all(ch in "\n\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F) for ch in text)
