"""Per-organisation programmes and messages in the mentor's language (issue 20).

Two organisations with different thresholds, cooldowns, tiers, caps, quiet hours and locales,
worked by hand, through the sweep, the event path and the single-mentor interfaces; the
rules file's validation (full key paths); today's files decide exactly as before.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import uuid
from pathlib import Path
from typing import Any

from scenario_engine.domain.rules import Rules
from scenario_engine.engine import Engine
from scenario_engine.events import ScenarioEvent
from tests.support.cli import run_cli
from tests.support.factories import ORG, add_activity, add_certification, add_mentor
from tests.support.programmes import OSLO, TWO_ORGS, two_orgs

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


# --- through the engine: two organisations worked by hand ----------------------------------


async def _mentor(pool: Any, org: uuid.UUID, name: str, tz: str = "Europe/Oslo") -> uuid.UUID:
    mentor = await add_mentor(pool, joined_at=T0 - 400 * DAY, name=name, timezone=tz)
    await pool.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", mentor, org)
    return mentor


async def _population(pool: Any) -> dict[str, uuid.UUID]:
    """Each mentor's last activity is 15 days before T0 (Oslo: past its 14-day threshold;
    the default: not past 21). Certifications: `a` first aid in 1 day (default tier 1);
    `b` first aid in 50 days (Oslo tier 60; the default would need 30); `c` in Oslo, 50 days
    and no inactivity (active yesterday)."""
    a = await _mentor(pool, ORG, "Ann", tz="UTC")
    b = await _mentor(pool, OSLO, "Bjørn")
    c = await _mentor(pool, OSLO, "Cecilie")
    for m in (a, b):
        await add_activity(pool, m, T0 - 15 * DAY)
    await add_activity(pool, c, T0 - DAY)
    await add_certification(pool, a, expires_at=T0 + DAY - dt.timedelta(hours=1))
    await add_certification(pool, b, expires_at=T0 + 50 * DAY)
    await add_certification(pool, c, expires_at=T0 + 50 * DAY)
    return {"a": a, "b": b, "c": c}


def _summary(outcomes: Any) -> set[tuple[str, str, str]]:
    return {(str(o.candidate.mentor_id), o.candidate.rule_name, o.decision.outcome) for o in outcomes}


def _expected(m: dict[str, uuid.UUID]) -> set[tuple[str, str, str]]:
    return {
        (str(m["a"]), "certification_expiry", "sent"),  # default tiers: 1 day
        (str(m["b"]), "inactive_21d", "sent"),  # Oslo threshold 14 days
        (str(m["b"]), "certification_expiry", "daily_cap"),  # Oslo tier 60, but Oslo's cap is 1
        (str(m["c"]), "certification_expiry", "sent"),  # Oslo tier 60
    }


async def _pushes(pool: Any) -> dict[tuple[uuid.UUID, str], tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT p.mentor_id, p.data ->> 'rule' AS rule, p.title, p.body "
        "FROM scenario_engine.push_notification p"
    )
    return {(r["mentor_id"], r["rule"]): (r["title"], r["body"]) for r in rows}


async def test_two_organisations_through_the_sweep(pool: Any) -> None:
    m = await _population(pool)
    engine = Engine(pool, two_orgs())
    result = await engine.run_scheduled_evaluation(T0, collect=True)
    assert _summary(result.outcomes) == _expected(m)
    texts = await _pushes(pool)
    assert texts[(m["a"], "certification_expiry")] == (
        "Certification expiring soon",
        "Your first aid certification expires in 1 day (March 2, 2026).",
    )
    assert texts[(m["b"], "inactive_21d")] == (
        "Vi savner deg",
        "Det er 15 dager siden sist du registrerte aktivitet. Mentorene dine vil gjerne høre fra deg.",
    )
    assert texts[(m["c"], "certification_expiry")] == (
        "Sertifisering går snart ut",
        "Sertifiseringen din i førstehjelp går ut om 50 dager (20. april 2026).",
    )
    logged = await pool.fetchval(
        "SELECT context ->> 'locale' FROM scenario_engine.scenario_notification WHERE mentor_id = $1", m["c"]
    )
    assert logged == "nb"
    # A second sweep sends nothing more; Oslo's 10-day cooldown holds b's next reminder.
    again = await engine.run_scheduled_evaluation(T0 + 8 * DAY, collect=True)
    assert (str(m["b"]), "inactive_21d", "sent") not in _summary(again.outcomes)


async def test_two_organisations_through_the_single_mentor_path_and_events(pool: Any) -> None:
    m = await _population(pool)
    engine = Engine(pool, two_orgs())
    single: set[tuple[str, str, str]] = set()
    for mentor in m.values():
        single |= _summary(await engine.evaluate_mentor(mentor, as_of=T0, dry_run=True))
    assert single == _expected(m)
    events = [
        ScenarioEvent(id=i, table_name="activity", operation="INSERT", mentor_id=mentor)
        for i, mentor in enumerate(m.values(), 1)
    ]
    async with pool.acquire() as conn:
        routed = await engine.handle_database_events(conn, events, T0)
    assert {t for t in _summary(routed) if t[1] == "inactive_21d"} == {(str(m["b"]), "inactive_21d", "sent")}


async def test_mentor_locale_column_wins_when_the_platform_has_it(pool: Any) -> None:
    m = await _population(pool)
    await pool.execute("ALTER TABLE peer_mentor ADD COLUMN locale text")
    await pool.execute("UPDATE peer_mentor SET locale = 'nn' WHERE id = $1", m["b"])
    await Engine(pool, two_orgs()).run_scheduled_evaluation(T0)
    title, body = (await _pushes(pool))[(m["b"], "inactive_21d")]
    assert title == "Vi saknar deg" and body.startswith("Det er 15 dagar sidan")


# --- no flood per organisation --------------------------------------------------------------

RAISED = f"""
[[milestone]]
name = "sessions_year"
metric = "sessions"
period = "year"
thresholds = [10, 25]

