"""A sweep's result: the per-rule (and per-organisation) summary and, for a dry run on the
terminal, who would be notified and with what message; every decision as CSV or JSON."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenario_engine.cli.output import value
from scenario_engine.domain.rule import RuleBase
from scenario_engine.engine import SweepResult
from scenario_engine.notifications import Outcome
from scenario_engine.scenarios.rules import Rules
from scenario_engine.templates import render_body, render_title

OUTCOME_COLUMNS = ("sent", "opted_out", "cooldown", "daily_cap", "mentor_not_active", "duplicate")
# How many mentors per rule a dry run lists on the terminal (--output csv or json lists all),
# and how much of each message it shows.
DRY_RUN_PAGE = 10
DRY_RUN_MESSAGE_WIDTH = 100


@dataclass(frozen=True)
class SweepRendering:
    """``sweep [--dry-run] --output table|csv|json``. ``listing``: a dry run on the table output,
    which lists the first page of mentors per rule, named by ``names``."""

    result: SweepResult
    rules: Rules
    listing: bool = False
    names: Mapping[uuid.UUID, str | None] = field(default_factory=dict)

    def table(self) -> Sequence[str]:
        blocks = [summary(self.result, self.rules)]
        if self.listing:
            blocks.append(would_notify(self.result, self.rules, self.names))
        return blocks

    def csv(self) -> tuple[Sequence[str], Iterable[Mapping[str, Any]]]:
        rows = [
            row | {"inputs": json.dumps(row["inputs"], sort_keys=True)} for row in decision_rows(self.result)
        ]
        return (list(rows[0]) if rows else ["mentor_id"]), rows

    def json(self) -> Any:
        result, rules = self.result, self.rules
        return {
            "as_of": result.as_of.isoformat(),
            "dry_run": result.dry_run,
            "per_rule": result.per_rule,
            "per_organization": {
                str(org): {"name": rules.organization_name(org) if org else None, **counts}
                for org, counts in result.per_organization.items()
            },
            "quarantined": {str(m): why for m, why in result.quarantined.items()},
            "decisions": decision_rows(result),
        }


def summary(result: SweepResult, rules: Rules | None = None) -> str:
    width = max([len("rule"), *(len(r) for r in result.per_rule)])
    head = "would send" if result.dry_run else "sent"
    cols = (head, *OUTCOME_COLUMNS[1:])
    lines = ["  ".join([f"{'rule':<{width}}", *(f"{c:>17}" for c in cols)])]
    for rule, counts in sorted(result.per_rule.items()):
        lines.append("  ".join([f"{rule:<{width}}", *(f"{counts.get(c, 0):>17}" for c in OUTCOME_COLUMNS)]))
    if rules is not None and rules.organization_ids() and result.per_organization:
        named = {org: organization_label(rules, org) for org in result.per_organization}
        w = max([len("organisation"), *(len(n) for n in named.values())])
        lines.append("")
        lines.append("  ".join([f"{'organisation':<{w}}", *(f"{c:>17}" for c in cols)]))
        for org, counts in sorted(result.per_organization.items(), key=lambda kv: named[kv[0]]):
            lines.append(
                "  ".join([f"{named[org]:<{w}}", *(f"{counts.get(c, 0):>17}" for c in OUTCOME_COLUMNS)])
            )
    lines.append(
        f"{result.mentors} active mentors evaluated as of {result.as_of.isoformat()}"
        f" in {result.seconds:.2f} s" + (" — dry run, nothing was written" if result.dry_run else "")
    )
    if result.quarantined:  # rows the engine cannot evaluate; `explain MENTOR_ID` says why
        lines.append(f"{len(result.quarantined)} mentors quarantined (see scenario_quarantine)")
    return "\n".join(lines)


def organization_label(rules: Rules, org: uuid.UUID | None) -> str:
    """An organisation as `sweep` and `report` show it: the rules file's name and its id."""
    if org is None:
        return "(not recorded)"
    name = rules.organization_name(org)
    programme = "" if org in rules.organization_ids() else " (default programme)"
    return f"{name} ({org})" if name else f"{org}{programme}"


def decision_rows(result: SweepResult) -> list[dict[str, Any]]:
    return [
        {
            "mentor_id": str(o.candidate.mentor_id),
            "scenario_type": o.candidate.scenario_type,
            "rule": o.candidate.rule_name,
            "outcome": "duplicate" if o.duplicate else o.decision.outcome,
            "reason": o.decision.reason,
            "dedup_key": o.candidate.dedup_key,
            "organization_id": str(o.organization_id) if o.organization_id else None,
            "inputs": o.candidate.inputs,  # an object in JSON; csv writes it as a JSON string
        }
        for o in result.outcomes
    ]


def _would_send(result: SweepResult) -> dict[str, list[Outcome]]:
    """Per rule, the candidates a real sweep would send to, in the sweep's order."""
    out: dict[str, list[Outcome]] = {}
    for o in result.outcomes:
        if o.decision.outcome == "sent" and not o.duplicate:
            out.setdefault(o.candidate.rule_name, []).append(o)
    return out


def first_pages(result: SweepResult) -> list[Outcome]:
    """The outcomes a dry run lists on the terminal (whose display names the command fetches)."""
    return [o for outcomes in _would_send(result).values() for o in outcomes[:DRY_RUN_PAGE]]


def would_notify(result: SweepResult, rules: Rules, names: Mapping[uuid.UUID, str | None]) -> str:
    """Who would be notified, per rule: the first ``DRY_RUN_PAGE`` mentors with the message they
    would get, which says why (README: "who would be notified now, and why")."""
    per_rule = _would_send(result)
    if not per_rule:
        return "\nNobody would be notified."
    out = ["", f"Who would be notified (the first {DRY_RUN_PAGE} per rule; --output csv or json lists all):"]
    for rule_name in sorted(per_rule):
        outcomes = per_rule[rule_name]
        held_out = result.per_rule.get(rule_name, Counter()).get("holdout", 0)
        extra = f", {held_out} held out (not notified: the comparison group)" if held_out else ""
        out.append(f"{value(rule_name)}: {len(outcomes)} would be notified{extra}")
        try:
            rule: RuleBase | None = rules.by_name(rule_name)
        except KeyError:
            rule = None
        for o in outcomes[:DRY_RUN_PAGE]:
            name = names.get(o.candidate.mentor_id) or "no name"
            context = {**o.candidate.inputs, "rule": rule_name, "display_name": name}
            message = ""  # the message says why: "It has been 37 days since your last activity"
            if rule is not None:
                message = f"{render_title(rule.title, context)} — {render_body(rule.body, context)}"
            message = value(message)
            if len(message) > DRY_RUN_MESSAGE_WIDTH:
                message = message[: DRY_RUN_MESSAGE_WIDTH - 1] + "…"
            out.append(f"  {o.candidate.mentor_id}  {value(name)[:24]:<24}  {message}".rstrip())
        if len(outcomes) > DRY_RUN_PAGE:
            out.append(f"  … and {len(outcomes) - DRY_RUN_PAGE} more")
    return "\n".join(out)
