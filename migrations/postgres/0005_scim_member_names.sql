-- The name a group shows for a member the IdP sent without a display: the
-- member's displayName, else its userName. It is kept with the membership,
-- and rewritten when the member is renamed, so rendering a group reads its
-- membership rows alone instead of joining each member to its resource.
ALTER TABLE scim_members ADD COLUMN member_name TEXT;
UPDATE scim_members m SET member_name = COALESCE(u.display_name, u.doc::jsonb ->> 'userName')
FROM scim_resources g, scim_resources u
WHERE g.pk = m.group_pk AND u.workspace = g.workspace AND u.id = m.member_id;
