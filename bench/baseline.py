"""Hand-written set-based SQL that writes what one sweep writes, for the same rules.

This is the yardstick of docs/ARCHITECTURE.md's "Bars" ("first sweep within 1.5× of
hand-written set-based SQL producing the same rows"). It is written the way one would write a
one-off job against the whole population: per rule, one candidate statement over all mentors (hash joins and
aggregates instead of per-mentor lookups), one policy statement (opt-out, cooldown, daily
cap with the same ordering rule as the engine), then the writes the engine makes —
achievements, scenario_notification, scenario_cooldown, push_notification, scenario_decision
rows for sent and suppressed candidates (with their organisation, experiment and final flag) and
the sent ones' pending scenario_outcome rows — then the outcome resolution the engine runs after
every sweep. Rules are applied in the engine's order, so the daily cap sees earlier rules'
notifications exactly as the sweep does.

It depends on nothing in the engine except the rule objects (names, thresholds, templates),
taken from ``bench.harness.engine`` like every engine import of ``bench/``.
"""

from __future__ import annotations

import datetime as dt
import string

from bench.harness.engine import (
    CertificationExpiryRule,
    InactivityRule,
    MilestoneRule,
    Rule,
    Rules,
    decision_record,
)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(instant: dt.datetime) -> str:
    return f"{_lit(instant.isoformat())}::timestamptz"


def _iso(expr: str) -> str:
    """SQL spelling of Python's ``datetime.astimezone(UTC).isoformat()``."""
    utc = f"({expr} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN to_char({utc}, 'US') = '000000' THEN '' ELSE to_char({utc}, '.US') END"
        " || '+00:00'"
    )


def _render(template: str, ctx: str) -> str:
    """Compile a rule's message template into a SQL expression over the jsonb ``ctx``."""
    parts: list[str] = []
    for literal, name, spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(_lit(literal))
        if name is None:
            continue
        if spec == "g":
            parts.append(f"(({ctx}->>{_lit(name)})::float8)::text")
        else:
            parts.append(f"coalesce({ctx}->>{_lit(name)}, {_lit('{' + name + '}')})")
    return "concat(" + ", ".join(parts or ["''"]) + ")"


def _fmt_interval(seconds: str) -> str:
    """policy._fmt: '7.0 days' from 48 h on, else '5.5 h'."""
    hours = f"(({seconds}) / 3600.0)"
    return (
        f"CASE WHEN {hours} >= 48 THEN round(({hours} / 24)::numeric, 1)::text || ' days'"
        f" ELSE round({hours}::numeric, 1)::text || ' h' END"
    )


def _candidates_inactivity(rule: InactivityRule, at: str) -> str:
    threshold = rule.threshold_days * 86400
    spacing = rule.cooldown.total_seconds()
    name = _lit(rule.name)
    return f"""
CREATE TEMP TABLE bl_cand ON COMMIT DROP AS
WITH last AS (
    SELECT mentor_id, max(occurred_at) AS at FROM activity WHERE occurred_at <= {at} GROUP BY mentor_id
), due AS (
    SELECT p.id AS mentor_id, coalesce(l.at, p.joined_at) AS start, l.at IS NULL AS never_active
    FROM peer_mentor p LEFT JOIN last l ON l.mentor_id = p.id
    WHERE p.status = 'active'
      AND coalesce(l.at, p.joined_at) <= {at} - make_interval(secs => {threshold})
), spell AS (
    SELECT due.*, (extract(epoch FROM start) * 1000000)::bigint::text AS spell FROM due
), sent AS (
    SELECT mentor_id, subject, count(*) AS n, max(as_of) AS last_as_of
    FROM scenario_engine.scenario_notification WHERE rule_name = {name} GROUP BY mentor_id, subject
)
SELECT s.mentor_id, s.spell AS subject, coalesce(x.n, 0)::int + 1 AS seq,
       concat('inactivity:', {name}, ':', s.mentor_id, ':', s.spell, ':', coalesce(x.n, 0) + 1) AS dedup_key,
       jsonb_build_object(
           'last_activity_at', {_iso("s.start")},
           'since', CASE WHEN s.never_active THEN 'joined' ELSE 'last_activity' END,
           'days_inactive', floor(extract(epoch FROM {at} - s.start) / 86400)::int,
           'threshold_days', {rule.threshold_days},
           'reminder', coalesce(x.n, 0) + 1,
           'max_reminders', {rule.max_reminders}) AS inputs,
       0::bigint AS ord,
       NULL::jsonb AS achieved,
       {at} + interval '{rule.outcome_window_days} days' AS window_end
FROM spell s LEFT JOIN sent x ON x.mentor_id = s.mentor_id AND x.subject = s.spell
WHERE coalesce(x.n, 0) < {rule.max_reminders}
  AND (x.last_as_of IS NULL OR x.last_as_of <= {at} - make_interval(secs => {spacing}))
"""


