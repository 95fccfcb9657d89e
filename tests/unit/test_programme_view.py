"""The programme-health page's view model, pure: rows in, numbers and plain words out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from scenario_engine.outcomes.model import Arm
from scenario_engine.outcomes.stats import newcombe_interval
from scenario_engine.web.programme_view import (
    SCENARIO_WORDS,
    BadOrganization,
    ProgrammeRows,
    ProgrammeUnavailable,
    build_programme_health,
    parse_organization,
    rate_detail,
    rate_text,
    render_programme,
    scenario_words,
    window_weeks,
)
from tests.support.status_page import parse_dom

AS_OF = dt.datetime(2026, 11, 4, 14, 5, tzinfo=dt.UTC)  # a Wednesday
ORG = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
WEEKS = window_weeks(AS_OF)


def outcome_row(
    arm: str, achieved: int, final: int, measuring: int = 0, measuring_achieved: int = 0, **extra: Any
) -> dict[str, Any]:
    """A row of outcome_counts (queries/outcomes.sql)."""
    return {
        "organization_id": ORG,
        "rule_name": "inactive_30d",
        "scenario_type": "inactivity",
        "experiment_id": 7,
        "arm": arm,
        "week": WEEKS[3],
        "achieved": achieved,
        "missed": final - achieved,
        "measuring": measuring,
        "measuring_achieved": measuring_achieved,
        **extra,
    }


def lift_rows(treated: tuple[int, int], holdout: tuple[int, int], **extra: Any) -> ProgrammeRows:
    """One set-up (experiment 7, current) of one rule with its two arms' mature outcomes."""
    experiment = {
        "id": extra.pop("experiment_id", 7),
        "rule_name": extra.get("rule_name", "inactive_30d"),
        "scenario_type": extra.get("scenario_type", "inactivity"),
        "started_at": AS_OF - dt.timedelta(days=30),
        "holdout_percent": extra.pop("holdout_percent", 10),
        "global_holdout_percent": extra.pop("global_holdout_percent", 0),
        "current": True,
    }
    extra["experiment_id"] = experiment["id"]
    return ProgrammeRows(
        outcomes=[
            outcome_row("treated", *treated, measuring=2, measuring_achieved=1, **extra),
            outcome_row("holdout", *holdout, **extra),
        ],
        experiments=[experiment],
    )


def merged(*parts: ProgrammeRows) -> ProgrammeRows:
    return ProgrammeRows(
        outcomes=[r for p in parts for r in p.outcomes],
        experiments=[r for p in parts for r in p.experiments],
    )


def test_the_window_is_twelve_utc_weeks_starting_on_monday() -> None:
    assert len(WEEKS) == 12 and all(w.weekday() == 0 for w in WEEKS)
    assert WEEKS[-1] == dt.date(2026, 11, 2) and WEEKS[0] == dt.date(2026, 8, 17)
    # Monday 00:00 UTC opens a week, whatever the time zone of the server or the reader.
    monday = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)
    assert window_weeks(monday)[-1] == dt.date(2026, 11, 2)
    assert window_weeks(monday - dt.timedelta(microseconds=1))[-1] == dt.date(2026, 10, 26)
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert window_weeks(dt.datetime(2026, 11, 2, 0, 30, tzinfo=berlin))[-1] == dt.date(2026, 10, 26)


def test_weekly_numbers_totals_and_wording() -> None:
    rows = ProgrammeRows(
        sends=[
            {
                "organization_id": ORG,
                "scenario_type": "inactivity",
                "week": WEEKS[2],
                "sent": 10,
                "delivered": 8,
            },
            {
                "organization_id": ORG,
                "scenario_type": "inactivity",
                "week": WEEKS[-1],
                "sent": 4,
                "delivered": 1,
            },
            # Before the window: not shown, not counted.
            {
                "organization_id": ORG,
                "scenario_type": "inactivity",
                "week": WEEKS[0] - dt.timedelta(weeks=1),
                "sent": 99,
                "delivered": 99,
            },
        ],
        outcomes=[outcome_row("treated", 3, 8, measuring=2, measuring_achieved=1, week=WEEKS[2])],
    )
    page = build_programme_health(rows, AS_OF)
    (org,) = page.organisations
    (quiet,) = org.scenarios
    assert [w.sent for w in quiet.weeks] == [0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 4]
    assert (quiet.sent, quiet.delivered, quiet.delivered_share) == (14, 9, "64\u00a0%")
    assert rate_text(quiet.weeks[2].outcome) == "38\u00a0%" and rate_text(quiet.weeks[3].outcome) == "—"
    assert rate_detail(quiet.outcome) == "3 of 8; still being measured: 2 (1 already achieved)"
    assert not quiet.weeks[2].mature and quiet.weeks[3].mature
    assert [w.label for w in quiet.weeks[-2:]] == ["week of 26 Oct", "week of 2 Nov (so far)"]
    assert quiet.title == "Check-ins with quiet mentors" and quiet.words.outcome == "came back"
    assert quiet.certifications is None  # only certification reminders have that table

    dom = parse_dom(render_programme(page))
    text = dom.iter("main")[0].text
    assert "from Monday 17 Aug 2026 to 4 Nov 2026, 14:05 UTC" in text
    assert "Weeks start on Monday at 00:00 UTC" in text
    assert "Mentors who came back" in text and "Came back" in text
    for jargon in ("dedup", "rule", "experiment", "period key", "holdout", "scenario"):
        assert jargon not in text.lower(), jargon
    # With no comparison set up yet, no number is made up.
    (lift,) = [d for d in dom.iter("div") if d.attrs.get("data-figure") == "lift"]
    assert lift.iter("span")[0].text == "not enough data yet"


