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

import pytest

from scenario_engine.engine import Engine
from scenario_engine.events import ScenarioEvent
from scenario_engine.scenarios.rules import Rules, default_rules
from tests.support.cli import run_cli
from tests.support.factories import ORG, add_activity, add_certification, add_mentor, opt_out
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


# --- the decision log: every decision records its locale and effective parameters ----------


async def _decisions(pool: Any) -> dict[tuple[uuid.UUID, str, str], dict[str, Any]]:
    """(mentor, rule, outcome) → the decision's inputs, for every decision but baselines."""
    rows = await pool.fetch(
        "SELECT mentor_id, rule_name, outcome, inputs FROM scenario_engine.scenario_decision "
        "WHERE outcome <> 'baseline'"
    )
    return {(r["mentor_id"], r["rule_name"], r["outcome"]): r["inputs"] for r in rows}


def _params(inputs: dict[str, Any]) -> tuple[Any, ...]:
    p = inputs["params"]
    return (
        p.get("threshold_days"),
        p.get("tiers_days"),
        p["cooldown_days"],
        p["daily_cap"],
        p["quiet_hours"],
    )


OSLO_INACTIVE = (14, None, 10.0, 1, "21:00-08:00")
OSLO_CERT = (None, [60, 14], 0.0, 1, "21:00-08:00")
DEFAULT_INACTIVE = (21, None, 7.0, 3, None)


async def test_suppressed_decisions_record_locale_and_parameters_through_the_sweep(pool: Any) -> None:
    """Oslo (nb, cap 1, threshold 14, cooldown 10, tiers 60/14) and the default programme (en,
    cap 3, threshold 21, cooldown 7): a capped, a cooled-down and an opted-out decision record
    the locale and the parameters they were decided under, exactly as the sent ones do."""
    m = await _population(pool)
    d = await _mentor(pool, ORG, "Dag", tz="UTC")
    await add_activity(pool, d, T0 - 22 * DAY)  # past the default's 21 days, but opted out
    await opt_out(pool, d)
    e = await _mentor(pool, OSLO, "Eirik")
    await add_activity(pool, e, T0 - 15 * DAY)
    engine = Engine(pool, two_orgs())
    await engine.record_last_triggered(e, "inactivity", as_of=T0 - 8 * DAY)  # Oslo's cooldown: 10 days
    await engine.run_scheduled_evaluation(T0)
    log = await _decisions(pool)
    capped = log[(m["b"], "certification_expiry", "daily_cap")]
    assert (capped["locale"], _params(capped)) == ("nb", OSLO_CERT)
    cooled = log[(e, "inactive_21d", "cooldown")]
    assert (cooled["locale"], _params(cooled)) == ("nb", OSLO_INACTIVE)
    opted = log[(d, "inactive_21d", "opted_out")]
    assert (opted["locale"], _params(opted)) == ("en", DEFAULT_INACTIVE)
    sent = log[(m["b"], "inactive_21d", "sent")]
    assert (sent["locale"], _params(sent)) == ("nb", OSLO_INACTIVE)
    sent_en = log[(m["a"], "certification_expiry", "sent")]
    assert (sent_en["locale"], _params(sent_en)) == ("en", (None, [30, 7, 1], 0.0, 3, None))
    assert all("locale" in i and "params" in i for i in log.values())


async def test_suppressed_decisions_record_locale_and_parameters_through_events(pool: Any) -> None:
    """The event path writes through the same code: an opted-out mentor of each organisation."""
    m = await _population(pool)
    d = await _mentor(pool, ORG, "Dag", tz="UTC")
    await add_activity(pool, d, T0 - 22 * DAY)
    for mentor in (d, m["b"]):
        await opt_out(pool, mentor)
    engine = Engine(pool, two_orgs())
    events = [
        ScenarioEvent(id=i, table_name="activity", operation="INSERT", mentor_id=mentor)
        for i, mentor in enumerate((d, m["b"]), 1)
    ]
    async with pool.acquire() as conn:
        await engine.handle_database_events(conn, events, T0)
    log = await _decisions(pool)
    oslo = log[(m["b"], "inactive_21d", "opted_out")]
    assert (oslo["locale"], _params(oslo)) == ("nb", OSLO_INACTIVE)
    default = log[(d, "inactive_21d", "opted_out")]
    assert (default["locale"], _params(default)) == ("en", DEFAULT_INACTIVE)


