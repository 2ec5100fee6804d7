-- Configuration the admin API manages: workspaces, SSO connections, role mappings.
-- One table, one mechanism: each object is a JSON document with a content
-- fingerprint, keyed by (kind, workspace, name).
CREATE TABLE objects (
    kind        TEXT    NOT NULL,
    workspace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (kind, workspace, name)
);
CREATE INDEX objects_by_workspace ON objects (workspace, kind);

-- SCIM bearer tokens: only a SHA-256 hash of each token is stored.
CREATE TABLE scim_tokens (
    id           TEXT   NOT NULL PRIMARY KEY,
    workspace    TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX scim_tokens_by_workspace ON scim_tokens (workspace, name);

-- Append-only audit log.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT  NOT NULL,
    workspace  TEXT,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    kind       TEXT,
    name       TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, at);
CREATE INDEX audit_log_by_time ON audit_log (at);
