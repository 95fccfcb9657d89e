"""A rule's batch fills each text once per distinct (programme, locale, values it reads, zone
if it shows a date): notifications._texts with its memos gives what filling every candidate's
text afresh gives (issue 18), whatever the order the candidates come in."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

from scenario_engine.messages import Chosen, Rendering, fill, fill_key
from scenario_engine.notifications import _texts
from scenario_engine.policy import PolicyState
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules

ORG = uuid.UUID("0b6f0000-0000-4000-8000-000000000001")
RULE = InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)
TEXTS = {
    "title": "{days_inactive, plural, one {# day} other {# days}} since {last_activity_at, date}",
    "body": "{days_inactive, number} · {reminder} · {display_name} · {max_reminders}",
}
RULES = Rules.model_validate(
    {
        "inactivity": [RULE.model_dump()],
        "messages": {"en": {"inactive_21d": TEXTS}, "nb": {"inactive_21d": TEXTS}},
        "organizations": {str(ORG): {"locale": "nb"}},
    }
)
VALUES: list[Any] = [1, 1.0, True, 0.0, -0.0, 2, 12.5, "1", None, "x"]
WHEN = ["2026-05-04T23:30:00+00:00", "2026-05-05T00:30:00+00:00"]


def _state(mentor: int, org: uuid.UUID | None, zone: str, loc: str | None) -> PolicyState:
    return PolicyState(uuid.UUID(int=mentor), "active", None, None, None, 0, f"M{mentor}", org, zone, loc)


def test_memoised_texts_are_the_fresh_ones() -> None:
    rule = RULES.by_name("inactive_21d")
    chosen: dict[Any, Any] = {}
    filled: dict[Any, Any] = {}
    cases = list(
        itertools.product(VALUES, VALUES[:4], WHEN, ["UTC", "Pacific/Kiritimati"], [None, ORG], [None, "nb"])
    )
    contexts = []
    for i, (num, x, when, zone, org, loc) in enumerate(cases):
        ctx: dict[str, Any] = {
            "days_inactive": num,
            "reminder": x,
            "last_activity_at": when,
            "display_name": "Kari" if i % 3 else "Ola",
        }
        if i % 2:
            ctx["max_reminders"] = i % 5
        contexts.append((_state(i, org, zone, loc), ctx))
    # Twice, the second time backwards: every text of the second pass comes from the memo.
    for state, ctx in [*contexts, *reversed(contexts)]:
        fresh = _texts(rule, RULES, state, dict(ctx))
        assert _texts(rule, RULES, state, dict(ctx), chosen, filled) == fresh
    assert len(filled) <= len(contexts)


def test_a_legacy_text_or_an_unkeyable_value_is_not_memoised() -> None:
    how = Rendering("en", "UTC", {})
    legacy = Chosen("Hi {display_name}", "b", "en", "rule", legacy=True)
    assert fill_key(legacy, {"display_name": "K"}, how) is None
    text = Chosen("{a}", "{b}", "en", "rules file", legacy=False)
    assert fill_key(text, {"a": [1], "b": 1}, how) is None
    assert fill_key(text, {"a": 1, "b": 1.0}, how) != fill_key(text, {"a": 1, "b": 1}, how)
    # The zone counts only for a text that shows a date.
    other = Rendering("en", "Europe/Oslo", {})
    assert fill_key(text, {"a": 1, "b": 2}, how) == fill_key(text, {"a": 1, "b": 2}, other)
    dated = Chosen("{a, date}", "", "en", "rules file", legacy=False)
    assert fill_key(dated, {"a": "2026-01-01"}, how) != fill_key(dated, {"a": "2026-01-01"}, other)
    assert fill(dated, {"a": dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat()}, how)[0]
