"""Docstrings and comments of the code cite only documents the repository has: docs/ARCHITECTURE.md
took the still-true parts of a design document that was never in the repository, which thirteen
docstrings cited. No database.

sql/ is left out on purpose: a migration's text is checksummed once applied (db/migrations.py),
so its comments stay as they were written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# README.md, docs/OPERATIONS.md, CHANGELOG.md …: an upper-case name ending in .md.
CITED = re.compile(r"\b((?:docs/)?[A-Z][A-Z0-9_-]*\.md)\b")


def sources() -> list[Path]:
    found = [ROOT / "Makefile", ROOT / "Dockerfile"]
    for top in ("daemon", "bench", "tests", "systemd", "scripts"):
        found += [
            p
            for p in (ROOT / top).rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".sql", ".toml", ".j2", ".service", ""}
            and "results" not in p.parts
            and "__pycache__" not in p.parts
        ]
    return [p for p in found if p.is_file()]


def test_every_cited_document_exists() -> None:
    missing = []
    for path in sources():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in CITED.findall(line):
                if not ((ROOT / name).is_file() or (ROOT / "docs" / name).is_file()):
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {name}")
    assert missing == [], "cites a document the repository lacks:\n" + "\n".join(missing)
