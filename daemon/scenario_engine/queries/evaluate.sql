-- The pipeline's own statements (evaluate.py, sweep.py): mentor batches, policy inputs, the
-- rule ledger and quarantine. Each scenario's set-based statements live in its package
-- (scenarios/<type>/queries.sql); like these, they take the mentors to look at as an array,
-- so the sweep (batches of ids) and the event drain (the mentors a batch of events touched)
-- run the very same statements. All instants are compared as absolute seconds
-- (make_interval(secs => …)), never as calendar days in the session's time zone.

-- name: active_mentor_batch
-- params: after, batch_size
-- Keyset pagination over active mentors, for the sweep.
-- coalesce keeps "id > …" an index condition under a generic plan (asyncpg re-executes
-- prepared statements); "$1 IS NULL OR id > $1" became a filter and rescanned the index per batch.
-- (Only a mentor whose id is the nil UUID would be skipped.)
SELECT id FROM public.peer_mentor
WHERE status = 'active' AND id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
ORDER BY id
LIMIT $2::int;

-- name: zone_suspects
-- params: zones, most
-- The active mentors whose zone Python cannot load (``zones``: the names it can), in id order:
-- read once per full sweep (sweep.py, SweepHints.zone_suspects) so that a yearly milestone
-- rule's statement need not read every batch mentor's heap row for the zone. A batch's ids are
-- random, so their rows lie on most of the table's pages: 10k of 13k per batch of 20k at 1M,
-- half the statement and a cost per mentor that grew with the table (issue 18). One
-- sequential pass instead. At most ``most`` rows (sweep.ZONE_SUSPECTS_MAX): more, and the
-- statements read the zones themselves, as before.
SELECT p.id FROM public.peer_mentor p
WHERE p.status = 'active'
  AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS z(name) WHERE z.name = p.timezone)
ORDER BY p.id
LIMIT $2::int;

-- name: policy_due
-- params: since, as_of, cooldown_types, cooldown_secs
-- The incremental sweep's work list that policy adds, whatever the scenario, for (since, as_of]:
-- a cooldown ended (a candidate suppressed by it may go out now) — for its scenario type only,
-- under the cooldowns of that type's rules (a cooldown is per type, and only that type's
-- decisions read it) — or a notification left the 24-hour cap window: scenario_type NULL, every
-- type (the cap counts the notifications of all of them). A mentor may be listed more than once
-- (inactivity_due says why).
SELECT cd.mentor_id, cd.scenario_type FROM unnest($3::text[], $4::float8[]) AS k(scenario_type, secs)
JOIN scenario_engine.scenario_cooldown cd ON cd.last_triggered_at > $1::timestamptz - make_interval(secs => k.secs)
                         AND cd.last_triggered_at <= $2::timestamptz - make_interval(secs => k.secs)
                         AND cd.scenario_type = k.scenario_type
UNION ALL
SELECT sn.mentor_id, NULL::text FROM scenario_engine.scenario_notification sn
WHERE sn.as_of > $1::timestamptz - interval '24 hours' AND sn.as_of <= $2::timestamptz - interval '24 hours';

-- name: active_among
-- params: mentors
-- The active ones of a set of mentor ids, in id order (the incremental sweep's work list;
-- an index probe per id on the primary key), and whether each has an open quarantine entry
-- (one hashed read of the partial index of open entries, normally empty): such a mentor is
-- evaluated for every scenario type, as a full sweep would (sweep.due_mentors).
SELECT p.id,
       p.id IN (SELECT q.mentor_id FROM scenario_engine.scenario_quarantine q WHERE q.cleared_at IS NULL)
       AS quarantined
FROM public.peer_mentor p
WHERE p.id = ANY($1::uuid[]) AND p.status = 'active' ORDER BY p.id;

-- name: active_mentor_estimate
-- The planner's count of active mentors (the active-mentor index's, as of the last VACUUM or
-- ANALYZE; -1 if never counted): sizes a full sweep's batches so that its lanes get as many
-- (sweep.balanced_batch), without counting a million index entries.
SELECT coalesce((SELECT reltuples::bigint FROM pg_class
                 WHERE oid = to_regclass('public.peer_mentor_active_idx')), -1);

