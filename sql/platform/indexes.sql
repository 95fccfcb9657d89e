-- The engine's indexes on the platform tables. Rule: no engine index or constraint on a platform
-- column can make a platform write fail. B-tree entries are limited to about 2.7 kB, so no
-- unbounded text column is a key or an INCLUDE column here: text is hashed (md5 — for
-- uniqueness, not secrecy), or left out. Each unit is built CONCURRENTLY (platform writes go on),
-- statement by statement; a half-built (invalid) index is dropped and rebuilt. An index that
-- 0001–0007 created with a text column is replaced and then dropped.
-- Needs ownership of the table: otherwise `migrate` prints the unit for a DBA.

-- unit: peer_mentor_active_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.peer_mentor_active_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.peer_mentor_active_idx;
CREATE INDEX CONCURRENTLY peer_mentor_active_idx ON public.peer_mentor (id) WHERE status = 'active';

-- unit: peer_mentor_active_joined_idx
-- Covering index of the sweep's batches (0007 measured 3.95 → 2.30 s at 1M); the time zone is
-- no longer included (unbounded text on a platform without the reference CHECK).
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.peer_mentor_active_joined_idx')), false) AND to_regclass('public.peer_mentor_active_covering_idx') IS NULL
DROP INDEX CONCURRENTLY IF EXISTS public.peer_mentor_active_joined_idx;
CREATE INDEX CONCURRENTLY peer_mentor_active_joined_idx ON public.peer_mentor (id) INCLUDE (joined_at) WHERE status = 'active';
DROP INDEX CONCURRENTLY IF EXISTS public.peer_mentor_active_covering_idx;

-- unit: peer_mentor_organization_idx
-- Every mentor's organisation in id order, index-only: certification_renewals (`report`, the
-- programme page) merges a period's certifications, read in mentor order, with it instead of
-- hashing them and probing with all mentors (docs/BENCHMARKS.md, report).
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.peer_mentor_organization_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.peer_mentor_organization_idx;
CREATE INDEX CONCURRENTLY peer_mentor_organization_idx ON public.peer_mentor (id) INCLUDE (organization_id);

-- unit: peer_mentor_joined_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.peer_mentor_joined_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.peer_mentor_joined_idx;
CREATE INDEX CONCURRENTLY peer_mentor_joined_idx ON public.peer_mentor (joined_at) WHERE status = 'active';

-- unit: activity_mentor_occurred_v2_idx
-- Newest activity per mentor and per-period aggregates; `kind` is no longer an INCLUDE column.
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.activity_mentor_occurred_v2_idx')), false) AND to_regclass('public.activity_mentor_occurred_idx') IS NULL
DROP INDEX CONCURRENTLY IF EXISTS public.activity_mentor_occurred_v2_idx;
CREATE INDEX CONCURRENTLY activity_mentor_occurred_v2_idx ON public.activity (mentor_id, occurred_at) INCLUDE (duration_minutes, contacts);
DROP INDEX CONCURRENTLY IF EXISTS public.activity_mentor_occurred_idx;

-- unit: activity_mentor_sessions_idx
-- Sessions per mentor and period, index-only: `kind` is the predicate, not a column, so a row
-- of any other kind (however long) is simply not in it. Without it a full sweep fetched every
-- activity's heap row for its kind (measured at 200k mentors: 2.1 s instead of 1.5 s).
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.activity_mentor_sessions_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.activity_mentor_sessions_idx;
CREATE INDEX CONCURRENTLY activity_mentor_sessions_idx ON public.activity (mentor_id, occurred_at) WHERE kind = 'session';

-- unit: activity_occurred_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.activity_occurred_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.activity_occurred_idx;
CREATE INDEX CONCURRENTLY activity_occurred_idx ON public.activity (occurred_at) INCLUDE (mentor_id);

