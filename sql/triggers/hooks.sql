-- Change-capture triggers on the platform tables (DESIGN.md §4). Each unit is one statement,
-- applied by `migrate` only when its `-- present:` query says it is missing. Creating a trigger
-- needs ownership of (or TRIGGER on) the platform table: when the platform's tables belong to
-- another role, `migrate` applies everything else and prints these statements for a DBA.
-- The functions (scenario_engine.*_v1, SECURITY DEFINER) come from sql/0008_engine_schema.sql
-- (and 0012, 0023); triggers installed by 0003/0006 already point at them (ALTER FUNCTION … SET
-- SCHEMA keeps OIDs).

-- unit: activity_scenario_event_v1
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.activity') AND tgname = 'activity_scenario_event_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_event_v1()'))
CREATE OR REPLACE TRIGGER activity_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON public.activity
    FOR EACH ROW EXECUTE FUNCTION scenario_engine.scenario_capture_event_v1();

-- unit: certification_scenario_event_v1
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.certification') AND tgname = 'certification_scenario_event_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_event_v1()'))
CREATE OR REPLACE TRIGGER certification_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON public.certification
    FOR EACH ROW EXECUTE FUNCTION scenario_engine.scenario_capture_event_v1();

-- unit: achievement_scenario_event_v1
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.achievement') AND tgname = 'achievement_scenario_event_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_event_v1()'))
CREATE OR REPLACE TRIGGER achievement_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON public.achievement
    FOR EACH ROW EXECUTE FUNCTION scenario_engine.scenario_capture_event_v1();

-- unit: notification_preference_scenario_event_v1
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.notification_preference') AND tgname = 'notification_preference_scenario_event_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_event_v1()'))
CREATE OR REPLACE TRIGGER notification_preference_scenario_event_v1
    AFTER INSERT OR UPDATE OR DELETE ON public.notification_preference
    FOR EACH ROW EXECUTE FUNCTION scenario_engine.scenario_capture_event_v1();

-- unit: peer_mentor_scenario_event_v1
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.peer_mentor') AND tgname = 'peer_mentor_scenario_event_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_mentor_event_v1()'))
CREATE OR REPLACE TRIGGER peer_mentor_scenario_event_v1
    AFTER UPDATE OF status, timezone, joined_at ON public.peer_mentor
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.timezone IS DISTINCT FROM NEW.timezone
          OR OLD.joined_at IS DISTINCT FROM NEW.joined_at)
    EXECUTE FUNCTION scenario_engine.scenario_capture_mentor_event_v1();

-- unit: peer_mentor_scenario_erase_v1
-- A deleted mentor's engine rows go with it (sql/0012_mentor_erasure.sql): one statement-level
-- pass per DELETE; never waits on, or fails, the DELETE.
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.peer_mentor') AND tgname = 'peer_mentor_scenario_erase_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_erase_mentor_v1()'))
CREATE OR REPLACE TRIGGER peer_mentor_scenario_erase_v1
    AFTER DELETE ON public.peer_mentor
    REFERENCING OLD TABLE AS scenario_gone
    FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_erase_mentor_v1();

-- unit: peer_mentor_scenario_erase_late_v1
-- At commit: the events that the platform's own cascades wrote after the pass above.
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.peer_mentor') AND tgname = 'peer_mentor_scenario_erase_late_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_erase_mentor_late_events_v1()'))
CREATE CONSTRAINT TRIGGER peer_mentor_scenario_erase_late_v1
    AFTER DELETE ON public.peer_mentor
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION scenario_engine.scenario_erase_mentor_late_events_v1();

-- unit: activity_scenario_truncate_v1
-- A TRUNCATE concerns every mentor: it requests a full sweep (sql/0023_truncate_capture.sql).
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.activity') AND tgname = 'activity_scenario_truncate_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_truncate_v1()'))
CREATE OR REPLACE TRIGGER activity_scenario_truncate_v1
    AFTER TRUNCATE ON public.activity
    FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_capture_truncate_v1();

-- unit: certification_scenario_truncate_v1
-- A TRUNCATE concerns every mentor: it requests a full sweep (sql/0023_truncate_capture.sql).
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.certification') AND tgname = 'certification_scenario_truncate_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_truncate_v1()'))
CREATE OR REPLACE TRIGGER certification_scenario_truncate_v1
    AFTER TRUNCATE ON public.certification
    FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_capture_truncate_v1();

-- unit: achievement_scenario_truncate_v1
-- A TRUNCATE concerns every mentor: it requests a full sweep (sql/0023_truncate_capture.sql).
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.achievement') AND tgname = 'achievement_scenario_truncate_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_truncate_v1()'))
CREATE OR REPLACE TRIGGER achievement_scenario_truncate_v1
    AFTER TRUNCATE ON public.achievement
    FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_capture_truncate_v1();

-- unit: notification_preference_scenario_truncate_v1
-- A TRUNCATE concerns every mentor: it requests a full sweep (sql/0023_truncate_capture.sql).
-- present: SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass('public.notification_preference') AND tgname = 'notification_preference_scenario_truncate_v1' AND tgfoid = to_regprocedure('scenario_engine.scenario_capture_truncate_v1()'))
CREATE OR REPLACE TRIGGER notification_preference_scenario_truncate_v1
    AFTER TRUNCATE ON public.notification_preference
    FOR EACH STATEMENT EXECUTE FUNCTION scenario_engine.scenario_capture_truncate_v1();
