-- Three indexes that every notification the engine writes had to maintain and that no query
-- reads any more (issue 18: the first sweep's cost is its writes; docs/BENCHMARKS.md, "What
-- enqueue_batch costs"). Each notification wrote 28 index entries over scenario_notification,
-- scenario_decision, scenario_outcome, push_notification and scenario_cooldown; now 25.
--
-- * scenario_notification_mentor_created_idx (mentor_id, created_at): no query filters or
--   sorts a mentor's notifications by created_at. The per-mentor readers — the policy's
--   sent-in-24h count (scenario_notification_mentor_as_of_idx, 0007), the candidates'
--   sent-per-subject lookups (scenario_notification_subject_idx), GET /mentors/{id} and the
--   erasure (`forget`, mentor_id = …) — are served by the two other indexes that lead with
--   mentor_id. docs/BENCHMARKS.md ("policy_inputs can go quadratic") noted that
--   (mentor_id, as_of) could replace it.
-- * push_notification_created_idx (created_at), from 0016 for the outcome report's outbox
--   scan by creation time: since 0032 the report reads the outbox by decided_at
--   (push_notification_decided_idx) for the partial days only. Retention, the status page and
--   requeue read created_at only with a status, through the partial indexes
--   (push_notification_finished_idx, _dead_idx, _claim_order_idx).
-- * push_notification_due_idx (next_attempt_at) WHERE status = 'pending': every reader of
--   pending pushes by next_attempt_at (claim_pushes, outbox_stats) asks for
--   status IN ('pending', 'sending'), which push_notification_claim_order_idx
--   (next_attempt_at, id) covers; a pending-only condition implies its predicate too.
--
-- The report roll-ups (0032) get free space on their pages. A batch's statements upsert one row
-- per (day, organisation, rule, …) group, so a first sweep updates each group's row once per
-- batch and rule (50 batches at 1M). At fillfactor 100 the first update on a full page cannot be
-- HOT: a new index entry in the 7–10-column key, and the page's row versions spill to new pages
-- (1,000 groups updated 50 times: 53–60 % of updates not HOT, 2.4 MB of heap for 1,000 live rows).
-- At 50 nearly every update is HOT and pruned in place (0.2 MB), and the grouped upsert of
-- 1,000 groups took 20 % less time (docs/BENCHMARKS.md). New pages only: a day's groups are new
-- rows, so they land on pages with the free space; a VACUUM FULL would repack the old ones.
--
-- tests/db/test_write_indexes.py checks that the per-mentor and outbox readers still take an
-- index, and the roll-ups' fillfactor. Re-runnable.

DROP INDEX IF EXISTS scenario_engine.scenario_notification_mentor_created_idx;
DROP INDEX IF EXISTS scenario_engine.push_notification_created_idx;
DROP INDEX IF EXISTS scenario_engine.push_notification_due_idx;

ALTER TABLE scenario_engine.report_decision_day SET (fillfactor = 50);
ALTER TABLE scenario_engine.report_push_day SET (fillfactor = 50);
ALTER TABLE scenario_engine.report_outcome_day SET (fillfactor = 50);