-- name: active_mentor_count
SELECT count(*) FROM public.peer_mentor WHERE status = 'active';

-- name: claim_rule_first_seen
-- params: rule_name, scenario_type, as_of, backfill
-- Exactly one engine records a rule as seen; concurrent callers wait for its commit.
INSERT INTO scenario_engine.scenario_rule_state (rule_name, scenario_type, first_seen_at, baseline_at, backfill)
VALUES ($1::text, $2::text, $3::timestamptz, CASE WHEN $4::boolean THEN NULL ELSE $3::timestamptz END, $4::boolean)
ON CONFLICT (rule_name) DO NOTHING
RETURNING rule_name;

-- name: experiment_id
-- params: rule_name, scenario_type, holdout_salt, holdout_percent, global_holdout_salt, global_holdout_percent, as_of
-- The experiment a rule runs under (created when first seen; outcomes/holdout.py). NULL when a
-- concurrent engine created it in the same instant: the caller asks again.
WITH ins AS (
    INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt, holdout_percent,
                                                     global_holdout_salt, global_holdout_percent, started_at)
    VALUES ($1::text, $2::text, $3::text, $4::numeric, $5::text, $6::numeric, $7::timestamptz)
    ON CONFLICT ON CONSTRAINT scenario_experiment_once DO NOTHING
    RETURNING id
)
SELECT id FROM ins
UNION ALL
SELECT e.id FROM scenario_engine.scenario_experiment e
WHERE e.rule_name = $1::text AND e.holdout_salt = $3::text AND e.holdout_percent = $4::numeric
  AND e.global_holdout_salt = $5::text AND e.global_holdout_percent = $6::numeric
LIMIT 1;

-- name: known_rules
SELECT rule_name FROM scenario_engine.scenario_rule_state;

-- name: policy_inputs
-- params: mentors, scenario_type, as_of
-- What should_notify needs for one scenario type: status, opt-out, cooldown, cap usage (and the
-- organisation and display name that the decision and the message carry).
-- The locale is read through to_jsonb so that the statement works whether or not the platform
-- has the optional peer_mentor.locale column (docs/PROGRAMMES.md).
SELECT p.id AS mentor_id, p.status, p.timezone, p.display_name, p.organization_id,
       to_jsonb(p) ->> 'locale' AS locale,
       (SELECT np.scenario_type FROM public.notification_preference np
        WHERE np.mentor_id = p.id AND np.opted_out AND np.scenario_type IN ('all', $2::text)
        ORDER BY np.scenario_type = 'all' DESC LIMIT 1) AS opted_out_scope,
       cd.last_triggered_at, cd.last_rule_name,
       (SELECT count(*) FROM scenario_engine.scenario_notification sn
        WHERE sn.mentor_id = p.id AND sn.as_of > $3::timestamptz - interval '24 hours' AND sn.as_of <= $3::timestamptz)::int
       -- A digest counts once against the cap: its pushes (one digest window each) beyond the
       -- first are taken off again (docs/CHANNELS.md). Pushes copy their decision's instant.
       -- The mentor's digest pushes are read through the mentor's index alone and the 24 hours
       -- filtered after (OFFSET 0 keeps the range out of the index scan): otherwise the generic
       -- plan (asyncpg re-executes prepared statements; statistics of an emptier table) ANDs
       -- the mentor's index with push_notification_decided_idx, whose range holds every push of
       -- the sweep so far (one decided_at per sweep) — 1.2 ms per mentor, quadratic over a
       -- first sweep: 13–56 s of it at 1M instead of ≈ 2 s (issue 18, docs/BENCHMARKS.md).
       - (SELECT count(*) - count(DISTINCT pn.digest_window)
          FROM (SELECT q.digest_window, q.decided_at FROM scenario_engine.push_notification q
                WHERE q.mentor_id = p.id AND q.digest_window IS NOT NULL OFFSET 0) pn
          WHERE pn.decided_at > $3::timestamptz - interval '24 hours' AND pn.decided_at <= $3::timestamptz)::int
       AS sent_24h
