"""The pipeline every evaluation runs, whichever path asked for it:

    candidates (the scenario's set-based SQL, or its pure oracle for one mentor)
      → policy (opt-out, cooldown, cap)  → write (enqueue / ledger / decision log)

The sweep (sweep.py), the event drain (runtime/drain.py) and the single-mentor interfaces
(engine.py) all come through ``evaluate_set_based`` or ``evaluate_single``; both run the rule
loop below, one rule at a time in registry order, and meet in ``decide_and_write`` so that
policy and persistence are one piece of code. The scenario itself is asked of the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import fetch, fetchval, query
from scenario_engine.db.records import load_mentor
from scenario_engine.domain.rule import RuleBase
from scenario_engine.instants import EVALUABLE_FROM, EVALUABLE_UNTIL
from scenario_engine.isolation import Outcomes, QuarantineCounter, evaluate_isolated
from scenario_engine.notifications import Outcome, write_outcomes
from scenario_engine.outcomes.holdout import ExperimentKey, experiment_key, hold_out
from scenario_engine.policy import PolicyDecision, PolicyState, decide_policy, state_from_row
from scenario_engine.scenarios.base import NO_HINTS, Candidate, SweepHints
from scenario_engine.scenarios.common import in_span
from scenario_engine.scenarios.registry import scenario_of
from scenario_engine.scenarios.rules import Rules

AS_OF_FROM = EVALUABLE_FROM.replace(year=1000)
AS_OF_UNTIL = EVALUABLE_UNTIL.replace(year=9000)

# The candidates of one rule for a group of mentors (set-based or single-mentor).
CandidateSource = Callable[[RuleBase, list[uuid.UUID]], Awaitable[list[Candidate]]]
# Rule name (the default programme's rule) or an experiment's key (any organisation's variant)
# → the id of the experiment it runs under (scenario_experiment).
Experiments = Mapping[str | ExperimentKey, int]


@dataclass
class SeenRules:
    """What an engine has recorded already: rule names seen, experiment ids. A cache: a dry
    run works on a copy, so that nothing it created (and rolled back) is remembered; so does a
    shared sweep's range, whose copy is ``merge``d once its transaction has committed (another
    lane must not write under an experiment that is not committed yet, or never will be)."""

    names: set[str] = field(default_factory=set)
    experiments: dict[ExperimentKey, int] = field(default_factory=dict)
    # (rule name, organisation, parameters digest) of organisation variants baselined already.
    variants: set[tuple[str, uuid.UUID, str]] = field(default_factory=set)

    def copy(self) -> SeenRules:
        return SeenRules(set(self.names), dict(self.experiments), set(self.variants))

    def merge(self, other: SeenRules) -> None:
        self.names |= other.names
        self.experiments.update(other.experiments)
        self.variants |= other.variants


async def instant(conn: Conn, as_of: dt.datetime | None) -> dt.datetime:
    """The instant a decision is taken at: the caller's ``as_of``, or else the database's clock
    (never the host's: the platform stamps activity with the server's ``now()``)."""
    return utc(as_of) if as_of is not None else await database_now(conn)


def utc(as_of: dt.datetime | None) -> dt.datetime:
    """Normalise an instant to UTC (wall-clock arithmetic across DST would be wrong); None is
    the host's clock, for what only displays or waits (decisions use :func:`instant`)."""
    if as_of is None:
        return dt.datetime.now(dt.UTC)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    at = as_of.astimezone(dt.UTC)
    # Lead times and thresholds are added to and subtracted from as_of: keep a margin.
    if not AS_OF_FROM <= at <= AS_OF_UNTIL:
        raise ValueError(f"as_of must lie between {AS_OF_FROM.date()} and {AS_OF_UNTIL.date()}")
    return at


# --- the two candidate sources ---------------------------------------------------------


