"""Shared by tests/unit/test_schema_snapshot.py and tests/db/test_schema_snapshot.py."""

from __future__ import annotations

from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parents[2] / "sql" / "schema.sql"
