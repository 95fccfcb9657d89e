"""Migrations: idempotent, serialised, refuse edited history, atomic, never drop data."""

from __future__ import annotations

import re

from scenario_engine.db.migrations import discover

# A function's body runs when it is called, not when the migration is applied (the erasure
# trigger of 0012 deletes a deleted mentor's engine rows): only what the file executes counts.
# DO blocks are executed, so they are searched.
_COMMENT = re.compile(r"--[^\n]*")
_TRIGGER_EVENTS = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\b.*?\bON\b", re.I | re.S
)
_FUNCTION_BODY = re.compile(
    r"(CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\b.*?\bAS\s+)(\$\w*\$)(.*?)\2", re.I | re.S
)


def test_migration_files_never_drop_data() -> None:
    forbidden = re.compile(r"\b(DROP\s+(TABLE|COLUMN|SCHEMA)|TRUNCATE|DELETE\s+FROM)\b", re.I)
    for m in discover():
        executed = _FUNCTION_BODY.sub(lambda f: f.group(1) + "''", m.sql)
        # Comments say what they like; a trigger's event list may name TRUNCATE (it fires on one).
        executed = _TRIGGER_EVENTS.sub("", _COMMENT.sub("", executed))
        assert not forbidden.search(executed), f"{m.path} contains a destructive statement"
    assert forbidden.search(_FUNCTION_BODY.sub("", "DO $$ BEGIN DELETE FROM t; END $$;"))  # still searched
    assert forbidden.search(
        _TRIGGER_EVENTS.sub("", "CREATE TRIGGER t AFTER TRUNCATE ON x EXECUTE f(); TRUNCATE x;")
    )


def test_trigger_objects_carry_a_version_suffix() -> None:
    names = [
        name
        for m in discover()
        if m.path.startswith("triggers/")
        for name in re.findall(r"(?:TRIGGER|FUNCTION)\s+(\w+)", m.sql)
    ]
    assert names
    assert all(re.search(r"_v\d+$", n) for n in names), names
