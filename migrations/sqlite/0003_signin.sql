-- Sign-in: requests in flight, the SAML replay cache, per-connection health,
-- and the keys session cookies are signed with.

-- One row per sign-in started here (OIDC state + nonce + PKCE verifier, or the
-- SAML AuthnRequest ID). Keyed by the SHA-256 of the handle the browser carries,
-- consumed exactly once by the callback, shared by every replica.
CREATE TABLE signin_requests (
    id            TEXT   NOT NULL PRIMARY KEY,
    workspace     TEXT   NOT NULL,
    connection    TEXT   NOT NULL,
    protocol      TEXT   NOT NULL,
    nonce         TEXT,
    code_verifier TEXT,
    request_id    TEXT,
    return_to     TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX signin_requests_by_expiry ON signin_requests (expires_at);

-- Assertion IDs already consumed, until they would have expired anyway.
CREATE TABLE saml_replay_cache (
    id         TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX saml_replay_cache_by_expiry ON saml_replay_cache (expires_at);

-- What the operator shows in each SSOConnection's status.
CREATE TABLE signin_stats (
    workspace           TEXT   NOT NULL,
    connection          TEXT   NOT NULL,
    successes           BIGINT NOT NULL,
    failures            BIGINT NOT NULL,
    last_success_at     BIGINT,
    last_failure_at     BIGINT,
    last_failure_reason TEXT,
    PRIMARY KEY (workspace, connection)
);

-- HMAC keys for session cookies: the newest signs, every unexpired one verifies.
CREATE TABLE session_keys (
    id         TEXT   NOT NULL PRIMARY KEY,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

ALTER TABLE sessions ADD COLUMN connection TEXT;
