-- Statements about the connection itself.

-- name: mark_engine_write
-- Tags the current transaction as the engine's own, so the row triggers ignore its writes
-- (a transaction-local setting: it ends with the transaction, and a pooled connection keeps nothing).
SELECT pg_catalog.set_config('scenario_engine.origin', 'engine', true);
