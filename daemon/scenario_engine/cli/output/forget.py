"""An erasure's counts per table (``forget``): no id, no name, no content of what was erased."""

from __future__ import annotations

from scenario_engine.privacy import ForgetReport


def format_forget_report(report: ForgetReport) -> str:
    """Counts per table only: no id, no name, no content of what was erased."""
    width = max([len("table"), *(len(t) for t in report.rows)])
    verb = "would erase" if report.dry_run else "erased"
    lines = [f"{'table':<{width}}  {'rows':>8}"]
    lines += [f"{t:<{width}}  {n:>8}" for t, n in sorted(report.rows.items())]
    tail = " — dry run, nothing was changed" if report.dry_run else ""
    lines.append(f"{verb} {report.total} rows in {len(report.rows)} engine tables{tail}")
    return "\n".join(lines)