def _candidates_milestone(rule: MilestoneRule, at: str) -> str:
    name = _lit(rule.name)
    if rule.period == "year":
        period = f"extract(year FROM {at} AT TIME ZONE p.timezone)::int::text"
        start = (
            f"make_timestamptz(extract(year FROM {at} AT TIME ZONE p.timezone)::int,"
            " 1, 1, 0, 0, 0, p.timezone)"
        )
    else:
        period, start = "'all_time'", "'-infinity'::timestamptz"
    value = {
        "sessions": "(count(*) FILTER (WHERE a.kind = 'session'))::float8",
        "hours": "sum(a.duration_minutes)::float8 / 60",
        "contacts": "sum(a.contacts)::float8",
    }[rule.metric]
    thresholds = "ARRAY[" + ", ".join(repr(float(t)) for t in rule.thresholds) + "]::float8[]"
    label = "'year'" if rule.period == "year" else "'time'"
    return f"""
CREATE TEMP TABLE bl_cand ON COMMIT DROP AS
WITH m AS (
    SELECT p.id, {period} AS period, {start} AS period_start
    FROM peer_mentor p WHERE p.status = 'active'
), agg AS (
    SELECT m.id, m.period, {value} AS value
    FROM m JOIN activity a ON a.mentor_id = m.id AND a.occurred_at >= m.period_start
    WHERE a.occurred_at <= {at} AND a.occurred_at >= (SELECT min(period_start) FROM m)
    GROUP BY m.id, m.period
), crossed AS (
    SELECT agg.id, agg.period, agg.value, t.threshold
    FROM agg CROSS JOIN unnest({thresholds}) AS t(threshold)
    WHERE agg.value >= t.threshold
      AND NOT EXISTS (
          SELECT 1 FROM achievement ac
          WHERE ac.mentor_id = agg.id AND ac.milestone = {name}
            AND ac.threshold = t.threshold::numeric AND ac.period = agg.period)
), grouped AS (
    SELECT id, period, value, array_agg(threshold ORDER BY threshold) AS new, max(threshold) AS top
    FROM crossed GROUP BY id, period, value
)
SELECT id AS mentor_id, period AS subject, 0 AS seq,
       concat('milestone:', {name}, ':', id, ':', period, ':', trim_scale(top::numeric)::text) AS dedup_key,
       jsonb_build_object('metric', {_lit(rule.metric)}, 'value', value, 'threshold', top,
                          'threshold_text', trim_scale(top::numeric)::text,
                          'newly_crossed', to_jsonb(new), 'period', period,
                          'period_label', {label}) AS inputs,
       0::bigint AS ord,
       to_jsonb(new) AS achieved,
       {at} + interval '{rule.outcome_window_days} days' AS window_end
FROM grouped
"""