def test_difference_with_its_interval_once_both_groups_have_thirty_results() -> None:
    rows = lift_rows((24, 40), (8, 32))
    (lift,) = build_programme_health(rows, AS_OF).organisations[0].scenarios[0].lifts
    interval = newcombe_interval(24, 40, 8, 32)
    assert lift.difference == pytest.approx(35.0)
    assert lift.low == pytest.approx(100 * interval.low)
    assert lift.high == pytest.approx(100 * interval.high)
    assert lift.figure == "+35.0 points"
    assert lift.interval == (
        f"95\u00a0% confidence range: +{100 * interval.low:.1f} to +{100 * interval.high:.1f} points."
    )
    assert lift.verdict == "Mentors who got the message came back more often than those who did not."
    assert lift.measured_from == (AS_OF - dt.timedelta(days=30)).date()  # the set-up started in the window

    # Worse than the comparison group: said so, with a minus sign, not a hyphen.
    (worse,) = build_programme_health(lift_rows((5, 40), (20, 40)), AS_OF).organisations[0].scenarios[0].lifts
    assert worse.figure == "\u221237.5 points" and "less often" in worse.verdict
    # An interval across zero is no clear difference, whatever the point estimate.
    (unclear,) = (
        build_programme_health(lift_rows((18, 35), (15, 33)), AS_OF).organisations[0].scenarios[0].lifts
    )
    assert unclear.low is not None and unclear.low < 0 < (unclear.high or 0)
    assert unclear.verdict.startswith("No clear difference yet")


@pytest.mark.parametrize(
    ("treated", "holdout"), [((20, 29), (10, 300)), ((100, 300), (10, 29)), ((0, 0), (0, 0))]
)
def test_below_thirty_results_in_either_group_there_is_no_number(
    treated: tuple[int, int], holdout: tuple[int, int]
) -> None:
    (lift,) = build_programme_health(lift_rows(treated, holdout), AS_OF).organisations[0].scenarios[0].lifts
    assert lift.difference is None and lift.low is None
    assert lift.figure == "not enough data yet" and lift.verdict == "Not enough data yet."
    assert f"{treated[1]} results known for mentors who got the message" in lift.interval
    assert "at least 30 of each" in lift.interval
    html = render_programme(build_programme_health(lift_rows(treated, holdout), AS_OF))
    (shown,) = [d for d in parse_dom(html).iter("div") if d.attrs.get("data-figure") == "lift"]
    assert shown.iter("span")[0].text == "not enough data yet" and "points" not in shown.text


def test_the_summary_has_a_row_per_kind_of_message_and_set_up_with_mature_figures() -> None:
    rows = merged(lift_rows((24, 40), (8, 32)), lift_rows((1, 2), (1, 2), rule_name="b", experiment_id=8))
    sends = [
        {"organization_id": ORG, "scenario_type": "milestone", "week": WEEKS[1], "sent": 3, "delivered": 3}
    ]
    page = build_programme_health(ProgrammeRows(sends, rows.outcomes, rows.experiments), AS_OF)
    summary = [(r.scenario.scenario_type, r.lift and r.lift.name, r.sent, r.outcome) for r in page.summary]
    quiet = Arm(achieved=25, missed=17, measuring=4, measuring_achieved=2)  # both set-ups' messaged
    assert summary == [
        ("inactivity", "b", 0, quiet),
        ("inactivity", "inactive_30d", 0, quiet),
        ("milestone", None, 3, Arm()),
    ]
    difference = page.summary[1].lift
    assert difference is not None and difference.low is not None and difference.low > 0