# --- the single-mentor interfaces: an organisation's own rule and its overrides ------------

BERGEN = uuid.UUID("0b6f0000-0000-4000-8000-000000000002")
OWN_RULE = f"""
[organizations."{BERGEN}"]
name = "Bergen"
locale = "nn"

[[organizations."{BERGEN}".certification_expiry]]
name = "driving_licence"
certification_types = ["driving"]
tiers_days = [60, 14]
cooldown_days = 30
"""


async def _three(pool: Any) -> dict[str, uuid.UUID]:
    """Ann (default) and Bjørn (Oslo) quiet for 15 days; Cecilie (Bergen) active yesterday,
    her driving certification expiring in 50 days (Bergen's own rule: tier 60); Eirik (Oslo,
    quiet 15 days) and Frida (default, quiet 22 days) last reminded 8 days ago."""
    a = await _mentor(pool, ORG, "Ann", tz="UTC")
    b = await _mentor(pool, OSLO, "Bjørn")
    c = await _mentor(pool, BERGEN, "Cecilie")
    e = await _mentor(pool, OSLO, "Eirik")
    f = await _mentor(pool, ORG, "Frida", tz="UTC")
    for mentor in (a, b, e):
        await add_activity(pool, mentor, T0 - 15 * DAY)
    await add_activity(pool, f, T0 - 22 * DAY)
    await add_activity(pool, c, T0 - DAY)
    await add_certification(pool, c, expires_at=T0 + 50 * DAY, type_="driving")
    engine = Engine(pool, default_rules())
    for mentor in (e, f):
        await engine.record_last_triggered(mentor, "inactivity", as_of=T0 - 8 * DAY)
    return {"a": a, "b": b, "c": c, "e": e, "f": f}


async def test_should_notify_finds_an_organisations_own_rule_and_agrees_with_the_sweep(pool: Any) -> None:
    m = await _three(pool)
    engine = Engine(pool, two_orgs(OWN_RULE))
    own = await engine.should_notify(m["c"], "certification_expiry", rule_name="driving_licence", as_of=T0)
    oslo = await engine.should_notify(m["b"], "inactivity", as_of=T0)
    # Eight days since the last reminder: Oslo's 10-day cooldown holds Eirik, the default's
    # 7 days let Frida through.
    held = await engine.should_notify(m["e"], "inactivity", as_of=T0)
    free = await engine.should_notify(m["f"], "inactivity", rule_name="inactive_21d", as_of=T0)
    assert (own.outcome, oslo.outcome, held.outcome, free.outcome) == ("sent", "sent", "cooldown", "sent")
    assert "cooldown is 10.0 days" in held.reason
    with pytest.raises(ValueError, match="not in the programme"):
        await engine.should_notify(m["a"], "certification_expiry", rule_name="driving_licence", as_of=T0)
    with pytest.raises(KeyError):
        await engine.should_notify(m["a"], "certification_expiry", rule_name="no_such_rule", as_of=T0)
    result = await engine.run_scheduled_evaluation(T0, collect=True)
    assert _summary(result.outcomes) == {
        (str(m["c"]), "driving_licence", "sent"),
        (str(m["b"]), "inactive_21d", "sent"),
        (str(m["e"]), "inactive_21d", "cooldown"),
        (str(m["f"]), "inactive_21d", "sent"),
    }
    # Bergen's own rule's 30-day cooldown holds Cecilie a week later.
    own = await engine.should_notify(
        m["c"], "certification_expiry", rule_name="driving_licence", as_of=T0 + 8 * DAY
    )
    assert own.outcome == "cooldown" and "cooldown is 30.0 days" in own.reason


def _cert_context(rule_name: str, key: str) -> dict[str, Any]:
    return {
        "rule_name": rule_name,
        "dedup_key": key,
        "certification_id": 1,
        "certification_type": "driving",
        "expires_at": "2026-04-20T10:00:00+00:00",
        "expires_on": "2026-04-20",
        "days_left": 50,
        "tier_days": 60,
    }