FROM public.peer_mentor p
LEFT JOIN scenario_engine.scenario_cooldown cd ON cd.mentor_id = p.id AND cd.scenario_type = $2::text
WHERE p.id = ANY($1::uuid[]);

-- name: quarantine_mentors
-- params: mentors, reasons
-- Record mentors the engine could not evaluate (isolation.py). `news` is true when the entry is
-- new, was cleared before, or has a new reason: the engine logs those once, the rest at debug.
-- The mentors come sorted (with their reasons in the same order).
WITH old AS (
    SELECT q.mentor_id, q.reason, q.cleared_at FROM scenario_engine.scenario_quarantine q
    WHERE q.mentor_id = ANY($1::uuid[])
), up AS (
    INSERT INTO scenario_engine.scenario_quarantine AS q (mentor_id, reason, first_seen_at, last_seen_at, occurrences)
    SELECT t.mentor_id, t.reason, now(), now(), 1 FROM unnest($1::uuid[], $2::text[]) AS t(mentor_id, reason)
    ON CONFLICT (mentor_id) DO UPDATE
    SET reason = EXCLUDED.reason, last_seen_at = EXCLUDED.last_seen_at,
        occurrences = q.occurrences + 1, cleared_at = NULL
    RETURNING q.mentor_id
)
SELECT up.mentor_id, (old.mentor_id IS NULL OR old.cleared_at IS NOT NULL OR old.reason <> t.reason) AS news
FROM up
JOIN unnest($1::uuid[], $2::text[]) AS t(mentor_id, reason) ON t.mentor_id = up.mentor_id
LEFT JOIN old ON old.mentor_id = up.mentor_id;

-- name: clear_quarantine
-- params: mentors
-- After a clean evaluation: its mentors are no longer quarantined (the partial index keeps
-- this to the open entries, normally none).
UPDATE scenario_engine.scenario_quarantine SET cleared_at = now()
WHERE mentor_id = ANY($1::uuid[]) AND cleared_at IS NULL;

-- name: open_quarantine_between
-- params: first, last
-- The open quarantine entries of an id range (the partial index: normally none). Before
-- clear_quarantine, so that a clean evaluation of a sweep batch sends its 20k ids only when
-- one of them has an open entry (issue 18: the ids of every batch went to the server once
-- more for an UPDATE that found nothing, a quarter of a steady sweep's Python).
SELECT q.mentor_id FROM scenario_engine.scenario_quarantine q
WHERE q.cleared_at IS NULL AND q.mentor_id >= $1::uuid AND q.mentor_id <= $2::uuid;

-- name: mentor_organizations
-- params: mentors
-- Each mentor's organisation: which programme's rule applies (evaluate.set_based_candidates).
SELECT p.id, p.organization_id FROM public.peer_mentor p WHERE p.id = ANY($1::uuid[]) ORDER BY p.id;

-- name: claim_programme_seen
-- params: rule_name, organization_id, params_digest, as_of
-- Exactly one engine records an organisation's variant of a rule as seen (and baselines it).
INSERT INTO scenario_engine.scenario_programme_seen (rule_name, organization_id, params_digest, first_seen_at)
VALUES ($1::text, $2::uuid, $3::text, $4::timestamptz)
ON CONFLICT DO NOTHING
RETURNING rule_name;

-- name: programme_seen
SELECT rule_name, organization_id, params_digest FROM scenario_engine.scenario_programme_seen;

-- name: organization_mentors
-- params: organization_id
SELECT p.id FROM public.peer_mentor p WHERE p.organization_id = $1::uuid ORDER BY p.id;

-- name: mentor_programme_moves
-- params: mentors, as_of
-- Each of these mentors' organisation (which programme's rules apply), and whether they moved to
-- another organisation since the engine last saw them (a mentor seen for the first time has not
-- moved). Only the rows that differ are written: a steady sweep writes nothing. Only active
-- mentors, as the sweep sees them (and every candidate query asks for): a paused mentor's move
-- is found when they are active again, on every path alike.
WITH cur AS (
    SELECT p.id, p.organization_id, s.organization_id AS was_in
    FROM public.peer_mentor p
    LEFT JOIN scenario_engine.scenario_mentor_programme s ON s.mentor_id = p.id
    WHERE p.id = ANY($1::uuid[]) AND p.status = 'active'
), up AS (
    INSERT INTO scenario_engine.scenario_mentor_programme AS s (mentor_id, organization_id, seen_at)
    SELECT id, organization_id, $2::timestamptz FROM cur WHERE was_in IS DISTINCT FROM organization_id
    ON CONFLICT (mentor_id) DO UPDATE SET organization_id = EXCLUDED.organization_id, seen_at = EXCLUDED.seen_at
)
SELECT id, organization_id, (was_in IS NOT NULL AND was_in <> organization_id) AS moved FROM cur ORDER BY id;

