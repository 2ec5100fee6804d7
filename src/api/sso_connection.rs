//! `SSOConnection`: how a workspace's people sign in, over OIDC or SAML 2.0.
//!
//! OIDC and SAML are a `protocol` discriminator with optional `oidc` / `saml`
//! blocks and a CEL rule requiring exactly the matching one. A data-carrying Rust
//! enum would produce a non-structural schema that the apiserver rejects.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, DeletionPolicy, DurationSpec, LocalObjectRef, SecretKeyRef};

/// A single sign-on connection between a workspace and the company's identity provider.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "A single sign-on connection (OIDC or SAML 2.0) between a workspace and its identity provider.",
    version = "v1alpha1",
    kind = "SSOConnection",
    root = "SsoConnection",
    plural = "ssoconnections",
    namespaced,
    status = "SsoConnectionStatus",
    shortname = "sso",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    printcolumn = r#"{"name":"IdP","type":"string","jsonPath":".status.idp"}"#,
    printcolumn = r#"{"name":"Cert Expires","type":"date","jsonPath":".status.idpCertificateExpiresAt","priority":1}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.protocol == 'oidc' ? (has(self.oidc) && !has(self.saml)) : (has(self.saml) && !has(self.oidc))").message("protocol oidc requires the oidc block and forbids saml; protocol saml requires the saml block and forbids oidc"))]
pub struct SsoConnectionSpec {
    /// The `Workspace` (same namespace) people sign in to through this connection.
    pub workspace_ref: LocalObjectRef,

    /// `oidc` (OpenID Connect) or `saml` (SAML 2.0).
    pub protocol: Protocol,

    /// Name shown on the sign-in button, e.g. "Okta".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub display_name: Option<String>,

    /// Email domains routed to this connection. Defaults to all of the workspace's
    /// domains; set it when a workspace has one connection per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
    ), length(max = 253)), length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub domains: Vec<String>,

    /// OpenID Connect settings; required when `protocol` is `oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSpec>,

    /// SAML 2.0 settings; required when `protocol` is `saml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlSpec>,

    /// `Delete` (default) removes the connection from the identity service when this
    /// resource is deleted; `Retain` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Single sign-on protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenID Connect authorization code flow with PKCE.
    Oidc,
    /// SAML 2.0 Web Browser SSO.
    Saml,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Oidc => "oidc",
            Protocol::Saml => "saml",
        }
    }
}

/// OpenID Connect relying-party settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcSpec {
    /// Issuer identifier; must equal the `issuer` of the discovery document.
    #[schemars(
        regex(
            pattern = r"^(https://[^\s/$.?#][^\s]*|http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^\s]*)?)$"
        ),
        length(max = 2048)
    )]
    pub issuer: String,

    /// Discovery document URL (default `{issuer}/.well-known/openid-configuration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(
            pattern = r"^(https://[^\s/$.?#][^\s]*|http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^\s]*)?)$"
        ),
        length(max = 2048)
    )]
    pub discovery_url: Option<String>,

    /// OAuth client ID registered at the IdP.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,

    /// Secret key holding the OAuth client secret.
    pub client_secret_ref: SecretKeyRef,

    /// How the client authenticates at the token endpoint (default `client_secret_basic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,

    /// Scopes to request (default `openid email profile`); must include `openid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+$")),
        length(max = 32)
    )]
    #[x_kube(validation = kube::core::Rule::new("size(self) == 0 || 'openid' in self").message("scopes must include openid"))]
    pub scopes: Vec<String>,

    /// Which ID-token / userinfo claims carry the person's attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_mapping: Option<ClaimMapping>,

    /// Fetch the userinfo endpoint after the token exchange and merge its claims
    /// (default false: the ID token must carry what the mapping needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_userinfo: Option<bool>,

    /// UNSAFE: accept an email the IdP does not mark `email_verified: true`.
    /// Off by default, because an IdP account whose unverified email is someone
    /// else's would sign in as them. Set it only for an IdP that never sends
    /// `email_verified` and only ever asserts addresses it owns (Microsoft
    /// Entra ID's v2 tokens, for instance), together with `domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_unverified_email: Option<bool>,
}

