"""The sweep: every active mentor, in keyset batches, through the shared pipeline.

A full sweep pages through all active mentors; an *incremental* one (``since`` = the instant
of the previous completed sweep under the same rules) evaluates only the mentors for whom a
time-driven condition may have become true in (since, as_of] — each scenario names its own
(its ``due_query`` with ``due_params``, scenarios/protocol.py), policy adds ended cooldowns
and the 24-hour cap window — and each of them only for the scenario types it is due for
(``Due``): its own scenario's window, an ended cooldown's type; the cap window and a mentor in
quarantine, every type. Every data change is an event that the event path has evaluated
already; the result equals a full sweep's (tests/db/test_equivalence.py; why per type is
enough: docs/SCENARIOS.md, "Incremental sweeps"), and the scheduler still runs a full sweep now
and then.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetch, query
from scenario_engine.evaluate import Experiments, evaluate_set_based
from scenario_engine.isolation import Outcomes, QuarantineCounter
from scenario_engine.notifications import Outcome
from scenario_engine.outcomes.resolve import ResolvedCount
from scenario_engine.scenarios.base import SweepHints
from scenario_engine.scenarios.registry import SCENARIOS, scenario_of
from scenario_engine.scenarios.rules import Rules
from scenario_engine.scenarios.zones import known_zones

BeforeBatch = Callable[[list[uuid.UUID]], Awaitable[bool]]
Progress = Callable[[int, int], None]
# A full sweep's batch as a lane takes it: its number (from 1), its mentors, its id range.
Batch = tuple[int, list[uuid.UUID], tuple[uuid.UUID | None, uuid.UUID]]


@dataclass
class SweepResult:
    as_of: dt.datetime
    dry_run: bool
    mentors: int = 0
    seconds: float = 0.0
    per_rule: dict[str, Counter[str]] = field(default_factory=dict)
    # The same counts per organisation (None: not recorded), for `sweep --dry-run` (issue 20).
    per_organization: dict[uuid.UUID | None, Counter[str]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # stopped between batches; the period is not complete
    quarantined: dict[uuid.UUID, str] = field(default_factory=dict)  # mentor -> why (isolation.py)
    # Outcomes that became final (or were seen achieved) after the sweep (outcomes/resolve.py).
    resolved: list[ResolvedCount] = field(default_factory=list)
    resolve_seconds: float = 0.0  # of ``seconds``: the outcome resolution after the sweep
    lanes: int = 1  # batches evaluated at once (a full sweep's lanes, sweep.py ``_run_lanes``)

    def count(self, outcomes: Outcomes) -> None:
        self.quarantined.update((q.mentor_id, q.reason) for q in outcomes.quarantined)
        per_rule, per_org = self.per_rule, self.per_organization
        for o in outcomes:
            key = "duplicate" if o.duplicate else o.decision.outcome
            # get, not setdefault: a Counter made and dropped per outcome was a third of this loop
            rule_counts = per_rule.get(o.candidate.rule_name)
            if rule_counts is None:
                rule_counts = per_rule[o.candidate.rule_name] = Counter()
            rule_counts[key] += 1
            org_counts = per_org.get(o.organization_id)
            if org_counts is None:
                org_counts = per_org[o.organization_id] = Counter()
            org_counts[key] += 1

    @property
    def sent(self) -> int:
        return sum(c["sent"] for c in self.per_rule.values())


@dataclass(frozen=True)
class SweepPlan:
    as_of: dt.datetime
    batch_size: int
    since: dt.datetime | None = None  # incremental
    collect: bool = False
    before_batch: BeforeBatch | None = None
    progress: Progress | None = None
    reader: Conn | None = None  # a second connection: candidate reads ahead (evaluate._Prefetch)
    on_quarantine: QuarantineCounter | None = None  # told how many mentors a batch quarantined
    # More connections for a full sweep's concurrent lanes (``_run_lanes``): each evaluates the
    # next batch while the others evaluate theirs. None: the sweep runs on ``conn`` alone.
    lanes: Sequence[Conn] = ()


async def sweep_hints(conn: Conn, rules: Rules, plan: SweepPlan) -> SweepHints:
    """What this sweep tells the candidate statements (scenarios/base.py, ``SweepHints``): to
    leave out opted-out decisions already on record — unless its decisions are listed
    (``collect``: `scenario-engine sweep` shows every decision, these included) — and, for a
    full sweep with a rule that needs the mentors' zones, the mentors whose zone Python cannot
    load, read once. A mentor whose zone turns unloadable during the sweep is found by the
    statement only if it would be decided (its own row is read then); the others at the next
    sweep, or by the event its update raises."""
    suspects: tuple[uuid.UUID, ...] | None = None
    if plan.since is None and any(
        scenario_of(v).needs_zones(v) for r in rules.enabled() for v in rules.variants(r.name).distinct()
    ):
        rows = await fetch(conn, "zone_suspects", zones=list(known_zones()), most=ZONE_SUSPECTS_MAX + 1)
        if len(rows) <= ZONE_SUSPECTS_MAX:
            suspects = tuple(r["id"] for r in rows)
    return SweepHints(skip_logged_opt_outs=not plan.collect, zone_suspects=suspects)


# The most zone suspects a sweep keeps (sweep_hints): a platform whose every mentor has a zone
# Python cannot load (say 'utc' from before the reference CHECK) would otherwise hold a million
# ids for the sweep; past this, each statement reads its batch's zones, as it did before.
ZONE_SUSPECTS_MAX = 10_000


async def run_sweep(
    conn: Conn, rules: Rules, experiments: Experiments, plan: SweepPlan, result: SweepResult
) -> SweepResult:
    """Batches of mentors through ``evaluate_set_based``, a few statements per rule each.

    ``before_batch(mentors)`` is awaited before each batch; False stops the sweep there (a
    daemon shutting down, a leader that lost its lock or its lease must not evaluate another
    batch): the result says ``interrupted`` and a later sweep of the period finishes the job."""
    started = time.perf_counter()
    hints = await sweep_hints(conn, rules, plan)
    if plan.since is None and plan.lanes:
        await _run_lanes(conn, rules, experiments, plan, result, hints)
        result.seconds = time.perf_counter() - started
        return result
    due = await due_mentors(conn, rules, plan.since, plan.as_of) if plan.since is not None else None
    total = len(due.mentors) if due is not None else await _count(conn, plan.progress is not None)
    after: uuid.UUID | None = None
    while True:
        if due is not None:
            mentors = due.mentors[result.mentors : result.mentors + plan.batch_size]
        else:
            rows = await fetch(conn, "active_mentor_batch", after=after, batch_size=plan.batch_size)
            mentors = [r["id"] for r in rows]
        if not mentors:
            break
        if plan.before_batch is not None and not await plan.before_batch(mentors):
            result.interrupted = True
            break
        bounds = (after, mentors[-1]) if due is None else None  # a full sweep's batch: an id range
        after = mentors[-1]
        result.mentors += len(mentors)
        outcomes = await evaluate_set_based(
            conn,
            rules,
            experiments,
            plan.as_of,
            _everyone(mentors) if due is None else due.batch(mentors),
            reader=plan.reader,
            on_quarantine=plan.on_quarantine,
            bounds=bounds,
            hints=hints,
        )
        result.count(outcomes)
        if plan.collect:
            result.outcomes += outcomes
        if plan.progress is not None:
            plan.progress(result.mentors, max(total, result.mentors))
    result.seconds = time.perf_counter() - started
    return result


class _Dispenser:
    """A full sweep's batches for its lanes, one after the other in id order: the next keyset
    batch is read and ``before_batch`` asked under one lock, so the scheduler's fence (lease
    renewal, lock check, batch number) runs exactly as with one lane, one batch at a time.
    Once a batch is refused, or a lane failed, no lane is given another."""

    def __init__(self, plan: SweepPlan, result: SweepResult, batch_size: int) -> None:
        self.plan = plan
        self.result = result
        self.batch_size = batch_size
        self.after: uuid.UUID | None = None
        self.done = False
        self.batches = 0
        self._lock = asyncio.Lock()

    async def next(self, conn: Conn) -> Batch | None:
        async with self._lock:
            if self.done:
                return None
            rows = await fetch(conn, "active_mentor_batch", after=self.after, batch_size=self.batch_size)
            mentors = [r["id"] for r in rows]
            if not mentors:
                self.done = True
                return None
            if self.plan.before_batch is not None and not await self.plan.before_batch(mentors):
                self.result.interrupted = True
                self.done = True
                return None
            bounds = (self.after, mentors[-1])
            self.after = mentors[-1]
            self.result.mentors += len(mentors)
            self.batches += 1
            return self.batches, mentors, bounds


async def _run_lanes(
    conn: Conn,
    rules: Rules,
    experiments: Experiments,
    plan: SweepPlan,
    result: SweepResult,
    hints: SweepHints,
) -> None:
    """A full sweep in concurrent lanes, one per connection (``conn`` and ``plan.lanes``): each
    lane takes the next batch from the dispenser and evaluates it as the one-lane loop does (one
    transaction per batch, isolation.py), so one lane's Python runs while another's statements
    do — one connection alone leaves its backend idle while Python decides (issue 18). An error
    in a lane stops the dispenser, cancels the other lanes (their batches roll back whole) and
    is raised as it came; a refused batch lets every lane finish the batch in hand."""
    total = await _count(conn, plan.progress is not None)
    conns = [conn, *plan.lanes]
    estimate = total or int(await conn.fetchval(query("active_mentor_estimate")))
    dispenser = _Dispenser(plan, result, balanced_batch(estimate, plan.batch_size, len(conns)))
    collected: dict[int, list[Outcome]] = {}  # batch number → outcomes, kept in id order

    async def lane(own: Conn, reader: Conn | None) -> None:
        while (batch := await dispenser.next(own)) is not None:
            number, mentors, bounds = batch
            outcomes = await evaluate_set_based(
                own,
                rules,
                experiments,
                plan.as_of,
                _everyone(mentors),
                reader=reader,
                on_quarantine=plan.on_quarantine,
                bounds=bounds,
                hints=hints,
            )
            result.count(outcomes)
            if plan.collect:
                collected[number] = outcomes
            if plan.progress is not None:
                plan.progress(result.mentors, max(total, result.mentors))

    result.lanes = len(conns)
    tasks = [
        asyncio.create_task(lane(c, plan.reader if i == 0 else None), name=f"sweep-lane-{i}")
        for i, c in enumerate(conns)
    ]
    try:
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:  # the first lane (in lane order) that failed in this round
                if task in finished and not task.cancelled() and (error := task.exception()) is not None:
                    dispenser.done = True
                    raise error
    finally:
        await settle_lanes(tasks)
    if plan.collect:
        result.outcomes += [o for i in sorted(collected) for o in collected[i]]


async def settle_lanes(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels the lanes (a full sweep's, or a shared period's: runtime/scheduler.py) and
    waits until every one has ended — even when this task is itself
    being cancelled (a stopping daemon: its cancellation is re-raised after), so that no lane
    still runs a statement on a connection the caller gives back to the pool."""
    for task in tasks:
        task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while not all(task.done() for task in tasks):
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError as exc:
            interrupted = exc
    for task in tasks:  # retrieved: another lane's error (or cancellation) is not logged
        if not task.cancelled():
            task.exception()
    if interrupted is not None:
        raise interrupted


