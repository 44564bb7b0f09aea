"""The tool's own words in each language (`templates/strings.toml`), and the language choice."""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cache

from . import resources

LANGUAGES = ("en", "zh")
DEFAULT_LANG = "en"
LANG_ENV = "POSTMORTEM_LANG"
LOCALE_ENVS = ("LC_ALL", "LC_MESSAGES", "LANG")


@cache
def _strings() -> Mapping[str, Mapping[str, str]]:
    with open(resources.templates_dir() / "strings.toml", "rb") as handle:
        return tomllib.load(handle)


def ui_text(lang: str, key: str) -> str:
    return ui_strings(lang)[key]


def ui_strings(lang: str) -> Mapping[str, str]:
    table = _strings()
    return {**table[DEFAULT_LANG], **table.get(lang, {})}


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """POSTMORTEM_LANG, then the locale (a zh locale gives zh), else English."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(LANG_ENV, "").strip().lower()
    if chosen in LANGUAGES:
        return chosen
    for name in LOCALE_ENVS:
        value = environ.get(name, "")
        if value:
            return "zh" if value.lower().startswith("zh") else DEFAULT_LANG
    return DEFAULT_LANG
