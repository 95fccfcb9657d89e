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

from scenario_engine.domain.rules import Rules, default_rules, load_rules
from scenario_engine.engine import Engine
from scenario_engine.errors import ConfigError
from scenario_engine.events import ScenarioEvent
from scenario_engine.messages import BUILTIN, Rendering, check_programme_texts, render_message
from tests.support.cli import run_cli
from tests.support.factories import ORG, add_activity, add_certification, add_mentor

ROOT = Path(__file__).resolve().parents[2]
OSLO = uuid.UUID("0b6f0000-0000-4000-8000-000000000001")
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

TWO_ORGS = f"""
default_locale = "en"
daily_cap = 3

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7

[[milestone]]
name = "sessions_year"
metric = "sessions"
period = "year"
thresholds = [10, 25]

[[certification_expiry]]
name = "certification_expiry"
tiers_days = [30, 7, 1]

[organizations."{OSLO}"]
name = "Oslo peer mentors"
locale = "nb"
daily_cap = 1
quiet_hours = "21:00-08:00"

[organizations."{OSLO}".rules.inactive_21d]
threshold_days = 14
cooldown_days = 10

[organizations."{OSLO}".rules.sessions_year]
enabled = false

[organizations."{OSLO}".rules.certification_expiry]
tiers_days = [60, 14]
"""


def two_orgs(extra: str = "") -> Rules:
    return Rules.model_validate(tomllib.loads(TWO_ORGS + extra))


def problems(text: str) -> str:
    path = Path("/tmp") / f"rules-{uuid.uuid4()}.toml"
    path.write_text(text, "utf-8")
    try:
        with pytest.raises(ConfigError) as exc:
            load_rules(path)
    finally:
        path.unlink()
    return str(exc.value)


# --- the rules file -------------------------------------------------------------------------


def test_today_format_files_load_unchanged() -> None:
    for rules in (default_rules(), load_rules(ROOT / "rules.example.toml")):
        assert rules.organization_ids() == []
        assert rules.enabled() == [r for r in rules.all() if r.enabled]
        assert all(rules.variants(r.name).uniform for r in rules.all())
        assert rules.default_locale == "en" and rules.quiet_hours is None


def test_effective_programme_of_an_organisation() -> None:
    rules = two_orgs()
    oslo = rules.organization(OSLO)
    assert (oslo.daily_cap, oslo.quiet_hours, oslo.default_locale) == (1, "21:00-08:00", "nb")
    assert rules.organization(ORG) is rules  # not listed: the default programme
    inactive = rules.variants("inactive_21d")
    assert inactive.for_org(OSLO).threshold_days == 14  # type: ignore[union-attr]
    assert inactive.for_org(ORG).threshold_days == 21  # type: ignore[union-attr]
    assert rules.variants("sessions_year").for_org(OSLO) is None
    assert rules.organization_name(OSLO) == "Oslo peer mentors"