def test_the_summary_table_and_its_forest_plot_show_the_same_rows() -> None:
    """Rendered: a table row and a forest-plot row per summary row, in the same order; a point and
    its range where a difference is measured, the words instead of a point where it is not."""
    rows = merged(lift_rows((24, 40), (8, 32)), lift_rows((1, 2), (1, 2), rule_name="b", experiment_id=8))
    cert = lift_rows(
        (40, 60),
        (0, 0),
        holdout_percent=0,
        scenario_type="certification_expiry",
        rule_name="c",
        experiment_id=9,
    )
    sends = [
        {"organization_id": ORG, "scenario_type": "milestone", "week": WEEKS[1], "sent": 3, "delivered": 3}
    ]
    outcomes = [*rows.outcomes, *cert.outcomes]
    page = build_programme_health(
        ProgrammeRows(sends, outcomes, [*rows.experiments, *cert.experiments]), AS_OF
    )
    assert [(r.label, r.missing if not (r.lift and r.lift.enough_data) else "") for r in page.summary] == [
        ("Check-ins with quiet mentors (b)", "not enough data yet"),
        ("Check-ins with quiet mentors (inactive_30d)", ""),
        ("Milestone celebrations", "not enough data yet"),  # nothing compared at all
        ("Certification reminders", "not measured"),  # nobody kept back
    ]
    dom = parse_dom(render_programme(page))
    summary = dom.by_id("summary")
    table_rows = [tr for tr in dom.by_id("summary-table").iter("tr") if "data-row" in tr.attrs]
    plot = dom.by_id("forest-plot")
    plot_rows = [g for g in plot.iter("g") if "row" in g.classes]
    keys = [r.key for r in page.summary]
    assert len(set(keys)) == 4
    assert [tr.attrs["data-row"] for tr in table_rows] == [g.attrs["data-row"] for g in plot_rows] == keys
    assert [g.attrs["data-measured"] for g in plot_rows] == ["no", "yes", "no", "no"]
    for g in plot_rows:
        measured = g.attrs["data-measured"] == "yes"
        assert len(g.iter("circle")) == (1 if measured else 0)
        assert len([ln for ln in g.iter("line") if "interval" in ln.classes]) == (1 if measured else 0)
    assert "+35.0 (" in plot_rows[1].text and plot_rows[3].text.endswith("not measured")
    assert [ln for ln in plot.iter("line") if "zero" in ln.classes]
    assert "No difference can be shown yet" not in dom.by_id("forest-caption").text
    nothing = build_programme_health(ProgrammeRows(sends), AS_OF)
    assert nothing.forest.measured == 0
    caption = parse_dom(render_programme(nothing)).by_id("forest-caption").text
    assert "No difference can be shown yet" in caption and "at least 30 known results" in caption
    measured_row = table_rows[1]
    cells = {td.attrs["data-field"]: td.text for td in measured_row.iter("td")}
    difference = page.summary[1].lift
    assert difference is not None and difference.low is not None and difference.high is not None
    assert cells["difference"] == f"+35.0 points +{difference.low:.1f} to +{difference.high:.1f}"
    assert cells["outcome"].startswith("60 %")
    assert "25 of 42 came back" in cells["outcome"] and "4 still being measured" in cells["outcome"]
    assert {td.attrs["data-field"]: td.text for td in table_rows[0].iter("td")}["difference"] == (
        "not enough data yet"
    )
    # The summary comes before the organisations' details, and names each organisation once.
    order = [n.attrs.get("id") for n in dom.iter("section")]
    assert order.index("summary") < order.index(f"org-{ORG}")
    assert [th.text for th in summary.iter("th") if th.attrs.get("scope") == "rowgroup"] == [
        f"Organisation {ORG}"
    ]


def test_the_weekly_chart_marks_the_weeks_still_being_measured() -> None:
    rows = lift_rows((24, 40), (8, 32))  # the treated arm of WEEKS[3] has 2 still being measured
    sends = [
        {
            "organization_id": ORG,
            "scenario_type": "inactivity",
            "week": WEEKS[3],
            "sent": 42,
            "delivered": 40,
        },
        {"organization_id": ORG, "scenario_type": "inactivity", "week": WEEKS[5], "sent": 7, "delivered": 7},
    ]
    page = build_programme_health(ProgrammeRows(sends, rows.outcomes, rows.experiments), AS_OF)
    (scenario,) = page.organisations[0].scenarios
    assert [w.mature for w in scenario.weeks if w.sent] == [False, True]
    chart = scenario.chart
    assert [(b.value, b.mature) for b in chart.bars] == [(42, False), (7, True)]
    dom = parse_dom(render_programme(page))
    (svg,) = [s for s in dom.iter("svg") if "weekly-chart" in s.classes]
    bars = [r for r in svg.iter("rect") if "bar" in r.classes]
    assert [(r.attrs["data-count"], r.attrs["data-mature"]) for r in bars] == [("42", "no"), ("7", "yes")]
    assert bars[0].attrs["fill"].startswith("url(#") and "measuring" in bars[0].classes
    texts = {t.text for t in svg.iter("text")}
    assert {"Messages sent per week", "Week starting on Monday (UTC)", "Messages sent"} <= texts
    assert "Sent, results still being measured" in texts