-- name: mentor_programme_moves_range
-- params: after, last, as_of, organizations
-- mentor_programme_moves for a sweep batch given as its id range (after, last] of active mentors
-- (active_mentor_batch), returning only what the caller uses: the mentors seen for the first
-- time or moved (recorded here), and those in ``organizations`` (Rules.differing_organizations:
-- the only ones whose candidates need their organisation; every other mentor runs the default
-- programme's rules). Issue 20: "id = ANY(batch)" hash-joined the whole
-- scenario_mentor_programme once per batch and sent every mentor's organisation back, a third
-- of the programmes' extra time in a steady sweep at 200k. Both tables are read as one index
-- range each (the repeated range on s is an index condition). A mentor who became active
-- between the two statements is included: harmless (a move recorded is a move).
WITH cur AS (
    SELECT p.id, p.organization_id, s.organization_id AS was_in
    FROM public.peer_mentor p
    LEFT JOIN scenario_engine.scenario_mentor_programme s
           ON s.mentor_id = p.id
          AND s.mentor_id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
          AND s.mentor_id <= $2::uuid
    WHERE p.status = 'active'
      AND p.id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid) AND p.id <= $2::uuid
), up AS (
    INSERT INTO scenario_engine.scenario_mentor_programme AS s (mentor_id, organization_id, seen_at)
    SELECT id, organization_id, $3::timestamptz FROM cur WHERE was_in IS DISTINCT FROM organization_id
    ON CONFLICT (mentor_id) DO UPDATE SET organization_id = EXCLUDED.organization_id, seen_at = EXCLUDED.seen_at
)
SELECT id, organization_id, (was_in IS NOT NULL AND was_in <> organization_id) AS moved FROM cur
WHERE was_in IS DISTINCT FROM organization_id OR organization_id = ANY($4::uuid[]);

-- name: mentor_programme_check_range
-- params: after, last, organizations
-- What a sweep's reads ahead on the second connection go by (evaluate._Prefetch): the active
-- mentors of a batch's id range (after, last] who belong to ``organizations``
-- (Rules.differing_organizations), with their organisation, and every mentor of the range whose
-- organisation is not the one the engine last saw them in (``unseen``: seen for the first time,
-- or moved). When none is unseen the batch has nothing for mentor_programme_moves_range to
-- record or baseline, and the writer skips it (issue 20: it and a separate read of the
-- organisations were a third of the programmes' extra database time in a steady sweep).
SELECT p.id, p.organization_id, s.organization_id IS DISTINCT FROM p.organization_id AS unseen
FROM public.peer_mentor p
LEFT JOIN scenario_engine.scenario_mentor_programme s
       ON s.mentor_id = p.id
      AND s.mentor_id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
      AND s.mentor_id <= $2::uuid
WHERE p.status = 'active'
  AND p.id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid) AND p.id <= $2::uuid
  AND (p.organization_id = ANY($3::uuid[]) OR s.organization_id IS DISTINCT FROM p.organization_id);

-- name: organisations_with_mentors
-- params: organizations
-- Which of the rules file's organisations some mentor has (check-config warns about the rest).
SELECT DISTINCT p.organization_id FROM public.peer_mentor p WHERE p.organization_id = ANY($1::uuid[]);
