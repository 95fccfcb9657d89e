-- The runtime role: exactly what `scenario-engine run` needs, and nothing else (issue 10).
--
-- Privileges go to a NOLOGIN group role, scenario_engine_runtime; the daemon logs in as a role
-- that is a member of it (`scenario-engine migrate --grant-runtime ROLE` adds the membership).
-- Engine tables have row-level security on; the only policies on them are for this group, so a
-- client role that is somehow granted a table still sees and changes nothing.
--
-- `migrate` applies each unit whose `-- present:` query is false; a unit it lacks the
-- privilege for (no CREATEROLE, platform tables owned by another role) is printed for a DBA.
-- tests/test_roles.py runs the daemon as such a role and checks that every engine table is
-- covered here.

-- unit: engine_lockdown
-- Runs at every migrate (no `present:` query): row-level security on for every engine table,
-- and no privilege on anything in the schema for anyone but its owner and the runtime group —
-- whatever default privileges (e.g. Supabase's for anon/authenticated) or earlier grants gave.
DO $$
DECLARE
    r       record;
    runtime oid := (SELECT oid FROM pg_roles WHERE rolname = 'scenario_engine_runtime');
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'scenario_engine' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.rel);
    END LOOP;
    FOR r IN SELECT DISTINCT c.oid::regclass AS rel, c.relkind, a.grantee
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE n.nspname = 'scenario_engine' AND a.grantee <> c.relowner AND a.grantee IS DISTINCT FROM runtime
    LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM %s',
                       CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT DISTINCT p.oid::regprocedure AS fn, a.grantee
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
             WHERE n.nspname = 'scenario_engine' AND a.grantee <> p.proowner AND a.grantee IS DISTINCT FROM runtime
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', r.fn,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    FOR r IN SELECT DISTINCT a.grantee FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
             WHERE n.nspname = 'scenario_engine' AND a.grantee <> n.nspowner AND a.grantee IS DISTINCT FROM runtime
    LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA scenario_engine FROM %s',
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
END;
$$;

-- unit: runtime_group
-- present: SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scenario_engine_runtime')
CREATE ROLE scenario_engine_runtime NOLOGIN;

-- unit: runtime_schema_usage
-- present: SELECT has_schema_privilege('scenario_engine_runtime', 'scenario_engine', 'USAGE')
GRANT USAGE ON SCHEMA scenario_engine TO scenario_engine_runtime;

-- unit: runtime_engine_tables
-- present: SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_schema_migration', 'SELECT'), ('scenario_engine_setting', 'SELECT'), ('scenario_event', 'SELECT, UPDATE, DELETE'), ('scenario_notification', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_cooldown', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_decision', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_engine_instance', 'SELECT, INSERT, UPDATE, DELETE'), ('push_notification', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_rule_state', 'SELECT, INSERT, UPDATE'), ('scenario_sweep', 'SELECT, INSERT, UPDATE'), ('scenario_sweep_batch', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_quarantine', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_outcome', 'SELECT, INSERT, UPDATE, DELETE'), ('scenario_experiment', 'SELECT, INSERT')) AS v(t, p)
GRANT SELECT ON scenario_engine.scenario_schema_migration, scenario_engine.scenario_engine_setting TO scenario_engine_runtime;
GRANT SELECT, UPDATE, DELETE ON scenario_engine.scenario_event TO scenario_engine_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON scenario_engine.scenario_notification, scenario_engine.scenario_cooldown, scenario_engine.scenario_decision, scenario_engine.scenario_engine_instance, scenario_engine.push_notification, scenario_engine.scenario_sweep_batch, scenario_engine.scenario_quarantine, scenario_engine.scenario_outcome TO scenario_engine_runtime;
GRANT SELECT, INSERT ON scenario_engine.scenario_experiment TO scenario_engine_runtime;
GRANT SELECT, INSERT, UPDATE ON scenario_engine.scenario_rule_state, scenario_engine.scenario_sweep TO scenario_engine_runtime;

-- unit: runtime_erasure_mark
-- The erasure's per-transaction mark (sql/0022): written only by the erase triggers (SECURITY
-- DEFINER); the runtime group may read it, no more.
-- present: SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_erasure_mark', 'SELECT')) AS v(t, p)
GRANT SELECT ON scenario_engine.scenario_erasure_mark TO scenario_engine_runtime;