def _candidates_certification(rule: CertificationExpiryRule, at: str) -> str:
    name = _lit(rule.name)
    tiers = sorted(rule.tiers_days)
    tier = "CASE " + " ".join(f"WHEN c.expires_at <= {at} + interval '{t} days' THEN {t}" for t in tiers)
    tier += " END"
    types = ""
    if rule.certification_types:
        types = "AND c.type = ANY(ARRAY[" + ", ".join(_lit(t) for t in rule.certification_types) + "])"
    return f"""
CREATE TEMP TABLE bl_cand ON COMMIT DROP AS
WITH c AS (
    SELECT c.id, c.mentor_id, c.type, c.expires_at, p.timezone, {tier} AS tier
    FROM certification c JOIN peer_mentor p ON p.id = c.mentor_id AND p.status = 'active'
    WHERE c.revoked_at IS NULL AND c.expires_at > {at}
      AND c.expires_at <= {at} + interval '{max(tiers)} days' {types}
      AND NOT EXISTS (
          SELECT 1 FROM certification n
          WHERE n.mentor_id = c.mentor_id AND n.type = c.type AND n.revoked_at IS NULL
            AND (n.issued_at, n.id) > (c.issued_at, c.id))
), fired AS (
    SELECT mentor_id, subject, min(seq) AS min_tier
    FROM scenario_engine.scenario_notification WHERE rule_name = {name} GROUP BY mentor_id, subject
)
SELECT c.mentor_id, c.id::text AS subject, c.tier AS seq,
       concat('certification_expiry:', {name}, ':', c.mentor_id, ':', c.id, ':', c.tier) AS dedup_key,
       jsonb_build_object(
           'certification_id', c.id, 'certification_type', c.type,
           'expires_at', {_iso("c.expires_at")},
           'expires_on', (c.expires_at AT TIME ZONE c.timezone)::date::text,
           'days_left', ceil(extract(epoch FROM c.expires_at - {at}) / 86400)::int,
           'tier_days', c.tier) AS inputs,
       c.id AS ord,
       NULL::jsonb AS achieved,
       c.expires_at AS window_end
FROM c LEFT JOIN fired f ON f.mentor_id = c.mentor_id AND f.subject = c.id::text
WHERE f.min_tier IS NULL OR c.tier < f.min_tier
"""


def _policy(rule: Rule, rules: Rules, at: str) -> str:
    stype = _lit(rule.scenario_type)
    cooldown = rule.cooldown.total_seconds()
    cap = rules.daily_cap
    used = f"(d.sent_24h + least(d.rnk - 1, greatest({cap} - d.sent_24h, 0)))"
    since = f"extract(epoch FROM {at} - d.last_triggered_at)"
    return f"""
CREATE TEMP TABLE bl_decided ON COMMIT DROP AS
WITH d AS (
    SELECT c.*, p.status, p.display_name, p.organization_id, o.scope AS opted_out_scope,
           cd.last_triggered_at, cd.last_rule_name, coalesce(s.n, 0) AS sent_24h,
           row_number() OVER (PARTITION BY c.mentor_id ORDER BY c.ord) AS rnk
    FROM bl_cand c
    JOIN peer_mentor p ON p.id = c.mentor_id
    LEFT JOIN (
        SELECT mentor_id,
               CASE WHEN bool_or(scenario_type = 'all') THEN 'all' ELSE min(scenario_type) END AS scope
        FROM notification_preference WHERE opted_out AND scenario_type IN ('all', {stype})
        GROUP BY mentor_id
    ) o ON o.mentor_id = c.mentor_id
    LEFT JOIN scenario_engine.scenario_cooldown cd
           ON cd.mentor_id = c.mentor_id AND cd.scenario_type = {stype}
    LEFT JOIN (
        SELECT mentor_id, count(*) AS n FROM scenario_engine.scenario_notification
        WHERE as_of > {at} - interval '24 hours' AND as_of <= {at}
        GROUP BY mentor_id
    ) s ON s.mentor_id = c.mentor_id
)
SELECT d.*,
       CASE WHEN d.status <> 'active' THEN 'mentor_not_active'
            WHEN d.opted_out_scope IS NOT NULL THEN 'opted_out'
            WHEN {cooldown} > 0 AND d.last_triggered_at IS NOT NULL AND {since} < {cooldown} THEN 'cooldown'
            WHEN {used} >= {cap} THEN 'daily_cap'
            ELSE 'sent' END AS outcome,
       CASE WHEN d.status <> 'active' THEN format('mentor status is %L', d.status)
            WHEN d.opted_out_scope IS NOT NULL THEN
                 'mentor opted out of ' || CASE WHEN d.opted_out_scope = 'all' THEN 'all notifications'
                                                ELSE {stype} || ' notifications' END
            WHEN {cooldown} > 0 AND d.last_triggered_at IS NOT NULL AND {since} < {cooldown} THEN
                 format('last %s notification (%s) %s ago, cooldown is %s', {stype}, d.last_rule_name,
                        {_fmt_interval(since)}, {_fmt_interval(str(cooldown))})
            WHEN {used} >= {cap} THEN format('%s notifications in the last 24 h, cap is %s', {used}, {cap})
            ELSE 'all checks passed' END AS reason
FROM d
"""


