-- Start-up checks of `run` (db/installation.py), the session-pooling check (db/pooler.py) and the
-- bookkeeping reads of `migrate` (db/migrations.py): is this database ready for the daemon?

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

-- name: session_probe_set
-- params: setting, token
-- The session-pooling check (db/pooler.py): one connection sets a session setting …
SELECT pg_backend_pid() AS pid, set_config($1, $2, false);

-- name: session_probe_read
-- params: setting
-- … which another connection must not see, and the first must see again on the same backend.
SELECT pg_backend_pid() AS pid, current_setting($1, true) AS seen;

-- name: applied_migrations
-- The migrations recorded as applied (db/migrations.py), with their checksums.
SELECT version, name, checksum FROM scenario_engine.scenario_schema_migration;

-- name: current_login
-- Who lacks the privilege, for the statement a DBA must run (db/migrations.py).
SELECT current_user AS u, current_database() AS d;

-- name: role_exists
-- params: role
-- `migrate --grant-runtime ROLE` refuses a role that does not exist (db/migrations.py).
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1);

-- name: quote_role
-- params: role
-- The role's name as an identifier and as a literal, for the generated GRANT unit.
SELECT quote_ident($1), quote_literal($1);

-- name: migration_try_lock
-- params: key
-- Migrators serialise on a session advisory lock, polled (db/migrations.py says why).
SELECT pg_try_advisory_lock($1);

-- name: migration_unlock
-- params: key
SELECT pg_advisory_unlock($1);
