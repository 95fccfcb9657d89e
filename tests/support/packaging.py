"""Shared by tests/unit/test_packaging.py and tests/process/test_packaging.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


# --- documented metrics exist ---------------------------------------------------------------


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]
