-- Lifecycle events for the product (member.created, member.role_changed,
-- group.deleted, …), written in the transaction of the change they describe:
-- a change that committed has its event, one that rolled back has none.
-- `seq` orders a workspace's events: it is taken from event_sequences in
-- the same transaction, so within a workspace commit order is seq order and a
-- reader paging with ?after= never skips an event that commits late.
CREATE TABLE events (
    workspace TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    id        TEXT   NOT NULL UNIQUE,
    type      TEXT   NOT NULL,
    subject   TEXT,
    at        BIGINT NOT NULL,
    data      TEXT   NOT NULL,
    PRIMARY KEY (workspace, seq)
);
CREATE INDEX events_by_time ON events (at);

CREATE TABLE event_sequences (
    workspace TEXT   NOT NULL PRIMARY KEY,
    last      BIGINT NOT NULL
);
