"""Poison rows (issue 9, defect 4): rows the schema accepts but the engine cannot evaluate.

Each kind is written with plain SQL beside a few healthy mentors who are due. Whatever the
path — the real `sweep` CLI, its dry run, `run_scheduled_evaluation`, the real daemon — the
healthy mentors are notified, the poison mentor is isolated and recorded in
scenario_quarantine (or, where the value has a sensible meaning, simply evaluated), and
nothing exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from scenario_engine.engine import Engine
from scenario_engine.events import ScenarioEvent
from scenario_engine.explain import explain_mentor
from scenario_engine.isolation import evaluate_isolated
from scenario_engine.scenarios.rules import Rules
from scenario_engine.scenarios.zones import UnknownTimezone, load_zone
from tests.support.cli import run_cli
from tests.support.factories import add_certification, add_mentor

DAY = dt.timedelta(days=1)
RULES = """
daily_cap = 10
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2, 3, 5]
[[certification_expiry]]
name = "cert_expiry"
tiers_days = [30, 7, 1]
"""


@dataclass(frozen=True)
class Poison:
    """SQL that makes one mentor ($1 = its id) poisonous, and what the engine must do with it."""

    name: str
    sql: str
    quarantined: bool  # False: the value has a meaning and the mentor is evaluated normally
    reason: str = ""  # a fragment of the recorded reason


POISONS = [
    Poison("timezone_utc", "UPDATE peer_mentor SET timezone = 'utc' WHERE id = $1", True, "'utc'"),
    Poison("timezone_posix", "UPDATE peer_mentor SET timezone = 'XYZ-167' WHERE id = $1", True, "'XYZ-167'"),
    Poison(
        "joined_minus_infinity",
        "UPDATE peer_mentor SET joined_at = '-infinity' WHERE id = $1",
        True,
        "-infinity",
    ),
    Poison(
        "joined_4713_bc",
        "UPDATE peer_mentor SET joined_at = '4713-01-01 00:00:00+00 BC' WHERE id = $1",
        True,
        "outside the evaluable range",
    ),
    Poison(
        "joined_year_1",
        "UPDATE peer_mentor SET joined_at = '0001-01-01 12:00:00+00' WHERE id = $1",
        True,
        "outside the evaluable range",
    ),
    Poison(
        "activity_minus_infinity",
        "INSERT INTO activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', '-infinity')",
        True,
        "-infinity",
    ),
    # Values with a meaning: evaluated, not quarantined.
    Poison(
        "activity_infinity",
        "INSERT INTO activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', 'infinity')",
        False,
    ),
    Poison(
        "joined_year_9999",
        "UPDATE peer_mentor SET joined_at = '9999-12-31 12:00:00+00' WHERE id = $1",
        False,
    ),
    Poison(
        "certification_never_expires",
        "INSERT INTO certification (mentor_id, type, issued_at, expires_at) "
        "VALUES ($1, 'cpr', now() - interval '1 year', 'infinity')",
        False,
    ),
    Poison(
        "certification_issued_minus_infinity",
        "UPDATE certification SET issued_at = '-infinity' WHERE mentor_id = $1",
        False,
    ),
    Poison(
        "certification_expires_year_9999",
        "INSERT INTO certification (mentor_id, type, issued_at, expires_at) "
        "VALUES ($1, 'cpr', now(), '9999-12-31 23:00:00+00')",
        False,
    ),
]
IDS = [p.name for p in POISONS]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


async def _population(pool: asyncpg.Pool[Any], poison: Poison) -> tuple[list[uuid.UUID], uuid.UUID]:
    """Three healthy mentors and one poisoned one, each joined 30 days ago (inactive: due) with a
    certification expiring in 5 days (due for its 7-day reminder)."""
    # A platform with its own schema has no such CHECK; rows that passed the old one exist.
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    mentors = []
    for i in range(4):
        m = await add_mentor(pool, joined_at=now() - 30 * DAY, name=f"Mentor {i}")
        await add_certification(pool, m, expires_at=now() + 5 * DAY)
        mentors.append(m)
    bad = mentors[1]
    await pool.execute(poison.sql, bad)
    return [m for m in mentors if m != bad], bad


async def _notified(pool: asyncpg.Pool[Any], mentors: list[uuid.UUID]) -> set[tuple[uuid.UUID, str]]:
    rows = await pool.fetch(
        "SELECT mentor_id, scenario_type FROM scenario_notification WHERE mentor_id = ANY($1)", mentors
    )
    return {(r["mentor_id"], r["scenario_type"]) for r in rows}


def _expected(healthy: list[uuid.UUID]) -> set[tuple[uuid.UUID, str]]:
    return {(m, t) for m in healthy for t in ("inactivity", "certification_expiry")}


async def _check_quarantine(pool: asyncpg.Pool[Any], poison: Poison, bad: uuid.UUID) -> None:
    row = await pool.fetchrow("SELECT * FROM scenario_quarantine WHERE mentor_id = $1", bad)
    if poison.quarantined:
        assert row is not None and row["cleared_at"] is None
        assert poison.reason in row["reason"], row["reason"]
    else:
        assert row is None
        assert await pool.fetchval("SELECT count(*) FROM scenario_notification WHERE mentor_id = $1", bad)


@pytest.mark.parametrize("poison", POISONS, ids=IDS)
async def test_sweep_cli_and_its_dry_run_isolate_the_poison_mentor(
    db_url: str, pool: asyncpg.Pool[Any], rules_file: Path, poison: Poison
) -> None:
    healthy, bad = await _population(pool, poison)
    env = {"SCENARIO_DATABASE_URL": db_url}

    dry = await run_cli("sweep", "--dry-run", "--config", str(rules_file), "--output", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout[dry.stdout.index("{\n") :])  # (log lines may precede it)
    assert (str(bad) in report["quarantined"]) is poison.quarantined
    would = {(d["mentor_id"], d["scenario_type"]) for d in report["decisions"] if d["outcome"] == "sent"}
    assert {(str(m), t) for m, t in _expected(healthy)} <= would
    assert await pool.fetchval("SELECT count(*) FROM scenario_notification") == 0  # dry: nothing written
    assert await pool.fetchval("SELECT count(*) FROM scenario_quarantine") == 0

    real = await run_cli("sweep", "--config", str(rules_file), env=env)
    assert real.returncode == 0, real.stderr
    assert ("1 mentors quarantined" in real.stdout) is poison.quarantined, real.stdout
    assert await _notified(pool, healthy) == _expected(healthy)
    await _check_quarantine(pool, poison, bad)


@pytest.mark.parametrize("poison", POISONS, ids=IDS)
async def test_scheduled_evaluation_and_explain_isolate_the_poison_mentor(
    pool: asyncpg.Pool[Any], engine: Engine, poison: Poison
) -> None:
    healthy, bad = await _population(pool, poison)
    result = await engine.run_scheduled_evaluation()
    assert result.mentors == 4
    assert (bad in result.quarantined) is poison.quarantined
    assert await _notified(pool, healthy) == _expected(healthy)
    await _check_quarantine(pool, poison, bad)

    expl = await explain_mentor(engine, bad)
    if poison.quarantined:
        assert expl.quarantine is not None and expl.quarantine["quarantined_now"]
        assert poison.reason in str(expl.quarantine["reason_now"])
        # The single-mentor path agrees: it quarantines too, and writes nothing for the mentor.
        assert await engine.evaluate_mentor(bad) == []
        assert (
            await pool.fetchval("SELECT occurrences FROM scenario_quarantine WHERE mentor_id = $1", bad) == 2
        )
    else:
        assert expl.quarantine is None


async def test_fixing_the_row_heals_the_mentor(pool: asyncpg.Pool[Any], engine: Engine) -> None:
    healthy, bad = await _population(pool, POISONS[0])
    first = await engine.run_scheduled_evaluation()
    assert bad in first.quarantined
    await pool.execute("UPDATE peer_mentor SET timezone = 'UTC' WHERE id = $1", bad)
    second = await engine.run_scheduled_evaluation()
    assert second.quarantined == {}
    row = await pool.fetchrow("SELECT * FROM scenario_quarantine WHERE mentor_id = $1", bad)
    assert row is not None
    assert row["cleared_at"] is not None and row["occurrences"] == 1
    assert (bad, "certification_expiry") in await _notified(pool, [bad])
    assert await _notified(pool, healthy) == _expected(healthy)


async def test_the_quarantine_counter_is_the_one_its_engine_was_given(
    pool: asyncpg.Pool[Any], rules: Rules
) -> None:
    """Observers are passed in, not registered in a module global: an engine tells only the
    counter it was built with (the daemon's Prometheus counter), on the sweep's path and on the
    single-mentor path, and an engine built without one tells nobody."""
    told: list[int] = []
    untouched: list[int] = []
    counted = Engine(pool, rules, on_quarantine=told.append)
    Engine(pool, rules, on_quarantine=untouched.append)  # alive, but never asked to evaluate
    silent = Engine(pool, rules)
    _healthy, bad = await _population(pool, POISONS[0])

    assert bad in (await silent.run_scheduled_evaluation()).quarantined
    assert told == []
    assert bad in (await counted.run_scheduled_evaluation()).quarantined
    assert told == [1]
    assert await counted.evaluate_mentor(bad) == []
    assert told == [1, 1]
    assert untouched == []


async def test_an_event_batch_with_a_poison_mentor_is_processed(
    pool: asyncpg.Pool[Any], engine: Engine
) -> None:
    """The drain's path: handle_database_events isolates the mentor, the others are written."""
    healthy, bad = await _population(pool, POISONS[1])
    async with pool.acquire() as conn, conn.transaction():
        events = await conn.fetch("SELECT * FROM scenario_event ORDER BY id")
        outcomes = await engine.handle_database_events(conn, [ScenarioEvent.from_row(e) for e in events])
    assert {o.candidate.mentor_id for o in outcomes} == set(healthy)
    assert [q.mentor_id for q in getattr(outcomes, "quarantined", ())] == [bad]


async def test_bisection_isolates_an_unknown_error_and_writes_the_rest(pool: asyncpg.Pool[Any]) -> None:
    """An error that names no mentor (here a database error) is bisected down to the mentor."""
    mentors = sorted(uuid.uuid4() for _ in range(37))
    bad = mentors[23]
    await pool.execute("CREATE TABLE written (mentor_id uuid PRIMARY KEY)")
    async with pool.acquire() as conn:

        async def evaluate(group: list[uuid.UUID]) -> list[Any]:
            await conn.execute("INSERT INTO written SELECT unnest($1::uuid[])", group)
            if bad in group:
                await conn.execute("SELECT 1 / 0")
            return []

        result = await evaluate_isolated(conn, mentors, evaluate)
    assert [q.mentor_id for q in result.quarantined] == [bad]
    assert "DivisionByZeroError" in result.quarantined[0].reason
    written = {r["mentor_id"] for r in await pool.fetch("SELECT mentor_id FROM written")}
    assert written == set(mentors) - {bad}


async def test_a_lost_connection_is_not_quarantined(pool: asyncpg.Pool[Any]) -> None:
    mentors = [uuid.uuid4() for _ in range(4)]
    async with pool.acquire() as conn:

        async def evaluate(group: list[uuid.UUID]) -> list[Any]:
            raise ConnectionResetError("gone")

        with pytest.raises(ConnectionResetError):
            await evaluate_isolated(conn, mentors, evaluate)
    assert await pool.fetchval("SELECT count(*) FROM scenario_quarantine") == 0


async def test_every_zone_the_check_accepts_loads_in_python(pool: asyncpg.Pool[Any]) -> None:
    names = [r["name"] for r in await pool.fetch("SELECT name FROM pg_timezone_names")]
    accepted = [
        r["name"]
        for r in await pool.fetch(
            "SELECT name FROM unnest($1::text[]) AS t(name) WHERE scenario_is_valid_timezone(name)",
            [*names, "utc", "XYZ-167", "europe/oslo", "Nowhere/Zone", "localtime", "posixrules"],
        )
    ]
    assert sorted(accepted) == sorted(names)  # exactly the listed names, in their exact case
    for name in accepted:
        assert isinstance(load_zone(name), zoneinfo.ZoneInfo), name
    for name in ("utc", "XYZ-167", "../etc/passwd", ""):
        with pytest.raises(UnknownTimezone):
            load_zone(name)
    for name in ("utc", "XYZ-167"):
        with pytest.raises(asyncpg.CheckViolationError):
            await add_mentor(pool, timezone=name)


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.1)
    raise AssertionError("condition not reached")


@pytest.mark.acceptance
@pytest.mark.parametrize(
    "poison", [p for p in POISONS if p.quarantined], ids=[p.name for p in POISONS if p.quarantined]
)
async def test_daemon_stays_up_and_quarantines(
    daemons: Any, pool: asyncpg.Pool[Any], rules_file: Path, poison: Poison
) -> None:
    # Written before the start: the drain works through their events while the first sweep runs.
    healthy, bad = await _population(pool, poison)
    d = daemons(rules_file=rules_file, sweep_interval_seconds=3600)
    await d.wait_ready()

    async def all_notified() -> bool:
        return await _notified(pool, healthy) == _expected(healthy)

    await _eventually(all_notified)
    await _eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_quarantine WHERE mentor_id = $1", bad)
    )
    assert d.proc is not None and d.proc.poll() is None
    assert (await d.http("/readyz"))[0] == 200
    assert await d.metric("scenario_mentors_quarantined_total") >= 1
    logged = [e for e in d.log_events() if e.get("event") == "mentor_quarantined"]
    assert logged and logged[0]["mentor_id"] == str(bad)
    await _check_quarantine(pool, poison, bad)
