"""Certification expiry: remind before a certification lapses, once per reminder tier.

A certification counts while it expires within the rule's lead time (its largest tier),
is not revoked, not already expired and not superseded by a newer one of the same type.
The tier that applies is the smallest one the expiry falls within; it fires unless that
tier or a smaller one already fired for the certification (so a certification first seen
five days out gets the 7-day reminder, not the 30-day one too).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from scenario_engine.config import CertificationExpiryRule
from scenario_engine.scenarios.base import Candidate, MentorDataError, days_left, dedup_key, iso
from scenario_engine.scenarios.zones import UnknownTimezone, load_zone


@dataclass(frozen=True)
class CertificationRow:
    id: int
    type: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class CertificationState:
    mentor_id: uuid.UUID
    status: str
    timezone: str
    certifications: tuple[CertificationRow, ...]
    fired_tiers: dict[int, int]  # certification id -> smallest tier already sent (this rule)


def applicable_tier(rule: CertificationExpiryRule, expires_at: dt.datetime, as_of: dt.datetime) -> int | None:
    # In UTC: adding days to a zoned datetime would add wall-clock days across DST.
    at = as_of.astimezone(dt.UTC)
    tiers = [t for t in rule.tiers_days if expires_at <= at + dt.timedelta(days=t)]
    return min(tiers) if tiers else None


def is_superseded(cert: CertificationRow, all_certs: tuple[CertificationRow, ...]) -> bool:
    return any(
        other.type == cert.type
        and other.revoked_at is None
        and (other.issued_at, other.id) > (cert.issued_at, cert.id)
        for other in all_certs
    )


def still_applies(
    cert: CertificationRow, all_certs: tuple[CertificationRow, ...], as_of: dt.datetime
) -> bool:
    """The send-time re-check: not revoked, not expired, not renewed."""
    return cert.revoked_at is None and cert.expires_at > as_of and not is_superseded(cert, all_certs)


def decide_certifications(
    state: CertificationState, rule: CertificationExpiryRule, as_of: dt.datetime
) -> list[Candidate]:
    if state.status != "active":
        return []
    out: list[Candidate] = []
    for cert in sorted(state.certifications, key=lambda c: c.id):
        if rule.certification_types and cert.type not in rule.certification_types:
            continue
        if not still_applies(cert, state.certifications, as_of):
            continue
        tier = applicable_tier(rule, cert.expires_at, as_of)
        if tier is None:
            continue
        fired = state.fired_tiers.get(cert.id)
        if fired is not None and tier >= fired:
            continue
        out.append(
            build_candidate(
                state.mentor_id, rule, cert.id, cert.type, cert.expires_at, state.timezone, tier, as_of
            )
        )
    return out


def build_candidate(
    mentor_id: uuid.UUID,
    rule: CertificationExpiryRule,
    cert_id: int,
    cert_type: str,
    expires_at: dt.datetime,
    timezone: str,
    tier: int,
    as_of: dt.datetime,
) -> Candidate:
    try:  # the reminder names the expiry date in the mentor's own calendar
        zone = load_zone(timezone)
    except UnknownTimezone as exc:
        raise MentorDataError({mentor_id: str(exc)}) from None
    return Candidate(
        mentor_id=mentor_id,
        scenario_type="certification_expiry",
        rule_name=rule.name,
        subject=str(cert_id),
        seq=tier,
        dedup_key=dedup_key("certification_expiry", rule.name, mentor_id, str(cert_id), tier),
        inputs={
            "certification_id": cert_id,
            "certification_type": cert_type,
            "expires_at": iso(expires_at),
            "expires_on": expires_at.astimezone(zone).date().isoformat(),
            "days_left": days_left(expires_at, as_of),
            "tier_days": tier,
        },
    )


def candidate_from_row(row: Any, rule: CertificationExpiryRule, as_of: dt.datetime) -> Candidate:
    return build_candidate(
        row["mentor_id"],
        rule,
        row["certification_id"],
        row["type"],
        row["expires_at"],
        row["timezone"],
        int(row["tier"]),
        as_of,
    )


def query_args(
    rule: CertificationExpiryRule, mentors: list[uuid.UUID], as_of: dt.datetime
) -> tuple[Any, ...]:
    return (mentors, as_of, rule.name, list(rule.tiers_days), list(rule.certification_types))
