-- Per-organisation programmes (issue 20): no flood per organisation.
--
-- A rule first seen takes its no-flood baseline (scenario_rule_state). An organisation's
-- variant of a rule — raised milestone thresholds, a rule enabled for that organisation only —
-- is "newly seen" for that organisation's mentors: scenario_programme_seen records each variant
-- (rule, organisation, a digest of the parameters its baseline depends on) once, when its
-- baseline ran. A mentor who moves to another organisation is newly seen by its rules too:
-- scenario_mentor_programme holds the organisation each mentor was last evaluated in, so that a
-- move is found (set-based, per batch) and baselined for that mentor only.
CREATE TABLE IF NOT EXISTS scenario_engine.scenario_programme_seen (
    rule_name       text NOT NULL,
    organization_id uuid NOT NULL,
    params_digest   text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (rule_name, organization_id, params_digest)
);

CREATE TABLE IF NOT EXISTS scenario_engine.scenario_mentor_programme (
    mentor_id       uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    seen_at         timestamptz NOT NULL
);