async def set_based_candidates(
    conn: Conn,
    rule: RuleBase,
    mentors: list[uuid.UUID],
    as_of: dt.datetime,
    rules: Rules | None = None,
    orgs_of: Mapping[uuid.UUID, uuid.UUID] | asyncio.Future[Mapping[uuid.UUID, uuid.UUID]] | None = None,
    span: bool = False,
    hints: SweepHints = NO_HINTS,
) -> list[Candidate]:
    """The rule's candidates for a batch of mentors, each under the effective rule of the
    mentor's organisation. When every organisation runs the same rule (today's files) this is
    the scenario's own statement, exactly as before. Otherwise the mentors who run the default
    programme's rule still get that statement, and all the others one more: the distinct
    parameter sets (variants) and the organisation → variant map reach SQL as data
    (scenarios/programmes.py) — two statements for the batch, whatever the number of
    organisations. ``orgs_of`` (mentor → organisation) saves reading the organisations again.
    ``span``: ``mentors`` are a full sweep's whole batch, which the scenario's own statement
    then reads as an id range (scenarios/common.py, ``range_statement``); then ``orgs_of`` may
    be a future (a sweep's reads ahead, evaluate_set_based), awaited only once the default
    rule's statement is in. ``hints``: a scheduled sweep's (scenarios/base.py, ``SweepHints``)."""
    if not mentors:
        return []
    scenario = scenario_of(rule)
    variants = rules.variants(rule.name) if rules is not None else None
    if variants is None or variants.uniform:
        if variants is not None and variants.default is not None and not variants.default.enabled:
            return []
        return await scenario.candidates(conn, rule, mentors, as_of, span, hints=hints)
    if orgs_of is None:
        rows = await fetch(conn, "mentor_organizations", mentors=mentors)
        orgs_of = {r["id"]: r["organization_id"] for r in rows}
    known = orgs_of
    default = variants.default if variants.default_runs else None
    own = {org for org, _ in variants.orgs if variants.for_org(org) != default}
    distinct: list[RuleBase | None] = [None]  # every mentor here is in a listed organisation
    orgs: dict[uuid.UUID, int] = {}
    for org in own:
        effective = variants.for_org(org)
        if effective not in distinct:
            distinct.append(effective)
        orgs[org] = 1 + distinct.index(effective)
    found: list[Candidate] = []
    if span:
        # A full sweep's batch: the default rule's statement reads it as its id range, without
        # the rows of the mentors of organisations that run the rule otherwise (issue 20). Those
        # are picked out of ``orgs_of`` — a sweep's holds only the mentors of
        # Rules.differing_organizations, a few hundred of 20k — not out of the batch: two passes
        # over the batch's 20k ids per rule were the largest part of the programmes' extra
        # client time in a steady sweep. They go to the other statement as an array (a few
        # hundred ids sent cost less than the statement finding them in the range itself: it
        # would read the range's 20k index entries). Each mentor is decided by exactly one of
        # the two, as ``orgs_of`` says.
        picked: list[list[uuid.UUID]] = []

        async def other_mentors() -> frozenset[uuid.UUID]:
            if not picked:
                found_orgs = await known if isinstance(known, asyncio.Future) else known
                picked.append(sorted(m for m, o in found_orgs.items() if o in own and in_span(mentors, m)))
            return frozenset(picked[0])

        if default is not None:
            found += await scenario.candidates(conn, default, mentors, as_of, True, other_mentors, hints)
        if await other_mentors():
            found += await scenario.candidates_across(conn, distinct, orgs, picked[0], as_of, hints)
        return sorted(found, key=lambda c: c.mentor_id)  # stable: one mentor's order is kept
    # A mentor missing from orgs_of runs the default programme's rule: one whose organisation
    # runs the rule as the default does (baseline_moves leaves them out in a sweep), or one not
    # active (every candidate statement leaves those out itself).
    assert not isinstance(known, asyncio.Future)  # a future only with ``span``
    plain = [m for m in mentors if known.get(m) not in own]
    others = [m for m in mentors if known.get(m) in own]
    if plain and default is not None:
        found += await scenario.candidates(conn, default, plain, as_of, hints=hints)
    if others:
        found += await scenario.candidates_across(conn, distinct, orgs, others, as_of, hints)
    return sorted(found, key=lambda c: c.mentor_id)  # stable: one mentor's order is kept


