"""Poison rows: evaluate a batch of mentors even when a few of them cannot be evaluated.

Rows the schema accepts but the engine cannot evaluate (an unknown time zone, an instant
outside the evaluable range, anything that makes a query or the Python code around it raise)
used to fail the whole batch — and with it every sweep, every dry run and the daemon, again
after each restart. Here a batch is evaluated inside a transaction (a savepoint when the caller
already has one open); when it raises:

* a ``MentorDataError`` names the mentors it is about: they are set aside and the rest is
  evaluated again (one retry, however many of them there are);
* a data error — SQLSTATE class 22 (an invalid value, out of range, division by zero …), a
  value asyncpg cannot encode, or a Python exception while building candidates or rendering
  from a row's values: the batch is split in halves, each evaluated in its own savepoint,
  down to the single mentors that fail (bisection, about 2 log2(n) extra evaluations of
  shrinking halves per bad mentor), so a mentor is quarantined only once the error is
  confirmed on its rows alone;
* anything else from the database propagates at once, without bisection: a condition of the
  database (db/errors.py: lost, read-only, out of disk, a lock or statement timeout, a
  serialization failure, a missing column …) or another rejected statement is not the data's
  fault. The batch fails whole (nothing quarantined, nothing written) and the callers retry it
  with backoff — a lock held on one mentor's row must not quarantine that mentor.

Every mentor set aside is recorded in ``scenario_quarantine`` (one row per mentor: reason,
first and last time seen, occurrences), counted by the ``on_quarantine`` callback its caller passes
in (the daemon's Prometheus counter) and logged once — when it is first quarantined or its reason
changes. A quarantined mentor is simply evaluated again next time; once it evaluates cleanly
its row is marked ``cleared_at``. An error that fails more than ``MAX_BISECTED`` single
mentors of one batch is not a poison row but a bug or a broken dependency: it is raised as
before rather than quarantining a population.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.errors import is_data_error, is_database_error
from scenario_engine.db.queries import execute, fetch
from scenario_engine.logs import get_logger
from scenario_engine.notifications import Outcome
from scenario_engine.scenarios.base import MentorDataError

log = get_logger("scenario_engine.isolation")

MAX_BISECTED = 32
REASON_LIMIT = 500  # characters of an error message kept as the reason


@dataclass(frozen=True)
class Quarantined:
    mentor_id: uuid.UUID
    reason: str


class Outcomes(list[Outcome]):
    """The outcomes of the mentors that were evaluated, and who was quarantined instead."""

    quarantined: tuple[Quarantined, ...] = ()


# Told how many mentors each evaluation quarantined (the daemon's Prometheus counter): passed
# in by whoever evaluates (Engine), never registered in a module global.
QuarantineCounter = Callable[[int], None]


Evaluate = Callable[[list[uuid.UUID]], Awaitable[list[Outcome]]]


def may_quarantine(exc: BaseException) -> bool:
    """Whether ``exc`` can be a row the engine cannot evaluate (and so, once confirmed on one
    mentor alone, a reason to quarantine it): the engine's MentorDataError, a data error
    (SQLSTATE class 22, or a value asyncpg cannot encode), or a Python exception raised on a
    row's values. Never a condition of the database or any other error from it."""
    if isinstance(exc, MentorDataError) or is_data_error(exc):
        return True
    return not is_database_error(exc)


def reason_for(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


async def evaluate_isolated(
    conn: Conn,
    mentors: Sequence[uuid.UUID],
    evaluate: Evaluate,
    complete: Callable[[list[uuid.UUID]], list[uuid.UUID]] | None = None,
    on_quarantine: QuarantineCounter | None = None,
    distinct: bool = False,
) -> Outcomes:
    """``evaluate(mentors)`` with the mentors it cannot handle isolated and quarantined.

    ``evaluate`` must write only through ``conn`` (so that a failed attempt rolls back whole)
    and may be called again with any subset of ``mentors``. ``complete(group)`` names the
    mentors of a group that every rule looked at (default: all): only those are cleared from
    quarantine, so that an event that concerns one scenario does not clear a mentor that
    another scenario cannot evaluate. ``on_quarantine(n)`` is told how many were quarantined.
    ``distinct``: the caller's ``mentors`` have no duplicates (a sweep batch of 20k ids: hashing
    them twice was ≈ 10 % of a steady sweep's Python, issue 18)."""
    found: dict[uuid.UUID, str] = {}
    outcomes = Outcomes()
    bisected = 0
    stack: list[list[uuid.UUID]] = [list(mentors) if distinct else list(dict.fromkeys(mentors))]
    while stack:
        group = stack.pop()
        if found:
            group = [m for m in group if m not in found]
        if not group:
            continue
        error: Exception
        try:
            async with conn.transaction():
                got = await evaluate(group)
                await clear_quarantine(conn, group if complete is None else complete(group))
        except MentorDataError as exc:
            members = set(group)
            named = {m: why for m, why in exc.problems.items() if m in members}
            if named:
                found.update(named)
                stack.append(group)
                continue
            error = exc
        except Exception as exc:
            if not may_quarantine(exc):
                raise
            error = exc
        else:
            outcomes += got
            continue
        if len(group) == 1:
            bisected += 1
            if bisected > MAX_BISECTED:
                raise error
            found[group[0]] = reason_for(error)
            continue
        half = len(group) // 2
        stack += [group[half:], group[:half]]  # the first half is popped (and written) first
    if found:
        outcomes.quarantined = tuple(Quarantined(m, why) for m, why in found.items())
        await record_quarantine(conn, outcomes.quarantined, on_quarantine)
    return outcomes


async def clear_quarantine(conn: Conn, mentors: list[uuid.UUID]) -> None:
    """After a clean evaluation: its mentors are no longer quarantined. The open entries of the
    group's id range are looked up first (normally none), and only those of the group cleared."""
    if not mentors:
        return
    rows = await fetch(conn, "open_quarantine_between", first=min(mentors), last=max(mentors))
    if not rows:
        return
    members = set(mentors)
    found = sorted(r["mentor_id"] for r in rows if r["mentor_id"] in members)
    if found:
        await execute(conn, "clear_quarantine", mentors=found)


async def record_quarantine(
    conn: Conn, entries: Iterable[Quarantined], on_quarantine: QuarantineCounter | None = None
) -> None:
    ordered = sorted(entries, key=lambda q: q.mentor_id)  # one lock order for concurrent writers
    async with conn.transaction():
        await mark_engine_write(conn)
        rows = await fetch(
            conn,
            "quarantine_mentors",
            mentors=[q.mentor_id for q in ordered],
            reasons=[q.reason for q in ordered],
        )
    news = {r["mentor_id"] for r in rows if r["news"]}
    for q in ordered:
        if q.mentor_id in news:
            log.warning("mentor_quarantined", mentor_id=str(q.mentor_id), reason=q.reason)
        else:
            log.debug("mentor_still_quarantined", mentor_id=str(q.mentor_id), reason=q.reason)
    if on_quarantine is not None:
        on_quarantine(len(ordered))
