"""enqueue_batch's parameters (issue 18): what differs per candidate goes in one array each, and
what candidates share (decision reason, texts, outcome window, delivery, effective parameters)
once per distinct shape. Each candidate's shape must give back exactly its own values — the
statement writes them as if they had come one per candidate — and equal values must share a
shape. tests/db/test_equivalence.py checks the rows written; this checks the encoding itself,
with more kinds of candidates in one batch than a sweep makes."""

from __future__ import annotations

import datetime as dt
import gc
import json
import uuid
from typing import Any

from scenario_engine.engine import GC_GEN0_THRESHOLD, batch_sized_gc
from scenario_engine.notifications import (
    _MEMO_PAIRS,
    _Delivery,
    _Effective,
    _Prepare,
    _text_memo,
    _texts,
)
from scenario_engine.policy import SENT, PolicyDecision, PolicyState
from scenario_engine.scenarios.base import Candidate, dedup_key
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from scenario_engine.timing import NOT_TIMED, Hold

AS_OF = dt.datetime(2026, 5, 5, 7, tzinfo=dt.UTC)
ORG = uuid.UUID("0b6f0000-0000-4000-8000-000000000001")
RULE = InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=3)
RULES = Rules.model_validate(
    {
        "inactivity": [RULE.model_dump()],
        "messages": {
            "en": {"inactive_21d": {"title": "{days_inactive} days", "body": "Hi {display_name}"}},
            "nb": {"inactive_21d": {"title": "{days_inactive} dager", "body": "Hei {display_name}"}},
        },
        "organizations": {str(ORG): {"locale": "nb", "daily_cap": 5}},
    }
)
SHAPE_COLUMNS = (
    "scenario_types",
    "rule_names",
    "reasons",
    "held_out",
    "window_ends",
    "titles",
    "bodies",
    "fallbacks",
    "hold_untils",
    "hold_reasons",
    "timing_arms",
    "digests",
    "digest_arms",
    "digest_secs",
    "effective_params",
)
ROW_COLUMNS = ("mentor_ids", "subjects", "seqs", "dedup_keys", "contexts", "organization_ids", "shapes")


def _batch() -> tuple[list[tuple[Candidate, PolicyDecision]], dict[uuid.UUID, PolicyState], list[_Delivery]]:
    held = Hold(AS_OF + dt.timedelta(hours=11), "usual_hour", "held until 18:00 Europe/Oslo: usual hour")
    kinds = [
        _Delivery(),
        _Delivery("sms,email", NOT_TIMED, False, None, 900.0),
        _Delivery("", held, False, None, 0.0),
        _Delivery("", NOT_TIMED, True, "digest", 1800.0),
    ]
    shared = _Delivery("email", NOT_TIMED, False, None, 60.0)  # one object, as _delivery shares it
    decisions = [SENT, PolicyDecision("holdout", "held out (rule holdout 10 %)"), SENT]
    recorded: list[tuple[Candidate, PolicyDecision]] = []
    states: dict[uuid.UUID, PolicyState] = {}
    delivery: list[_Delivery] = []
    for i in range(60):
        mentor = uuid.UUID(int=i + 1)
        org = ORG if i % 3 == 0 else None
        name = None if i % 7 == 0 else f"Mentor {i % 4}"
        states[mentor] = PolicyState(mentor, "active", None, None, None, 0, name, org, "Europe/Oslo", None)
        spell = str(1_700_000_000_000_000 + i)
        inputs: dict[str, Any] = {
            "days_inactive": 21 + i % 5,
            "reminder": 1 + i % 2,
            "since": "last_activity",
        }
        cand = Candidate(
            mentor,
            "inactivity",
            RULE.name,
            spell,
            1,
            dedup_key("inactivity", RULE.name, mentor, spell, 1),
            inputs,
        )
        recorded.append((cand, decisions[i % 3]))
        delivery.append(shared if i % 5 == 0 else kinds[i % 4])
    return recorded, states, delivery


