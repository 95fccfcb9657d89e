"""A mentor's explanation: per rule, the inputs, the verdict and why; the programme and locale
that applied; recent decisions and pushes. Text for a person, or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scenario_engine.cli.output import value as _v


@dataclass(frozen=True)
class ExplanationRendering:
    """``explain MENTOR_ID [--json]`` (``expl``: explain.Explanation)."""

    expl: Any

    def table(self) -> Sequence[str]:
        return [format_explanation(self.expl)]

    def csv(self) -> tuple[Sequence[str], Iterable[Mapping[str, Any]]]:
        raise NotImplementedError("explain has no CSV output")

    def json(self) -> Any:
        expl = self.expl
        return {
            "mentor": expl.mentor,
            "as_of": expl.as_of.isoformat(),
            "rules": [t.__dict__ for t in expl.rules],
            "history": expl.history,
            "pushes": expl.pushes,
            "quarantine": expl.quarantine,
            "programme": expl.programme,
        }


def format_explanation(expl: Any) -> str:
    m = expl.mentor
    out = [
        f"mentor {_v(m['id'])} ({_v(m.get('display_name') or 'no name')}), status {_v(m['status'])}, "
        f"timezone {_v(m['timezone'])}, joined {_v(m['joined_at'])}",
        f"as of {expl.as_of.isoformat()}",
    ]
    if expl.programme:
        pr = expl.programme
        name = f" ({_v(pr['organization_name'])})" if pr.get("organization_name") else ""
        out.append(f"programme: {_v(pr['programme'])}{name} — {_v(pr['why'])}")
        if pr["overrides"]:
            out.append(f"    overrides: {json.dumps(pr['overrides'], default=str)}")
        out.append(f"    locale: {_v(pr['locale'])} (chain {json.dumps(pr['locale_chain'])})")
    out.append("")
    for trace in expl.rules:
        out.append(
            f"[{_v(trace.rule)}] ({_v(trace.scenario_type)}) → {_v(trace.verdict)}: {_v(trace.reason)}"
        )
        for key, value in trace.inputs.items():
            out.append(f"    {_v(key)}: {json.dumps(value, default=str)}")
    if expl.quarantine is not None:
        q = expl.quarantine
        state = "quarantined" if q["quarantined_now"] else "no longer quarantined"
        out.append(f"quarantine: {state}: {_v(q['reason_now'] or q.get('reason'))}")
        for key in ("first_seen_at", "last_seen_at", "occurrences", "cleared_at"):
            if key in q:
                out.append(f"    {key}: {_v(q[key])}")
    out.append("")
    out.append("recent decisions:" if expl.history else "recent decisions: none")
    for h in expl.history:
        line = f"    {_v(h['as_of'])}  {_v(h['rule_name']):<20} {_v(h['outcome']):<12} {_v(h['reason'])}"
        if h.get("outcome_status"):  # what happened after a sent or held-out decision
            line += f"  [outcome: {_v(h['outcome_status'])}, window ends {_v(h['outcome_window_ends_at'])}]"
        out.append(line)
    out.append("recent pushes:" if expl.pushes else "recent pushes: none")
    for p in expl.pushes:
        out.append(
            f"    {_v(p['created_at'])}  {_v(p['scenario_type']):<20} {_v(p['status']):<10} {_v(p['title'])}"
        )
    return "\n".join(out)
