"""What every rule has, whatever its scenario: a name, a cooldown, a message, a holdout.

A scenario package's rule model (``scenarios/<type>/rule.py``) extends ``RuleBase`` with its
own parameters and the placeholders its messages may use. The message templates are checked
here, at load time, against exactly those placeholders, so a typo fails ``check-config`` and a
SIGHUP reload instead of a push.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from scenario_engine.templates import BODY_MAX_BYTES, TITLE_MAX_BYTES, TemplateError, check_template

# A scenario type names a scenario package in the registry ('inactivity', 'milestone', ...).
ScenarioType = str

RuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
# Ten years: long enough for any cooldown, short enough that every date sum stays in range.
MAX_DAYS = 3650
# Every message carries these besides the scenario's own inputs (notifications.write_outcomes).
COMMON_CONTEXT_KEYS = frozenset({"rule", "display_name"})


def context_keys(context: Any) -> frozenset[str]:
    """The placeholders of a scenario's messages: the common ones and its context's keys
    (``context`` is the scenario's TypedDict)."""
    keys: frozenset[str] = context.__required_keys__ | context.__optional_keys__
    return COMMON_CONTEXT_KEYS | keys


Number = TypeVar("Number", int, float)


def distinct_sorted(value: list[Number], what: str, *, reverse: bool = False) -> list[Number]:
    """A rule's list of years, thresholds or tiers, in the order its scenario walks them. A
    repeat is a typo in the rules file, and two equal entries would share one dedup key."""
    if len(set(value)) != len(value):
        raise ValueError(f"{what} must be distinct")
    return sorted(value, reverse=reverse)


HoldoutSalt = Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class RuleBase(BaseModel):
    # nan/inf never validate; every number has a finite bound (see Settings).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # The placeholders a message of this rule type can use: its candidates' inputs.
    CONTEXT_KEYS: ClassVar[frozenset[str]] = COMMON_CONTEXT_KEYS

    scenario_type: str
    name: RuleName
    enabled: bool = True
    cooldown_days: float = Field(default=7.0, ge=0, le=MAX_DAYS)
    title: str = Field(min_length=1, max_length=1000)
    body: str = Field(min_length=1, max_length=8000)
    # Outcomes and holdouts (docs/OUTCOMES.md). The assignment hashes the salt with the mentor
    # id (outcomes/holdout.py); an empty salt means the rule's name. Resolution: 0.01 %.
    holdout_percent: float = Field(default=0.0, ge=0, le=100)
    holdout_salt: HoldoutSalt = ""
    outcome_window_days: int = Field(default=14, ge=1, le=365)
    # Delivery timing (docs/CHANNELS.md): "usual_hour" holds a push until the local hour at
    # which the mentor most often logs activity, at most max_delay_hours; an experiment, like
    # the holdout (the programme's timing_percent of the rule's mentors get it).
    send_at: Literal["now", "usual_hour"] = "now"
    max_delay_hours: float = Field(default=20.0, ge=0, le=168)

    @field_validator("title", "body")
    @classmethod
    def _template_is_usable(cls, value: str, info: ValidationInfo) -> str:
        is_title = info.field_name == "title"
        try:
            check_template(
                value,
                cls.CONTEXT_KEYS,
                max_bytes=TITLE_MAX_BYTES if is_title else BODY_MAX_BYTES,
                allow_newline=not is_title,
                rule=info.data.get("name"),
            )
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def cooldown(self) -> dt.timedelta:
        return dt.timedelta(days=self.cooldown_days)

    @property
    def salt(self) -> str:
        return self.holdout_salt or self.name
