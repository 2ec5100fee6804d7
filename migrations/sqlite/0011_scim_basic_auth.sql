-- How each SCIM credential is presented: `bearer` (the token itself) or
-- `basic` (HTTP Basic: its id as the client ID, the token as the client
-- secret). A credential is accepted only the way it was registered.
ALTER TABLE scim_tokens ADD COLUMN scheme TEXT NOT NULL DEFAULT 'bearer';
