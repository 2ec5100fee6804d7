-- Who owns each workspace id: the claimant the operator names for a Workspace
-- resource (cluster, namespace/name and UID), or `admin/<name>` for `idsync
-- admin apply`. Writes to a claimed workspace, or to anything in it, from
-- another claimant are refused; deleting the owner (or `idsync admin
-- workspace release`) frees the id.
CREATE TABLE workspace_claims (
    workspace  TEXT   NOT NULL PRIMARY KEY,
    claimant   TEXT   NOT NULL,
    claimed_at BIGINT NOT NULL
);