async def test_enqueue_notification_runs_an_organisations_own_rule_and_overrides(pool: Any) -> None:
    """Cecilie (Bergen) through Bergen's own rule, in nynorsk, then held by its 30-day
    cooldown; Bjørn (Oslo, cap 1) capped at his second push of the day where Ann (default,
    cap 3) is not."""
    m = await _three(pool)
    engine = Engine(pool, two_orgs(OWN_RULE))
    first = await engine.enqueue_notification(
        m["c"], "certification_expiry", _cert_context("driving_licence", "c1"), as_of=T0
    )
    assert first.created and first.decision.outcome == "sent"
    assert (await _pushes(pool))[(m["c"], "driving_licence")] == (
        "Sertifiseringa går snart ut",
        "Sertifiseringa di i køyring går ut om 50 dagar (20. april 2026).",
    )
    again = await engine.enqueue_notification(
        m["c"], "certification_expiry", _cert_context("driving_licence", "c2"), as_of=T0 + DAY
    )
    assert (again.created, again.decision.outcome) == (False, "cooldown")
    outcomes = {}
    for who in ("a", "b"):
        await engine.enqueue_notification(
            m[who], "inactivity", {"days_inactive": 15, "dedup_key": f"{who}1"}, as_of=T0
        )
        second = await engine.enqueue_notification(
            m[who], "certification_expiry", _cert_context("certification_expiry", f"{who}2"), as_of=T0
        )
        outcomes[who] = second.decision.outcome
    assert outcomes == {"a": "sent", "b": "daily_cap"}
    log = await _decisions(pool)
    cooled = log[(m["c"], "driving_licence", "cooldown")]
    assert cooled["locale"] == "nn" and cooled["params"]["tiers_days"] == [60, 14]
    assert log[(m["b"], "certification_expiry", "daily_cap")]["params"]["daily_cap"] == 1
    nobody = await engine.enqueue_notification(
        uuid.uuid4(), "certification_expiry", _cert_context("driving_licence", "x1"), as_of=T0
    )
    assert (nobody.created, nobody.decision.outcome) == (False, "mentor_not_active")


def test_only_organisations_that_run_a_rule_otherwise_need_their_mentors_organisation() -> None:
    """The sweep reads back only the mentors of organisations whose rules differ (and moves):
    a name, a locale or a policy key alone (cap, quiet hours) changes no candidate."""
    policy_only = f"""
[organizations."{BERGEN}"]
name = "Bergen"
locale = "nn"
daily_cap = 1
quiet_hours = "22:00-07:00"
"""
    assert two_orgs(policy_only).differing_organizations() == {OSLO}
    assert two_orgs(OWN_RULE).differing_organizations() == {OSLO, BERGEN}
    assert default_rules().differing_organizations() == frozenset()


async def test_interleaved_organisations_decide_alike_in_a_sweep_batch_and_per_mentor(pool: Any) -> None:
    """A full sweep's batch reads the default programme's mentors as one id range with the other
    organisation's mentors inside it (evaluate.set_based_candidates): those are dropped from the
    default rule's rows, so each mentor is decided under its own programme only — as the
    single-mentor path decides it. Both organisations' mentors are candidates of the default
    rule here (a certification expiring in a day is in its 1-day tier), so a leak would show."""
    mentors: dict[uuid.UUID, str] = {}
    for i in range(20):
        org, kind = (ORG, "default") if i % 2 == 0 else (OSLO, "oslo")
        m = await _mentor(pool, org, f"M{i}", tz="UTC" if org == ORG else "Europe/Oslo")
        await add_activity(pool, m, T0 - 15 * DAY)
        await add_certification(pool, m, expires_at=T0 + DAY - dt.timedelta(hours=1))
        mentors[m] = kind
    rules = two_orgs()
    by_mentor = {m: await Engine(pool, rules).evaluate_mentor(m, as_of=T0, dry_run=True) for m in mentors}
    result = await Engine(pool, rules, sweep_batch=8).run_scheduled_evaluation(T0, collect=True)
    swept: dict[uuid.UUID, list[tuple[str, str]]] = {m: [] for m in mentors}
    for o in result.outcomes:
        swept[o.candidate.mentor_id].append((o.candidate.rule_name, o.decision.outcome))
    for m, kind in mentors.items():
        alone = sorted((o.candidate.rule_name, o.decision.outcome) for o in by_mentor[m])
        assert sorted(swept[m]) == alone, (kind, swept[m], alone)
    oslo = [m for m, k in mentors.items() if k == "oslo"]
    assert all(len(swept[m]) == 2 for m in oslo), {m: swept[m] for m in oslo}
