"""Database roles for the security tests: Supabase-like client roles, a platform owner, an
engine owner and the runtime login. Roles are cluster-wide, so each test run names its own."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

PASSWORD = "role-test-password"


def url_as(url: str, user: str, password: str = PASSWORD) -> str:
    """The same database, logged in as another role."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Roles:
    prefix: str

    def name(self, role: str) -> str:
        return f"{self.prefix}_{role}"


def unique_roles() -> Roles:
    return Roles(f"t{os.getpid()}_{uuid.uuid4().hex[:6]}")


async def create_role(admin: asyncpg.Connection[Any], name: str, options: str = "LOGIN") -> None:
    await admin.execute(f"CREATE ROLE \"{name}\" {options} PASSWORD '{PASSWORD}'")


async def drop_roles(admin: asyncpg.Connection[Any], names: list[str]) -> None:
    for name in names:
        exists = await admin.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name)
        if exists:
            # objects in the (already dropped) test databases are gone; shared grants may remain
            await admin.execute(f'DROP ROLE IF EXISTS "{name}"')


SUPABASE_DEFAULTS = """
GRANT USAGE ON SCHEMA public TO {anon}, {authenticated};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO {anon}, {authenticated};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO {anon}, {authenticated};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO {anon}, {authenticated};
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO {anon}, {authenticated};
ALTER DEFAULT PRIVILEGES GRANT ALL ON FUNCTIONS TO {anon}, {authenticated};
"""
