"""The certification-expiry rule: which certifications, and how many days ahead to remind."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from scenario_engine.domain.rule import MAX_DAYS, RuleBase, context_keys, distinct_sorted
from scenario_engine.scenarios.certification.context import CertificationContext


class CertificationExpiryRule(RuleBase):
    CONTEXT_KEYS: ClassVar[frozenset[str]] = context_keys(CertificationContext)

    scenario_type: Literal["certification_expiry"] = "certification_expiry"
    tiers_days: list[Annotated[int, Field(ge=1, le=MAX_DAYS)]] = Field(min_length=1, max_length=20)
    certification_types: list[
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
    ] = Field(default_factory=list, max_length=100, description="Types this rule watches; empty means all.")
    cooldown_days: float = Field(default=0.0, ge=0, le=MAX_DAYS)
    title: str = "Certification expiring soon"
    body: str = "Your {certification_type} certification expires in {days_left} days ({expires_on})."

    @field_validator("tiers_days")
    @classmethod
    def _descending(cls, value: list[int]) -> list[int]:
        return distinct_sorted(value, "tiers_days", reverse=True)

    @property
    def lead_time_days(self) -> int:
        return self.tiers_days[0]
