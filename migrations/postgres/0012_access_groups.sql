-- When a user lost access because they are in none of the workspace's
-- `policy.accessGroups` (NULL: they have it). Separate from `active`, which
-- is what the IdP set over SCIM: rejoining a group restores access without
-- touching it, and a user the IdP deactivated stays deactivated.
ALTER TABLE scim_resources ADD COLUMN access_revoked_at BIGINT;