def _writes(rule: Rule, at: str, locale: str, params: str) -> list[str]:
    """What the engine writes for one rule: achievements; for each sent candidate its
    notification, cooldown, push, decision (superseding the key's earlier suppressions) and
    pending outcome; for each suppressed one a decision, final unless the key was sent. A
    context carries the text's locale, a decision's inputs also the effective parameters
    (``locale`` and ``params``: ``bench.harness.engine.decision_record``)."""
    name, stype = _lit(rule.name), _lit(rule.scenario_type)
    ctx = (
        f"(d.inputs || jsonb_build_object('rule', {name}, 'display_name', coalesce(d.display_name, 'there'), "
        f"'locale', {_lit(locale)}))"
    )
    recorded = f"jsonb_build_object('locale', {_lit(locale)}, 'params', {_lit(params)}::jsonb)"
    experiment = f"(SELECT max(id) FROM scenario_engine.scenario_experiment WHERE rule_name = {name})"
    out: list[str] = []
    if isinstance(rule, MilestoneRule):
        out.append(f"""
INSERT INTO achievement (mentor_id, milestone, threshold, period, achieved_at, awarded_by)
SELECT d.mentor_id, {name}, t.threshold::float8::numeric, d.subject, {at}, 'engine'
FROM bl_decided d CROSS JOIN LATERAL jsonb_array_elements_text(d.achieved) AS t(threshold)
ON CONFLICT (mentor_id, md5(milestone), md5(trim_scale(threshold)::text), md5(period)) DO NOTHING
""")
    out.append(f"""
WITH input AS (
    SELECT d.mentor_id, d.subject, d.seq, d.dedup_key, d.organization_id, d.window_end, {ctx} AS context
    FROM bl_decided d
    WHERE d.outcome = 'sent'
), ins AS (
    INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name, subject, seq,
                                                       dedup_key, context, as_of, held_out)
    SELECT mentor_id, {stype}, {name}, subject, seq, dedup_key, context, {at}, false FROM input
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, mentor_id, subject, dedup_key
), cooldown AS (
    INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at,
                                                   last_rule_name, last_notification_id)
    SELECT DISTINCT ON (mentor_id) mentor_id, {stype}, {at}, {name}, id FROM ins ORDER BY mentor_id, id DESC
    ON CONFLICT (mentor_id, scenario_type) DO UPDATE
    SET last_triggered_at = excluded.last_triggered_at, last_rule_name = excluded.last_rule_name,
        last_notification_id = excluded.last_notification_id
    WHERE scenario_cooldown.last_triggered_at <= excluded.last_triggered_at
), push AS (
    INSERT INTO scenario_engine.push_notification (notification_id, mentor_id, scenario_type, title, body,
                                                   data, idempotency_key, organization_id, experiment_id,
                                                   decided_at)
    SELECT ins.id, ins.mentor_id, {stype},
           {_render(rule.title, "i.context")},
           {_render(rule.body, "i.context")},
           jsonb_build_object('rule', {name}, 'notification_id', ins.id, 'context', i.context), ins.dedup_key,
           i.organization_id, {experiment}, {at}
    FROM ins JOIN input i USING (dedup_key)
    ON CONFLICT (idempotency_key) DO NOTHING
), superseded AS (
    UPDATE scenario_engine.scenario_decision d SET final = false
    FROM ins WHERE d.dedup_key = ins.dedup_key AND d.final
), log AS (
    INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome,
                                                   reason, inputs, as_of, notification_id, organization_id,
                                                   experiment_id)
    SELECT ins.mentor_id, {stype}, {name}, ins.dedup_key, 'sent', 'all checks passed',
           i.context || {recorded}, {at},
           ins.id, i.organization_id, {experiment}
    FROM ins JOIN input i USING (dedup_key)
    ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING
    RETURNING id, dedup_key
)
INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id, scenario_type,
                                              rule_name, experiment_id, arm, subject, decided_at,
                                              window_ends_at)
SELECT log.id, ins.mentor_id, i.organization_id, {stype}, {name}, {experiment}, 'treated', ins.subject,
       {at}, i.window_end
FROM log JOIN ins USING (dedup_key) JOIN input i USING (dedup_key)
""")
    out.append(f"""
INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome,
                                               reason, inputs, as_of, organization_id, experiment_id, final)
SELECT d.mentor_id, {stype}, {name}, d.dedup_key, d.outcome, d.reason, d.inputs || {recorded}, {at},
       d.organization_id,
       {experiment},
       NOT EXISTS (SELECT 1 FROM scenario_engine.scenario_decision s
                   WHERE s.dedup_key = d.dedup_key AND s.outcome IN ('sent', 'holdout'))
FROM bl_decided d WHERE d.outcome <> 'sent'
ON CONFLICT ON CONSTRAINT scenario_decision_once DO NOTHING
""")
    out.append("DROP TABLE bl_cand; DROP TABLE bl_decided")
    return out


