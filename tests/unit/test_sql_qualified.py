"""Every table the engine's SQL names is schema-qualified, so no session setting (search_path,
which transaction and session poolers may drop or refuse) decides what a query touches."""

from __future__ import annotations

import re
from pathlib import Path

from scenario_engine.db.queries import all_queries
from tests.support.catalog import ENGINE_TABLES, PLATFORM_TABLES

TABLE_POSITION = re.compile(
    r"\b(FROM|JOIN|INTO|UPDATE|TABLE|EXISTS)\s+(" + "|".join(ENGINE_TABLES + PLATFORM_TABLES) + r")\b(?!\.)",
    re.IGNORECASE,
)
CODE_ONLY = re.compile(r"'(?:[^']|'')*'|--[^\n]*")


def unqualified(sql: str) -> list[str]:
    return [m.group(0) for m in TABLE_POSITION.finditer(CODE_ONLY.sub("''", sql))]


def test_named_queries_qualify_every_table() -> None:
    bad = {name: found for name, sql in all_queries().items() if (found := unqualified(sql))}
    assert bad == {}


def test_inline_sql_in_the_package_qualifies_every_table() -> None:
    root = Path(__file__).resolve().parents[2] / "daemon" / "scenario_engine"
    bad: dict[str, list[str]] = {}
    for path in root.rglob("*.py"):
        for literal in re.findall(r'"""(.*?)"""|"([^"\n]*)"', path.read_text(), flags=re.S):
            text = literal[0] or literal[1]
            if re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", text) and (found := unqualified(text)):
                bad.setdefault(str(path.relative_to(root)), []).extend(found)
    assert bad == {}