-- unit: certification_expiring_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.certification_expiring_idx')), false) AND to_regclass('public.certification_expires_idx') IS NULL
DROP INDEX CONCURRENTLY IF EXISTS public.certification_expiring_idx;
CREATE INDEX CONCURRENTLY certification_expiring_idx ON public.certification (expires_at) INCLUDE (mentor_id, issued_at) WHERE revoked_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS public.certification_expires_idx;

-- unit: certification_mentor_issued_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.certification_mentor_issued_idx')), false) AND to_regclass('public.certification_mentor_type_idx') IS NULL
DROP INDEX CONCURRENTLY IF EXISTS public.certification_mentor_issued_idx;
CREATE INDEX CONCURRENTLY certification_mentor_issued_idx ON public.certification (mentor_id, issued_at);
DROP INDEX CONCURRENTLY IF EXISTS public.certification_mentor_type_idx;

-- unit: certification_mentor_expiring_v2_idx
-- A sweep batch's expiring certifications: its own mentors' entries in the reminder window, one
-- descent per mentor (certification_candidates). Without it each batch ANDed the batch's mentor
-- entries with the whole population's expiry window (38k entries at 1M, read once per batch of
-- 20k: a cost growing with the square of the population; docs/BENCHMARKS.md, issue 18).
-- v2 includes (issued_at, id): `report` and the programme page read a period's certifications
-- from it in mentor order, index-only, and probe it for a later one of the same mentor
-- (certification_renewals; it replaces certification_mentor_expiring_idx, same entries).
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.certification_mentor_expiring_v2_idx')), false) AND to_regclass('public.certification_mentor_expiring_idx') IS NULL
DROP INDEX CONCURRENTLY IF EXISTS public.certification_mentor_expiring_v2_idx;
CREATE INDEX CONCURRENTLY certification_mentor_expiring_v2_idx ON public.certification (mentor_id, expires_at) INCLUDE (issued_at, id) WHERE revoked_at IS NULL;
DROP INDEX CONCURRENTLY IF EXISTS public.certification_mentor_expiring_idx;

-- unit: certification_issued_idx
-- The certifications issued since the previous outcome resolution (certification_outcomes_since):
-- a resolution then costs the renewals of the last minutes, not a probe per open reminder.
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.certification_issued_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.certification_issued_idx;
CREATE INDEX CONCURRENTLY certification_issued_idx ON public.certification (issued_at) INCLUDE (mentor_id);

-- unit: achievement_once_per_period_key
-- "An achievement is unique per mentor, milestone, threshold and period" (DESIGN.md §3), which
-- the engine's inserts rely on (ON CONFLICT). Text and numeric are hashed: a numeric can be
-- 130,000 digits long. trim_scale makes 10 and 10.0 one threshold, as numeric equality does.
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.achievement_once_per_period_key')), false) AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass('public.achievement') AND conname = 'achievement_once_per_period')
DROP INDEX CONCURRENTLY IF EXISTS public.achievement_once_per_period_key;
CREATE UNIQUE INDEX CONCURRENTLY achievement_once_per_period_key ON public.achievement (mentor_id, md5(milestone), md5(trim_scale(threshold)::text), md5(period));
ALTER TABLE public.achievement DROP CONSTRAINT IF EXISTS achievement_once_per_period;

-- unit: device_token_token_key
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.device_token_token_key')), false) AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass('public.device_token') AND conname = 'device_token_token_unique')
DROP INDEX CONCURRENTLY IF EXISTS public.device_token_token_key;
CREATE UNIQUE INDEX CONCURRENTLY device_token_token_key ON public.device_token (md5(token));
ALTER TABLE public.device_token DROP CONSTRAINT IF EXISTS device_token_token_unique;

-- unit: device_token_mentor_active_idx
-- present: SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.device_token_mentor_active_idx')), false)
DROP INDEX CONCURRENTLY IF EXISTS public.device_token_mentor_active_idx;
CREATE INDEX CONCURRENTLY device_token_mentor_active_idx ON public.device_token (mentor_id) WHERE active;
