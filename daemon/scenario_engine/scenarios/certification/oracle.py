"""Certification expiry, the pure rule: remind before a certification lapses, once per reminder tier.

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

from scenario_engine.db.records import CertificationRecord
from scenario_engine.instants import iso
from scenario_engine.scenarios.base import Candidate, MentorDataError, days_left, dedup_key
from scenario_engine.scenarios.certification.context import CertificationContext
from scenario_engine.scenarios.certification.rule import CertificationExpiryRule
from scenario_engine.scenarios.zones import UnknownTimezone, load_zone

TYPE = "certification_expiry"
CertificationRow = CertificationRecord  # the oracle reads certifications as the boundary types them


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
    """Not revoked, not expired, not renewed: the condition the set-based query and the
    send-time re-check (queries.sql, ``certification_recheck``) state in SQL."""
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
        scenario_type=TYPE,
        rule_name=rule.name,
        subject=str(cert_id),
        seq=tier,
        dedup_key=dedup_key(TYPE, rule.name, mentor_id, str(cert_id), tier),
        inputs=dict(
            CertificationContext(
                certification_id=cert_id,
                certification_type=cert_type,
                expires_at=iso(expires_at),
                expires_on=expires_at.astimezone(zone).date().isoformat(),
                days_left=days_left(expires_at, as_of),
                tier_days=tier,
            )
        ),
    )


def certification_status(
    cert: CertificationRow, state: CertificationState, rule: CertificationExpiryRule, as_of: dt.datetime
) -> str:
    """Where a certification stands for this rule (explain)."""
    if cert.revoked_at is not None:
        return "revoked"
    if cert.expires_at <= as_of:
        return "expired"
    if is_superseded(cert, state.certifications):
        return "superseded"
    tier = applicable_tier(rule, cert.expires_at, as_of)
    if tier is None:
        return f"expires beyond the {rule.lead_time_days}-day lead time"
    return f"in tier {tier}"
