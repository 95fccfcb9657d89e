"""Property-based fuzzing (hypothesis, bounded) of what reaches the engine from outside:
NOTIFY payloads and event rows sent to a running daemon, and platform rows the schema
accepts (once the reference time-zone CHECK is dropped, as on a platform without it) swept
by ``engine.run_scheduled_evaluation``.

Settings and rules files are fuzzed in tests/unit/test_config_fuzz.py (check-config rejects with
the key named, or run accepts); this file covers the data side. Hypothesis runs in a worker
thread and hands each example to the test's event loop (``anyio.from_thread.run``), so the
examples talk to the real database and the real daemon.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenario_engine.engine import Engine
from scenario_engine.events import WATCHED_TABLES
from scenario_engine.scenarios.rules import Rules
from tests.support.faults import alive, eventually, now
from tests.support.figures import Figures

pytestmark = pytest.mark.faults

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SURROGATES: Literal["Cs"] = "Cs"
TEXT = st.text(  # Postgres text holds neither NUL nor lone surrogates
    alphabet=st.characters(exclude_categories=(SURROGATES,), exclude_characters="\x00"), max_size=40
)


def in_thread(body: Callable[[], None]) -> Awaitable[None]:
    """Run a hypothesis test (synchronous) in a worker thread of this event loop."""
    return anyio.to_thread.run_sync(body)


# --- NOTIFY payloads and event rows, to a running daemon ---------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
payload_dicts = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.integers(min_value=-(2**63), max_value=2**63) | TEXT,
        "table": st.sampled_from(sorted(WATCHED_TABLES)) | TEXT,
        "op": st.sampled_from(["INSERT", "UPDATE", "DELETE", "TRUNCATE", "insert"]) | TEXT,
        "mentor_id": st.uuids().map(str) | TEXT | st.none(),
    },
)
valid_payloads = st.fixed_dictionaries(
    {
        "event_id": st.integers(min_value=1, max_value=2**62),
        "table": st.sampled_from(sorted(WATCHED_TABLES)),
        "op": st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
        "mentor_id": st.uuids().map(str) | st.none(),
    }
)
payloads = st.one_of(
    valid_payloads.map(json.dumps),  # well-formed, naming events that do not exist
    payload_dicts.map(json.dumps),
    json_values.map(json.dumps),
    TEXT,
    st.binary(max_size=200).map(lambda b: b.replace(b"\x00", b"").decode("latin-1")),
    st.just("x" * 7000),  # near the 8000-byte NOTIFY limit
)


@pytest.mark.acceptance
async def test_fuzzed_notify_payloads_and_event_rows_never_stop_the_daemon(
    daemons: Any, pool: asyncpg.Pool[Any], rules_path: Path, figures: Figures
) -> None:
    d = daemons(rules_file=rules_path, poll_interval_seconds=0.2, sweep_interval_seconds=3600)
    await d.wait_ready()
    mentors = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO public.peer_mentor (organization_id) SELECT gen_random_uuid() "
            "FROM generate_series(1, 5) RETURNING id"
        )
    ]
    sent = 0

    async def notify(payload: str) -> None:
        nonlocal sent
        await pool.execute("SELECT pg_notify('scenario_events', $1)", payload)
        sent += 1

    @FUZZ
    @given(payloads)
    def fuzz_notify(payload: str) -> None:
        anyio.from_thread.run(notify, payload)

    await in_thread(fuzz_notify)
    await eventually(
        lambda: _metric_is(d, "scenario_events_received_total", sent), 30, "every NOTIFY counted", d
    )
    assert alive(d) and (await d.http("/readyz"))[0] == 200
    assert "notify_payload" not in d.logs()  # a payload is a wake-up, never read nor logged
    figures.fault("fuzzed NOTIFY payload", sent)

    rows_in = 0
    event_rows = st.lists(
        st.tuples(
            st.sampled_from(sorted(WATCHED_TABLES)) | TEXT,
            st.sampled_from(["INSERT", "UPDATE", "DELETE"]) | TEXT,
            st.none() | st.sampled_from(mentors) | st.uuids(),
            st.none() | st.sampled_from(mentors) | st.uuids(),
            st.none() | TEXT,
        ),
        min_size=1,
        max_size=5,
    )

    async def insert_and_wait(rows: list[tuple[Any, ...]]) -> None:
        nonlocal rows_in
        ids = [
            r["id"]
            for r in await pool.fetch(
                "INSERT INTO scenario_engine.scenario_event "
                "(table_name, operation, mentor_id, old_mentor_id, row_id) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::text[]) "
                "RETURNING id",
                *[list(c) for c in zip(*rows, strict=True)],
            )
        ]
        rows_in += len(ids)
        await pool.execute("SELECT pg_notify('scenario_events', '{}')")
        await eventually(lambda: _settled(pool, ids), 30, "fuzzed event rows settled", d)
        got = await pool.fetch(
            "SELECT table_name, operation, mentor_id, processed_at, dead_at, last_error "
            "FROM scenario_engine.scenario_event WHERE id = ANY($1)",
            ids,
        )
        for r in got:
            if r["dead_at"] is not None:
                assert r["last_error"], r
            valid = (
                r["table_name"] in WATCHED_TABLES
                and r["operation"] in ("INSERT", "UPDATE", "DELETE")
                and r["mentor_id"] is not None
            )
            if valid:  # a well-formed event is processed, whoever it names
                assert r["processed_at"] is not None, r
            else:  # one the engine can never handle is dead-lettered with the reason
                assert r["dead_at"] is not None, r
        assert alive(d), d.logs()[-3000:]

    @FUZZ
    @given(event_rows)
    def fuzz_events(rows: list[tuple[Any, ...]]) -> None:
        anyio.from_thread.run(insert_and_wait, rows)

    await in_thread(fuzz_events)
    assert alive(d) and (await d.http("/readyz"))[0] == 200
    figures.fault("fuzzed scenario_event row", rows_in)
    figures.events = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_event")
    figures.events_dead_lettered = await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_event WHERE dead_at IS NOT NULL"
    )
    figures.notifications = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_notification")
    figures.pushes = await pool.fetchval("SELECT count(*) FROM scenario_engine.push_notification")


async def _metric_is(d: Any, name: str, value: float) -> bool:
    return bool(await d.metric(name) == value)


async def _settled(pool: asyncpg.Pool[Any], ids: list[int]) -> bool:
    return not await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_event "
        "WHERE id = ANY($1) AND processed_at IS NULL AND dead_at IS NULL",
        ids,
    )


# --- platform rows, swept ---------------------------------------------------------------

INSTANTS = st.sampled_from(
    [
        "-infinity",
        "infinity",
        "4713-01-01 00:00:00+00 BC",
        "0001-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "9999-12-31 23:59:59+00",
        "294276-12-31 23:59:59+00",
    ]
) | st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
).map(lambda t: t.isoformat())
RECENT = st.integers(min_value=-400, max_value=400).map(
    lambda days: (now() + dt.timedelta(days=days)).isoformat()
)
ZONES = (
    st.sampled_from(
        [
            *("utc", "XYZ-167", "UTC", "Europe/Oslo", "Pacific/Kiritimati", "Etc/GMT+12"),
            *("America/St_Johns", "localtime", "posixrules", "Foo/Bar", "", "EST5EDT,M3.2.0,M11.1.0"),
            "../../etc/passwd",
        ]
    )
    | TEXT
)
BIG = "x" * 1_000_000
NAMES = st.none() | TEXT | st.just(BIG)
SMALL_INTS = st.integers(min_value=0, max_value=2**31 - 1)
mentor_rows = st.fixed_dictionaries(
    {
        "timezone": ZONES,
        "joined_at": INSTANTS | RECENT,
        "display_name": NAMES,
        "activities": st.lists(
            st.tuples(
                st.sampled_from(["session", "contact", "training", "other"]),
                INSTANTS | RECENT,
                SMALL_INTS,
                SMALL_INTS,
                st.none() | TEXT | st.just(BIG),
            ),
            max_size=3,
        ),
        "certifications": st.lists(
            st.tuples(TEXT.filter(lambda t: t.strip() != ""), INSTANTS | RECENT, INSTANTS | RECENT),
            max_size=2,
        ),
    }
)


async def test_fuzzed_platform_rows_are_isolated_and_the_rest_is_notified(
    pool: asyncpg.Pool[Any], fault_rules: Rules, figures: Figures
) -> None:
    await pool.execute("ALTER TABLE public.peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    engine = Engine(pool, fault_rules)
    counts = {"examples": 0, "quarantined": 0, "healthy_notified": 0, "notifications": 0}

    async def example(row: dict[str, Any]) -> None:
        await pool.execute("DELETE FROM public.peer_mentor")
        healthy = []
        for _ in range(3):
            m = await pool.fetchval(
                "INSERT INTO public.peer_mentor (organization_id, joined_at) "
                "VALUES (gen_random_uuid(), now() - interval '30 days') RETURNING id"
            )
            await pool.execute(
                "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
                "VALUES ($1, 'cpr', now() - interval '300 days', now() + interval '5 days')",
                m,
            )
            healthy.append(m)
        bad: uuid.UUID = await pool.fetchval(
            "INSERT INTO public.peer_mentor (organization_id, timezone, joined_at, display_name) "
            "VALUES (gen_random_uuid(), $1, $2::text::timestamptz, $3) RETURNING id",
            row["timezone"],
            row["joined_at"],
            row["display_name"],
        )
        for kind, at, minutes, contacts, note in row["activities"]:
            await pool.execute(
                "INSERT INTO public.activity "
                "(mentor_id, kind, occurred_at, duration_minutes, contacts, note) "
                "VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6)",
                bad,
                kind,
                at,
                minutes,
                contacts,
                note,
            )
        for type_, issued, expires in row["certifications"]:
            with contextlib.suppress(asyncpg.CheckViolationError):  # not a row the schema allows
                await pool.execute(
                    "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
                    "VALUES ($1, $2, $3::text::timestamptz, $4::text::timestamptz)",
                    bad,
                    type_,
                    issued,
                    expires,
                )
        result = await engine.run_scheduled_evaluation()  # never raises
        assert result.mentors == 4
        notified = {
            (r["mentor_id"], r["scenario_type"])
            for r in await pool.fetch(
                "SELECT mentor_id, scenario_type FROM scenario_engine.scenario_notification "
                "WHERE mentor_id = ANY($1)",
                healthy,
            )
        }
        assert notified == {(m, t) for m in healthy for t in ("inactivity", "certification_expiry")}
        if bad in result.quarantined:
            reason = await pool.fetchval(
                "SELECT reason FROM scenario_engine.scenario_quarantine "
                "WHERE mentor_id = $1 AND cleared_at IS NULL",
                bad,
            )
            assert reason, "a quarantined mentor is recorded with its reason"
            counts["quarantined"] += 1
        assert set(result.quarantined) <= {bad}
        counts["examples"] += 1
        counts["healthy_notified"] += len(healthy)
        counts["notifications"] += len(notified)

    @settings(FUZZ, max_examples=150)
    @given(mentor_rows)
    def fuzz_rows(row: dict[str, Any]) -> None:
        anyio.from_thread.run(example, row)

    await in_thread(fuzz_rows)
    print(f"\nplatform-row fuzzing: {counts}")
    figures.fault("fuzzed platform mentor", counts["examples"])
    figures.quarantined = counts["quarantined"]
    figures.notes = dict(counts)
    figures.notifications = counts["notifications"]  # (each example's mentors are deleted after it)
    assert counts["quarantined"] > 0  # the strategies do reach rows the engine cannot evaluate
