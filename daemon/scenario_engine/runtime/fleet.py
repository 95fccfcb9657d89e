"""Several instances, one set of rules: each publishes its rules fingerprint; a follower whose
rules differ from the leader's stops evaluating until the operator makes them agree.

Two daemons with different rules files would both decide: an event claimed by either gets that
daemon's thresholds under the same rule names, and when leadership moves the new leader
re-sweeps under its own rules. The leader's rules are the fleet's rules (the leader sweeps,
and always evaluates under its own rules). Every health round, an instance writes its
fingerprint into its ``scenario_engine_instance`` row and reads the leader's; a follower that
differs says so once (an error line per change), on /status, /readyz (503, ``rules_mismatch``),
the metrics and the status page, and after ``SCENARIO_RULES_MISMATCH_GRACE_SECONDS`` (the
rolling-reload window, default 0) its drain claims no event: the events stay pending for the
leader (or for this instance once its rules agree again, e.g. after a SIGHUP). The dispatcher
keeps delivering pushes already enqueued: they were decided under the leader's rules or
before the mismatch.

A follower evaluates nothing until its first heartbeat has told it the leader's fingerprint
(a second or so at start), so that a replica started with the wrong file never decides once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetchrow
from scenario_engine.logs import get_logger
from scenario_engine.runtime.clock import local_now
from scenario_engine.scenarios.rules import Rules

if TYPE_CHECKING:
    from scenario_engine.runtime.state import RuntimeState

log = get_logger("scenario_engine.fleet")
# A leader row older than this is a leader that died without saying goodbye: not compared with.
LEADER_FRESH_SECONDS = 15.0


def rules_fingerprint(rules: Rules) -> str:
    """Identifies a rule set: what instances compare, and what a sweep records (a sweep after a
    rules change must be a full one)."""
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class Fleet:
    """What this instance knows of its rules against the leader's (updated by the health loop)."""

    grace_seconds: float = 0.0
    fingerprint: str | None = None  # this instance's rules, as last published
    leader_instance: str | None = None
    leader_fingerprint: str | None = None
    checked: bool = False  # a heartbeat has answered at least once
    mismatch_since: float | None = None  # monotonic; None while the rules agree
    _announced_pause: bool = False

    @property
    def mismatch(self) -> bool:
        return self.mismatch_since is not None

    def paused(self, leader: bool, now: float | None = None) -> bool:
        """Whether this instance must not evaluate: never the leader; a follower before its
        first heartbeat, or whose rules have differed from the leader's for the grace period."""
        if leader:
            return False
        if not self.checked:
            return True
        if self.mismatch_since is None:
            return False
        at = time.monotonic() if now is None else now
        return at - self.mismatch_since >= self.grace_seconds

    def observe(
        self, fingerprint: str, leader_instance: str | None, leader_fingerprint: str | None, leader: bool
    ) -> None:
        """One heartbeat's answer; logs once per change (a mismatch, a different one, agreement)."""
        before = (self.fingerprint, self.leader_fingerprint) if self.mismatch else None
        self.fingerprint = fingerprint
        self.leader_instance = leader_instance
        self.leader_fingerprint = leader_fingerprint
        self.checked = True
        differs = not leader and leader_fingerprint is not None and leader_fingerprint != fingerprint
        if differs:
            if before != (fingerprint, leader_fingerprint):
                self.mismatch_since = time.monotonic()
                self._announced_pause = False
                log.error(
                    "rules_fingerprint_mismatch",
                    rules_fingerprint=fingerprint,
                    leader=leader_instance,
                    leader_rules_fingerprint=leader_fingerprint,
                    grace_seconds=self.grace_seconds,
                    hint="this instance's rules file differs from the leader's: it evaluates nothing "
                    "until they agree (install the same file everywhere and send SIGHUP)",
                )
        elif self.mismatch:
            self.mismatch_since = None
            self._announced_pause = False
            log.info(
                "rules_mismatch_cleared",
                reason="this instance leads" if leader else "the rules agree",
                rules_fingerprint=fingerprint,
                leader=leader_instance,
            )
        if self.mismatch and not self._announced_pause and self.paused(leader):
            self._announced_pause = True
            log.error("evaluation_paused", reason="rules_mismatch", leader=leader_instance)

    def view(self, leader: bool) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "leader_instance": self.leader_instance,
            "leader_fingerprint": self.leader_fingerprint,
            "mismatch": self.mismatch,
            "evaluation_paused": self.paused(leader),
            "grace_seconds": self.grace_seconds,
        }


async def heartbeat(conn: Conn, state: RuntimeState, rules: Rules) -> dt.datetime:
    """Write this instance's heartbeat (role, rules fingerprint, clock skew), learn the leader's
    fingerprint and measure the clock skew on the same round trip; returns the server's clock.

    Publishes what changed to the metrics; pokes the drain when evaluation resumes, so that the
    events left pending meanwhile are taken up at once rather than at the next poll."""
    fingerprint = rules_fingerprint(rules)
    was_paused = state.evaluation_paused
    sent = local_now()
    row = await fetchrow(
        conn,
        "heartbeat_instance",
        instance_id=state.instance_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        role="leader" if state.leader else "follower",
        rules_fingerprint=fingerprint,
        clock_skew_secs=state.clock.skew_seconds,
        fresh_secs=LEADER_FRESH_SECONDS,
    )
    received = local_now()
    assert row is not None  # the statement always returns its one row
    server_now: dt.datetime = row["server_now"]
    skew = state.clock.observe(sent, server_now, received)
    state.fleet.observe(fingerprint, row["leader_instance"], row["leader_fingerprint"], state.leader)
    m = state.metrics
    m.clock_skew.set(skew)
    m.set_rules_fingerprint(fingerprint)
    m.rules_mismatch.set(1 if state.fleet.mismatch else 0)
    m.evaluation_paused.set(1 if state.evaluation_paused else 0)
    if was_paused and not state.evaluation_paused:
        state.poke_drain()
    return server_now
