"""Named SQL queries kept in ``.sql`` files beside the code that runs them.

A file holds blocks introduced by ``-- name: some_query``; everything up to the next
marker is that query. Keeping SQL in files makes it reviewable and EXPLAIN-able as SQL,
and a test checks that every name the code asks for exists.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:  # connect.py runs a named query itself (mark_engine_write)
    from scenario_engine.db.connect import Conn

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


# A line ``-- include: other_query`` stands for the whole text of that named query: one
# definition (a renewal in time, say) is written once and read by every statement that needs
# it, not copied into each. A fragment without parameters ($n) fits any statement; one with
# parameters declares them (``-- params:``) and fits only a statement whose declaration starts
# with the same names, so that each $n means the same on both sides. Includes may nest, and a
# cycle, an unknown name or a parameter mismatch fails at load.
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PARAMS = re.compile(r"^--\s*params:\s*(.*)$", re.MULTILINE)


def _declared(sql: str) -> tuple[str, ...] | None:
    """The names of a query's ``-- params:`` line, in ``$n`` order (None: no such line)."""
    match = _PARAMS.search(sql)
    if match is None:
        return None
    return tuple(p.strip() for p in match.group(1).split(",") if p.strip())


def _expand(name: str, raw: dict[str, str], seen: tuple[str, ...] = ()) -> str:
    if name in seen:
        raise ValueError(f"query {name!r} includes itself: {' -> '.join((*seen, name))}")

    def one(match: re.Match[str]) -> str:
        included = match.group(1)
        if included not in raw:
            raise ValueError(f"query {name!r} includes {included!r}, which no .sql file defines")
        body = _expand(included, raw, (*seen, name))
        if re.search(r"\$\d", body):
            wanted, host = _declared(body), _declared(raw[name])
            if wanted is None or host is None or host[: len(wanted)] != wanted:
                raise ValueError(
                    f"query {included!r} is included by {name!r} but takes parameters "
                    f"({', '.join(wanted or ('undeclared',))}) that {name!r} does not declare first"
                )
            body = _PARAMS.sub("", body, count=1).strip()
        return body

    return _INCLUDE.sub(one, raw[name])


@cache
def all_queries() -> dict[str, str]:
    """Every named query of ``queries/*.sql`` and ``scenarios/*/queries.sql``, includes expanded."""
    merged: dict[str, str] = {}
    package = resources.files("scenario_engine")
    files = [e for e in (package / "queries").iterdir() if e.name.endswith(".sql")]
    # Each scenario package keeps its own queries beside its code (scenarios/<type>/queries.sql).
    files += [d / "queries.sql" for d in (package / "scenarios").iterdir() if (d / "queries.sql").is_file()]
    for entry in sorted(files, key=str):
        for name, sql in parse_named_queries(entry.read_text("utf-8"), str(entry)).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined in more than one file")
            merged[name] = sql
    return {name: _expand(name, merged) for name in merged}


def query(name: str) -> str:
    try:
        return all_queries()[name]
    except KeyError:
        raise UnknownQueryError(f"no SQL query named {name!r} in scenario_engine") from None


# --- named parameters -------------------------------------------------------------------
#
# A query block may declare its parameters by name on a line ``-- params: mentors, as_of``:
# the n-th name is ``$n``. Callers then pass keywords (``fetch(conn, "q", mentors=…, as_of=…)``)
# and a missing, extra or misspelt one fails at the call, naming the query, instead of shifting
# every later argument by one. tests/unit/test_registry.py checks each declaration against the SQL.


@cache
def query_params(name: str) -> tuple[str, ...] | None:
    """The declared parameter names of a query, in ``$n`` order (None: not declared)."""
    return _declared(query(name))


def bind(name: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SQL of a named query and its arguments in ``$n`` order."""
    declared = query_params(name)
    if declared is None:
        raise TypeError(f"query {name!r} declares no '-- params:' line; it cannot take named arguments")
    missing = [p for p in declared if p not in params]
    extra = sorted(set(params) - set(declared))
    if missing or extra:
        raise TypeError(f"query {name!r}: missing parameters {missing}, unexpected {extra}")
    return query(name), [params[p] for p in declared]


async def fetch(conn: Conn, name: str, **params: Any) -> list[asyncpg.Record]:
    sql, args = bind(name, params)
    return await conn.fetch(sql, *args)


async def fetchrow(conn: Conn, name: str, **params: Any) -> asyncpg.Record | None:
    sql, args = bind(name, params)
    return await conn.fetchrow(sql, *args)


async def fetchval(conn: Conn, name: str, **params: Any) -> Any:
    sql, args = bind(name, params)
    return await conn.fetchval(sql, *args)


async def execute(conn: Conn, name: str, **params: Any) -> str:
    sql, args = bind(name, params)
    return await conn.execute(sql, *args)
