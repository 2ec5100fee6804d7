-- What each member's last sign-in through each connection asserted (groups
-- and string claims, JSON, bounded), so that a role recompute after a SCIM
-- change decides as that sign-in did, with the directory's groups as they
-- are now, instead of forgetting claim-derived roles until the next sign-in.
CREATE TABLE signin_assertions (
    workspace    TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    connection   TEXT   NOT NULL,
    groups       TEXT   NOT NULL,
    claims       TEXT   NOT NULL,
    signed_in_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, user_id, connection)
);
