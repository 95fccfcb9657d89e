"""The mature cohort (docs/OUTCOMES.md): `report` and the programme page rate only decisions
whose outcome window has closed by the instant they are taken at, in both arms alike, and show
the others as "still being measured: N (M already achieved)".

A hand-computed dataset where nearly every window is still open. One organisation, one rule
(experiment with a 10 % holdout); each decision has a 14-day window.

    treated, mature   (decided 20 days ago):  3 achieved, 2 missed            → 3/5  = 60 %
    treated, mature but not resolved yet (decided 15 days ago, still pending): 1 → measured
    treated, open     (decided 3 days ago):  40 achieved already, 20 pending  → measured
    holdout, mature   (decided 20 days ago):  1 achieved, 3 missed            → 1/4  = 25 %
    holdout, open     (decided 3 days ago):  30 achieved already, 10 pending  → measured

The biased formula (achieved / (achieved + missed) over every resolved outcome) would say
treated 43/45 = 95.6 %, holdout 31/34 = 91.2 %, and, with 45 and 34 "final" outcomes, give a
lift; over the mature cohort both arms are below the minimum of 30: not enough data.
"""

from __future__ import annotations

import pytest

from scenario_engine.outcomes.model import Arm, lift


def test_early_successes_never_reach_a_rate_or_a_lift() -> None:
    """The model on its own: decisions still being measured change neither rates nor lifts."""
    mature = lift(Arm(achieved=30, missed=10), Arm(achieved=15, missed=15))
    with_early = lift(
        Arm(achieved=30, missed=10, measuring=500, measuring_achieved=499),
        Arm(achieved=15, missed=15, measuring=7, measuring_achieved=0),
    )
    assert (with_early.points, with_early.low, with_early.high) == (mature.points, mature.low, mature.high)
    assert mature.points == pytest.approx(25.0)
