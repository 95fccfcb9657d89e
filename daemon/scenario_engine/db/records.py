"""Typed records: where rows of the platform and the engine become Python values.

Business code (scenarios, policy, the dispatcher) reads typed values, never an untyped
``asyncpg.Record``, in one of two ways:

* frozen dataclasses (``from_row``): a column rename fails here, in one place, and instants
  are normalised once (naive ±infinity → aware bounds, instants.py);
* ``TypedRow``: rows read by the thousand on a sweep's hot path (each scenario's candidate rows,
  ``scenarios/<type>/scenario.py``) are built by asyncpg itself as a subclass of its Record
  whose columns are typed attributes (``Column``) — typed for mypy, with no copy per row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import asyncpg

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetch, fetchrow
from scenario_engine.instants import instant, iso, optional_instant

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
T = TypeVar("T")


class Column(Generic[T]):
    """A typed column of a ``TypedRow``: ``row.name`` is ``row["name"]``, typed ``T``."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, row: asyncpg.Record, owner: type | None = None) -> T:
        value: T = row[self.name]
        return value


class TypedRow(asyncpg.Record):
    """A row whose class names its columns (``Column`` attributes); fetched with
    ``record_class=`` so asyncpg builds it directly. A column the query does not return fails
    with ``KeyError`` naming it on first read."""


def from_row(cls: type[D], row: asyncpg.Record | Mapping[str, Any], **converted: Any) -> D:
    """A record from a row whose columns carry its field names; ``converted`` gives the few
    fields that need a conversion (instants). A missing column fails here, naming it."""
    names = _init_fields(cls, frozenset(converted))
    return cls(**{name: row[name] for name in names}, **converted)


@functools.cache
def _init_fields(cls: type[DataclassInstance], converted: frozenset[str]) -> tuple[str, ...]:
    """The fields ``from_row`` reads from the row: asked once per record type (a sweep makes a
    policy state per candidate; dataclasses.fields per call was a tenth of its Python time)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in converted)


@dataclass(frozen=True)
class MentorRecord:
    id: uuid.UUID
    organization_id: uuid.UUID
    display_name: str | None
    status: str
    timezone: str
    joined_at: dt.datetime


@dataclass(frozen=True)
class ActivityRecord:
    kind: str
    occurred_at: dt.datetime
    duration_minutes: int
    contacts: int


@dataclass(frozen=True)
class CertificationRecord:
    id: int
    type: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class NotificationRecord:
    """A row of the notification ledger (scenario_notification)."""

    id: int
    scenario_type: str
    rule_name: str
    subject: str
    seq: int
    as_of: dt.datetime


@dataclass(frozen=True)
class ClaimedPush:
    """A push the dispatcher claimed (queries/push.sql ``claim_pushes``): its message, its
    fence (``attempts``) and how it is to go (channel, recipient, fallback, digest)."""

    id: int
    mentor_id: uuid.UUID
    scenario_type: str
    title: str
    body: str
    data: dict[str, Any] | None
    idempotency_key: str
    attempts: int
    created_at: dt.datetime
    delivery_uncertain: bool
    interrupted: bool  # claimed after an earlier attempt was cut off mid-call
    channel: str | None
    recipient: str | None
    fallback: list[str] | None
    digest: bool


@dataclass(frozen=True)
class PushCheck:
    """The send-time re-check of a claimed push (queries/push.sql ``recheck_pushes``): why it is
    cancelled now, if it is, and what of the mentor the send needs (zone, address, locale)."""

    id: int
    timezone: str | None
    organization_id: uuid.UUID | None
    email: str | None
    locale: str | None
    cancel_reason: str | None


async def load_mentor(conn: Conn, mentor_id: uuid.UUID) -> MentorRecord | None:
    row = await fetchrow(conn, "mentor_row", mentor_id=mentor_id)
    if row is None:
        return None
    return from_row(MentorRecord, row, joined_at=instant(row["joined_at"]))


async def load_activities(conn: Conn, mentor_id: uuid.UUID, as_of: dt.datetime) -> list[ActivityRecord]:
    """The mentor's activities at or before ``as_of``."""
    rows = await fetch(conn, "mentor_activities", mentor_id=mentor_id, as_of=as_of)
    return [from_row(ActivityRecord, r, occurred_at=instant(r["occurred_at"])) for r in rows]


async def load_certifications(conn: Conn, mentor_id: uuid.UUID) -> list[CertificationRecord]:
    rows = await fetch(conn, "mentor_certifications", mentor_id=mentor_id)
    return [
        from_row(
            CertificationRecord,
            r,
            issued_at=instant(r["issued_at"]),
            expires_at=instant(r["expires_at"]),
            revoked_at=optional_instant(r["revoked_at"]),
        )
        for r in rows
    ]


async def load_achievements(conn: Conn, mentor_id: uuid.UUID) -> frozenset[tuple[str, float, str]]:
    """(milestone, threshold, period) of every achievement of the mentor."""
    rows = await fetch(conn, "mentor_achievements", mentor_id=mentor_id)
    return frozenset((r["milestone"], float(r["threshold"]), r["period"]) for r in rows)


async def load_notifications(conn: Conn, mentor_id: uuid.UUID, rule_name: str) -> list[NotificationRecord]:
    """The mentor's ledger rows of one rule, oldest first."""
    rows = await fetch(conn, "mentor_notifications", mentor_id=mentor_id)
    return [from_row(NotificationRecord, r) for r in rows if r["rule_name"] == rule_name]


def plain(row: Any) -> dict[str, Any]:
    """A row as printable values (explain, JSON output): instants in ISO form, ids as strings."""
    return {
        k: (iso(v) if isinstance(v, dt.datetime) else str(v) if isinstance(v, uuid.UUID) else v)
        for k, v in row.items()
    }
