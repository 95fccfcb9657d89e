"""The eight seed interfaces (docs/ARCHITECTURE.md, "Seed interfaces"), composed from the modules around it.

Every evaluation takes an explicit ``as_of`` (default: now). ``dry_run=True`` runs the
very same code inside a transaction that is rolled back, so a dry run's counts are
exactly what a real run would send, and nothing is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import fetchrow
from scenario_engine.domain.rule import RuleBase as Rule
from scenario_engine.domain.rule import ScenarioType
from scenario_engine.evaluate import (
    SeenRules,
    ensure_rules_seen,
    evaluate_set_based,
    evaluate_single,
    experiment_id,
    instant,
    policy_states,
    utc,
)
from scenario_engine.events import ScenarioEvent, route
from scenario_engine.isolation import Outcomes, QuarantineCounter
from scenario_engine.notifications import Outcome, record_last_triggered, write_outcomes
from scenario_engine.outcomes.resolve import ResolvedCount, resolve_outcomes
from scenario_engine.policy import PolicyDecision, decide_policy
from scenario_engine.scenarios.base import Candidate, SweepHints, dedup_key
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from scenario_engine.sweep import SweepPlan, SweepResult, run_sweep

__all__ = ["Engine", "EnqueueResult", "SweepResult"]

R = TypeVar("R", bound=Rule)
# How long a sweep waits for a second connection (its candidate reads ahead) before going without.
READER_WAIT_S = 0.05
# How long a full sweep waits for a lane's connection to be opened in a free slot of the pool.
LANE_CONNECT_WAIT_S = 2.0
# How long giving a reader or a lane back may take (asyncpg resets the connection). Not the short
# wait it was acquired with, which asyncpg would apply: on a loaded machine the reset took more
# than READER_WAIT_S and a sweep that had finished raised TimeoutError (tests/db/test_sweep_release.py).
RELEASE_WAIT_S = 30.0
# What a shared sweep's range tells its candidate statements (scenarios/base.py): a scheduled
# sweep's, without the zone suspects (each range would read them for itself, as a batch does).
SHARED_RANGE_HINTS = SweepHints(skip_logged_opt_outs=True)

# The cyclic collector's first threshold while an engine exists (Python's default is 700). A
# sweep batch keeps ~10^5 objects alive (rows, candidates, contexts, parameters), freed by
# reference counting when the batch ends; at 700, the full collections that their number sets
# off traversed them all again and again: 9 per first sweep of 100k mentors, 0.3–0.45 s,
# 15–20 % of its client CPU (issue 18, docs/BENCHMARKS.md). Cyclic garbage is still collected,
# every 10,000 allocations net instead of 700.
GC_GEN0_THRESHOLD = 10_000


def batch_sized_gc() -> None:
    """Raise the collector's first threshold to ``GC_GEN0_THRESHOLD`` (never lower it)."""
    first, second, third = gc.get_threshold()
    if 0 < first < GC_GEN0_THRESHOLD:  # 0: collection turned off, left so
        gc.set_threshold(GC_GEN0_THRESHOLD, second, third)


@dataclass(frozen=True)
class EnqueueResult:
    notification_id: int | None
    created: bool
    decision: PolicyDecision


