-- Where each webhook endpoint is in its workspace's event sequence. An
-- endpoint gets its events in order, one at a time: the event after
-- `delivered_seq` is retried (with `webhook-id` unchanged) until a 2xx, so a
-- member's events never arrive out of order. A replica delivers for an
-- endpoint only while it holds the claim (`claimed_until`), taken by a
-- conditional update, so two replicas never deliver to one endpoint at once
-- and a killed one's claim simply runs out.
CREATE TABLE webhook_cursors (
    workspace       TEXT   NOT NULL,
    webhook         TEXT   NOT NULL,
    delivered_seq   BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_success_at BIGINT,
    last_failure_at BIGINT,
    last_failure    TEXT,
    disabled_at     BIGINT,
    PRIMARY KEY (workspace, webhook)
);
