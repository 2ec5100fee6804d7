-- Effective role assignments of a user (JSON [{type, value}], sorted): their
-- own and their groups', the highest value per type. Recomputed with the role.
ALTER TABLE scim_resources ADD COLUMN assignments TEXT;
