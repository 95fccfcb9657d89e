"""The outcomes report as a person reads it (a table) and as a program does (CSV, JSON): one
documented shape per format (docs/OUTCOMES.md, "Reading the output"). ``outcomes/report.py``
computes the report; this module only renders it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scenario_engine.outcomes.model import Arm
from scenario_engine.outcomes.report import SUPPRESSION_REASONS, CertificationCounts, Experiment, Report


@dataclass(frozen=True)
class ReportRendering:
    """``report --output table|csv|json``."""

    report: Report

    def table(self) -> Sequence[str]:
        return [format_table(self.report)]

    def csv(self) -> tuple[Sequence[str], Iterable[Mapping[str, Any]]]:
        return CSV_COLUMNS, report_csv_rows(self.report)

    def json(self) -> Any:
        return report_json(self.report)


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _org(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


# Outputs carry four decimals: more would be float noise (20.000000000000007), less could hide
# a difference a reader recomputes from the counts.
DECIMALS = 4


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, DECIMALS)


def _arm_json(arm: Arm) -> dict[str, Any]:
    """The mature cohort (final = achieved + missed, the rate's denominator) and, apart, the
    decisions still being measured with how many of them already achieved."""
    return {
        "final": arm.final,
        "achieved": arm.achieved,
        "missed": arm.missed,
        "rate_percent": _num(arm.rate_percent),
        "still_being_measured": arm.measuring,
        "already_achieved": arm.measuring_achieved,
    }


def _experiment_json(e: Experiment | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "id": e.id,
        "holdout_percent": e.holdout_percent,
        "global_holdout_percent": e.global_holdout_percent,
        "started_at": _iso(e.started_at),
    }


def _counts_json(c: CertificationCounts) -> dict[str, Any]:
    return {
        "since": _iso(c.since),
        "until": _iso(c.until),
        "expiring": c.expiring,
        "renewed_in_time": c.renewed_in_time,
        "lapsed": c.lapsed,
        "still_open": c.still_open,
        "still_open_renewed": c.still_open_renewed,
    }


def report_json(report: Report) -> dict[str, Any]:
    """The JSON document of ``report --output json``: keys are stable, numbers are numbers,
    absent values are null (never a string such as "n/a")."""
    return {
        "method": report.method,
        "min_final_per_group": report.min_final_per_group,
        "since": _iso(report.since),
        "until": _iso(report.until),
        "as_of": _iso(report.as_of),
        "organization_id": _org(report.organization_id),
        "rule": report.rule_name,
        "rows": [
            {
                "organization_id": _org(r.organization_id),
                "organization_name": report.organisation_names.get(r.organization_id)
                if r.organization_id is not None
                else None,
                "rule": r.rule_name,
                "scenario_type": r.scenario_type,
                "experiment": _experiment_json(r.experiment),
                "candidates": r.candidates,
                "sent": r.sent,
                "delivered": r.delivered,
                "held_out": r.held_out,
                "suppressed": dict(r.suppressed),
                "outcome_labels": {"achieved": r.labels.achieved, "missed": r.labels.missed},
                "treated": _arm_json(r.treated),
                "holdout": _arm_json(r.holdout),
                "lift_points": _num(r.lift.points),
                "lift_interval": None
                if r.lift.low is None or r.lift.high is None
                else {"low": _num(r.lift.low), "high": _num(r.lift.high)},
                "lift_note": r.lift.note,
            }
            for r in report.rows
        ],
        "certifications": [
            {
                "organization_id": str(c.organization_id),
                "organization_name": report.organisation_names.get(c.organization_id),
                "period": _counts_json(c.period),
                "previous_period": _counts_json(c.previous_period),
            }
            for c in report.certifications
        ],
        "channels": [
            {
                "channel": c.channel,
                "sent": c.sent,
                "not_delivered": c.not_delivered,
                "pending": c.pending,
                "fell_back": c.fell_back,
                "sent_after_fallback": c.sent_after_fallback,
            }
            for c in report.channels
        ],
        "only_email_share": _num(report.only_email_share),
        "digests": [
            {"rule": rule, "merged": merged, "capped": capped} for rule, merged, capped in report.digests
        ],
        "arm_experiments": [
            {
                "rule": a.rule_name,
                "experiment": a.experiment,
                "new": _arm_json(a.new),
                "old": _arm_json(a.old),
                "difference_points": _num(a.lift.points),
                "difference_interval": None
                if a.lift.low is None or a.lift.high is None
                else {"low": _num(a.lift.low), "high": _num(a.lift.high)},
                "note": a.lift.note,
            }
            for a in report.arm_experiments
        ],
        "notes": list(report.notes),
    }


CSV_COLUMNS: tuple[str, ...] = (
    "organization_id",
    "organization_name",
    "rule",
    "scenario_type",
    "experiment_id",
    "holdout_percent",
    "global_holdout_percent",
    "candidates",
    "sent",
    "delivered",
    "held_out",
    *(f"suppressed_{reason}" for reason in SUPPRESSION_REASONS),
    "achieved_label",
    "missed_label",
    "treated_final",
    "treated_achieved",
    "treated_rate_percent",
    "treated_still_being_measured",
    "treated_already_achieved",
    "holdout_final",
    "holdout_achieved",
    "holdout_rate_percent",
    "holdout_still_being_measured",
    "holdout_already_achieved",
    "lift_points",
    "lift_low",
    "lift_high",
    "lift_note",
    "method",
    "min_final_per_group",
)


def report_csv_rows(report: Report) -> list[dict[str, Any]]:
    """One dict per report row, keyed by CSV_COLUMNS (empty cells for absent values).
    Certifications are not rows of this table; the JSON and table outputs carry them."""
    out = []
    for r in report.rows:
        e = r.experiment
        row: dict[str, Any] = {
            "organization_id": _org(r.organization_id) or "",
            # The rules file's name, else the platform's (build_report, cli/report.py), else empty.
            "organization_name": ""
            if r.organization_id is None
            else report.organisation_names.get(r.organization_id, ""),
            "rule": r.rule_name,
            "scenario_type": r.scenario_type,
            "experiment_id": "" if e is None else e.id,
            "holdout_percent": "" if e is None else e.holdout_percent,
            "global_holdout_percent": "" if e is None else e.global_holdout_percent,
            "candidates": r.candidates,
            "sent": r.sent,
            "delivered": r.delivered,
            "held_out": r.held_out,
            **{f"suppressed_{reason}": r.suppressed.get(reason, 0) for reason in SUPPRESSION_REASONS},
            "achieved_label": r.labels.achieved,
            "missed_label": r.labels.missed,
            "method": report.method,
            "min_final_per_group": report.min_final_per_group,
            "lift_points": _blank(r.lift.points),
            "lift_low": _blank(r.lift.low),
            "lift_high": _blank(r.lift.high),
            "lift_note": r.lift.note or "",
        }
        for name, arm in (("treated", r.treated), ("holdout", r.holdout)):
            row[f"{name}_final"] = arm.final
            row[f"{name}_achieved"] = arm.achieved
            row[f"{name}_rate_percent"] = _blank(arm.rate_percent)
            row[f"{name}_still_being_measured"] = arm.measuring
            row[f"{name}_already_achieved"] = arm.measuring_achieved
        out.append({column: row[column] for column in CSV_COLUMNS})
    return out


def _blank(value: float | None) -> float | str:
    return "" if value is None else round(value, DECIMALS)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _points(value: float) -> str:
    return f"{value:+.1f}"


def _aligned(header: list[str], body: list[list[str]], text: frozenset[int]) -> list[str]:
    """Columns padded to their widest cell: text columns (by index) to the left, numbers right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in text else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(cells) for cells in body)]


