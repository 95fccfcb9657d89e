-- policy_inputs counts each mentor's notifications of the last 24 h. Every notification of a
-- sweep shares one as_of, so probing scenario_notification_as_of_idx per mentor scanned the
-- whole sweep's output per mentor when statistics were stale (measured: 37 s of a 70 s first
-- sweep at 1M); one range probe per mentor on (mentor_id, as_of) is 1.9 s.
CREATE INDEX IF NOT EXISTS scenario_notification_mentor_as_of_idx ON scenario_notification (mentor_id, as_of);