def test_no_comparison_group_is_said_plainly() -> None:
    row = lift_rows(
        (40, 60), (0, 0), holdout_percent=0, scenario_type="certification_expiry", rule_name="cert"
    )
    (lift,) = build_programme_health(row, AS_OF).organisations[0].scenarios[0].lifts
    assert not lift.has_comparison and lift.figure == "not measured"
    assert lift.verdict.startswith("No comparison group is kept back")
    # Only the global holdout keeps mentors back: that is a comparison group too.
    both = lift_rows((40, 60), (0, 0), holdout_percent=0, global_holdout_percent=5)
    (lift,) = build_programme_health(both, AS_OF).organisations[0].scenarios[0].lifts
    assert lift.has_comparison and lift.keeps_back


def test_certifications_renewed_and_lapsed_per_week() -> None:
    rows = ProgrammeRows(
        certifications=[
            {"organization_id": ORG, "week": WEEKS[5], "renewed_in_time": 3, "lapsed": 1},
            {"organization_id": ORG, "week": WEEKS[-1], "renewed_in_time": 0, "lapsed": 2},
        ]
    )
    (reminders,) = build_programme_health(rows, AS_OF).organisations[0].scenarios
    assert reminders.title == "Certification reminders" and reminders.words.outcome == "renewed in time"
    assert reminders.certifications is not None
    assert [(c.renewed, c.lapsed) for c in reminders.certifications if c.expired] == [(3, 1), (0, 2)]
    assert (reminders.renewed, reminders.lapsed) == (3, 3)


def test_every_scenario_has_plain_words_and_unknown_ones_get_readable_ones() -> None:
    assert {k: (w.title, w.outcome) for k, w in SCENARIO_WORDS.items()} == {
        "inactivity": ("Check-ins with quiet mentors", "came back"),
        "certification_expiry": ("Certification reminders", "renewed in time"),
        "milestone": ("Milestone celebrations", "kept going"),
        "anniversary": ("Anniversary greetings", "kept going"),
    }
    assert scenario_words("welcome_call").title == "Welcome call messages"
    sends = [
        {"organization_id": ORG, "scenario_type": s, "week": WEEKS[1], "sent": 1, "delivered": 1}
        for s in ("welcome_call", "anniversary", "milestone", "inactivity")
    ]
    (org,) = build_programme_health(ProgrammeRows(sends=sends), AS_OF).organisations
    assert [s.scenario_type for s in org.scenarios] == [
        "inactivity",
        "milestone",
        "anniversary",
        "welcome_call",
    ]


def test_organisations_are_separate_and_one_can_be_asked_for() -> None:
    other = uuid.UUID("00000000-0000-0000-0000-0000000000bb")
    sends = [
        {"organization_id": org, "scenario_type": "inactivity", "week": WEEKS[1], "sent": n, "delivered": n}
        for org, n in ((other, 5), (ORG, 2), (None, 1))
    ]
    page = build_programme_health(ProgrammeRows(sends=sends), AS_OF)
    assert [(o.organization_id, o.scenarios[0].sent) for o in page.organisations] == [
        (ORG, 2),
        (other, 5),
        (None, 1),
    ]
    assert page.organisations[-1].name == "Organisation not recorded"
    # Asked for, but without figures: the organisation is still shown, and says so.
    quiet = uuid.UUID("00000000-0000-0000-0000-0000000000cc")
    page = build_programme_health(ProgrammeRows(), AS_OF, organization_id=quiet)
    assert [o.organization_id for o in page.organisations] == [quiet] and not page.organisations[0].scenarios
    text = parse_dom(render_programme(page)).iter("main")[0].text
    assert "No messages were sent and no certifications expired for this organisation" in text
    assert "All organisations" in text


def test_names_are_escaped_and_the_unavailable_page_says_why() -> None:
    rows = merged(
        lift_rows((1, 2), (1, 2), rule_name="<b>a</b>"),
        lift_rows((1, 2), (1, 2), rule_name="b", experiment_id=8),
    )
    html = render_programme(build_programme_health(rows, AS_OF))
    assert "<b>a</b>" not in html and "&lt;b&gt;a&lt;/b&gt;" in html  # several set-ups: named
    dom = parse_dom(render_programme(ProgrammeUnavailable("The programme's database could not be reached.")))
    assert "The figures are unavailable right now" in dom.by_id("unavailable").text
    assert not dom.iter("table")


def test_the_organization_parameter() -> None:
    assert parse_organization([]) is None
    assert parse_organization([f" {ORG} "]) == ORG
    for bad in (["nope"], [""], [str(ORG), str(ORG)]):
        with pytest.raises(BadOrganization, match="organization"):
            parse_organization(bad)
