"""The outcomes model: what an arm, a mature cohort, a rate, a lift, its interval, the minimum
and the verdict are — one definition that `report` (outcomes/report.py) and the programme page
(web/programme_view.py) both use, so that the two never say different things about the
same decisions (docs/OUTCOMES.md, "Mature cohort").

The database does the counting (``outcome_counts`` in queries/outcomes.sql, one query for both
readers) and already splits every arm into its mature cohort and the rest:

* **mature**: the decision's outcome window had closed by the instant the figures are taken
  at (``as_of``, never later than now) and the outcome is resolved — achieved or missed. Only
  these are in a rate, and in a lift, in both arms alike.
* **still being measured**: every other decision, with how many of those have *already*
  achieved. An achievement is known as soon as it happens, a miss only when the window closes:
  a rate over what is known early would count the early successes and hardly any failures, and
  the arm that fills faster would look better. So early successes are shown beside the rate,
  never folded into it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from scenario_engine.outcomes.stats import METHOD, newcombe_interval

__all__ = [
    "METHOD",
    "MIN_FINAL_PER_ARM",
    "Arm",
    "Lift",
    "lift",
    "sum_arms",
    "verdict",
]

# Below this many mature outcomes in either arm the interval is so wide, and the normal
# approximation behind it so shaky, that a difference would mislead more than it informs:
# "not enough data", and no number.
MIN_FINAL_PER_ARM = 30

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Arm:
    """The outcomes of one arm (treated: messaged; holdout: kept back) of a set of decisions.

    ``achieved`` and ``missed`` are the mature cohort, the only ones in the rate; ``measuring``
    counts the decisions still being measured, ``measuring_achieved`` those of them that have
    already achieved (a subset of ``measuring``, in no rate)."""

    achieved: int = 0
    missed: int = 0
    measuring: int = 0
    measuring_achieved: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], prefix: str = "") -> Arm:
        """An arm from the columns of ``outcome_counts`` (optionally prefixed, e.g. ``treated_``)."""
        return cls(
            int(row[f"{prefix}achieved"]),
            int(row[f"{prefix}missed"]),
            int(row[f"{prefix}measuring"]),
            int(row[f"{prefix}measuring_achieved"]),
        )

    def __add__(self, other: Arm) -> Arm:
        return Arm(
            self.achieved + other.achieved,
            self.missed + other.missed,
            self.measuring + other.measuring,
            self.measuring_achieved + other.measuring_achieved,
        )

    @property
    def final(self) -> int:
        """The mature cohort's size: the denominator of the rate."""
        return self.achieved + self.missed

    @property
    def decisions(self) -> int:
        return self.final + self.measuring

    @property
    def share(self) -> float | None:
        """The rate as a fraction 0…1 over the mature cohort; None while it is empty."""
        return self.achieved / self.final if self.final else None

    @property
    def rate_percent(self) -> float | None:
        share = self.share
        return None if share is None else 100.0 * share

    @property
    def measuring_words(self) -> str:
        """'still being measured: 8 (3 already achieved)', or '' when nothing is."""
        if not self.measuring:
            return ""
        return f"still being measured: {self.measuring} ({self.measuring_achieved} already achieved)"


def sum_arms(rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], K]) -> dict[K, Arm]:
    """Rows of ``outcome_counts`` added up into one arm per ``key(row)``."""
    out: dict[K, Arm] = {}
    for row in rows:
        k = key(row)
        out[k] = out.get(k, Arm()) + Arm.from_row(row)
    return out


@dataclass(frozen=True)
class Lift:
    """Treated rate minus holdout rate over the mature cohorts, in percentage points, with its
    95 % interval (``METHOD``); all three None, and ``note`` saying why, when either arm has
    fewer than ``minimum`` mature outcomes."""

    treated: Arm
    holdout: Arm
    points: float | None
    low: float | None
    high: float | None
    minimum: int = MIN_FINAL_PER_ARM

    @property
    def enough_data(self) -> bool:
        return self.points is not None

    @property
    def note(self) -> str | None:
        """Why there is no number, for `report`'s readers; None when there is one."""
        if self.enough_data:
            return None
        small = [
            f"{name} has {arm.final}"
            for name, arm in (("treated", self.treated), ("holdout", self.holdout))
            if arm.final < self.minimum
        ]
        return (
            f"not enough data: {' and '.join(small)} final outcomes; "
            f"at least {self.minimum} needed in each group"
        )

    @property
    def shortfall_words(self) -> str:
        """What is still missing for a number, in plain words (the programme page)."""
        return (
            f"{self.treated.final} results known for mentors who got the message and "
            f"{self.holdout.final} for those who did not; at least {self.minimum} of each are needed."
        )


def lift(treated: Arm, holdout: Arm, minimum: int = MIN_FINAL_PER_ARM) -> Lift:
    """The lift of ``treated`` over ``holdout`` and its interval, over mature outcomes only (pure:
    the tests check it by hand)."""
    if treated.final < minimum or holdout.final < minimum:
        return Lift(treated, holdout, None, None, None, minimum)
    interval = newcombe_interval(treated.achieved, treated.final, holdout.achieved, holdout.final)
    points = 100.0 * (treated.achieved / treated.final - holdout.achieved / holdout.final)
    return Lift(treated, holdout, points, 100.0 * interval.low, 100.0 * interval.high, minimum)


def verdict(result: Lift, outcome: str, *, has_comparison: bool = True) -> str:
    """One sentence a funder can read. ``outcome`` is the scenario's plain outcome words, read
    after "mentors who got the message …" ("came back"). Only an interval wholly above or below
    zero is a difference; the point estimate alone never is."""
    if not has_comparison:
        return (
            "No comparison group is kept back for these messages, so the difference they make "
            "cannot be measured."
        )
    if result.points is None or result.low is None or result.high is None:
        return "Not enough data yet."
    if result.low > 0:
        return f"Mentors who got the message {outcome} more often than those who did not."
    if result.high < 0:
        return f"Mentors who got the message {outcome} less often than those who did not."
    return "No clear difference yet between mentors who got the message and those who did not."
