"""Pieces several scenarios share, so that each is written once."""

from __future__ import annotations

import bisect
import datetime as dt
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from functools import cache
from typing import Any, Generic, TypeVar

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import bind, execute, query, query_params
from scenario_engine.db.records import TypedRow
from scenario_engine.domain.rule import RuleBase
from scenario_engine.scenarios.base import NO_HINTS, Candidate, SweepHints, collect_candidates
from scenario_engine.scenarios.programmes import VARIANT_COLUMN, programme_statement

R = TypeVar("R", bound=RuleBase)
Row = TypeVar("Row", bound=TypedRow)

# The outcome "an activity within the window after the decision" (inactivity: re-activated;
# milestone, anniversary: kept going). queries/outcomes.sql.
ACTIVITY_OUTCOME = "outcome_activity_after"

_SKIP = "skip_logged_opt_outs"
_SUSPECTS = "zone_suspects"

_BATCH_ARRAY = re.compile(r"([\w.]+) = ANY\(\$1::uuid\[\]\)")


@cache
def range_statement(candidate_query: str) -> str:
    """The candidate query with its batch given as an id range instead of an id array: each
    ``x = ANY($1::uuid[])`` becomes ``x >= $1::uuid AND x <= $n::uuid``, ``$n`` one more than
    the declared parameters (the batch's last id; ``$1`` its first). Nothing else changes.

    For a full sweep's batch (sweep.py: the active mentors of an id range, in id order), whose
    ids asyncpg would otherwise encode in Python for every statement (issue 18: most of a steady
    sweep's client time) and the server would read and sort. The range may hold more mentors than
    the batch (one who became active after the batch was listed): ``SetBased.candidates`` keeps
    only the batch's rows, so the result is the array form's."""
    declared = query_params(candidate_query)
    assert declared is not None and declared[0] == "mentors", candidate_query
    text = query(candidate_query)
    last = len(declared) + 1
    out = _BATCH_ARRAY.sub(lambda m: f"{m[1]} >= $1::uuid AND {m[1]} <= ${last}::uuid", text)
    if out == text or re.search(r"\$1(?![0-9])(?!::uuid\b)", out):
        raise ValueError(f"{candidate_query}: the batch ($1) is used other than as '= ANY($1::uuid[])'")
    return out


def in_span(mentors: Sequence[uuid.UUID], mentor_id: uuid.UUID) -> bool:
    """Whether ``mentor_id`` is one of ``mentors`` (ascending, as a sweep batch is listed)."""
    i = bisect.bisect_left(mentors, mentor_id)
    return i < len(mentors) and mentors[i] == mentor_id