[organizations."{OSLO}".rules.sessions_year]
thresholds = [2, 5]
"""


async def _sent(engine: Engine, at: dt.datetime) -> set[tuple[uuid.UUID, str]]:
    result = await engine.run_scheduled_evaluation(at, collect=True)
    return {
        (o.candidate.mentor_id, o.candidate.subject) for o in result.outcomes if o.decision.outcome == "sent"
    }


async def test_an_organisations_new_thresholds_and_a_move_baseline_like_a_new_rule(pool: Any) -> None:
    """Oslo lowers its milestones to 2 and 5 sessions. Its mentors already past 2 are not
    congratulated for what happened before (baseline), exactly like a newly seen rule; a mentor
    who moves to Oslo later is baselined too; a later crossing (5) is celebrated."""
    default = Rules.model_validate(tomllib.loads(RAISED.split("[organizations")[0]))
    oslo_rules = Rules.model_validate(tomllib.loads(RAISED))
    b = await _mentor(pool, OSLO, "Bjørn")
    a = await _mentor(pool, ORG, "Ann")
    await Engine(pool, default).run_scheduled_evaluation(T0 - 20 * DAY)  # the rule is seen
    for m in (a, b):
        for d in (12, 11, 10):
            await add_activity(pool, m, T0 - d * DAY)
    engine = Engine(pool, oslo_rules)
    assert await _sent(engine, T0 - 9 * DAY) == set()  # b's "2" is baselined, a runs 10/25
    await pool.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", a, OSLO)
    assert await _sent(engine, T0 - 8 * DAY) == set()  # a moved: baselined, not congratulated
    baselined = await pool.fetch(
        "SELECT mentor_id, threshold::int FROM achievement WHERE awarded_by = 'engine-baseline' ORDER BY 1"
    )
    assert sorted((r["mentor_id"], r["threshold"]) for r in baselined) == sorted([(a, 2), (b, 2)])
    for m in (a, b):
        for d in (7, 6):
            await add_activity(pool, m, T0 - d * DAY)
    sent = await _sent(engine, T0 - 5 * DAY)
    assert {m for m, _ in sent} == {a, b}  # 5 sessions: a crossing after the baseline


async def test_check_config_warns_of_an_unknown_organisation_and_a_missing_translation(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(TWO_ORGS + '\n[organizations."0b6f0000-0000-4000-8000-0000000000ff"]\nlocale = "de"\n')
    result = await run_cli(
        "check-config", env={"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(path)}
    )
    assert result.returncode == 0, result.stderr
    assert f"organizations.{OSLO}: no mentor has this organisation id" in result.stderr
    assert "messages.de.inactive_21d: no de text for rule 'inactive_21d'; falls back to en" in result.stderr
    path.write_text(TWO_ORGS + '\n[organizations."0b6f0000-0000-4000-8000-0000000000ff"]\nlocale = "xx"\n')
    result = await run_cli(
        "check-config", env={"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(path)}
    )
    assert result.returncode == 2
    assert "organizations.0b6f0000-0000-4000-8000-0000000000ff.locale: unknown locale 'xx'" in result.stderr


# --- visible everywhere ---------------------------------------------------------------------


async def test_sweep_dry_run_and_explain_show_the_programme(pool: Any, db_url: str, tmp_path: Path) -> None:
    m = await _population(pool)
    path = tmp_path / "rules.toml"
    path.write_text(TWO_ORGS, "utf-8")
    env = {"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(path)}
    dry = await run_cli("sweep", "--dry-run", "--as-of", T0.isoformat(), env=env)
    assert dry.returncode == 0, dry.stderr
    oslo_line = next(line for line in dry.stdout.splitlines() if line.startswith("Oslo peer mentors"))
    assert oslo_line.startswith(f"Oslo peer mentors ({OSLO})")
    assert oslo_line.split(")", 1)[1].split()[0] == "2"  # b's reminder, c's certification
    out = await run_cli("explain", str(m["b"]), "--as-of", T0.isoformat(), env=env)
    assert out.returncode == 0, out.stderr
    assert f"programme: organisation {OSLO} (Oslo peer mentors)" in out.stdout
    assert '"threshold_days": 14' in out.stdout and "locale: nb" in out.stdout
    assert "[sessions_year] (milestone) → not in programme" in out.stdout
