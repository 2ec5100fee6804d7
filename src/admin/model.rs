//! Admin API documents and answers (JSON, camelCase).
//!
//! Documents reuse the custom resources' sub-types, so a field means the same thing
//! in a manifest and on the wire. They refuse unknown fields: a typo in a PUT is a
//! 400, not a silently ignored setting.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::{
    ClaimMapping, DurationSpec, Protocol, RoleRule, ScimAuthentication, Strategy, WorkspacePolicy,
    sso_connection::TokenEndpointAuthMethod,
};

/// A workspace's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<WorkspacePolicy>,
}

/// An SSO connection with its secrets resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SsoConnectionDoc {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<SamlDoc>,
}

/// OIDC settings with the client secret's value. GET answers leave the secret out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcDoc {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_mapping: Option<ClaimMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_userinfo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_unverified_email: Option<bool>,
}

/// SAML settings; metadata from a ConfigMap or Secret arrives resolved as `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_mapping: Option<ClaimMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clock_skew: Option<DurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_idp_initiated: Option<bool>,
}

/// A role mapping's rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleMappingDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RoleRule>,
}

/// Registration of a SCIM token's hash (never its value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScimTokenDoc {
    /// Which credential this is (e.g. the SCIMToken resource's name).
    pub name: String,
    /// `bearer` (default) or `basic`; fixed when the token is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ScimAuthentication>,
    /// Lower-case hex SHA-256 of the whole token. Required to register a token;
    /// optional when only its name or expiry changes (it must match if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When the token stops being accepted (RFC 3339); none for no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PutResult {
    Created,
    Updated,
    Unchanged,
}

/// An object as the admin API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    pub kind: String,
    pub workspace: String,
    pub name: String,
    pub fingerprint: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set on PUT answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PutResult>,
    /// The document, with secret values left out.
    pub spec: serde_json::Value,
    /// URLs to configure at the IdP (SCIM base URL, redirect URI, ACS URL, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, String>,
    /// Who owns the workspace id (on single-object GETs): the operator writes
    /// again when it is not the resource it reconciles, even if the content
    /// matches, so that the write is refused or claims the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimant: Option<String>,
}

/// A SCIM token as the admin API returns it: metadata, never the hash or value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub workspace: String,
    pub name: String,
    /// `bearer` or `basic` (then `id` is the client ID).
    #[serde(default)]
    pub authentication: ScimAuthentication,
    /// SHA-256 of the token. Revealing it is harmless (a token carries 256 random
    /// bits) and lets a holder of the token check it is the one registered.
    pub sha256: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// Whether the service accepts the token now.
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PutResult>,
    pub scim_base_url: String,
}

/// What issuing an API key asks for (`POST …/api-keys`; `POST /sso/keys`
/// takes the same without `principal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// The user (SCIM id or userName) or service account (SCIM id) it acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    pub name: String,
    /// When it stops working; default never (admin) or 90 days (self-issued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// An API key as listings show it: metadata, never the value or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub workspace: String,
    pub principal_id: String,
    pub name: String,
    /// `admin/<name>` or `self`.
    pub issued_by: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// Whether the key is neither revoked nor expired (its principal must
    /// also be active for a check to accept it).
    pub valid: bool,
}

/// A key just issued: the only answer that carries its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedApiKeyView {
    /// The key: shown this once, kept by the service only as a hash.
    pub key: String,
    #[serde(flatten)]
    pub view: ApiKeyView,
}

/// One role assignment: a `{type, value}` entry of SCIM `roles` (see
/// `policy.roleAssignments`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// A member as the workspace sees them now (`GET
/// /workspaces/{ws}/members/{id or userName}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: String,
    /// `User` or `ServiceAccount`.
    #[serde(rename = "type", default = "user_type")]
    pub kind: String,
    /// The userName (a service account's displayName), lower-cased.
    pub user_name: String,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A role the mapping gives that waits for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_role: Option<String>,
    /// Effective role assignments: their own and their groups'.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
    /// The displayNames of the groups SCIM put them in.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn user_type() -> String {
    "User".into()
}

/// The keys the operator keeps in Secrets and registers with the service, by
/// what they are for. Each kind is an admin API collection of its own, with a
/// document of its own ([`KeyDoc`]); listing and registering work alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// HMAC keys for session cookies.
    SessionCookies,
    /// RSA keys (with certificates) that sign SAML AuthnRequests.
    SamlSigning,
}

impl KeyKind {
    /// The admin API collection, under `/admin/v1/`.
    pub fn collection(self) -> &'static str {
        match self {
            KeyKind::SessionCookies => "session-keys",
            KeyKind::SamlSigning => "saml-signing-keys",
        }
    }
}

/// A key's registration document, tied to its kind.
pub trait KeyDoc: Serialize + serde::de::DeserializeOwned {
    const KIND: KeyKind;
}

impl KeyDoc for SessionKeyDoc {
    const KIND: KeyKind = KeyKind::SessionCookies;
}

impl KeyDoc for SamlSigningKeyDoc {
    const KIND: KeyKind = KeyKind::SamlSigning;
}

/// A session-cookie signing key pushed by the operator (`PUT
/// /session-keys/{id}`). The secret is write-only: answers leave it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionKeyDoc {
    /// The HMAC key, 32 bytes as 64 lower-case hex characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When the key was made (RFC 3339); the newest key signs new sessions.
    pub created_at: Timestamp,
    /// When the key stops verifying cookies (RFC 3339).
    pub expires_at: Timestamp,
}

/// A SAML SP signing key pushed by the operator (`PUT
/// /saml-signing-keys/{id}`). The private key is write-only: answers leave it
/// out; the certificate is public (it is in the SP metadata).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamlSigningKeyDoc {
    /// PKCS#8 PEM, RSA of at least 2048 bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// PEM X.509 certificate for that key; its notAfter is when the key expires.
    pub certificate: String,
    /// When the key was made (RFC 3339); decides which key signs.
    pub created_at: Timestamp,
    /// The certificate's notAfter (RFC 3339); set by the service in answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for SamlSigningKeyDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSigningKeyDoc")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Sign-in health of one SSO connection, from
/// `GET /workspaces/{ws}/connections/{name}/sign-ins`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInHealthView {
    pub successes: i64,
    pub failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Timestamp>,
    /// Reason code of the last refusal (e.g. `expired`, `not_provisioned`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_reason: Option<String>,
}

/// A list answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListView<T> {
    pub items: Vec<T>,
}

/// Service identity, from `GET /admin/v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfoView {
    pub version: String,
    pub public_url: String,
    pub database: String,
}

/// The body of every admin API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_body`, `not_found`.
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The kinds of configuration object the admin API manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Workspace,
    SsoConnection,
    RoleMapping,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Workspace,
        ObjectKind::SsoConnection,
        ObjectKind::RoleMapping,
    ];

    /// Name used in the database, the audit log and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Workspace => "workspace",
            ObjectKind::SsoConnection => "sso-connection",
            ObjectKind::RoleMapping => "role-mapping",
        }
    }

    /// Whether a workspace holds at most one object of this kind: its role
    /// mapping decides every role, so a second one could only be ignored.
    pub fn one_per_workspace(self) -> bool {
        self == ObjectKind::RoleMapping
    }

    /// Path segment in the admin API.
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::Workspace => "workspaces",
            ObjectKind::SsoConnection => "connections",
            ObjectKind::RoleMapping => "role-mappings",
        }
    }
}

/// An audit log entry as the admin API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
