"""The eight seed interfaces of DESIGN.md §2, composed from the modules around it.

Every evaluation takes an explicit ``as_of`` (default: now). ``dry_run=True`` runs the
very same code inside a transaction that is rolled back, so a dry run's counts are
exactly what a real run would send, and nothing is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scenario_engine.config import (
    CertificationExpiryRule,
    InactivityRule,
    Rule,
    Rules,
    ScenarioType,
)
from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import query
from scenario_engine.evaluate import (
    decide_and_write,
    ensure_rules_seen,
    policy_states,
    set_based_candidates,
    single_mentor_candidates,
    utc,
)
from scenario_engine.events import ScenarioEvent, scenarios_for
from scenario_engine.isolation import Outcomes, evaluate_isolated
from scenario_engine.notifications import Outcome, record_last_triggered, write_outcomes
from scenario_engine.policy import PolicyDecision, decide_policy
from scenario_engine.scenarios.base import Candidate, dedup_key

DEFAULT_SWEEP_BATCH = 20_000


def _none(_group: list[uuid.UUID]) -> list[uuid.UUID]:
    return []


@dataclass
class SweepResult:
    as_of: dt.datetime
    dry_run: bool
    mentors: int = 0
    seconds: float = 0.0
    per_rule: dict[str, Counter[str]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # stopped between batches; the period is not complete
    quarantined: dict[uuid.UUID, str] = field(default_factory=dict)  # mentor -> why (isolation.py)

    def count(self, outcomes: Outcomes) -> None:
        self.quarantined.update((q.mentor_id, q.reason) for q in outcomes.quarantined)
        for o in outcomes:
            key = "duplicate" if o.duplicate else o.decision.outcome
            self.per_rule.setdefault(o.candidate.rule_name, Counter())[key] += 1

    @property
    def sent(self) -> int:
        return sum(c["sent"] for c in self.per_rule.values())


@dataclass(frozen=True)
class EnqueueResult:
    notification_id: int | None
    created: bool
    decision: PolicyDecision


class Engine:
    """Holds the pool and the current rules; safe to share between tasks."""

    def __init__(self, pool: asyncpg.Pool[Any], rules: Rules, *, sweep_batch: int = DEFAULT_SWEEP_BATCH):
        self.pool = pool
        self.rules = rules
        self.sweep_batch = sweep_batch
        self._known_rules: set[str] = set()

    def replace_rules(self, rules: Rules) -> None:
        self.rules = rules

    async def see_rules(self, conn: Conn, as_of: dt.datetime | None = None) -> None:
        """Record rules seen for the first time (baselining new milestone rules)."""
        await ensure_rules_seen(conn, self.rules, utc(as_of), self._known_rules)

    @contextlib.asynccontextmanager
    async def _session(self, dry_run: bool) -> AsyncIterator[tuple[Conn, set[str]]]:
        """A connection; for a dry run wrapped in a transaction that is always rolled back."""
        async with self.pool.acquire() as conn:
            if not dry_run:
                yield conn, self._known_rules
                return
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn, set(self._known_rules)  # baselines in a dry run must not be remembered
            finally:
                await tx.rollback()

    # -- single-mentor detectors -----------------------------------------------------------

    async def _evaluate_single(
        self, mentor_id: uuid.UUID, rules: Sequence[Rule], as_of: dt.datetime | None, dry_run: bool
    ) -> Outcomes:
        at = utc(as_of)

        async def evaluate(_mentors: list[uuid.UUID]) -> list[Outcome]:
            out: list[Outcome] = []
            for rule in rules:
                candidates = await single_mentor_candidates(conn, rule, mentor_id, at)
                out += await decide_and_write(conn, candidates, rule, self.rules, at)
            return out

        every_rule = list(rules) == self.rules.enabled()  # only then may it clear a quarantine
        async with self._session(dry_run) as (conn, known):
            await ensure_rules_seen(conn, self.rules, at, known)
            return await evaluate_isolated(conn, [mentor_id], evaluate, None if every_rule else _none)

    async def evaluate_inactivity_scenario(
        self,
        user_id: uuid.UUID,
        threshold_days: int | None = None,
        *,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
    ) -> list[Outcome]:
        """Inactivity Detector for one mentor: the configured rules with that threshold
        (all inactivity rules if None; an ad-hoc rule if none has it)."""
        rules: list[Rule] = [
            r for r in self.rules.inactivity if r.enabled and threshold_days in (None, r.threshold_days)
        ]
        if not rules and threshold_days is not None:
            rules = [InactivityRule(name=f"inactive_{threshold_days}d", threshold_days=threshold_days)]
        return await self._evaluate_single(user_id, rules, as_of, dry_run)

    async def evaluate_milestone_scenario(
        self,
        user_id: uuid.UUID,
        milestone_type: str | None = None,
        *,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
    ) -> list[Outcome]:
        """Milestone Detector: ``milestone_type`` is a metric (sessions/hours/contacts) or a rule name."""
        rules: list[Rule] = [
            r for r in self.rules.milestone if r.enabled and milestone_type in (None, r.metric, r.name)
        ]
        return await self._evaluate_single(user_id, rules, as_of, dry_run)

    async def evaluate_certification_expiry_scenario(
        self,
        user_id: uuid.UUID,
        lead_time_days: int | None = None,
        *,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
    ) -> list[Outcome]:
        rules: list[Rule] = [
            r
            for r in self.rules.certification_expiry
            if r.enabled and lead_time_days in (None, r.lead_time_days)
        ]
        if not rules and lead_time_days is not None:
            rules = [
                CertificationExpiryRule(name=f"certification_{lead_time_days}d", tiers_days=[lead_time_days])
            ]
        return await self._evaluate_single(user_id, rules, as_of, dry_run)

    async def evaluate_mentor(
        self, mentor_id: uuid.UUID, *, as_of: dt.datetime | None = None, dry_run: bool = False
    ) -> Outcomes:
        """Every enabled rule for one mentor, in rule order (what ``explain`` shows)."""
        return await self._evaluate_single(mentor_id, self.rules.enabled(), as_of, dry_run)

    # -- policy and enqueue ------------------------------------------------------------------

    async def should_notify(
        self,
        user_id: uuid.UUID,
        scenario_type: ScenarioType,
        *,
        rule_name: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> PolicyDecision:
        at = utc(as_of)
        rule = self._rule_for(scenario_type, rule_name)
        async with self.pool.acquire() as conn:
            states, _ = await policy_states(conn, [user_id], scenario_type, at)
        state = states.get(user_id)
        if state is None:
            return PolicyDecision("mentor_not_active", "no such mentor")
        return decide_policy(state, scenario_type, rule.cooldown, self.rules.daily_cap, at)

    async def enqueue_notification(
        self,
        user_id: uuid.UUID,
        scenario_type: ScenarioType,
        context_data: dict[str, Any],
        *,
        as_of: dt.datetime | None = None,
    ) -> EnqueueResult:
        """Enqueue a notification after ``should_notify``; idempotent by dedup key.

        ``context_data`` may name ``rule_name``, ``dedup_key`` (default: one per
        mentor, rule and instant), ``subject`` and ``seq``; the rest fills the template.
        """
        at = utc(as_of)
        rule = self._rule_for(scenario_type, context_data.get("rule_name"))
        subject = str(context_data.get("subject", "manual"))
        seq = int(context_data.get("seq", 0))
        key = str(
            context_data.get("dedup_key")
            or dedup_key(scenario_type, rule.name, user_id, subject, at.isoformat())
        )
        inputs = {
            k: v for k, v in context_data.items() if k not in ("rule_name", "dedup_key", "subject", "seq")
        }
        cand = Candidate(user_id, scenario_type, rule.name, subject, seq, key, inputs)
        async with self.pool.acquire() as conn:
            existing = await conn.fetchrow(query("existing_notifications"), [key])
            if existing is not None:  # a repeat: return what was enqueued the first time
                return EnqueueResult(existing["id"], False, PolicyDecision("sent", "already enqueued"))
            states, names = await policy_states(conn, [user_id], scenario_type, at)
            state = states.get(user_id)
            if state is None:
                return EnqueueResult(None, False, PolicyDecision("mentor_not_active", "no such mentor"))
            decision = decide_policy(state, scenario_type, rule.cooldown, self.rules.daily_cap, at)
            [outcome] = await write_outcomes(conn, rule, [(cand, decision)], at, names)
        return EnqueueResult(outcome.notification_id, decision.allowed and not outcome.duplicate, decision)

    async def record_last_triggered(
        self,
        user_id: uuid.UUID,
        scenario_type: ScenarioType,
        *,
        as_of: dt.datetime | None = None,
        rule_name: str = "manual",
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await mark_engine_write(conn)
            await record_last_triggered(conn, user_id, scenario_type, utc(as_of), rule_name)

    def _rule_for(self, scenario_type: str, rule_name: str | None) -> Rule:
        if rule_name is not None:
            rule = self.rules.by_name(rule_name)
            if rule.scenario_type != scenario_type:
                raise ValueError(f"rule {rule_name!r} is a {rule.scenario_type} rule, not {scenario_type}")
            return rule
        for rule in self.rules.all():
            if rule.scenario_type == scenario_type:
                return rule
        raise ValueError(f"no {scenario_type} rule is configured")

    # -- set-based paths ---------------------------------------------------------------------

    async def evaluate_mentors(self, conn: Conn, mentors: list[uuid.UUID], as_of: dt.datetime) -> Outcomes:
        """Every enabled rule for a set of mentors, set-based (poison rows isolated)."""
        return await self._evaluate_rules(conn, as_of, lambda _scenario_type: mentors)

    async def _evaluate_rules(
        self, conn: Conn, as_of: dt.datetime, mentors_for: Callable[[str], list[uuid.UUID]]
    ) -> Outcomes:
        """Each enabled rule, in rule order, over the mentors ``mentors_for`` names for its
        scenario type: one candidate query, one policy query and one write per rule. The
        whole batch is one transaction (a savepoint inside the caller's); a mentor whose rows
        cannot be evaluated is isolated and quarantined, the others are written (isolation.py)."""
        rules = self.rules.enabled()
        wanted = {t: mentors_for(t) for t in dict.fromkeys(r.scenario_type for r in rules)}
        everyone = list(dict.fromkeys(m for ms in wanted.values() for m in ms))
        if not everyone:
            return Outcomes()
        by_type = {t: set(ms) for t, ms in wanted.items()}

        async def evaluate(group: list[uuid.UUID]) -> list[Outcome]:
            members = set(group)
            out: list[Outcome] = []
            for rule in rules:
                mentors = [m for m in wanted[rule.scenario_type] if m in members]
                candidates = await set_based_candidates(conn, rule, mentors, as_of)
                out += await decide_and_write(conn, candidates, rule, self.rules, as_of)
            return out

        def complete(group: list[uuid.UUID]) -> list[uuid.UUID]:
            return [m for m in group if all(m in ms for ms in by_type.values())]

        return await evaluate_isolated(conn, everyone, evaluate, complete)

    async def run_scheduled_evaluation(
        self,
        as_of: dt.datetime | None = None,
        *,
        dry_run: bool = False,
        collect: bool = False,
        before_batch: Callable[[list[uuid.UUID]], Awaitable[bool]] | None = None,
        progress: Callable[[int, int], None] | None = None,
        since: dt.datetime | None = None,
    ) -> SweepResult:
        """The sweep over all active mentors: batches of ids, a few statements per rule each.

        ``before_batch(mentors)`` is awaited before each batch is evaluated; False stops the
        sweep there (a daemon shutting down, or a leader that lost its lock or its sweep lease
        must not evaluate another batch). The result then says ``interrupted`` and a later
        sweep of the same period finishes the job (idempotent).
        ``progress(done, total)`` is called after each batch (for a progress bar).

        With ``since`` (the instant of the previous completed sweep under the same rules)
        the sweep is *incremental*: only mentors for whom a time-driven condition may have
        become true in (since, as_of] are evaluated — every data change is an event that the
        event path has evaluated already. The result is the same as a full sweep's (tested);
        the scheduler still runs a full sweep periodically as a safety net.
        """
        at = utc(as_of)
        result = SweepResult(as_of=at, dry_run=dry_run)
        started = time.perf_counter()
        async with self._session(dry_run) as (conn, known):
            await ensure_rules_seen(conn, self.rules, at, known)
            due = await self._due_mentors(conn, utc(since), at) if since is not None else None
            if due is not None:
                total = len(due)
            else:
                total = await conn.fetchval(query("active_mentor_count")) if progress is not None else 0
            after: uuid.UUID | None = None
            while True:
                if due is not None:
                    mentors = due[result.mentors : result.mentors + self.sweep_batch]
                else:
                    rows = await conn.fetch(query("active_mentor_batch"), after, self.sweep_batch)
                    mentors = [r["id"] for r in rows]
                if not mentors:
                    break
                if before_batch is not None and not await before_batch(mentors):
                    result.interrupted = True
                    break
                after = mentors[-1]
                result.mentors += len(mentors)
                outcomes = await self.evaluate_mentors(conn, mentors, at)
                result.count(outcomes)
                if collect:
                    result.outcomes += outcomes
                if progress is not None:
                    progress(result.mentors, max(total, result.mentors))
        result.seconds = time.perf_counter() - started
        return result

    async def _due_mentors(self, conn: Conn, since: dt.datetime, as_of: dt.datetime) -> list[uuid.UUID]:
        rows = await conn.fetch(query("due_mentors"), *due_mentors_args(self.rules, since, as_of))
        return [r["mentor_id"] for r in rows]

    async def handle_database_events(
        self, conn: Conn, events: Sequence[ScenarioEvent], as_of: dt.datetime | None = None
    ) -> Outcomes:
        """Route a batch of events set-based: one evaluation per scenario type over all the
        mentors the batch touched. Raises EventError for an event that can never be handled."""
        at = utc(as_of)
        await ensure_rules_seen(conn, self.rules, at, self._known_rules)
        by_type: dict[str, set[uuid.UUID]] = {}
        for event in events:
            for scenario_type in scenarios_for(event):
                by_type.setdefault(scenario_type, set()).update(event.mentors())
        return await self._evaluate_rules(
            conn, at, lambda scenario_type: sorted(by_type.get(scenario_type, ()))
        )

    async def handle_database_event(self, event: ScenarioEvent, as_of: dt.datetime | None = None) -> Outcomes:
        async with self.pool.acquire() as conn:
            return await self.handle_database_events(conn, [event], as_of)


def due_mentors_args(rules: Rules, since: dt.datetime, as_of: dt.datetime) -> tuple[Any, ...]:
    """Parameters of the ``due_mentors`` query: every threshold, reminder spacing, tier and
    cooldown of the enabled rules (the windows in which something can become due)."""
    enabled = rules.enabled()
    inactivity = [r for r in enabled if isinstance(r, InactivityRule)]
    return (
        since,
        as_of,
        sorted({r.threshold_days * 86400.0 for r in inactivity}),
        [r.name for r in inactivity],
        [r.cooldown.total_seconds() for r in inactivity],
        sorted({t for r in enabled if isinstance(r, CertificationExpiryRule) for t in r.tiers_days}),
        sorted({r.cooldown.total_seconds() for r in enabled if r.cooldown_days > 0}),
    )
