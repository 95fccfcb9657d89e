"""What a certification reminder carries: its message placeholders, and the key the
send-time re-check reads back (``certification_id``, queries.sql ``certification_recheck``)."""

from __future__ import annotations

from typing import TypedDict


class CertificationContext(TypedDict):
    certification_id: int
    certification_type: str
    expires_at: str | None
    expires_on: str
    days_left: int
    tier_days: int
