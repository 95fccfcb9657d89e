"""enqueue_notification, record_last_triggered and the decision log.

One transaction writes, for each allowed or held-out candidate, the scenario_notification
(unique dedup key: a repeat is a no-op that returns the existing row), the cooldown state, a
'sent' or 'holdout' decision row with its pending outcome and — if sent — a pending
push_notification; milestone achievements go to the ledger whatever policy said; suppressed
candidates leave one decision row each.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import bind, execute, fetch, query
from scenario_engine.domain.rule import RuleBase as Rule
from scenario_engine.messages import Chosen, Rendering, fill, fill_key
from scenario_engine.policy import RECORDED, PolicyDecision, PolicyState
from scenario_engine.scenarios.base import Achievement, Candidate
from scenario_engine.scenarios.registry import scenario_of
from scenario_engine.scenarios.rules import Rules
from scenario_engine.templates import render, render_body, render_title
from scenario_engine.timing import NOT_TIMED, Hold, digested, plan_holds

__all__ = ["Outcome", "record_last_triggered", "render", "write_outcomes"]


@dataclass(frozen=True)
class Outcome:
    candidate: Candidate
    decision: PolicyDecision
    notification_id: int | None = None
    duplicate: bool = False  # allowed, but the dedup key had already been enqueued
    organization_id: uuid.UUID | None = None  # the mentor's, at the decision (whose programme ran)


async def write_outcomes(
    conn: Conn,
    rule: Rule,
    decided: Sequence[tuple[Candidate, PolicyDecision]],
    as_of: dt.datetime,
    states: Mapping[uuid.UUID, PolicyState],
    experiment_id: int,
    *,
    rules: Rules | None = None,
) -> list[Outcome]:
    """Persist one batch of decisions for one rule in one engine-marked transaction.

    ``rules``: the programmes (the whole rules file). Each message is in its mentor's language
    (messages.py), and each push takes the delivery settings of its mentor's organisation's
    programme — its ``fallback`` channels, digest window and the usual-hour settings of a rule
    with ``send_at = "usual_hour"`` (timing.py)."""
    recorded: list[tuple[Candidate, PolicyDecision]] = []
    suppressed: list[tuple[Candidate, PolicyDecision]] = []
    achievements: list[tuple[uuid.UUID, Achievement]] = []
    for c, d in decided:  # one pass (PolicyDecision.recorded, inlined: a call per candidate)
        (recorded if d.outcome in RECORDED else suppressed).append((c, d))
        if c.achievements:
            achievements += ((c.mentor_id, a) for a in c.achievements)
    created: dict[str, int] = {}
    existing: dict[str, int] = {}
    async with conn.transaction():
        await mark_engine_write(conn)
        if achievements:
            await execute(
                conn,
                "record_achievements",
                mentor_ids=[m for m, _ in achievements],
                milestones=[a.milestone for _, a in achievements],
                thresholds=[a.threshold for _, a in achievements],
                periods=[a.period for _, a in achievements],
                achieved_at=as_of,
            )
        if recorded:
            created = await _enqueue(conn, rule, recorded, as_of, states, experiment_id, rules)
            missing = [c.dedup_key for c, _ in recorded if c.dedup_key not in created]
            if missing:
                rows = await fetch(conn, "existing_notifications", dedup_keys=missing)
                existing = {r["dedup_key"]: r["id"] for r in rows}
        if suppressed:
            known = _Effective(rule, rules)
            await execute(
                conn,
                "log_suppressed_batch",
                **_decision_columns(suppressed, as_of, states, experiment_id),
                outcomes=[d.outcome for _, d in suppressed],
                inputs=[known.inputs(c, states.get(c.mentor_id)) for c, _ in suppressed],
            )
    out: list[Outcome] = []
    for c, d in decided:
        state = states.get(c.mentor_id)
        org = state.organization_id if state is not None else None
        if d.outcome not in RECORDED:
            out.append(Outcome(c, d, None, False, org))
        elif (notification := created.get(c.dedup_key)) is not None:
            out.append(Outcome(c, d, notification, False, org))
        else:
            out.append(Outcome(c, d, existing.get(c.dedup_key), True, org))
    return out


async def _enqueue(
    conn: Conn,
    rule: Rule,
    recorded: Sequence[tuple[Candidate, PolicyDecision]],
    as_of: dt.datetime,
    states: Mapping[uuid.UUID, PolicyState],
    experiment_id: int,
    rules: Rules | None = None,
) -> dict[str, int]:
    """The ledger rows, cooldowns, decisions and outcome rows of sent and held-out candidates,
    and the pushes of the sent ones; dedup key → ledger id of the rows new in this call. One
    statement for the rule's batch (issue 18: parts of ~1k candidates, each written while
    Python prepared the next, cost more on the server than the overlap saved)."""
    delivery = await _delivery(conn, rule, rules, recorded, states, as_of)
    windowed = [c.mentor_id for (c, _), d in zip(recorded, delivery, strict=True) if d.digest]
    if windowed:  # one digest window per mentor, however many processes enqueue at once
        await execute(conn, "lock_digest_windows", mentor_ids=windowed)
    params = _Prepare(rule, rules, recorded, as_of, states, experiment_id, delivery).part(0, len(recorded))
    rows = await fetch(conn, "enqueue_batch", **params)
    if any(d.allowed for _, d in recorded) and rows:  # wake the dispatchers (delivered at commit)
        await conn.execute(query("wake_dispatchers"))
    return {r["dedup_key"]: r["id"] for r in rows}


class _Prepare:
    """The enqueue_batch parameters of candidates [start, end): contexts, texts in the mentor's
    language (each distinct text filled once), the effective parameters, windows, delivery —
    each shared value once per shape (the statement's ``shapes``)."""

    def __init__(
        self,
        rule: Rule,
        rules: Rules | None,
        recorded: Sequence[tuple[Candidate, PolicyDecision]],
        as_of: dt.datetime,
        states: Mapping[uuid.UUID, PolicyState],
        experiment_id: int,
        delivery: Sequence[_Delivery],
    ) -> None:
        self.rule = rule
        self.rules = rules
        self.recorded = recorded
        self.as_of = as_of
        self.states = states
        self.experiment_id = experiment_id
        self.delivery = delivery
        self.scenario = scenario_of(rule)
        self.known = _Effective(rule, rules)
        self.chosen, self.filled = _text_memo(rules, rule)

    def part(self, start: int, end: int) -> dict[str, Any]:
        """One pass over the candidates: what differs per candidate goes in one array each, the
        rest once per distinct shape (the statement's ``shapes``) — a batch's thousands of
        notifications share a handful of reasons, texts, windows, deliveries and parameters."""
        states, rule, rules, known = self.states, self.rule, self.rules, self.known
        as_of, window_end = self.as_of, self.scenario.window_end
        chosen, filled = self.chosen, self.filled
        mentor_ids: list[uuid.UUID] = []
        subjects: list[str] = []
        seqs: list[int] = []
        dedup_keys: list[str] = []
        contexts: list[str] = []
        organization_ids: list[uuid.UUID | None] = []
        shapes: list[int] = []
        found: dict[tuple[Any, ...], int] = {}
        kept: list[tuple[Any, ...]] = []  # each shape's key, in index order
        deliveries: list[_Delivery] = []  # and its delivery
        for (c, d), how in zip(self.recorded[start:end], self.delivery[start:end], strict=True):
            state = states.get(c.mentor_id)
            org = state.organization_id if state is not None else None
            ctx = {
                **c.inputs,
                "rule": c.rule_name,
                "display_name": (state.display_name if state is not None else None) or "there",
            }
            title, body, loc = _texts(rule, rules, state, ctx, chosen, filled)
            if loc is not None:
                ctx["locale"] = loc  # the decision log's context records the language used
            held_out = d.outcome == "holdout"
            ends = window_end(c, rule, as_of)
            params = known.params_json(org)
            # The delivery by identity: its values are shared by the candidates that share it.
            key = (c.scenario_type, c.rule_name, d.reason, held_out, ends, title, body, id(how), params)
            shape = found.get(key)
            if shape is None:
                shape = found[key] = len(found) + 1
                kept.append(key)
                deliveries.append(how)
            mentor_ids.append(c.mentor_id)
            subjects.append(c.subject)
            seqs.append(c.seq)
            dedup_keys.append(c.dedup_key)
            contexts.append(_json(ctx))
            organization_ids.append(org)
            shapes.append(shape)
        return {
            "mentor_ids": mentor_ids,
            "subjects": subjects,
            "seqs": seqs,
            "dedup_keys": dedup_keys,
            "contexts": contexts,
            "organization_ids": organization_ids,
            "shapes": shapes,
            "as_of": as_of,
            "experiment_id": self.experiment_id,
            "scenario_types": [k[0] for k in kept],
            "rule_names": [k[1] for k in kept],
            "reasons": [k[2] for k in kept],
            "held_out": [k[3] for k in kept],
            "window_ends": [k[4] for k in kept],
            "titles": [k[5] for k in kept],
            "bodies": [k[6] for k in kept],
            "fallbacks": [x.fallback for x in deliveries],
            "hold_untils": [x.hold.until for x in deliveries],
            "hold_reasons": [x.hold.reason for x in deliveries],
            "timing_arms": [x.hold.arm for x in deliveries],
            "digests": [x.digest for x in deliveries],
            "digest_arms": [x.digest_arm for x in deliveries],
            "digest_secs": [x.digest_secs for x in deliveries],
            "effective_params": [k[8] for k in kept],
        }


# The jsonb codec's encoding (json.dumps' defaults) without its check for circular references,
# which a context — flat values from our own queries — cannot have; the text is the same.
_json = json.JSONEncoder(check_circular=False).encode


_Chosen = dict[tuple[int, str | None], tuple[Chosen, dict[str, dict[str, str]]]]
_Filled = dict[tuple[Any, ...], tuple[str, str]]
# The texts chosen and filled (``_texts``' memos) per programmes and rule, kept from one batch to
# the next: a sweep's batches fill the same texts with the same values (issue 18: a memo per
# batch filled 18 % of a first sweep's texts afresh, the same ones in every batch). Each entry
# holds its programmes and rule, so that their ids, the key, are not reused while it is kept
# (both are frozen: the same objects always choose and fill alike). Bounded, for texts that read
# a value of every mentor's own (a display name: nothing to share): the oldest pair goes first,
# and a pair's filled texts start over past ``_MEMO_TEXTS`` (≈ 0.5 kB each) at a batch's start.
_MEMO_PAIRS = 8
_MEMO_TEXTS = 4096
_memos: dict[tuple[int, int], tuple[Rules, Rule, _Chosen, _Filled]] = {}


def _text_memo(rules: Rules | None, rule: Rule) -> tuple[_Chosen, _Filled]:
    if rules is None:  # the rule's own texts, rendered as before (no memo)
        return {}, {}
    key = (id(rules), id(rule))
    found = _memos.get(key)
    if found is None:
        while len(_memos) >= _MEMO_PAIRS:
            del _memos[next(iter(_memos))]
        found = _memos[key] = (rules, rule, {}, {})
    if len(found[3]) > _MEMO_TEXTS:
        found[3].clear()
    return found[2], found[3]


@dataclass(frozen=True)
class _Delivery:
    """How one decided candidate's push is delivered, by its organisation's programme."""

    fallback: str = ""  # channels, comma-separated ('' for none)
    hold: Hold = NOT_TIMED
    digest: bool = False
    digest_arm: str | None = None
    digest_secs: float = 0.0


async def _delivery(
    conn: Conn,
    rule: Rule,
    rules: Rules | None,
    recorded: Sequence[tuple[Candidate, PolicyDecision]],
    states: Mapping[uuid.UUID, PolicyState],
    as_of: dt.datetime,
) -> list[_Delivery]:
    """Each candidate's delivery under its own programme: candidates are grouped by programme
    (a handful per batch, however many mentors), and each group's usual hours are one query."""
    out = [_Delivery()] * len(recorded)
    if rules is None:
        return out
    groups: dict[int, tuple[Rules, list[int]]] = {}
    for i, (c, _) in enumerate(recorded):
        programme = rules.organization(_organization(states, c.mentor_id))
        groups.setdefault(id(programme), (programme, []))[1].append(i)
    for programme, members in groups.values():
        sent = [i for i in members if recorded[i][1].allowed]
        holds = await plan_holds(conn, rule, programme, [recorded[i][0] for i in sent], as_of)
        held = {i: h for i, h in zip(sent, holds, strict=True) if h is not NOT_TIMED}
        fallback, secs = ",".join(programme.fallback), 60.0 * programme.digest_minutes
        # Without digests or a hold (the common case) every member's delivery is the same value.
        plain = _Delivery(fallback, NOT_TIMED, False, None, secs)
        digests = programme.digest_minutes > 0
        for i in members:
            c, d = recorded[i]
            digest, arm = digested(rule, programme, c) if d.allowed and digests else (False, None)
            hold = held.get(i, NOT_TIMED)
            out[i] = (
                plain
                if not digest and arm is None and hold is NOT_TIMED
                else _Delivery(fallback, hold, digest, arm, secs)
            )
    return out


class _Effective:
    """What a decision row records of the programme it was taken under, besides the candidate's
    inputs (issue 20: "the decision log stores the effective parameters and the locale used"):
    ``params``, the effective rule's own parameters and cooldown with its programme's cap, quiet
    hours and holdouts; and, for a suppressed candidate (a sent one's context has it already),
    ``locale``, the language its message would have been written in. Both are computed once per
    programme (and per mentor locale) of a batch, not per row."""

    def __init__(self, rule: Rule, rules: Rules | None) -> None:
        self.rule = rule
        self.rules = rules
        # By programme (its id: the programmes live as long as ``rules``), not by organisation:
        # thousands of organisations share a handful of programmes.
        self._params: dict[int, tuple[dict[str, Any], str]] = {}
        self._locales: dict[tuple[int, str | None], str | None] = {}

    def _of(self, org: uuid.UUID | None) -> tuple[dict[str, Any], str]:
        programme = self.rules.organization(org) if self.rules is not None else None
        found = self._params.get(id(programme))
        if found is None:
            params = decision_params(self.rule, programme)
            found = self._params[id(programme)] = (params, json.dumps(params))
        return found

    def params(self, org: uuid.UUID | None) -> dict[str, Any]:
        return self._of(org)[0]

    def params_json(self, org: uuid.UUID | None) -> str:
        """``params`` as the JSON text the jsonb codec would send (json.dumps), made once."""
        return self._of(org)[1]

    def locale(self, state: PolicyState | None) -> str | None:
        if self.rules is None:
            return None
        org, mentor_locale = (state.organization_id, state.locale) if state else (None, None)
        which = (id(self.rules.organization(org)), mentor_locale)
        if which not in self._locales:
            chosen, _ = self.rules.message(self.rule, org, mentor_locale)
            self._locales[which] = chosen.locale
        return self._locales[which]

    def inputs(self, cand: Candidate, state: PolicyState | None) -> dict[str, Any]:
        """A suppressed candidate's decision inputs: its own, the locale and the parameters."""
        out: dict[str, Any] = dict(cand.inputs)
        loc = self.locale(state)
        if loc is not None:
            out["locale"] = loc
        out["params"] = self.params(state.organization_id if state else None)
        return out


# What a decision records of its programme (besides the rule's own parameters): the policy keys
# that decide or shape a push.
_PROGRAMME_PARAMS = ("daily_cap", "quiet_hours", "global_holdout_percent")
# What a decision records of any rule besides its scenario's own fields.
_RULE_PARAMS = ("cooldown_days", "holdout_percent", "send_at")


def decision_params(rule: Rule, programme: Rules | None) -> dict[str, Any]:
    """The effective parameters a decision was taken under: the scenario's own fields of the
    effective rule (thresholds, tiers, …), its cooldown and holdout, and the programme's cap,
    quiet hours and global holdout — the values an organisation may override, as they applied."""
    own = [f for f in type(rule).model_fields if f not in Rule.model_fields]
    out = rule.model_dump(mode="json", include={*own, *_RULE_PARAMS})
    if programme is not None:
        out |= programme.model_dump(mode="json", include=set(_PROGRAMME_PARAMS))
    return out


def _texts(
    rule: Rule,
    rules: Rules | None,
    state: PolicyState | None,
    ctx: dict[str, Any],
    memo: dict[tuple[int, str | None], tuple[Chosen, dict[str, dict[str, str]]]] | None = None,
    filled: dict[tuple[Any, ...], tuple[str, str]] | None = None,
) -> tuple[str, str, str | None]:
    """Title, body and the locale used: the mentor's language through the programmes, or the
    rule's own texts exactly as before when no programmes are given. ``memo``: the text chosen
    per (organisation, mentor locale) of one rule (Rules.message depends on nothing else;
    issue 18: it was asked per candidate). ``filled``: the texts of the rule filled so far, by
    what they depend on (messages.fill_key); both kept across batches (``_text_memo``)."""
    if rules is None:
        return render_title(rule.title, ctx), render_body(rule.body, ctx), None
    org = state.organization_id if state else None
    mentor_locale = state.locale if state else None
    # Rules.message depends on the organisation only through its programme: thousands of
    # organisations, a handful of programmes.
    which = (id(rules.organization(org)), mentor_locale)
    found = memo.get(which) if memo is not None else None
    if found is None:
        found = rules.message(rule, org, mentor_locale)
        if memo is not None:
            memo[which] = found
    chosen, names = found
    how = Rendering(chosen.locale, state.timezone if state else None, names)
    if filled is not None:
        key = fill_key(chosen, ctx, how)
        if key is not None:
            key = (*which, *key)  # the text and display names chosen for these
            done = filled.get(key)
            if done is None:
                done = filled[key] = fill(chosen, ctx, how)
            return done[0], done[1], chosen.locale
    title, body = fill(chosen, ctx, how)
    return title, body, chosen.locale


def _decision_columns(
    decided: Sequence[tuple[Candidate, PolicyDecision]],
    as_of: dt.datetime,
    states: Mapping[uuid.UUID, PolicyState],
    experiment_id: int,
) -> dict[str, Any]:
    """The decision row's parameters that a sent, held-out and suppressed candidate share: the
    enqueue and the suppression statements must write them alike (the reports group on them)."""
    return {
        "mentor_ids": [c.mentor_id for c, _ in decided],
        "scenario_types": [c.scenario_type for c, _ in decided],
        "rule_names": [c.rule_name for c, _ in decided],
        "dedup_keys": [c.dedup_key for c, _ in decided],
        "reasons": [d.reason for _, d in decided],
        "organization_ids": [_organization(states, c.mentor_id) for c, _ in decided],
        "as_of": as_of,
        "experiment_id": experiment_id,
    }


def _organization(states: Mapping[uuid.UUID, PolicyState], mentor_id: uuid.UUID) -> uuid.UUID | None:
    state = states.get(mentor_id)
    return state.organization_id if state else None


async def record_last_triggered(
    conn: Conn | asyncpg.Pool[Any],
    mentor_id: uuid.UUID,
    scenario_type: str,
    triggered_at: dt.datetime,
    rule_name: str,
    notification_id: int | None = None,
) -> None:
    """Persist cooldown state (never moves it backwards)."""
    sql, args = bind(
        "record_last_triggered",
        {
            "mentor_id": mentor_id,
            "scenario_type": scenario_type,
            "triggered_at": triggered_at,
            "rule_name": rule_name,
            "notification_id": notification_id,
        },
    )
    await conn.execute(sql, *args)  # a pool as well as a connection