class Engine:
    """Holds the pool and the current rules; safe to share between tasks."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        rules: Rules,
        *,
        sweep_batch: int = 20_000,
        on_quarantine: QuarantineCounter | None = None,
        sweep_lanes: int = 2,
    ):
        """``on_quarantine(n)``: told how many mentors each evaluation quarantined (the daemon
        passes its Prometheus counter; isolation.py). ``sweep_lanes``: how many batches a full
        sweep evaluates at once, each on its own pool connection (sweep.py ``_run_lanes``)."""
        self.pool = pool
        self.on_quarantine = on_quarantine
        self.rules = rules
        self.sweep_batch = sweep_batch
        self.sweep_lanes = sweep_lanes
        self._seen = SeenRules()
        batch_sized_gc()

    def replace_rules(self, rules: Rules) -> None:
        self.rules = rules

    async def see_rules(self, conn: Conn, as_of: dt.datetime | None = None) -> None:
        """Record rules seen for the first time (baselining new milestone rules)."""
        await ensure_rules_seen(conn, self.rules, await instant(conn, as_of), self._seen)

    @contextlib.asynccontextmanager
    async def _session(self, dry_run: bool) -> AsyncIterator[tuple[Conn, SeenRules]]:
        """A connection; for a dry run wrapped in a transaction that is always rolled back."""
        async with self.pool.acquire() as conn:
            if not dry_run:
                yield conn, self._seen
                return
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn, self._seen.copy()  # what a dry run created is rolled back: forget it
            finally:
                await tx.rollback()

    @contextlib.asynccontextmanager
    async def _reader(self, dry_run: bool) -> AsyncIterator[Conn | None]:
        """A second connection for a sweep's candidate reads (evaluate._Prefetch), if the pool
        has one to spare at once; none for a dry run, whose reads must see its own rolled-back
        writes (a rule's first-seen baseline)."""
        if dry_run:
            yield None
            return
        try:
            reader = await self.pool.acquire(timeout=READER_WAIT_S)
        except TimeoutError:
            yield None
            return
        try:
            yield reader
        finally:
            await self.pool.release(reader, timeout=RELEASE_WAIT_S)

    def spare_connections(self) -> int:
        """How many more connections the pool can give at once (idle ones, or free slots to
        open one in) and still keep one free for whoever asks next: what a sweep may take for
        lanes without ever making the event drain or the dispatcher wait."""
        pool = self.pool
        return max(0, pool.get_max_size() - (pool.get_size() - pool.get_idle_size()) - 1)

    def spare_lanes(self, wanted: int) -> contextlib.AbstractAsyncContextManager[list[Conn]]:
        """``_lanes`` for a shared full sweep's ranges (runtime/scheduler.py): the same rule."""
        return self._lanes(wanted)

    @contextlib.asynccontextmanager
    async def _lanes(self, wanted: int) -> AsyncIterator[list[Conn]]:
        """Up to ``wanted`` more connections for a full sweep's lanes, each only if the pool
        can spare it now and still keep one free for whoever asks next (the event drain, the
        dispatcher): an idle connection (``READER_WAIT_S``), or a free slot to open one in
        (``LANE_CONNECT_WAIT_S``). A sweep never queues behind the pool's other users: without
        a spare connection it runs with fewer lanes (one: none here)."""
        got: list[Any] = []  # pool connections (asyncpg's PoolConnectionProxy)
        try:
            for _ in range(wanted):
                pool = self.pool
                if self.spare_connections() < 1:
                    break
                wait = READER_WAIT_S if pool.get_idle_size() > 0 else LANE_CONNECT_WAIT_S
                try:
                    got.append(await pool.acquire(timeout=wait))
                except TimeoutError:
                    break
            yield got
        finally:
            for lane in got:
                await self.pool.release(lane, timeout=RELEASE_WAIT_S)

    # -- single-mentor detectors -----------------------------------------------------------

    async def _evaluate_single(
        self, mentor_id: uuid.UUID, rules: Sequence[Rule], as_of: dt.datetime | None, dry_run: bool
    ) -> Outcomes:
        async with self._session(dry_run) as (conn, seen):
            at = await instant(conn, as_of)
            experiments = await ensure_rules_seen(conn, self.rules, at, seen)
            for rule in rules:  # an ad-hoc rule of a seed interface runs under its own experiment
                if rule.name not in experiments:
                    experiments[rule.name] = await experiment_id(conn, rule, self.rules, seen, at)
            return await evaluate_single(
                conn, self.rules, experiments, rules, mentor_id, at, self.on_quarantine
            )

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
        rules = self._enabled_rules(
            InactivityRule, "inactivity", lambda r: threshold_days in (None, r.threshold_days)
        )
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
        rules = self._enabled_rules(
            MilestoneRule, "milestone", lambda r: milestone_type in (None, r.metric, r.name)
        )
        return await self._evaluate_single(user_id, rules, as_of, dry_run)

    async def evaluate_certification_expiry_scenario(
        self,
        user_id: uuid.UUID,
        lead_time_days: int | None = None,
        *,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
    ) -> list[Outcome]:
        rules = self._enabled_rules(
            CertificationExpiryRule,
            "certification_expiry",
            lambda r: lead_time_days in (None, r.lead_time_days),
        )
        if not rules and lead_time_days is not None:
            rules = [
                CertificationExpiryRule(name=f"certification_{lead_time_days}d", tiers_days=[lead_time_days])
            ]
        return await self._evaluate_single(user_id, rules, as_of, dry_run)

    def _enabled_rules(
        self, rule_type: type[R], scenario_type: ScenarioType, selected: Callable[[R], bool]
    ) -> list[Rule]:
        """The enabled rules of one scenario that a seed interface's argument selects: the three
        seed interfaces must filter alike (a disabled rule is never run by name)."""
        return [
            r
            for r in self.rules.of_type(scenario_type)
            if isinstance(r, rule_type) and r.enabled and selected(r)
        ]

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
        """Whether a notification of ``scenario_type`` (the rule ``rule_name``, else the
        mentor's programme's first rule of that type) may go to the mentor now, under the
        programme of the mentor's organisation: its own rules, its overridden cooldowns and cap."""
        self._check_rule(scenario_type, rule_name)
        async with self.pool.acquire() as conn:
            at = await instant(conn, as_of)
            states = await policy_states(conn, [user_id], scenario_type, at)
        state = states.get(user_id)
        if state is None:
            return PolicyDecision("mentor_not_active", "no such mentor")
        own, programme = self._rule_for(scenario_type, rule_name, state.organization_id)
        return decide_policy(state, scenario_type, own.cooldown, programme.daily_cap, at)

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
        rule_name = context_data.get("rule_name")
        listed = self._check_rule(scenario_type, rule_name)
        subject = str(context_data.get("subject", "manual"))
        seq = int(context_data.get("seq", 0))
        inputs = {
            k: v for k, v in context_data.items() if k not in ("rule_name", "dedup_key", "subject", "seq")
        }
        async with self.pool.acquire() as conn:
            at = await instant(conn, as_of)
            states = await policy_states(conn, [user_id], scenario_type, at)
            state = states.get(user_id)
            # The rule (its name, the dedup key's) is the mentor's programme's; for a mentor who
            # does not exist, the first programme's that has it (only the repeat check uses it).
            own, programme = (
                self._rule_for(scenario_type, rule_name, state.organization_id)
                if state is not None
                else (listed, self.rules)
            )
            key = str(
                context_data.get("dedup_key")
                or dedup_key(scenario_type, own.name, user_id, subject, at.isoformat())
            )
            existing = await fetchrow(conn, "existing_notifications", dedup_keys=[key])
            if existing is not None:  # a repeat: return what was enqueued the first time
                return EnqueueResult(existing["id"], False, PolicyDecision("sent", "already enqueued"))
            if state is None:
                return EnqueueResult(None, False, PolicyDecision("mentor_not_active", "no such mentor"))
            cand = Candidate(user_id, scenario_type, own.name, subject, seq, key, inputs)
            decision = decide_policy(state, scenario_type, own.cooldown, programme.daily_cap, at)
            experiment = await experiment_id(conn, own, programme, self._seen, at)
            [outcome] = await write_outcomes(
                conn, own, [(cand, decision)], at, states, experiment, rules=self.rules
            )
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
            at = await instant(conn, as_of)
            await record_last_triggered(conn, user_id, scenario_type, at, rule_name)

    def _check_rule(self, scenario_type: str, rule_name: str | None) -> Rule:
        """Fail before touching the database on what no programme has: a rule name no
        programme defines (KeyError), or one of another scenario type (ValueError). Returns the
        first programme's rule that fits (the default's first)."""
        programmes = [self.rules, *map(self.rules.organization, self.rules.organization_ids())]
        defined = [r for p in programmes for r in p.all()]
        if rule_name is None:
            found = next((r for r in defined if r.scenario_type == scenario_type), None)
            if found is None:
                raise ValueError(f"no {scenario_type} rule is configured")
            return found
        rule = next((r for r in defined if r.name == rule_name), None)
        if rule is None:
            raise KeyError(rule_name)
        if rule.scenario_type != scenario_type:
            raise ValueError(f"rule {rule_name!r} is a {rule.scenario_type} rule, not {scenario_type}")
        return rule

    def _rule_for(
        self, scenario_type: str, rule_name: str | None, org: uuid.UUID | None
    ) -> tuple[Rule, Rules]:
        """The rule a mentor of ``org`` runs and its programme: ``rule_name`` as the
        organisation's programme has it (an own rule, or the default's with the organisation's
        overrides), else that programme's first rule of ``scenario_type``. A rule that exists
        only in other organisations' programmes is an error for this mentor."""
        programme = self.rules.organization(org)
        for rule in programme.all():
            if rule.scenario_type == scenario_type and rule_name in (None, rule.name):
                return rule, programme
        if rule_name is None:
            raise ValueError(f"no {scenario_type} rule in the programme of organisation {org}")
        raise ValueError(f"rule {rule_name!r} is not in the programme of organisation {org}")

    # -- set-based paths ---------------------------------------------------------------------

    async def evaluate_mentors(self, conn: Conn, mentors: list[uuid.UUID], as_of: dt.datetime) -> Outcomes:
        """Every enabled rule for a set of mentors, set-based (poison rows isolated)."""
        experiments = await ensure_rules_seen(conn, self.rules, as_of, self._seen)
        return await evaluate_set_based(
            conn,
            self.rules,
            experiments,
            as_of,
            lambda _scenario_type: mentors,
            on_quarantine=self.on_quarantine,
        )

    async def run_scheduled_evaluation(
        self,
        as_of: dt.datetime | None = None,
        *,
        dry_run: bool = False,
        collect: bool = False,
        before_batch: Callable[[list[uuid.UUID]], Awaitable[bool]] | None = None,
        progress: Callable[[int, int], None] | None = None,
        since: dt.datetime | None = None,
        rules: Rules | None = None,
    ) -> SweepResult:
        """The sweep over all active mentors (sweep.py); incremental with ``since``. ``rules``:
        the rules to run (default: those loaded now); the scheduler passes the rules it records."""
        run_rules = self.rules if rules is None else rules
        # A full sweep's lanes, not a dry run's (one transaction, rolled back) nor an incremental
        # sweep's (a few due mentors). With lanes, the one-lane loop's reader is not taken: on
        # two cores the lanes overlap reads and Python already (docs/BENCHMARKS.md).
        wanted = self.sweep_lanes - 1 if not dry_run and since is None else 0
        async with (
            self._session(dry_run) as (conn, seen),
            self._lanes(wanted) as lanes,
            self._reader(dry_run or bool(lanes)) as reader,
        ):
            at = await instant(conn, as_of)
            plan = SweepPlan(
                at,
                self.sweep_batch,
                None if since is None else utc(since),
                collect,
                before_batch,
                progress,
                reader,
                self.on_quarantine,
                lanes,
            )
            experiments = await ensure_rules_seen(conn, run_rules, at, seen)
            result = await run_sweep(
                conn, run_rules, experiments, plan, SweepResult(as_of=at, dry_run=dry_run)
            )
            if not result.interrupted:
                started = time.perf_counter()
                result.resolved = await resolve_outcomes(conn, at)
                # A sweep's figure includes the resolution it runs (docs/BENCHMARKS.md).
                result.resolve_seconds = time.perf_counter() - started
                result.seconds += result.resolve_seconds
            return result

    def provisional_seen(self) -> SeenRules:
        """What this engine has seen, for a transaction that may yet roll back: pass it to
        ``evaluate_sweep_range`` and ``adopt_seen`` it once that transaction has committed."""
        return self._seen.copy()

    def adopt_seen(self, seen: SeenRules) -> None:
        self._seen.merge(seen)

    async def evaluate_sweep_range(
        self, conn: Conn, rules: Rules, as_of: dt.datetime, mentors: list[uuid.UUID], seen: SeenRules
    ) -> Outcomes:
        """One range of a shared full sweep (runtime/shared_sweep.py): the very evaluation of a
        sweep batch (``run_sweep``'s), inside the caller's transaction, so that the range's
        completion commits with its decisions or not at all. A rule's first sighting or an
        experiment this range records is cached in ``seen`` (``provisional_seen``) only: the
        range's other lanes wait on its row locks instead of writing under an uncommitted
        experiment."""
        experiments = await ensure_rules_seen(conn, rules, as_of, seen)
        return await evaluate_set_based(
            conn,
            rules,
            experiments,
            as_of,
            lambda _scenario_type: mentors,
            on_quarantine=self.on_quarantine,
            hints=SHARED_RANGE_HINTS,
        )

    async def resolve_after_sweep(self, as_of: dt.datetime) -> list[ResolvedCount]:
        """The outcome resolution that follows a completed sweep (as in run_scheduled_evaluation);
        a shared sweep runs it once, in the instance that closed the period."""
        async with self.pool.acquire() as conn:
            return await resolve_outcomes(conn, as_of)

    async def handle_database_events(
        self, conn: Conn, events: Sequence[ScenarioEvent], as_of: dt.datetime | None = None
    ) -> Outcomes:
        """Route a batch of events set-based: one evaluation per scenario type over all the
        mentors the batch touched. Raises EventError for an event that can never be handled."""
        return await self.evaluate_routed(conn, route(events), as_of)

    async def evaluate_routed(
        self, conn: Conn, by_type: Mapping[str, set[uuid.UUID]], as_of: dt.datetime | None = None
    ) -> Outcomes:
        """The rule loop over the mentors each scenario type's events touched (events.Routes:
        runtime/drain.py routes each event once, while it checks it)."""
        at = await instant(conn, as_of)
        experiments = await ensure_rules_seen(conn, self.rules, at, self._seen)
        return await evaluate_set_based(
            conn,
            self.rules,
            experiments,
            at,
            lambda scenario_type: sorted(by_type.get(scenario_type, ())),
            on_quarantine=self.on_quarantine,
        )

    async def handle_database_event(self, event: ScenarioEvent, as_of: dt.datetime | None = None) -> Outcomes:
        async with self.pool.acquire() as conn:
            return await self.handle_database_events(conn, [event], as_of)
