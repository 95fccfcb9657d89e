-- Delivery channels (issue 21). The outbox carries, per delivery, the channel it goes by and
-- its recipient: 'push' (the recipient is the mentor's device tokens, looked up at send time,
-- so recipient stays NULL) or 'email' (recipient is the address). One dispatcher, one claim,
-- one fence, one retry policy and one dead-letter state for every channel.
--
-- fallback: the channels the programme allows when the push cannot be delivered (no active
-- device token, or the gateway says the token is unregistered), copied at enqueue like
-- decided_at so that a rules reload never changes what an already queued push may do.
-- fell_back_from / fallback_reason: this delivery was switched from that channel, for that
-- reason — a row switches at most once (from 'push'), which is what "sent by email instead,
-- once" means; the ledger's channel column says which channel delivered.
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS channel text NOT NULL DEFAULT 'push';
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS recipient text;
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS fallback text[] NOT NULL DEFAULT '{}';
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS fell_back_from text;
ALTER TABLE scenario_engine.push_notification ADD COLUMN IF NOT EXISTS fallback_reason text;

ALTER TABLE scenario_engine.push_notification DROP CONSTRAINT IF EXISTS push_notification_channel_known;
ALTER TABLE scenario_engine.push_notification ADD CONSTRAINT push_notification_channel_known
    CHECK (channel IN ('push', 'email'));
ALTER TABLE scenario_engine.push_notification DROP CONSTRAINT IF EXISTS push_notification_email_has_recipient;
ALTER TABLE scenario_engine.push_notification ADD CONSTRAINT push_notification_email_has_recipient
    CHECK (channel <> 'email' OR recipient IS NOT NULL);