/// OAuth client authentication methods at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// HTTP Basic authentication with the client ID and secret.
    ClientSecretBasic,
    /// Client ID and secret in the form body.
    ClientSecretPost,
}

/// Where to find a person's attributes in OIDC claims or SAML attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimMapping {
    /// Claim or attribute holding the email (OIDC default `email`; SAML default the
    /// NameID when it is an email address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub email: Option<String>,
    /// Claim or attribute holding the given name (OIDC default `given_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub given_name: Option<String>,
    /// Claim or attribute holding the family name (OIDC default `family_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub family_name: Option<String>,
    /// Claim or attribute holding group names, the input of role mapping (OIDC
    /// default `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub groups: Option<String>,
}

/// SAML 2.0 service-provider settings. Give the IdP's metadata (by URL, inline or
/// from a ConfigMap/Secret) or its entity ID, SSO URL and signing certificates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("[has(self.metadataUrl), has(self.metadata), has(self.metadataRef), has(self.entityId)].filter(x, x).size() == 1").message("give exactly one of metadataUrl, metadata, metadataRef, or entityId with ssoUrl and certificates"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.entityId) || (has(self.ssoUrl) && has(self.certificates) && size(self.certificates) > 0)").message("entityId requires ssoUrl and at least one signing certificate"))]
pub struct SamlSpec {
    /// URL of the IdP's SAML metadata (refetched periodically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(
            pattern = r"^(https://[^\s/$.?#][^\s]*|http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^\s]*)?)$"
        ),
        length(max = 2048)
    )]
    pub metadata_url: Option<String>,

    /// The IdP's SAML metadata XML, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub metadata: Option<String>,

    /// The IdP's SAML metadata XML from a ConfigMap or Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_ref: Option<SamlMetadataRef>,

    /// The IdP's entity ID, when configuring without metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub entity_id: Option<String>,

    /// The IdP's single sign-on URL (HTTP-Redirect binding), without metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(
            pattern = r"^(https://[^\s/$.?#][^\s]*|http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^\s]*)?)$"
        ),
        length(max = 2048)
    )]
    pub sso_url: Option<String>,

    /// PEM certificates the IdP signs with, without metadata. Several may be given
    /// during an IdP certificate rollover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 16384)), length(max = 4))]
    pub certificates: Option<Vec<String>>,

    /// Which attributes carry the person's email, names and groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_mapping: Option<ClaimMapping>,

    /// Clock skew tolerated on `NotBefore` / `NotOnOrAfter` (default 2m, at most 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clock_skew: Option<DurationSpec>,

    /// Accept IdP-initiated sign-in (unsolicited responses). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_idp_initiated: Option<bool>,
}

/// A key of a ConfigMap or Secret holding SAML metadata XML.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlMetadataRef {
    /// `ConfigMap` or `Secret`.
    pub kind: MetadataSourceKind,
    /// Name of the ConfigMap or Secret, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the metadata XML.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Kinds a SAML metadata reference may name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MetadataSourceKind {
    #[default]
    ConfigMap,
    Secret,
}

/// Observed state of an `SSOConnection`: what to paste into the IdP, and its health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoConnectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Validated` (discovery or metadata checked) and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The IdP's issuer or entity ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// OIDC redirect URI to register at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// SAML Assertion Consumer Service URL to register at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    /// SAML service-provider entity ID (audience) to register at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_entity_id: Option<String>,
    /// SAML service-provider metadata URL, for IdPs that import it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_metadata_url: Option<String>,
    /// When the IdP's signing certificate that expires first expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_certificate_expires_at: Option<String>,
    /// Last successful sign-in through this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sign_in_at: Option<String>,
    /// When the identity service last changed to match this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Content fingerprint the identity service reported after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_fingerprint: Option<String>,
}