def _expected(
    cand: Candidate, decision: PolicyDecision, state: PolicyState, how: _Delivery
) -> dict[str, Any]:
    """One candidate's values as the statement took them before shapes: one per column."""
    ctx = {**cand.inputs, "rule": cand.rule_name, "display_name": state.display_name or "there"}
    title, body, loc = _texts(RULE, RULES, state, ctx)
    if loc is not None:
        ctx["locale"] = loc
    return {
        "mentor_ids": cand.mentor_id,
        "subjects": cand.subject,
        "seqs": cand.seq,
        "dedup_keys": cand.dedup_key,
        "contexts": ctx,
        "organization_ids": state.organization_id,
        "scenario_types": cand.scenario_type,
        "rule_names": cand.rule_name,
        "reasons": decision.reason,
        "held_out": decision.outcome == "holdout",
        "window_ends": AS_OF + dt.timedelta(days=RULE.outcome_window_days),
        "titles": title,
        "bodies": body,
        "fallbacks": how.fallback,
        "hold_untils": how.hold.until,
        "hold_reasons": how.hold.reason,
        "timing_arms": how.hold.arm,
        "digests": how.digest,
        "digest_arms": how.digest_arm,
        "digest_secs": how.digest_secs,
        "effective_params": _Effective(RULE, RULES).params_json(state.organization_id),
    }


def test_each_candidate_gets_back_its_own_values_through_its_shape() -> None:
    recorded, states, delivery = _batch()
    params = _Prepare(RULE, RULES, recorded, AS_OF, states, 7, delivery).part(0, len(recorded))
    assert params["as_of"] == AS_OF and params["experiment_id"] == 7
    assert {len(params[c]) for c in ROW_COLUMNS} == {len(recorded)}
    shapes = len(params["scenario_types"])
    assert {len(params[c]) for c in SHAPE_COLUMNS} == {shapes}
    assert sorted(set(params["shapes"])) == list(range(1, shapes + 1))  # 1-based, each one used
    for i, ((cand, decision), how) in enumerate(zip(recorded, delivery, strict=True)):
        want = _expected(cand, decision, states[cand.mentor_id], how)
        got = {c: params[c][i] for c in ROW_COLUMNS if c != "shapes"}
        got |= {c: params[c][params["shapes"][i] - 1] for c in SHAPE_COLUMNS}
        got["contexts"] = json.loads(got["contexts"])
        assert got == want, i
        assert params["contexts"][i] == json.dumps(want["contexts"])  # the jsonb codec's own text


def test_candidates_with_equal_values_share_a_shape() -> None:
    recorded, states, delivery = _batch()
    params = _Prepare(RULE, RULES, recorded, AS_OF, states, 7, delivery).part(0, len(recorded))
    # One shape per distinct values and delivery object (equal deliveries in two objects may
    # take two shapes: they are told apart by identity, as _delivery shares its objects).
    by_object = {
        (tuple(params[c][s - 1] for c in SHAPE_COLUMNS), id(how))
        for s, how in zip(params["shapes"], delivery, strict=True)
    }
    assert len(params["scenario_types"]) == len(by_object)
    # A sweep's usual batch: the same texts, decision and delivery for every candidate.
    alike = [(c, SENT) for c, _ in recorded if states[c.mentor_id].organization_id is None]
    same = [delivery[0]] * len(alike)
    for cand, _ in alike:
        cand.inputs.update(days_inactive=30, reminder=1)
        states[cand.mentor_id] = PolicyState(cand.mentor_id, "active", None, None, None, 0, "Kari")
    params = _Prepare(RULE, RULES, alike, AS_OF, states, 7, same).part(0, len(alike))
    assert params["shapes"] == [1] * len(alike)
    assert params["titles"] == ["30 days"] and params["bodies"] == ["Hi Kari"]


def test_the_text_memo_is_kept_per_programmes_and_rule() -> None:
    chosen, filled = _text_memo(RULES, RULE)
    assert _text_memo(RULES, RULE) == (chosen, filled)
    assert _text_memo(RULES, RULE)[0] is chosen  # the next batch of the same rule
    reloaded = Rules.model_validate(RULES.model_dump())  # a reload: new objects, new memo
    assert _text_memo(reloaded, RULE)[0] is not chosen
    assert _text_memo(RULES, RULE.model_copy(update={"title": "x"}))[0] is not chosen
    assert _text_memo(None, RULE)[0] is not _text_memo(None, RULE)[0]  # no programmes: no memo
    for _ in range(_MEMO_PAIRS + 1):  # bounded
        _text_memo(Rules.model_validate(RULES.model_dump()), RULE)
    assert _text_memo(RULES, RULE)[0] is not chosen


def test_an_engine_raises_the_collectors_first_threshold_and_never_lowers_it() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        batch_sized_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        gc.set_threshold(GC_GEN0_THRESHOLD * 3, 5, 5)
        batch_sized_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD * 3, 5, 5)
        gc.set_threshold(0)  # collection turned off stays off
        batch_sized_gc()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
