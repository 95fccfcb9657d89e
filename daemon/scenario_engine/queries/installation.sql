-- Start-up checks of `run` (db/installation.py): is this database ready for the daemon?

-- name: installation_schema_present
-- pg_namespace, not to_regclass: a role without USAGE must get the grant hint, not an error.
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'scenario_engine');

-- name: installation_versions
SELECT version FROM scenario_engine.scenario_schema_migration;

-- name: installation_role_may_run
-- params: runtime_group
-- A superuser, the engine schema's owner, or a member of the runtime group.
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    OR (SELECT nspowner FROM pg_namespace WHERE nspname = 'scenario_engine')
       = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    OR CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)
            THEN pg_has_role(current_user, $1::text, 'USAGE') ELSE false END;

-- name: installation_current_user
SELECT current_user::text;
