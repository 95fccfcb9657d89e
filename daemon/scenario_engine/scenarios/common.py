"""Pieces several scenarios share, so that each is written once."""

from __future__ import annotations

import datetime as dt
from typing import Generic, TypeVar

from scenario_engine.db.connect import Conn
from scenario_engine.domain.rule import RuleBase

R = TypeVar("R", bound=RuleBase)

# The outcome "an activity within the window after the decision" (inactivity: re-activated;
# milestone, anniversary: kept going). queries/outcomes.sql.
ACTIVITY_OUTCOME = "outcome_activity_after"


class NoBaseline(Generic[R]):
    """A scenario whose new rules need no baseline: nothing that already happened can flood."""

    async def first_seen(self, conn: Conn, rule: R, as_of: dt.datetime) -> None:
        return None

    def backfill(self, rule: R) -> bool:
        return False


def decided_plus_window(rule: RuleBase, as_of: dt.datetime) -> dt.datetime:
    return as_of + dt.timedelta(days=rule.outcome_window_days)