def _measuring_cell(arm: Arm, verb: str) -> str:
    """'12 (3 already achieved)': decisions still being measured, in no rate."""
    return f"{arm.measuring} ({arm.measuring_achieved} already {verb})" if arm.measuring else "0"


def _experiment_cell(e: Experiment | None) -> str:
    if e is None:
        return "none"
    share = f"{e.holdout_percent:g} %" + (
        f" + global {e.global_holdout_percent:g} %" if e.global_holdout_percent else ""
    )
    return f"#{e.id} ({share} held out)"


def format_table(report: Report) -> str:
    """The readable report of ``report --output table`` (the default)."""
    out = [
        f"Outcomes of decisions taken in [{_iso(report.since)}, {_iso(report.until)}), "
        f"as of {_iso(report.as_of)}",
        f"Lift = treated rate − holdout rate, in percentage points; interval: {report.method}; "
        f"no lift below {report.min_final_per_group} final outcomes in either group.",
        f"Rates and lifts count the mature cohort only: decisions whose outcome window closed by "
        f"{_iso(report.as_of)}; the others are still being measured and in no rate.",
    ]
    if report.organization_id is not None or report.rule_name is not None:
        where = "any" if report.organization_id is None else report.organisation(report.organization_id)
        out.append(f"Only organisation {where}, rule {report.rule_name or 'any'}.")
    out.append("")
    out.extend(report.notes)
    if report.channels:
        parts = [
            f"{c.channel} {c.sent} sent, {c.not_delivered} not delivered"
            + (f" ({c.fell_back} by fallback)" if c.fell_back else "")
            for c in report.channels
        ]
        out.append("Delivery by channel: " + "; ".join(parts) + ".")
        if (share := report.only_email_share) is not None:
            out.append(f"Only email reached {share * 100:.1f} % of the delivered notifications.")
        out.append("")
    if report.digests:
        out.append(
            "Digests and the daily cap, per rule (pushes merged into a digest; candidates the cap dropped)"
        )
        out.extend(
            f"  {rule}: {merged} merged, {capped} dropped by the cap"
            for rule, merged, capped in report.digests
        )
        out.append("")
    if report.arm_experiments:
        out.append("Experiment arms (new behaviour − old, mature cohort, 95 % range)")
        for a in report.arm_experiments:
            if a.lift.points is None or a.lift.low is None or a.lift.high is None:
                out.append(f"  {a.rule_name}: {a.words}: {a.lift.note}")
            else:
                out.append(
                    f"  {a.rule_name}: {a.words}: {_points(a.lift.points)} points, "
                    f"95 % range {_points(a.lift.low)} to {_points(a.lift.high)}"
                )
        out.append("")
    if report.rows:
        out.append("Decisions")
        body = [
            [
                report.organisation(r.organization_id),
                r.rule_name,
                _experiment_cell(r.experiment),
                str(r.candidates),
                str(r.sent),
                str(r.delivered),
                str(r.held_out),
                str(sum(r.suppressed.values())),
                ", ".join(f"{k} {v}" for k, v in r.suppressed.items() if v) or "—",
            ]
            for r in report.rows
        ]
        header = [
            "organisation",
            "rule",
            "experiment",
            "candidates",
            "sent",
            "delivered",
            "held out",
            "suppressed",
        ]
        out.extend(_aligned([*header, "by reason"], body, text=frozenset({0, 1, 2, 8})))
        out.append("")
        out.append("Outcomes (mature cohort; still being measured: N (M already achieved), in no rate)")
        body = []
        for r in report.rows:
            t, h = r.treated, r.holdout
            if r.lift.points is None or r.lift.low is None or r.lift.high is None:
                lift_cell, interval_cell = "—", "not enough data"
            else:
                lift_cell = _points(r.lift.points)
                interval_cell = f"[{_points(r.lift.low)}, {_points(r.lift.high)}]"
            body.append(
                [
                    report.organisation(r.organization_id),
                    r.rule_name,
                    _experiment_cell(r.experiment),
                    f"{r.labels.achieved} / {r.labels.missed}",
                    f"{t.achieved}/{t.final}",
                    _pct(t.rate_percent),
                    f"{h.achieved}/{h.final}",
                    _pct(h.rate_percent),
                    _measuring_cell(t + h, "achieved"),
                    lift_cell,
                    interval_cell,
                ]
            )
        header = ["organisation", "rule", "experiment", "outcome", "treated", "rate", "holdout", "rate"]
        out.extend(
            _aligned(
                [*header, "still being measured", "lift (pp)", "95 % interval"],
                body,
                text=frozenset({0, 1, 2, 3}),
            )
        )
        notes = [
            f"  {report.organisation(r.organization_id)} {r.rule_name} "
            f"{_experiment_cell(r.experiment)}: {r.lift.note}"
            for r in report.rows
            if r.lift.note
        ]
        if notes:
            out.append("")
            out.extend(notes)
    out.append("")
    out.append(
        f"Certifications (platform data): this period [{_iso(report.since)}, {_iso(report.until)}), "
        f"previous [{_iso(report.previous_since)}, {_iso(report.since)})"
    )
    if not report.certifications:
        out.append("no certifications expiring in either period")
    else:
        body = []
        for c in report.certifications:
            for label, counts in (("this", c.period), ("previous", c.previous_period)):
                body.append(
                    [
                        report.organisation(c.organization_id),
                        label,
                        str(counts.expiring),
                        str(counts.renewed_in_time),
                        str(counts.lapsed),
                        _measuring_cell(
                            Arm(measuring=counts.still_open, measuring_achieved=counts.still_open_renewed),
                            "renewed",
                        ),
                    ]
                )
        out.extend(
            _aligned(
                ["organisation", "period", "expiring", "renewed in time", "lapsed", "still open"],
                body,
                text=frozenset({0, 1}),
            )
        )
    return "\n".join(out)