async def single_mentor_candidates(
    conn: Conn, rule: RuleBase, mentor_id: uuid.UUID, as_of: dt.datetime, rules: Rules | None = None
) -> list[Candidate]:
    """The scenario's oracle over one mentor's raw rows (none if the mentor does not exist),
    under the effective rule of the mentor's organisation (the oracle takes that rule)."""
    mentor = await load_mentor(conn, mentor_id)
    if mentor is None:
        return []
    if rules is not None and rule.name in rules.rule_names():
        effective = rules.variants(rule.name).for_org(mentor.organization_id)
        if effective is None:
            return []
        rule = effective
    scenario = scenario_of(rule)
    state = await scenario.load_state(conn, rule, mentor, as_of)
    return scenario.decide(state, rule, as_of)


# --- the rule loop ------------------------------------------------------------------------


class _Prefetch:
    """A batch's candidate statements, rule after rule, on a second connection (``reader``)
    while the writing connection decides and writes the rules before: the database works on the
    next rule's reads while Python decides and the writes go in (issue 18: the two never
    overlapped). Safe because a rule's candidates depend only on what that rule wrote (its own
    notifications, achievements, baseline rows — every candidate statement filters on the rule's
    name), never on another rule's writes in the same batch; policy (cap, cooldown), which does
    read other rules' writes, still runs on the writing connection. Each result is used once,
    for the whole batch: a retry of part of it (isolation.py) reads on the writing connection,
    and so does a rule whose prefetch failed — the error, if it is the data's, is raised there
    and isolated as before."""

    def __init__(
        self,
        reader: Conn,
        rules: Sequence[RuleBase],
        mentors_of: Callable[[str], list[uuid.UUID]],
        as_of: dt.datetime,
        programmes: Rules | None = None,
        orgs_of: Mapping[uuid.UUID, uuid.UUID] | asyncio.Future[Mapping[uuid.UUID, uuid.UUID]] | None = None,
        span: bool = False,
        hints: SweepHints = NO_HINTS,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._results: dict[str, asyncio.Future[list[Candidate]]] = {
            r.name: loop.create_future() for r in rules
        }
        # ``orgs_of`` may be a future the caller resolves (a sweep batch's organisations, read on
        # the writing connection while these reads start): a rule that needs them waits for it
        # after its default statement; one whose organisations all run it alike does not.
        self._task = asyncio.create_task(
            self._run(reader, rules, mentors_of, as_of, programmes, orgs_of, span, hints)
        )

    async def _run(
        self,
        reader: Conn,
        rules: Sequence[RuleBase],
        mentors_of: Callable[[str], list[uuid.UUID]],
        as_of: dt.datetime,
        programmes: Rules | None,
        orgs_of: Mapping[uuid.UUID, uuid.UUID] | asyncio.Future[Mapping[uuid.UUID, uuid.UUID]] | None,
        span: bool,
        hints: SweepHints,
    ) -> None:
        for rule in rules:
            future = self._results[rule.name]
            try:
                found = await set_based_candidates(
                    reader,
                    rule,
                    mentors_of(rule.scenario_type),
                    as_of,
                    programmes,
                    orgs_of,
                    span,
                    hints,
                )
            except Exception as exc:  # read again on the writing connection, which isolates
                future.set_exception(exc)
            else:
                future.set_result(found)

    async def take(self, rule: RuleBase) -> list[Candidate] | None:
        future = self._results.pop(rule.name, None)
        if future is None:
            return None
        try:
            return await future
        except Exception:
            return None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for future in self._results.values():  # unused: retrieve, so nothing is logged
            if future.done() and not future.cancelled():
                future.exception()


async def evaluate_set_based(
    conn: Conn,
    rules: Rules,
    experiments: Experiments,
    as_of: dt.datetime,
    mentors_for: Callable[[str], list[uuid.UUID]],
    reader: Conn | None = None,
    on_quarantine: QuarantineCounter | None = None,
    bounds: tuple[uuid.UUID | None, uuid.UUID] | None = None,
    hints: SweepHints = NO_HINTS,
) -> Outcomes:
    """Each enabled rule, in rule order, over the mentors ``mentors_for`` names for its scenario
    type: one candidate query, one policy query and one write per rule. The whole batch is one
    transaction (a savepoint inside the caller's); a mentor whose rows cannot be evaluated is
    isolated and quarantined, the others are written (isolation.py). With a ``reader``
    connection (a sweep), the candidate statements run on it ahead of the rule loop
    (``_Prefetch``). ``bounds``: a full sweep's batch as its id range of active mentors (after,
    last], which reads the mentors' organisations as one index range (baseline_moves).
    ``hints``: a scheduled sweep's (scenarios/base.py, ``SweepHints``)."""
    enabled = rules.enabled()
    wanted = {t: mentors_for(t) for t in dict.fromkeys(r.scenario_type for r in enabled)}
    lists = list(wanted.values())
    # A sweep batch concerns every scenario type: then each rule's mentors are the group itself
    # (the group is a subset of everyone, so equal lengths mean the same mentors) and every
    # mentor of a group is complete — no per-rule filtering of the batch (issue 18: it was a
    # tenth of a full sweep's Python time). A sweep passes one list for every type: then
    # neither the union nor the per-type sets are built.
    by_type: dict[str, set[uuid.UUID]] = {}
    if lists and all(ms is lists[0] for ms in lists):
        # A full sweep's batch (``bounds``) is distinct ids already: hashing 20k of them to
        # drop duplicates was ≈ 9 ms of a batch's Python (issue 18).
        everyone = list(lists[0]) if bounds is not None else list(dict.fromkeys(lists[0]))
        uniform = True
    else:
        everyone = list(dict.fromkeys(m for ms in lists for m in ms))
        by_type = {t: set(ms) for t, ms in wanted.items()}
        uniform = all(len(ms) == len(everyone) for ms in by_type.values())
    if not everyone:
        return Outcomes()

    # With programmes, a full sweep's batch starts its reads before the moves statement on the
    # writer (issue 20: it had them wait for it), reading the organisations of the mentors it
    # needs on the reader; they are kept only if the writer then found no move and the same
    # organisations for those mentors (else a move between the two reads could go unbaselined).
    # A full sweep's batch is every active mentor of its id range, in id order: the scenarios'
    # statements read it as the range from its first to its last mentor (``span``), not as an
    # array of ids (scenarios/common.py, range_statement) — for the whole batch only: a retry of
    # part of it (isolation.py) names its mentors.
    span = bounds is not None and uniform
    # With programmes, a full sweep's batch starts its reads on the reader at once, and the
    # writer meanwhile checks the batch's id range (mentor_programme_check_range): the
    # organisations of the mentors whose candidates need theirs, and whether any mentor is
    # unseen — seen for the first time, or in another organisation than the engine last saw
    # them in. A rule whose organisations run it otherwise waits for that map after its default
    # statement (set_based_candidates). When no mentor is unseen there is nothing to record or
    # baseline, and the moves statement is skipped (issue 20: it was the largest part of the
    # programmes' extra database time in a steady sweep, on the writer before its first rule).
    # A move after the check is one made after the batch: the next sweep finds it, as it
    # would one made just after the moves statement.
    orgs_ready: asyncio.Future[Mapping[uuid.UUID, uuid.UUID]] | None = None
    early: _Prefetch | None = None
    if reader is not None and span and bounds is not None and rules.organization_ids():
        orgs_ready = asyncio.get_running_loop().create_future()
        early = _Prefetch(reader, enabled, wanted.__getitem__, as_of, rules, orgs_ready, True, hints)
    prefetch: _Prefetch | None = None
    orgs_of: dict[uuid.UUID, uuid.UUID] | None = None
    moved = False
    try:
        if orgs_ready is not None and bounds is not None:
            differing = rules.differing_organizations()
            rows = await fetch(
                conn,
                "mentor_programme_check_range",
                after=bounds[0],
                last=bounds[1],
                organizations=list(differing),
            )
            if any(r["unseen"] for r in rows):
                orgs_of, moved = await baseline_moves(conn, rules, everyone, as_of, bounds)
            else:
                orgs_of = {r["id"]: r["organization_id"] for r in rows if r["organization_id"] in differing}
        else:
            orgs_of, moved = await baseline_moves(conn, rules, everyone, as_of, bounds)
    except BaseException:
        if early is not None:
            await early.close()
        raise
    # Not when a mentor of the batch moved to another organisation: then the candidates depend
    # on this batch's own uncommitted writes (the baselines baseline_moves took), which a second
    # connection cannot see. Otherwise the batch wrote nothing a candidate statement reads (the
    # first-seen rows of scenario_mentor_programme are read by none), and the reads go by each
    # mentor's organisation as read here (issue 20: without the prefetch the programmes' sweep
    # lost the overlap of reads and writes the single programme has).
    if early is not None and orgs_ready is not None:
        if moved:
            await early.close()
        else:
            differing = rules.differing_organizations()
            orgs_ready.set_result({m: o for m, o in (orgs_of or {}).items() if o in differing})
            prefetch = early
    elif reader is not None and not moved:
        # (An incremental sweep's batch too, whose types have lists of their own: the reads are
        # each type's list, taken only for the whole batch, as here below; ``span`` only for a
        # full sweep's uniform batch.)
        prefetch = _Prefetch(reader, enabled, wanted.__getitem__, as_of, rules, orgs_of, span, hints)

    async def candidates(rule: RuleBase, group: list[uuid.UUID]) -> list[Candidate]:
        of_type = wanted[rule.scenario_type]
        if len(group) == len(everyone):  # the whole batch: the type's own list, as prefetched
            found = None if prefetch is None else await prefetch.take(rule)
            if found is not None:
                return found
            return await set_based_candidates(conn, rule, of_type, as_of, rules, orgs_of, span, hints)
        members = set(group)
        return await set_based_candidates(
            conn,
            rule,
            [m for m in of_type if m in members],
            as_of,
            rules,
            orgs_of,
            hints=hints,
        )

    def complete(group: list[uuid.UUID]) -> list[uuid.UUID]:
        if uniform:
            return group
        return [m for m in group if all(m in ms for ms in by_type.values())]

    try:
        return await evaluate_isolated(
            conn,
            everyone,
            lambda group: rule_loop(conn, enabled, rules, experiments, group, candidates, as_of),
            complete,
            on_quarantine,
            distinct=True,  # ``everyone`` has no duplicates
        )
    finally:
        if prefetch is not None:
            await prefetch.close()


async def evaluate_single(
    conn: Conn,
    rules: Rules,
    experiments: Experiments,
    selected: Sequence[RuleBase],
    mentor_id: uuid.UUID,
    as_of: dt.datetime,
    on_quarantine: QuarantineCounter | None = None,
) -> Outcomes:
    """The ``selected`` rules for one mentor through the oracles. Only an evaluation of every
    enabled rule may clear the mentor's quarantine."""

    async def candidates(rule: RuleBase, _group: list[uuid.UUID]) -> list[Candidate]:
        return await single_mentor_candidates(conn, rule, mentor_id, as_of, rules)

    every_rule = list(selected) == rules.enabled()
    await baseline_moves(conn, rules, [mentor_id], as_of)
    return await evaluate_isolated(
        conn,
        [mentor_id],
        lambda group: rule_loop(conn, selected, rules, experiments, group, candidates, as_of),
        None if every_rule else _none,
        on_quarantine,
    )


def _none(_group: list[uuid.UUID]) -> list[uuid.UUID]:
    return []


async def rule_loop(
    conn: Conn,
    selected: Sequence[RuleBase],
    rules: Rules,
    experiments: Experiments,
    group: list[uuid.UUID],
    candidates: CandidateSource,
    as_of: dt.datetime,
) -> list[Outcome]:
    out: list[Outcome] = []
    for rule in selected:
        found = await candidates(rule, group)
        out += await decide_and_write(conn, found, rule, rules, experiments, as_of)
    return out


# --- policy and persistence -------------------------------------------------------------


async def policy_states(
    conn: Conn, mentors: Sequence[uuid.UUID], scenario_type: str, as_of: dt.datetime
) -> dict[uuid.UUID, PolicyState]:
    rows = await fetch(conn, "policy_inputs", mentors=list(mentors), scenario_type=scenario_type, as_of=as_of)
    return {r["mentor_id"]: state_from_row(r) for r in rows}


def effective(rule: RuleBase, rules: Rules, org: uuid.UUID | None) -> tuple[RuleBase, Rules]:
    """The rule and programme a mentor of ``org`` runs (the rule itself when it is an ad-hoc
    rule of a seed interface, or no organisation overrides it)."""
    programme = rules.organization(org)
    if programme is rules or rule.name not in rules.rule_names():
        return rule, programme
    return rules.variants(rule.name).for_org(org) or rule, programme


class Effective(NamedTuple):
    """What one organisation's programme makes of a rule: the rule as it applies, the programme,
    and what policy and the write read of them."""

    rule: RuleBase
    programme: Rules
    cooldown: dt.timedelta
    daily_cap: int
    experiment: ExperimentKey


class Programmes:
    """``effective`` per organisation of one rule's batch, worked out once: the same few
    programmes serve thousands of candidates (issue 18: asked per candidate, twice, it was a
    tenth of a first sweep's Python)."""

    def __init__(self, rule: RuleBase, rules: Rules) -> None:
        self.rule = rule
        self.rules = rules
        self._found: dict[uuid.UUID | None, Effective] = {}

    def of(self, org: uuid.UUID | None) -> Effective:
        found = self._found.get(org)
        if found is None:
            own, programme = effective(self.rule, self.rules, org)
            found = Effective(
                own, programme, own.cooldown, programme.daily_cap, experiment_key(own, programme)
            )
            self._found[org] = found
        return found


def apply_policy(
    candidates: Sequence[Candidate],
    states: dict[uuid.UUID, PolicyState],
    rule: RuleBase,
    rules: Rules,
    as_of: dt.datetime,
    programmes: Programmes | None = None,
) -> list[tuple[Candidate, PolicyDecision]]:
    """Pure: decide each candidate in order; earlier allowed ones count toward the cap. The
    cooldown and the cap are those of the mentor's organisation's programme."""
    known = programmes if programmes is not None else Programmes(rule, rules)
    pending: dict[uuid.UUID, int] = {}  # not a Counter: its __missing__ is a call per candidate
    out: list[tuple[Candidate, PolicyDecision]] = []
    for cand in candidates:
        state = states.get(cand.mentor_id)
        if state is None:  # mentor deleted between the two reads
            continue
        found = known.of(state.organization_id)
        before = pending.get(cand.mentor_id, 0)
        decision = decide_policy(state, cand.scenario_type, found.cooldown, found.daily_cap, as_of, before)
        if decision.outcome == "sent":
            pending[cand.mentor_id] = before + 1
        out.append((cand, decision))
    return out


async def decide_and_write(
    conn: Conn,
    candidates: list[Candidate],
    rule: RuleBase,
    rules: Rules,
    experiments: Experiments | int,
    as_of: dt.datetime,
) -> list[Outcome]:
    """Policy, holdout and write for one rule's candidates. Each candidate is decided under its
    organisation's programme and written with the effective rule (its message, outcome window,
    tiers and ``send_at`` for the delivery timing) and experiment: one write per distinct
    effective rule, normally one. Grouped by the rule itself, not only by its experiment: two
    organisations' variants share an experiment when they differ only in fields the experiment
    key leaves out (tiers, ``send_at``, …), and a batch must not write one organisation's
    candidates with the other's variant (a single mentor's evaluation never would)."""
    if not candidates:
        return []
    mentors = list(dict.fromkeys(c.mentor_id for c in candidates))
    states = await policy_states(conn, mentors, rule.scenario_type, as_of)
    known = Programmes(rule, rules)
    decided = apply_policy(candidates, states, rule, rules, as_of, known)
    groups: dict[
        tuple[ExperimentKey, int],
        tuple[ExperimentKey, RuleBase, Rules, list[tuple[Candidate, PolicyDecision]]],
    ] = {}
    members: dict[int, list[tuple[Candidate, PolicyDecision]]] = {}  # id(Effective) → its group's
    for cand, decision in decided:
        found = known.of(states[cand.mentor_id].organization_id)
        part = members.get(id(found))  # the key's dataclass hash once per programme, not per candidate
        if part is None:
            slot = (found.experiment, id(found.rule))
            if slot not in groups:
                groups[slot] = (found.experiment, found.rule, found.programme, [])
            part = members[id(found)] = groups[slot][3]
        part.append((cand, decision))
    out: list[Outcome] = []
    for key, own, programme, part in groups.values():
        if isinstance(experiments, int):
            experiment = experiments
        else:
            experiment = experiments.get(key) or experiments[rule.name]
        held = hold_out(part, own, programme)
        out += await write_outcomes(conn, own, held, as_of, states, experiment, rules=rules)
    return out


# --- rules seen for the first time ------------------------------------------------------


async def ensure_rules_seen(
    conn: Conn, rules: Rules, as_of: dt.datetime, seen: SeenRules
) -> dict[str | ExperimentKey, int]:
    """Record each rule the first time any engine sees it (its scenario takes its no-flood
    baseline in the same transaction), and the experiment each enabled rule runs under.
    ``seen`` caches both, so the common case costs nothing. Returns rule name → experiment."""
    missing = [r for r in rules.enabled() if r.name not in seen.names]
    if missing:
        seen.names.update(r["rule_name"] for r in await conn.fetch(query("known_rules")))
    for rule in missing:
        if rule.name in seen.names:
            continue
        scenario = scenario_of(rule)
        backfill = scenario.backfill(rule)
        async with conn.transaction():
            await mark_engine_write(conn)
            claimed = await fetchval(
                conn,
                "claim_rule_first_seen",
                rule_name=rule.name,
                scenario_type=rule.scenario_type,
                as_of=as_of,
                backfill=backfill,
            )
            if claimed:
                await scenario.first_seen(conn, rule, as_of)
        seen.names.add(rule.name)
    await ensure_variants_seen(conn, rules, as_of, seen)
    found: dict[str | ExperimentKey, int] = {
        r.name: await experiment_id(conn, r, rules, seen, as_of) for r in rules.enabled()
    }
    for org in rules.organization_ids():  # each organisation's variants: same key, same experiment
        programme = rules.organization(org)
        for r in programme.enabled():
            found[experiment_key(r, programme)] = await experiment_id(conn, r, programme, seen, as_of)
    return found


# --- no flood per organisation ------------------------------------------------------------


def baseline_digest(rule: RuleBase) -> str:
    """What an organisation's variant's baseline depends on: the parameters its scenario's
    baseline takes and whether it runs. Changing any of them (raised thresholds, the rule
    enabled for the organisation) makes the variant new for that organisation's mentors."""
    params = {k: v for k, v in scenario_of(rule).baseline_params(rule).items() if k != "zones"}
    text = json.dumps({"enabled": rule.enabled, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _needs_baseline(rule: RuleBase) -> bool:
    scenario = scenario_of(rule)
    return scenario.baseline_query is not None and not scenario.backfill(rule)


async def ensure_variants_seen(conn: Conn, rules: Rules, as_of: dt.datetime, seen: SeenRules) -> None:
    """Baseline each organisation's own variant of a rule the first time any engine sees it —
    for that organisation's mentors only, exactly as a newly seen rule is for everyone."""
    todo: list[tuple[uuid.UUID, RuleBase, str]] = []
    for org in rules.organization_ids():
        for listed in rules.enabled():
            variants = rules.variants(listed.name)
            own = variants.for_org(org)
            if own is None or own == (variants.default if variants.default_runs else None):
                continue
            if not _needs_baseline(own):
                continue
            digest = baseline_digest(own)
            if (own.name, org, digest) not in seen.variants:
                todo.append((org, own, digest))
    if not todo:
        return
    rows = await conn.fetch(query("programme_seen"))
    seen.variants.update((r["rule_name"], r["organization_id"], r["params_digest"]) for r in rows)
    for org, own, digest in todo:
        if (own.name, org, digest) in seen.variants:
            continue
        async with conn.transaction():
            await mark_engine_write(conn)
            claimed = await fetchval(
                conn,
                "claim_programme_seen",
                rule_name=own.name,
                organization_id=org,
                params_digest=digest,
                as_of=as_of,
            )
            if claimed:
                mentors = [r["id"] for r in await fetch(conn, "organization_mentors", organization_id=org)]
                await scenario_of(own).first_seen(conn, own, as_of, mentors)
        seen.variants.add((own.name, org, digest))


async def baseline_moves(
    conn: Conn,
    rules: Rules,
    mentors: list[uuid.UUID],
    as_of: dt.datetime,
    bounds: tuple[uuid.UUID | None, uuid.UUID] | None = None,
) -> tuple[dict[uuid.UUID, uuid.UUID] | None, bool]:
    """A mentor who moved to another organisation since the engine last saw them is newly seen
    by the rules of their new programme: each rule with a no-flood baseline takes it for them
    (under the variant of their new organisation). Returns each mentor's organisation (the
    candidates need it; one statement serves both), None without organisations in the rules,
    and whether any of them moved. ``bounds``: the mentors are the active ones of that id range
    (a full sweep's batch), read as a range rather than a list, and the map holds only the
    mentors of ``Rules.differing_organizations`` (those missing run the default programme's
    rules, which is all set_based_candidates asks of it)."""
    if not rules.organization_ids() or not mentors:
        return None, False
    async with conn.transaction():
        await mark_engine_write(conn)
        if bounds is not None:
            after, last = bounds
            rows = await fetch(
                conn,
                "mentor_programme_moves_range",
                after=after,
                last=last,
                as_of=as_of,
                organizations=list(rules.differing_organizations()),
            )
        else:
            rows = await fetch(conn, "mentor_programme_moves", mentors=mentors, as_of=as_of)
        by_org: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in rows:
            if row["moved"]:
                by_org.setdefault(row["organization_id"], []).append(row["id"])
        for org, group in by_org.items():
            for listed in rules.enabled():
                own = rules.variants(listed.name).for_org(org)
                if own is not None and _needs_baseline(own):
                    await scenario_of(own).first_seen(conn, own, as_of, group)
    return {r["id"]: r["organization_id"] for r in rows}, bool(by_org)


async def experiment_id(conn: Conn, rule: RuleBase, rules: Rules, seen: SeenRules, as_of: dt.datetime) -> int:
    key = experiment_key(rule, rules)
    if key not in seen.experiments:
        params = {
            "rule_name": key.rule_name,
            "scenario_type": key.scenario_type,
            "holdout_salt": key.holdout_salt,
            "holdout_percent": key.holdout_percent,
            "global_holdout_salt": key.global_holdout_salt,
            "global_holdout_percent": key.global_holdout_percent,
            "as_of": as_of,
        }
        found = await fetchval(conn, "experiment_id", **params)
        if found is None:  # created by another engine in the same instant: visible now
            found = await fetchval(conn, "experiment_id", **params)
        seen.experiments[key] = int(found)
    return seen.experiments[key]