-- unit: runtime_full_sweep_request
-- Full-sweep requests (sql/0023): written by the TRUNCATE triggers and by a daemon that saw a
-- missing hook come back; the scheduler reads them and deletes those its full sweep answered.
-- present: SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_full_sweep_request', 'SELECT, INSERT, DELETE')) AS v(t, p)
GRANT SELECT, INSERT, DELETE ON scenario_engine.scenario_full_sweep_request TO scenario_engine_runtime;

-- unit: runtime_programmes
-- (This and the units below that name tables of later migrations count as present while the
-- table does not exist yet: a `migrate` that stops at an older version applies them later.)
-- Per-organisation programmes (sql/0028): which organisation variants were baselined, and the
-- organisation each mentor was last evaluated in (a move is baselined like a new rule).
-- present: SELECT NOT (to_regclass('scenario_engine.scenario_programme_seen') IS NOT NULL AND to_regclass('scenario_engine.scenario_mentor_programme') IS NOT NULL) OR (SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_programme_seen', 'SELECT, INSERT'), ('scenario_mentor_programme', 'SELECT, INSERT, UPDATE, DELETE')) AS v(t, p))
GRANT SELECT, INSERT ON scenario_engine.scenario_programme_seen TO scenario_engine_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON scenario_engine.scenario_mentor_programme TO scenario_engine_runtime;

-- unit: runtime_outcome_resolution
-- The last outcome resolution's mark (sql/0027), read and moved by every resolution.
-- present: SELECT NOT (to_regclass('scenario_engine.scenario_outcome_resolution') IS NOT NULL) OR (SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_outcome_resolution', 'SELECT, INSERT, UPDATE')) AS v(t, p))
GRANT SELECT, INSERT, UPDATE ON scenario_engine.scenario_outcome_resolution TO scenario_engine_runtime;

-- unit: runtime_sweep_range
-- The ranges of a shared full sweep (sql/0026): written by the instance that opens a period,
-- claimed and completed by every instance, pruned by the one that closes a period.
-- present: SELECT NOT (to_regclass('scenario_engine.scenario_sweep_range') IS NOT NULL) OR (SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('scenario_sweep_range', 'SELECT, INSERT, UPDATE, DELETE')) AS v(t, p))
GRANT SELECT, INSERT, UPDATE, DELETE ON scenario_engine.scenario_sweep_range TO scenario_engine_runtime;

-- unit: runtime_report_rollups
-- The daily roll-ups of `report` (sql/0032): kept by statement triggers on scenario_decision,
-- push_notification and scenario_outcome, which run as the writer (the runtime role), and read by `report`.
-- present: SELECT NOT (to_regclass('scenario_engine.report_decision_day') IS NOT NULL AND to_regclass('scenario_engine.report_push_day') IS NOT NULL) OR (SELECT bool_and(has_table_privilege('scenario_engine_runtime', 'scenario_engine.' || t, p)) FROM (VALUES ('report_decision_day', 'SELECT, INSERT, UPDATE, DELETE'), ('report_push_day', 'SELECT, INSERT, UPDATE, DELETE'), ('report_outcome_day', 'SELECT, INSERT, UPDATE, DELETE')) AS v(t, p))
GRANT SELECT, INSERT, UPDATE, DELETE ON scenario_engine.report_decision_day, scenario_engine.report_push_day, scenario_engine.report_outcome_day TO scenario_engine_runtime;

-- unit: runtime_engine_functions
-- The SQL functions the engine's queries call (a trigger function is not checked for EXECUTE
-- when it fires). A function the planner inlines is still checked for EXECUTE.
-- present: SELECT has_function_privilege('scenario_engine_runtime', 'scenario_engine.milestone_period(text, timestamptz, text)', 'EXECUTE')
GRANT EXECUTE ON FUNCTION scenario_engine.milestone_period(text, timestamptz, text) TO scenario_engine_runtime;

