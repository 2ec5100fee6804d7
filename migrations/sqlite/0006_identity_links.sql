-- Which IdP subject signs in as which user, per connection: OIDC `iss`+`sub`
-- (the connection fixes the issuer), or a SAML NameID of the persistent
-- format. The first sign-in (or a SCIM externalId equal to the subject)
-- binds a user; later sign-ins match the binding first, and an email match
-- that carries another subject of the same connection is refused.
CREATE TABLE identity_links (
    workspace  TEXT   NOT NULL,
    connection TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, connection, subject)
);
CREATE UNIQUE INDEX identity_links_by_user ON identity_links (workspace, user_id, connection);
