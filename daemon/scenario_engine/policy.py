"""should_notify: the checks between "the condition holds" and "a push is queued".

Order matters for the explanation an operator sees: a paused mentor is reported as
such, not as opted out; an opted-out mentor is not reported as capped. Returns a
decision with its reason, never a bare bool.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import uuid
from dataclasses import dataclass
from typing import Any, Literal

# "holdout" is decided after policy (outcomes/holdout.py): allowed, but kept back as a control.
Outcome = Literal["sent", "holdout", "opted_out", "cooldown", "daily_cap", "mentor_not_active"]
# The outcomes written as if sent (ledger, cooldown, cap, outcome). Hot loops test it directly
# instead of calling ``PolicyDecision.recorded`` per candidate (notifications.write_outcomes).
RECORDED: tuple[Outcome, ...] = ("sent", "holdout")


@dataclass(frozen=True)
class PolicyState:
    mentor_id: uuid.UUID
    status: str
    opted_out_scope: str | None  # 'all' or the scenario type the mentor opted out of
    last_triggered_at: dt.datetime | None  # this scenario type
    last_rule_name: str | None
    sent_24h: int  # notifications (all scenarios) in (as_of - 24h, as_of]
    # Not policy inputs: what the decision log and the message carry (read in the same query).
    display_name: str | None = None
    organization_id: uuid.UUID | None = None
    timezone: str | None = None
    locale: str | None = None  # peer_mentor.locale when the platform has that column


@dataclass(frozen=True)
class PolicyDecision:
    outcome: Outcome
    reason: str

    @property
    def allowed(self) -> bool:
        return self.outcome == "sent"

    @property
    def recorded(self) -> bool:
        """Written as if sent (ledger, cooldown, cap, outcome): sent or held out."""
        return self.outcome in RECORDED


def decide_policy(
    state: PolicyState,
    scenario_type: str,
    cooldown: dt.timedelta,
    daily_cap: int,
    as_of: dt.datetime,
    pending: int = 0,
) -> PolicyDecision:
    """``pending`` counts notifications already allowed for this mentor in the same batch."""
    if state.status != "active":
        return PolicyDecision("mentor_not_active", f"mentor status is {state.status!r}")
    if state.opted_out_scope is not None:
        scope = "all notifications" if state.opted_out_scope == "all" else f"{scenario_type} notifications"
        return PolicyDecision("opted_out", f"mentor opted out of {scope}")
    if state.last_triggered_at is not None and cooldown > dt.timedelta(0):
        since = as_of - state.last_triggered_at
        if since < cooldown:
            return PolicyDecision(
                "cooldown",
                f"last {scenario_type} notification ({state.last_rule_name}) {_fmt(since)} ago, "
                f"cooldown is {_fmt(cooldown)}",
            )
    used = state.sent_24h + pending
    if used >= daily_cap:
        return PolicyDecision("daily_cap", f"{used} notifications in the last 24 h, cap is {daily_cap}")
    return SENT


# Every allowed decision is this one (frozen): a first sweep allows most of its candidates.
SENT = PolicyDecision("sent", "all checks passed")


def state_from_row(row: Any) -> PolicyState:
    """As ``records.from_row`` (every field from the column of its name, a missing one failing
    with its name), but through one itemgetter: a first sweep makes a state per candidate."""
    values = list(_state_columns(row))
    values[_SENT_24H] = int(values[_SENT_24H])
    return PolicyState(*values)


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(PolicyState))
_state_columns = operator.itemgetter(*_STATE_FIELDS)
_SENT_24H = _STATE_FIELDS.index("sent_24h")


def _fmt(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
