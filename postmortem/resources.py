"""Where the knowledge base and the templates live: in a checkout, or inside an installed wheel.

The wheel carries them under `postmortem/_data/` (see pyproject.toml); a checkout or an editable
install has them at the top of the repository. This is the one place that knows both.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (PACKAGE_DIR / "_data" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"postmortem is installed without its {name}/ folder")


def patterns_dir() -> Path:
    return _data_dir("patterns")


def templates_dir() -> Path:
    return _data_dir("templates")
