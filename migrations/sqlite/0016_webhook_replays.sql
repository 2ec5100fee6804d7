-- A replay of a time range moves an endpoint's cursor back to before the
-- range; the events after the range that it had already delivered
-- (`skip_after` < seq <= `skip_through`) are passed over instead of being
-- delivered a second time.
ALTER TABLE webhook_cursors ADD COLUMN skip_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_cursors ADD COLUMN skip_through BIGINT NOT NULL DEFAULT 0;
