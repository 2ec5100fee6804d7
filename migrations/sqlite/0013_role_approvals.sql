-- Since when a member's `pending_role` waits for an approval (the approvals
-- themselves are `role-approval` objects), and an index for the listing of
-- pending requests and the gauge that counts them.
ALTER TABLE scim_resources ADD COLUMN pending_since BIGINT;
UPDATE scim_resources SET pending_since = updated_at WHERE pending_role IS NOT NULL;
CREATE INDEX scim_resources_pending ON scim_resources (workspace, pending_since)
    WHERE pending_role IS NOT NULL;

-- Each approval (by its content fingerprint) that lapsed and whose person
-- was demoted: the first replica to insert the row does it, once.
CREATE TABLE role_approval_lapses (
    workspace   TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    lapsed_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace, name, fingerprint)
);
