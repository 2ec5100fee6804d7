-- The SAML SP's signing keys, registered by the operator from a Secret it
-- keeps. Every unexpired certificate is in the SP metadata; one key signs
-- AuthnRequests (see src/saml_signing.rs).
CREATE TABLE saml_signing_keys (
    id              TEXT   NOT NULL PRIMARY KEY,
    private_key_pem TEXT   NOT NULL,
    certificate_pem TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