def _resolution(at: str) -> list[tuple[str, str]]:
    """Outcome resolution as of the sweep's instant, as the engine runs it after a sweep:
    achieved when the mentor was active in the window (or the certification renewed in time),
    then whatever is pending with its window closed is missed."""
    return [
        (
            "resolve: activity",
            f"""
UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = {at}
WHERE o.status = 'pending' AND o.scenario_type <> 'certification_expiry'
  AND EXISTS (SELECT 1 FROM activity a WHERE a.mentor_id = o.mentor_id AND a.occurred_at > o.decided_at
              AND a.occurred_at <= least(o.window_ends_at, {at}))
""",
        ),
        (
            "resolve: renewals",
            f"""
UPDATE scenario_engine.scenario_outcome o SET status = 'achieved', resolved_at = {at}
FROM certification c
WHERE o.status = 'pending' AND o.scenario_type = 'certification_expiry' AND c.id = o.subject::bigint
  AND EXISTS (SELECT 1 FROM certification n WHERE n.mentor_id = c.mentor_id AND n.type = c.type
              AND n.revoked_at IS NULL AND (n.issued_at, n.id) > (c.issued_at, c.id)
              AND n.issued_at < c.expires_at AND n.issued_at <= {at})
""",
        ),
        (
            "resolve: close",
            f"""
UPDATE scenario_engine.scenario_outcome SET status = 'missed', resolved_at = {at}
WHERE status = 'pending' AND window_ends_at <= {at}
""",
        ),
    ]


def statements(rules: Rules, as_of: dt.datetime) -> list[tuple[str, str]]:
    """(label, sql) in execution order; run them in one transaction, marked as the engine's."""
    at = _ts(as_of.astimezone(dt.UTC))
    out: list[tuple[str, str]] = [
        ("mark", "SELECT set_config('scenario_engine.origin', 'engine', true)"),
    ]
    for rule in rules.enabled():
        if isinstance(rule, InactivityRule):
            cand = _candidates_inactivity(rule, at)
        elif isinstance(rule, MilestoneRule):
            cand = _candidates_milestone(rule, at)
        else:
            assert isinstance(rule, CertificationExpiryRule)
            cand = _candidates_certification(rule, at)
        out.append((f"{rule.name}: candidates", cand))
        out.append((f"{rule.name}: policy", _policy(rule, rules, at)))
        for i, sql in enumerate(_writes(rule, at, *decision_record(rules, rule))):
            out.append((f"{rule.name}: write {i + 1}", sql))
    return out + _resolution(at)