class SetBased(ABC, Generic[R, Row]):
    """The set-based half of a scenario: its named candidate and due-window queries, the
    parameters each takes (built here, next to nothing else, by one method per query), and
    how a candidate row (``row_class``, a typed row: db/records.py) becomes a ``Candidate``.
    bench/ times the same queries with the same
    parameters through ``candidate_params`` and ``due_params``."""

    candidate_query: str
    due_query: str
    row_class: type[Row]  # the candidate query's columns, typed

    def candidate_params(
        self,
        rule: R,
        mentors: list[uuid.UUID],
        as_of: dt.datetime,
        hints: SweepHints = NO_HINTS,
        span: bool = False,
    ) -> dict[str, Any]:
        """Every candidate query is asked about a batch at an instant for one rule (whose ledger
        rows it reads); what else it takes comes from the rule alone, and from a scheduled
        sweep's ``hints`` if the query declares their parameters (base.py, ``SweepHints``):
        ``skip_logged_opt_outs``, and ``zone_suspects`` — the hint's suspects inside a full
        sweep's batch (``span``), else NULL (the statement reads the zones itself)."""
        params = {"mentors": mentors, "as_of": as_of, "rule_name": rule.name, **self.rule_params(rule)}
        declared = query_params(self.candidate_query) or ()
        if _SKIP in declared:
            params[_SKIP] = hints.skip_logged_opt_outs
        if _SUSPECTS in declared:
            within = hints.suspects_within(mentors[0], mentors[-1]) if span and mentors else None
            params[_SUSPECTS] = within
        return params

    @abstractmethod
    def rule_params(self, rule: R) -> dict[str, Any]:
        """The candidate query's parameters besides the batch, the instant and the rule's name."""

    @abstractmethod
    def from_row(self, row: Row, rule: R, as_of: dt.datetime) -> Candidate: ...

    @abstractmethod
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
        """``hints``: see ``candidate_params``.
        ``span``: ``mentors`` are a full sweep's batch — ascending, every mentor wanted inside
        the id range from the first to the last — and are sent as that range
        (``range_statement``); rows of the range's other mentors (active since the batch was
        listed) and of ``others`` (the batch's mentors of organisations that run the rule
        otherwise: evaluate.set_based_candidates; a function when they are known only once the
        statement has run) are dropped before any candidate is built."""
        params = self.candidate_params(rule, mentors, as_of, hints, span)
        sql, args = bind(self.candidate_query, params)
        if span and mentors:
            sql = range_statement(self.candidate_query)
            args = [mentors[0], *args[1:], mentors[-1]]
            rows = await conn.fetch(sql, *args, record_class=self.row_class)
            drop = others if isinstance(others, Set) else await others()
            rows = [r for r in rows if in_span(mentors, r["mentor_id"]) and r["mentor_id"] not in drop]
        else:
            rows = await conn.fetch(sql, *args, record_class=self.row_class)
        return collect_candidates(rows, lambda row: self.from_row(row, rule, as_of))

    async def candidates_across(
        self,
        conn: Conn,
        variants: Sequence[R | None],
        orgs: Mapping[uuid.UUID, int],
        mentors: list[uuid.UUID],
        as_of: dt.datetime,
        hints: SweepHints = NO_HINTS,
    ) -> list[Candidate]:
        """The candidates of one rule run with different parameters per organisation, in one
        statement (scenarios/programmes.py): ``variants[0]`` is the default programme's rule
        (None: it does not run there), ``orgs`` maps an organisation to the 1-based index of
        its variant (a None entry: it does not run the rule). Each candidate is built with its
        own variant, in the order the per-rule query gives for one mentor."""
        present = [v for v in variants if v is not None]
        if not present or not mentors:
            return []
        names = tuple(self.rule_params(present[0]))
        sql, kept = programme_statement(self.candidate_query, names)
        shared = {
            k: v
            for k, v in self.candidate_params(present[0], mentors, as_of, hints).items()
            if k not in names
        }
        args = [
            mentors,
            list(orgs),
            list(orgs.values()),
            [self.rule_params(v) if v is not None else None for v in variants],
            *(shared[k] for k in kept),
        ]
        rows = await conn.fetch(sql, *args, record_class=self.row_class)

        def build(row: Row) -> Candidate:
            rule = variants[row[VARIANT_COLUMN] - 1]
            assert rule is not None  # a None variant has no row (engine_variants skips it)
            return self.from_row(row, rule, as_of)

        found = collect_candidates(rows, build)
        return sorted(found, key=lambda c: c.mentor_id)  # stable: one mentor's order is kept

    def needs_zones(self, rule: R) -> bool:
        """Whether the rule's candidates need every mentor's zone (a full sweep then reads the
        mentors whose zone Python cannot load once: sweep.sweep_hints)."""
        return False

    #: The no-flood baseline run when a rule is first seen: what already happened is recorded
    #: without a push. None: nothing that already happened can flood.
    baseline_query: str | None = None

    async def first_seen(
        self, conn: Conn, rule: R, as_of: dt.datetime, mentors: list[uuid.UUID] | None = None
    ) -> None:
        """The no-flood baseline: for everyone (a rule first seen), or for ``mentors`` (an
        organisation's new variant of the rule, a mentor who moved organisation)."""
        if self.baseline_query is None or self.backfill(rule):
            return
        await execute(
            conn,
            self.baseline_query,
            as_of=as_of,
            rule_name=rule.name,
            mentors=mentors,
            **self.baseline_params(rule),
        )

    def baseline_params(self, rule: R) -> dict[str, Any]:
        """The baseline query's parameters besides the instant and the rule's name."""
        return {}

    def backfill(self, rule: R) -> bool:
        return False

    def window_end(self, candidate: Candidate, rule: R, as_of: dt.datetime) -> dt.datetime:
        """By default the outcome window is the rule's ``outcome_window_days`` after the decision."""
        return as_of + dt.timedelta(days=rule.outcome_window_days)
