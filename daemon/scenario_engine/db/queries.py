"""Named SQL queries kept in ``.sql`` files beside the code that runs them.

A file holds blocks introduced by ``-- name: some_query``; everything up to the next
marker is that query. Keeping SQL in files makes it reviewable and EXPLAIN-able as SQL,
and a test checks that every name the code asks for exists.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_MARKER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class UnknownQueryError(KeyError):
    """The code asked for a query name that no .sql file defines."""


def parse_named_queries(text: str, source: str = "<string>") -> dict[str, str]:
    """Split a file's text into {name: sql}. Duplicate names are an error."""
    queries: dict[str, str] = {}
    matches = list(_MARKER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match.group(1)
        body = text[match.end() : end].strip()
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {source}")
        if not body:
            raise ValueError(f"query {name!r} in {source} is empty")
        queries[name] = body
    return queries


@cache
def all_queries() -> dict[str, str]:
    """Every named query of the package's ``queries/`` folder."""
    merged: dict[str, str] = {}
    folder = resources.files("scenario_engine") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_named_queries(entry.read_text("utf-8"), entry.name).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined in more than one file")
            merged[name] = sql
    return merged


def query(name: str) -> str:
    try:
        return all_queries()[name]
    except KeyError:
        raise UnknownQueryError(f"no SQL query named {name!r} in scenario_engine/queries") from None
