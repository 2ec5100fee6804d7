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

/// An administrator's approval of an elevated role for one person
/// (`PUT /workspaces/{ws}/role-approvals/{name}`). It unlocks that role when
/// the workspace's mapping gives it and `approvalRequiredRoles` holds it back;
/// it grants nothing the mapping does not give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleApprovalDoc {
    /// The person by email: their userName (the address they sign in
    /// with), compared case-insensitively; never another of their emails,
    /// which an IdP may let its users edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The person (or service account) by SCIM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// The role approved.
    pub role: String,
    /// When the approval lapses (RFC 3339); none for never. The person is
    /// then demoted to what the mapping gives without approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Why (a ticket, a pull request), for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RoleApprovalDoc {
    /// Whether the approval is in force at `now` (Unix milliseconds).
    pub fn live_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t.as_millisecond() > now)
    }

    /// The person as given, for messages.
    pub fn person(&self) -> &str {
        self.email
            .as_deref()
            .or(self.scim_id.as_deref())
            .unwrap_or_default()
    }
}

/// An endpoint the workspace's events are delivered to, signed the Standard
/// Webhooks way (`PUT /workspaces/{ws}/webhooks/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDoc {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// The event types delivered: exact (`member.created`), a family
    /// (`member.*`) or everything (`*`).
    pub event_types: Vec<String>,
    /// Signing secrets (`whsec_<base64>`), newest first; during a rotation
    /// both sign every delivery. Write-only: answers say how many are set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// PEM certificates trusted for an https `url` beside the system's (a
    /// receiver behind a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// A role the mapping gives a member that waits for an approval
/// (`GET /workspaces/{ws}/role-approvals/pending`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub id: String,
    /// `User` or `ServiceAccount`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user_name: String,
    /// The role waiting.
    pub role: String,
    /// The role they hold meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_role: Option<String>,
    /// What asked for the role: `rules[3]` of the mapping, its `defaultRole`,
    /// or the workspace's `defaultRole`.
    pub decided_by: String,
    /// Since when it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
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
    /// What the IdP set over SCIM.
    pub active: bool,
    /// When the member lost access for being in none of the workspace's
    /// `accessGroups` (absent: they have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_revoked_at: Option<Timestamp>,
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

/// Why a member has the role and access they have (`GET
/// /workspaces/{ws}/members/{id or userName}/explain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberExplanation {
    pub member: MemberView,
    /// What gave the role the mapping resolves: `rules[2]` (0-based, in the
    /// RoleMapping's order), `roleMapping.defaultRole`, `workspace.defaultRole`
    /// or `fallback` (no rule matched and no default is declared).
    pub decided_by: String,
    /// The role that decision gives, before approvals hold it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_role: Option<String>,
    /// The rule, as declared, when a rule decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<serde_json::Value>,
    /// The RoleMapping consulted, if the workspace has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_mapping: Option<String>,
    /// What the member's latest sign-in asserted, which the decision used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in: Option<AssertedView>,
    /// The role approvals naming the member that are in force.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// `granted`, `granted (no access groups)` or `revoked: in none of the
    /// access groups`.
    pub access: String,
}

/// One connection's assertion about a member, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssertedView {
    pub connection: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
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

/// What the IdPs used since a moment (`GET /admin/v1/usage?since=`): the
/// operator polls it to keep SCIMToken and SSOConnection statuses fresh
/// without reconciling every object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// SCIM credentials presented since then.
    #[serde(default)]
    pub tokens: Vec<TokenUse>,
    /// Connections with a successful sign-in since then.
    #[serde(default)]
    pub connections: Vec<ConnectionUse>,
}

/// A SCIM credential's last use (kept to the minute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUse {
    pub workspace: String,
    pub id: String,
    pub last_used_at: Timestamp,
}

/// A connection's last successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionUse {
    pub workspace: String,
    pub name: String,
    pub last_success_at: Timestamp,
}

/// A lifecycle event (`GET /workspaces/{ws}/events?after=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Stable: the same on every read and delivery.
    pub id: String,
    /// `member.created`, `member.role_changed`, `group.deleted`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub workspace: String,
    /// The workspace's sequence: page with `?after=<seq>`.
    pub seq: i64,
    pub at: Timestamp,
    /// The member, group, connection or credential as it is after the change
    /// (with `changed` for what moved); never a secret.
    pub data: serde_json::Value,
}

/// Where a webhook endpoint's deliveries stand
/// (`GET /workspaces/{ws}/webhooks/{name}/deliveries`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// Every event up to this `seq` is delivered.
    pub delivered_seq: i64,
    /// Events after it, not delivered yet.
    pub pending: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Timestamp>,
    /// What the last failure was (`HTTP 503`, `timed out`), never the
    /// receiver's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// When the next retry is due, while one is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// Set when 410 Gone or a whole failed retry schedule stopped
    /// deliveries; a replay starts them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
}

/// A replay of the events of a time range to one endpoint
/// (`POST /workspaces/{ws}/webhooks/{name}/replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayRequest {
    pub from: Timestamp,
    /// Up to now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// What a replay queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    /// Events of the range, delivered again from the oldest, same ids.
    pub events: i64,
}

/// A page of events, and the cursor of the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// The `after` of the next page (the last `seq` here, or the one asked
    /// for when there was nothing new).
    pub next: i64,
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
    RoleApproval,
    Webhook,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Workspace,
        ObjectKind::SsoConnection,
        ObjectKind::RoleMapping,
        ObjectKind::RoleApproval,
        ObjectKind::Webhook,
    ];

    /// Name used in the database, the audit log and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Workspace => "workspace",
            ObjectKind::SsoConnection => "sso-connection",
            ObjectKind::RoleMapping => "role-mapping",
            ObjectKind::RoleApproval => "role-approval",
            ObjectKind::Webhook => "webhook",
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
            ObjectKind::RoleApproval => "role-approvals",
            ObjectKind::Webhook => "webhooks",
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