def balanced_batch(mentors: int, cap: int, lanes: int) -> int:
    """The batch size that gives every lane as many batches (at most ``cap`` mentors each): a
    full sweep ends when its last lane does, so 5 batches of 20k over two lanes (a 100k sweep)
    took as long as 6 — the last batch ran alone (issue 18: the steady sweep's cost per mentor
    was 25 % higher at 100k than at 1M). ``mentors``: an estimate (the planner's count of the
    active-mentor index), or 0 or less when unknown (then ``cap``); a few mentors more or less
    only make one batch a little larger or smaller."""
    if mentors <= 0 or lanes <= 1:
        return cap
    batches = -(-mentors // cap)
    if batches == 1 or batches % lanes == 0:
        # One batch (a small population: the sweep's output and ledger order stay as they
        # were), or every lane gets as many already: the configured size, unchanged.
        return cap
    batches = -(-batches // lanes) * lanes
    return max(1, -(-mentors // batches))


def _everyone(mentors: list[uuid.UUID]) -> Callable[[str], list[uuid.UUID]]:
    """A sweep batch concerns every scenario type."""
    return lambda _scenario_type: mentors


async def _count(conn: Conn, wanted: bool) -> int:
    return int(await conn.fetchval(query("active_mentor_count"))) if wanted else 0


def due_statements(rules: Rules, since: dt.datetime, as_of: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    """The named statements (and their parameters) of the incremental sweep's work list for
    (since, as_of]: each scenario's due window for its enabled rules, and what policy adds (an
    ended cooldown, the cap window). bench/ times exactly these. Every organisation's variant
    of a rule takes part (its own threshold, cooldown): the list is a superset, never short.
    ``due_mentors`` tells which scenario types each row is due for."""
    enabled = [v for r in rules.enabled() for v in rules.variants(r.name).distinct()]
    out: list[tuple[str, dict[str, Any]]] = []
    for scenario in SCENARIOS:
        of_type = [r for r in enabled if r.scenario_type == scenario.type]
        if of_type:
            out.append((scenario.due_query, scenario.due_params(of_type, since, as_of)))
    cooldowns = sorted(
        {(r.scenario_type, r.cooldown.total_seconds()) for r in enabled if r.cooldown_days > 0}
    )
    out.append(
        (
            "policy_due",
            {
                "since": since,
                "as_of": as_of,
                "cooldown_types": [t for t, _ in cooldowns],
                "cooldown_secs": [secs for _, secs in cooldowns],
            },
        )
    )
    return out


@dataclass(frozen=True)
class Due:
    """The incremental sweep's work list: the active mentors due for some scenario type, in id
    order (batched as a full sweep's are), and what each is due for — a scenario type's own due
    window (``of_type``) concerns that type alone, and so does the end of a cooldown (a
    cooldown is per scenario type); a notification leaving the 24-hour cap window concerns
    every type (``everywhere``: the cap counts all of them), and so does a mentor in quarantine.
    Why that finds what a full sweep finds: docs/SCENARIOS.md, "Incremental sweeps"."""

    mentors: list[uuid.UUID]
    of_type: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    everywhere: set[uuid.UUID] = field(default_factory=set)

    def batch(self, mentors: list[uuid.UUID]) -> Callable[[str], list[uuid.UUID]]:
        """For ``evaluate_set_based``: the mentors of a batch due for a scenario type, in the
        batch's order (a type none of them is due for runs no statement)."""

        def of(scenario_type: str) -> list[uuid.UUID]:
            wanted = self.of_type.get(scenario_type, set())
            return [m for m in mentors if m in wanted or m in self.everywhere]

        return of


async def due_mentors(conn: Conn, rules: Rules, since: dt.datetime, as_of: dt.datetime) -> Due:
    """The incremental sweep's work list, limited to active mentors, in id order, with the
    scenario types each mentor is due for (``Due``)."""
    types = {s.due_query: s.type for s in SCENARIOS}
    of_type: dict[str, set[uuid.UUID]] = {}
    everywhere: set[uuid.UUID] = set()
    for name, params in due_statements(rules, since, as_of):
        rows = await fetch(conn, name, **params)
        if name in types:
            of_type.setdefault(types[name], set()).update(r["mentor_id"] for r in rows)
            continue
        for r in rows:  # policy_due: an ended cooldown names its type, the cap window none
            if r["scenario_type"] is None:
                everywhere.add(r["mentor_id"])
            else:
                of_type.setdefault(r["scenario_type"], set()).add(r["mentor_id"])
    rows = await fetch(conn, "active_among", mentors=sorted(everywhere.union(*of_type.values())))
    # A quarantined mentor is evaluated for every type: one scenario it cannot be evaluated for
    # withholds the others too in a full sweep (isolation.py), and only an evaluation of every
    # type clears the entry.
    everywhere.update(r["id"] for r in rows if r["quarantined"])
    return Due([r["id"] for r in rows], of_type, everywhere)
