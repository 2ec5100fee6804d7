-- SCIM resources (Users and Groups). The full resource is a JSON document; the
-- attributes filters use most are columns with indexes, and every other
-- attribute value is a row of scim_values so any filter becomes indexed SQL.
CREATE TABLE scim_resources (
    pk           BIGSERIAL PRIMARY KEY,
    workspace    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    external_id  TEXT,
    -- lower-cased userName (User) or displayName (Group)
    name_key     TEXT    NOT NULL,
    display_name TEXT,
    active       BIGINT  NOT NULL,
    role         TEXT,
    pending_role TEXT,
    doc          TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    deleted_at   BIGINT
);
CREATE UNIQUE INDEX scim_resources_by_id ON scim_resources (workspace, id);
CREATE UNIQUE INDEX scim_users_unique_name ON scim_resources (workspace, name_key)
    WHERE kind = 'User' AND deleted_at IS NULL;
CREATE UNIQUE INDEX scim_resources_unique_external_id ON scim_resources (workspace, kind, external_id)
    WHERE external_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX scim_resources_by_name ON scim_resources (workspace, kind, name_key);
CREATE INDEX scim_resources_in_order ON scim_resources (workspace, kind, pk);

-- One row per attribute value: `path` is the lower-cased attribute path
-- (`emails.value`, `<extension urn>:manager.value`), `attr` its top-level
-- attribute, `elem` the element index within a multi-valued attribute.
CREATE TABLE scim_values (
    resource_pk BIGINT NOT NULL REFERENCES scim_resources (pk) ON DELETE CASCADE,
    attr        TEXT   NOT NULL,
    path        TEXT   NOT NULL,
    elem        BIGINT NOT NULL,
    v_text      TEXT   NOT NULL,
    v_lower     TEXT   NOT NULL
);
CREATE INDEX scim_values_lookup ON scim_values (path, v_lower);
CREATE INDEX scim_values_exact ON scim_values (path, v_text);
CREATE INDEX scim_values_by_resource ON scim_values (resource_pk, attr, elem);

-- Group membership, one row per member, so adding a member to a large group
-- writes one row.
CREATE TABLE scim_members (
    group_pk    BIGINT NOT NULL REFERENCES scim_resources (pk) ON DELETE CASCADE,
    member_id   TEXT   NOT NULL,
    member_type TEXT   NOT NULL,
    -- the display name the IdP sent with the member, if any
    display     TEXT,
    PRIMARY KEY (group_pk, member_id)
);
CREATE INDEX scim_members_by_member ON scim_members (member_id);

-- Sign-in sessions, stored server-side so deprovisioning revokes them at once.
CREATE TABLE sessions (
    id         TEXT   NOT NULL PRIMARY KEY,
    workspace  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    role       TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions (workspace, user_id);
