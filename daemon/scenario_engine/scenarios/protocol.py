"""The ``Scenario`` protocol: everything the engine needs to know about one scenario.

Each scenario is one package under ``scenarios/`` whose ``SCENARIO`` object satisfies this
protocol; the registry (registry.py) lists them. Orchestration — the sweep, the event drain,
the single-mentor interfaces, ``explain``, the dispatcher's send-time re-check — asks the
registry and never names a scenario type, so a new scenario is a new package.

Two implementations of every rule, checked against each other by tests/db/test_equivalence.py:
``candidates`` (set-based SQL over a batch of mentors, what the sweep and the drain run) and
``decide`` (pure Python over one mentor's raw rows, the oracle behind the single-mentor path).
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from scenario_engine.db.connect import Conn
from scenario_engine.db.records import MentorRecord
from scenario_engine.domain.rule import RuleBase
from scenario_engine.scenarios.base import NO_HINTS, Candidate, SweepHints

R = TypeVar("R", bound=RuleBase, contravariant=True)
S = TypeVar("S")


@dataclass(frozen=True)
class Recheck:
    """A send-time re-check (docs/SCENARIOS.md): ``condition`` is a SQL boolean over the push row
    ``p`` (``p.data -> 'context'`` holds the candidate's context); true cancels the push with
    ``reason``. Kept in the scenario's queries.sql next to the queries that build that context."""

    query: str  # the named SQL fragment
    reason: str


@dataclass(frozen=True)
class OutcomeSpec:
    """How the scenario's outcome is judged (docs/OUTCOMES.md): the words for it, and the named
    set-based statement that resolves the pending outcomes of this scenario type (params
    scenario_types, as_of: every type that names the same statement is resolved by one run of
    it, outcomes/resolve.py)."""

    achieved: str  # "re-activated" (reports)
    missed: str  # "still inactive"
    resolve_query: str
    plain: str  # "came back": reads after "mentors who …" (the programme page)

    @property
    def resolve_since_query(self) -> str:
        """The same statement judging only what may have changed since the previous resolution
        (params scenario_types, as_of, since, after_decision, up_to_decision; outcomes/resolve.py)."""
        return f"{self.resolve_query}_since"


class Scenario(Protocol[R, S]):
    #: The scenario type: the key of its rules in the rules file and of opt-outs.
    type: str
    #: The operator's name for it (status page, logs).
    label: str
    #: Plain words for people who run the programme: a name, and one sentence on what the
    #: messages are and what counts as success.
    title: str
    about: str
    rule_model: builtins.type[Any]
    #: The TypedDict of what its candidates carry: message placeholders and what the send-time
    #: re-check reads back (tests/unit/test_registry.py checks the SQL against it).
    context: builtins.type[Any]
    #: Platform tables whose changes concern this scenario (events.py routes on it).
    watched_tables: frozenset[str]
    #: The cancel condition checked just before a push of this scenario is sent, if any.
    recheck: Recheck | None
    outcome: OutcomeSpec

    #: The named set-based statements (the scenario's queries.sql) and their parameters.
    #: ``due_query`` lists the mentors for whom the condition may have become true in
    #: (since, as_of]. A condition tied to a local calendar day (anniversary) must stay true
    #: for a grace after the day ends — a day can be 23 hours long, shorter than the sweep
    #: interval — and its due query must select the days that *began* in (since, as_of], not
    #: the day that contains as_of (issue 16, item 8; docs/SCENARIOS.md, Anniversary). It may
    #: list a mentor more than once and should not deduplicate (issue 18: a UNION or DISTINCT over
    #: a window the planner cannot estimate sized a hash table for a million rows at 1M).
    candidate_query: str
    due_query: str

    @property
    def baseline_query(self) -> str | None:
        """The no-flood baseline statement (None: nothing that already happened can flood)."""
        ...

    def baseline_params(self, rule: R) -> dict[str, Any]: ...

    def candidate_params(
        self,
        rule: R,
        mentors: list[uuid.UUID],
        as_of: dt.datetime,
        hints: SweepHints = NO_HINTS,
        span: bool = False,
    ) -> dict[str, Any]: ...

    def due_params(self, rules: Sequence[R], since: dt.datetime, as_of: dt.datetime) -> dict[str, Any]: ...

    async def candidates(
        self,
        conn: Conn,
        rule: R,
        mentors: list[uuid.UUID],
        as_of: dt.datetime,
        span: bool = False,
        others: Set[uuid.UUID] | Callable[[], Awaitable[Set[uuid.UUID]]] = frozenset(),
        hints: SweepHints = NO_HINTS,
    ) -> list[Candidate]:
        """Set-based: one statement for the batch. Rows that cannot be evaluated raise one
        ``MentorDataError`` naming every such mentor (isolation.py quarantines them). ``span``:
        ``mentors`` are a full sweep's batch, read as the id range they span, without the
        mentors of ``others`` (or of what it returns once the rows are in: common.py).
        ``hints``: a scheduled sweep's (base.py, ``SweepHints``)."""
        ...

    def needs_zones(self, rule: R) -> bool:
        """Whether the rule's candidates need every mentor's zone (sweep.sweep_hints)."""
        ...

    async def candidates_across(
        self,
        conn: Conn,
        variants: Sequence[R | None],
        orgs: Mapping[uuid.UUID, int],
        mentors: list[uuid.UUID],
        as_of: dt.datetime,
        hints: SweepHints = NO_HINTS,
    ) -> list[Candidate]:
        """Set-based over several programmes: the rule's variants as data, one statement."""
        ...

    async def load_state(self, conn: Conn, rule: R, mentor: MentorRecord, as_of: dt.datetime) -> S:
        """The raw rows the oracle needs for one mentor."""
        ...

    def decide(self, state: S, rule: R, as_of: dt.datetime) -> list[Candidate]:
        """The pure rule (the oracle)."""
        ...

    def explain(self, state: S, rule: R, as_of: dt.datetime) -> tuple[dict[str, Any], str]:
        """The inputs the rule looked at, and why it would not fire if it does not."""
        ...

    async def first_seen(
        self, conn: Conn, rule: R, as_of: dt.datetime, mentors: list[uuid.UUID] | None = None
    ) -> None:
        """Called once, in the transaction that records a rule as seen (the no-flood baseline);
        with ``mentors``, the baseline of only those (an organisation's variant, a move)."""
        ...

    def backfill(self, rule: R) -> bool:
        """Whether a new rule of this scenario may notify about what already happened."""
        ...

    def window_end(self, candidate: Candidate, rule: R, as_of: dt.datetime) -> dt.datetime:
        """When the outcome window of a decision (taken at ``as_of``) on this candidate closes."""
        ...
