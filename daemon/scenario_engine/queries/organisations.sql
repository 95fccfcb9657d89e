-- Organisations' names for the report and the programme page (outcomes/organisations.py), from
-- the optional platform table public.organization (id uuid, name text). Without it, or without
-- the right to read it, or with another shape, the engine shows organisation ids instead.

-- name: organisation_names_readable
-- The table exists, this role may read it, and it has an id of type uuid and a text name: only
-- then may organisation_names run (a missing table would be an error, not an empty answer).
SELECT coalesce(has_table_privilege(to_regclass('public.organization'), 'SELECT'), false)
       AND (SELECT count(*) = 2 FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = to_regclass('public.organization') AND NOT a.attisdropped
              AND ((a.attname = 'id' AND a.atttypid = 'uuid'::regtype)
                   OR (a.attname = 'name' AND a.atttypid IN ('text'::regtype, 'varchar'::regtype))))
       AS readable;

-- name: organisation_names
-- params: ids
SELECT o.id, o.name::text AS name FROM public.organization o WHERE o.id = ANY($1::uuid[]);
