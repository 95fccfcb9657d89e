"""The certification-expiry scenario as the registry sees it (scenarios/protocol.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.records import Column, MentorRecord, TypedRow, load_certifications, load_notifications
from scenario_engine.instants import iso
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.certification import oracle
from scenario_engine.scenarios.certification.context import CertificationContext
from scenario_engine.scenarios.certification.oracle import CertificationState
from scenario_engine.scenarios.certification.rule import CertificationExpiryRule
from scenario_engine.scenarios.common import SetBased
from scenario_engine.scenarios.protocol import OutcomeSpec, Recheck


class CertificationRow(TypedRow):
    """A row of ``certification_candidates`` (queries.sql)."""

    mentor_id = Column[uuid.UUID]()
    certification_id = Column[int]()
    type = Column[str]()
    expires_at = Column[dt.datetime]()
    timezone = Column[str]()
    tier = Column[int]()


class CertificationScenario(SetBased[CertificationExpiryRule, CertificationRow]):
    type = oracle.TYPE
    label = "Certification expiry"
    title = "Certification reminders"
    about = "A reminder before a certification runs out; success is a renewal before the expiry date."
    context = CertificationContext
    rule_model = CertificationExpiryRule
    watched_tables = frozenset({"certification", "peer_mentor", "notification_preference"})
    recheck: Recheck | None = Recheck("certification_recheck", "certification renewed, revoked or expired")
    outcome = OutcomeSpec("renewed in time", "lapsed", "certification_outcomes", plain="renewed in time")

    candidate_query = "certification_candidates"
    row_class = CertificationRow
    due_query = "certification_due"

    def rule_params(self, rule: CertificationExpiryRule) -> dict[str, Any]:
        return {
            "tiers_days": list(rule.tiers_days),
            "types": list(rule.certification_types),
            "lead_days": rule.lead_time_days,
        }

    def from_row(self, row: CertificationRow, rule: CertificationExpiryRule, as_of: dt.datetime) -> Candidate:
        return oracle.build_candidate(
            row.mentor_id,
            rule,
            row.certification_id,
            row.type,
            row.expires_at,
            row.timezone,
            int(row.tier),
            as_of,
        )

    async def load_state(
        self, conn: Conn, rule: CertificationExpiryRule, mentor: MentorRecord, as_of: dt.datetime
    ) -> CertificationState:
        fired: dict[int, int] = {}
        for n in await load_notifications(conn, mentor.id, rule.name):
            cert_id = int(n.subject)
            fired[cert_id] = min(fired.get(cert_id, n.seq), n.seq)
        return CertificationState(
            mentor_id=mentor.id,
            status=mentor.status,
            timezone=mentor.timezone,
            certifications=tuple(await load_certifications(conn, mentor.id)),
            fired_tiers=fired,
        )

    def decide(
        self, state: CertificationState, rule: CertificationExpiryRule, as_of: dt.datetime
    ) -> list[Candidate]:
        return oracle.decide_certifications(state, rule, as_of)

    def explain(
        self, state: CertificationState, rule: CertificationExpiryRule, as_of: dt.datetime
    ) -> tuple[dict[str, Any], str]:
        certs = [
            {
                "id": c.id,
                "type": c.type,
                "expires_at": iso(c.expires_at),
                "status": oracle.certification_status(c, state, rule, as_of),
                "smallest_tier_sent": state.fired_tiers.get(c.id),
            }
            for c in sorted(state.certifications, key=lambda c: c.id)
        ]
        inputs = {"status": state.status, "tiers_days": rule.tiers_days, "certifications": certs}
        return inputs, "no certification is due for a reminder"

    def due_params(
        self, rules: Sequence[CertificationExpiryRule], since: dt.datetime, as_of: dt.datetime
    ) -> dict[str, Any]:
        return {
            "since": since,
            "as_of": as_of,
            "tiers_days": sorted({t for r in rules for t in r.tiers_days}),
        }

    def window_end(
        self, candidate: Candidate, rule: CertificationExpiryRule, as_of: dt.datetime
    ) -> dt.datetime:
        """Renewed in time means before the reminded certification expires."""
        return dt.datetime.fromisoformat(str(candidate.inputs["expires_at"]))


SCENARIO = CertificationScenario()