-- unit: runtime_engine_policies
-- One permissive policy per engine table, for the group only.
-- present: SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'scenario_engine' AND c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'scenario_engine_runtime'))
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'scenario_engine' AND c.relkind = 'r'
               AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'scenario_engine_runtime')
    LOOP
        EXECUTE format('CREATE POLICY scenario_engine_runtime ON scenario_engine.%I TO scenario_engine_runtime '
                       'USING (true) WITH CHECK (true)', t);
    END LOOP;
END;
$$;

-- unit: runtime_platform_read
-- The tables the evaluators, the send-time re-check and the FCM provider read.
-- present: SELECT has_table_privilege('scenario_engine_runtime', 'public.peer_mentor', 'SELECT') AND has_table_privilege('scenario_engine_runtime', 'public.activity', 'SELECT') AND has_table_privilege('scenario_engine_runtime', 'public.certification', 'SELECT') AND has_table_privilege('scenario_engine_runtime', 'public.achievement', 'SELECT') AND has_table_privilege('scenario_engine_runtime', 'public.notification_preference', 'SELECT') AND has_table_privilege('scenario_engine_runtime', 'public.device_token', 'SELECT')
GRANT SELECT ON public.peer_mentor, public.activity, public.certification, public.achievement, public.notification_preference, public.device_token TO scenario_engine_runtime;

-- unit: runtime_organization_read
-- The optional organisation names (public.organization) for the report and the programme page:
-- granted when the table exists and this role may grant it; otherwise the engine shows ids.
-- present: SELECT to_regclass('public.organization') IS NULL OR has_table_privilege('scenario_engine_runtime', 'public.organization', 'SELECT') OR NOT has_table_privilege(current_user, 'public.organization', 'SELECT WITH GRANT OPTION')
GRANT SELECT ON public.organization TO scenario_engine_runtime;

-- unit: runtime_platform_write
-- Milestones the engine celebrates are written to the platform's ledger; FCM deactivates
-- tokens the provider reports as unregistered.
-- present: SELECT has_table_privilege('scenario_engine_runtime', 'public.achievement', 'INSERT') AND has_column_privilege('scenario_engine_runtime', 'public.device_token', 'active', 'UPDATE') AND has_column_privilege('scenario_engine_runtime', 'public.device_token', 'deactivated_at', 'UPDATE') AND has_column_privilege('scenario_engine_runtime', 'public.device_token', 'last_error', 'UPDATE')
GRANT INSERT ON public.achievement TO scenario_engine_runtime;
GRANT UPDATE (active, deactivated_at, last_error) ON public.device_token TO scenario_engine_runtime;

-- unit: runtime_platform_policies
-- Only on reference tables the engine created itself (row-level security on, owned by the
-- migrating role); a platform's own tables and policies are never touched.
-- present: SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname IN ('peer_mentor', 'activity', 'certification', 'achievement', 'notification_preference', 'device_token', 'organization') AND c.relrowsecurity AND c.relowner = current_user::regrole AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'scenario_engine_runtime'))
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public'
               AND c.relname IN ('peer_mentor', 'activity', 'certification', 'achievement',
                                 'notification_preference', 'device_token', 'organization')
               AND c.relrowsecurity AND c.relowner = current_user::regrole
               AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'scenario_engine_runtime')
    LOOP
        EXECUTE format('CREATE POLICY scenario_engine_runtime ON public.%I TO scenario_engine_runtime '
                       'USING (true) WITH CHECK (true)', t);
    END LOOP;
END;
$$;
