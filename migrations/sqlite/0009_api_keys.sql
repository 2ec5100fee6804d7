-- API keys of users and service accounts. Only a SHA-256 of each key is
-- stored; deactivating or deleting the principal over SCIM revokes its keys
-- in the same transaction.
CREATE TABLE api_keys (
    id           TEXT   NOT NULL PRIMARY KEY,
    workspace    TEXT   NOT NULL,
    principal_id TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    -- who issued it: `admin/<actor>` or `self` (the principal's own session)
    issued_by    TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_keys_by_principal ON api_keys (workspace, principal_id);
