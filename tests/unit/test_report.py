"""`build_report` on a hand-computed dataset, written straight into the tables the write path
fills (scenario_decision, scenario_notification, push_notification, scenario_outcome,
scenario_experiment) as it fills them (queries/notifications.sql: one final decision per
candidate, the push with its decision's organisation and experiment), and the platform's
certifications.

The dataset (decisions with as_of in [2026-01-01, 2026-04-01)):

* org A, rule inactive_21d, experiment E1 (10 % holdout): 73 sent (56 achieved, 14 missed, 3
  pending; 65 of their pushes accepted by the gateway), 82 held out (48 achieved, 32 missed, 2
  pending), 9 suppressed; lift 56/70 − 48/80 = +20 pp, Newcombe's worked example 1: [5.24, 33.39].
* org A, inactive_21d, E2 (the same rule after its salt changed): 10 sent (9 achieved), 10 held
  out (3 achieved): Newcombe's example 2, but below the minimum of 30: no lift.
* org B, inactive_21d, E1: 40 treated, 29 held out: one short of the minimum: no lift.
* org B, cert_expiry, E3: 15/30 − 6/30 = +30 pp, interval [5.85, 49.85] (the Wilson bounds
  [33.15, 66.85] and [9.51, 37.31] combined by hand).
"""

from __future__ import annotations

import pytest

from scenario_engine.outcomes.model import Arm, lift


def test_no_lift_below_the_minimum_of_final_outcomes_in_either_group() -> None:
    assert lift(Arm(achieved=15, missed=15), Arm(achieved=6, missed=24)).points == pytest.approx(30.0)
    # Decisions still being measured are in no rate, whatever they have achieved already.
    pending_do_not_count = lift(
        Arm(achieved=15, missed=14, measuring=50, measuring_achieved=40), Arm(achieved=6, missed=24)
    )
    assert pending_do_not_count.points is None
    assert pending_do_not_count.note == (
        "not enough data: treated has 29 final outcomes; at least 30 needed in each group"
    )
    assert lift(Arm(), Arm()).note == (
        "not enough data: treated has 0 and holdout has 0 final outcomes; at least 30 needed in each group"
    )
    assert Arm(measuring=3, measuring_achieved=3).rate_percent is None