def test_an_organisations_own_rule_runs_only_there() -> None:
    rules = two_orgs(
        f"""
[[organizations."{OSLO}".certification_expiry]]
name = "driving_licence"
certification_types = ["driving"]
tiers_days = [60, 14]
"""
    )
    assert "driving_licence" in [r.name for r in rules.enabled()]
    assert rules.variants("driving_licence").for_org(ORG) is None
    assert rules.variants("driving_licence").for_org(OSLO) is not None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            f'[organizations."{OSLO}".rules.certification_expiry]\ncooldown_days = -1\n',
            f"organizations.{OSLO}.rules.certification_expiry.cooldown_days",
        ),
        (f'[organizations."{OSLO}".rules.nope]\nenabled = false\n', f"organizations.{OSLO}.rules.nope"),
        (
            f'[organizations."{OSLO}".rules.anniversary_x]\nenabled = false\n',
            "no rule of that name",
        ),
        (f'[organizations."{OSLO}"]\ndaily_cap = 0\n', f"organizations.{OSLO}.daily_cap"),
        (f'[organizations."{OSLO}"]\nquiet_hours = "25:00-08:00"\n', f"organizations.{OSLO}.quiet_hours"),
        (f'[organizations."{OSLO}"]\nlocale = "xx_NOPE"\n', f"organizations.{OSLO}.locale"),
        ('[organizations."not-a-uuid"]\nname = "x"\n', "organizations.not-a-uuid"),
        ('[messages.nb.nope]\ntitle = "x"\nbody = "y"\n', "messages.nb.nope"),
        (
            '[messages.nb.inactive_21d]\ntitle = "Hei"\n'
            'body = "{dayz, plural, one {# dag} other {# dager}}"\n',
            "messages.nb.inactive_21d.body: unknown placeholder {dayz}",
        ),
        (
            '[messages.nb.inactive_21d]\ntitle = "Hei {days_inactive"\nbody = "x"\n',
            "messages.nb.inactive_21d",
        ),
    ],
)
def test_validation_names_the_full_key_path(extra: str, expected: str) -> None:
    base = f"""
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
[[certification_expiry]]
name = "certification_expiry"
tiers_days = [30]
[organizations."{OSLO}"]
name = "Oslo"
"""
    if extra.startswith(f'[organizations."{OSLO}"]\n'):
        extra = extra.split("\n", 1)[1]
        base = base + extra
    else:
        base = base + extra
    assert expected in problems(base)


def test_an_override_of_a_field_the_rule_type_does_not_have_is_an_error() -> None:
    text = f"""
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
[organizations."{OSLO}".rules.inactive_21d]
tiers_days = [3]
"""
    assert f"organizations.{OSLO}.rules.inactive_21d.tiers_days" in problems(text)


# --- messages -------------------------------------------------------------------------------


def test_plurals_numbers_dates_and_display_names_follow_the_locale() -> None:
    body = (
        "Your {certification_type} certification expires in {days_left, plural, one {# day} other {# days}}"
    )
    nb_body = (
        "Sertifiseringen din i {certification_type} går ut om "
        "{days_left, plural, one {# dag} other {# dager}}"
    )
    en = Rendering("en", "Europe/Oslo", {"certification_type": {"first_aid": "first aid"}})
    nb = Rendering("nb", "Europe/Oslo", {"certification_type": {"first_aid": "førstehjelp"}})
    ctx = {"certification_type": "first_aid"}
    assert render_message(body, {**ctx, "days_left": 1}, en, title=False).endswith(
        "first aid certification expires in 1 day"
    )
    assert render_message(body, {**ctx, "days_left": 2}, en, title=False).endswith("in 2 days")
    assert render_message(nb_body, {**ctx, "days_left": 1}, nb, title=False).endswith(
        "førstehjelp går ut om 1 dag"
    )
    assert render_message(nb_body, {**ctx, "days_left": 21}, nb, title=False).endswith("om 21 dager")
    assert render_message("{n}", {"n": 1234567}, en, title=True) == "1,234,567"
    assert render_message("{n}", {"n": 1234567}, nb, title=True) == "1\xa0234\xa0567"
    # A date is the local day in the mentor's zone: 23:30 UTC is already the next day in Oslo.
    assert render_message("{d, date}", {"d": "2026-03-01T23:30:00+00:00"}, nb, title=True) == "2. mars 2026"
    anniversary = BUILTIN["en"]["anniversary"][1]
    assert render_message(anniversary, {"years": 1, "display_name": "Ada"}, en, title=False).startswith(
        "1 year as a peer mentor, Ada."
    )
    raw = Rendering("en", None, {})
    assert render_message("{certification_type}", ctx, raw, title=True) == "first_aid"  # last fallback


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


# --- check-config ---------------------------------------------------------------------------


def test_every_template_of_every_locale_renders_with_the_sample_numbers() -> None:
    rules = two_orgs(
        '[messages.nn.inactive_21d]\ntitle = "Hei"\nbody = "{days_inactive, plural, other {# dagar}}"\n'
    )
    problems, warnings = check_programme_texts(rules)
    assert problems == []
    assert warnings == []  # en, nb and nn have built-in texts for every built-in rule


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
