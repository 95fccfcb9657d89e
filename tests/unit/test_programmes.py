"""Per-organisation programmes and messages in the mentor's language (issue 20).

Two organisations with different thresholds, cooldowns, tiers, caps, quiet hours and locales,
worked by hand, through the sweep, the event path and the single-mentor interfaces; the
rules file's validation (full key paths); today's files decide exactly as before.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from scenario_engine.errors import ConfigError
from scenario_engine.messages import BUILTIN, Rendering, check_programme_texts, render_message
from scenario_engine.scenarios.rules import default_rules, load_rules
from tests.support.factories import ORG
from tests.support.programmes import OSLO, two_orgs

ROOT = Path(__file__).resolve().parents[2]


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


# --- check-config ---------------------------------------------------------------------------


def test_every_template_of_every_locale_renders_with_the_sample_numbers() -> None:
    rules = two_orgs(
        '[messages.nn.inactive_21d]\ntitle = "Hei"\nbody = "{days_inactive, plural, other {# dagar}}"\n'
    )
    problems, warnings = check_programme_texts(rules)
    assert problems == []
    assert warnings == []  # en, nb and nn have built-in texts for every built-in rule
