-- Push delivery window. A claim no longer stands for "being sent": each push is marked in
-- flight on its own, right before its HTTP call (in_flight_at, with a lease just longer
-- than the send may take), and the mark is cleared when the outcome is recorded. A push
-- found claimable with in_flight_at still set belonged to a sender that died (or lost the
-- database) mid-call: the gateway may have it. Such a push, or one whose attempt timed
-- out, carries delivery_uncertain for good, so that a later send-time re-check records it
-- as 'abandoned' (may have been delivered), never as 'cancelled' (never sent).
ALTER TABLE push_notification ADD COLUMN IF NOT EXISTS in_flight_at timestamptz;
ALTER TABLE push_notification ADD COLUMN IF NOT EXISTS delivery_uncertain boolean NOT NULL DEFAULT false;

-- Claims made by a dispatcher of an earlier version were whole batches marked 'sending':
-- any of them may have reached the gateway.
UPDATE push_notification SET delivery_uncertain = true WHERE status = 'sending';

ALTER TABLE push_notification DROP CONSTRAINT IF EXISTS push_notification_status_known;
ALTER TABLE push_notification ADD CONSTRAINT push_notification_status_known
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'cancelled', 'abandoned'));
