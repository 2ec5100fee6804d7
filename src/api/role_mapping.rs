//! `RoleMapping`: directory groups, SAML attributes and OIDC claims to workspace roles.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, DeletionPolicy, LocalObjectRef};

/// The role hierarchy used when a mapping declares none, highest first.
pub const DEFAULT_ROLES: [&str; 4] = ["owner", "admin", "member", "viewer"];

/// Ordered rules that turn what the IdP says about a person into a workspace role.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "Ordered rules from IdP groups and claims to workspace roles.",
    version = "v1alpha1",
    kind = "RoleMapping",
    namespaced,
    status = "RoleMappingStatus",
    shortname = "rolemap",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.strategy"}"#,
    printcolumn = r#"{"name":"Tests","type":"string","jsonPath":".status.conditions[?(@.type==\"TestsPassed\")].status"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.rules) && size(self.rules) > 0) || has(self.defaultRole)").message("give at least one rule or a defaultRole"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.rules) || self.rules.all(r, r.role in (has(self.roles) ? self.roles : ['owner', 'admin', 'member', 'viewer']))").message("every rule's role must be one of spec.roles (default owner, admin, member, viewer)"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.defaultRole) || self.defaultRole in (has(self.roles) ? self.roles : ['owner', 'admin', 'member', 'viewer'])").message("defaultRole must be one of spec.roles (default owner, admin, member, viewer)"))]
pub struct RoleMappingSpec {
    /// The `Workspace` (same namespace) whose roles this mapping decides.
    pub workspace_ref: LocalObjectRef,

    /// Role hierarchy, highest first (default `owner, admin, member, viewer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        inner(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63)),
        length(min = 1, max = 32)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub roles: Option<Vec<String>>,

    /// `firstMatch` (default): the first matching rule decides. `highestRole`: the
    /// highest role of all matching rules wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,

    /// Role when no rule matches. Without it, a person no rule matches gets the
    /// workspace's default role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63))]
    pub default_role: Option<String>,

    /// Ordered rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub rules: Vec<RoleRule>,

    /// Cases that must pass before the mapping is synced: what the IdP says about a
    /// person, and the role they must get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub tests: Vec<RoleTest>,

    /// `Delete` (default) removes the mapping from the identity service when this
    /// resource is deleted; `Retain` keeps it active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// How matching rules combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// The first rule that matches decides.
    #[default]
    FirstMatch,
    /// The highest role among all matching rules wins.
    HighestRole,
}

/// One rule: if the source matches, the person gets `role`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("[has(self.equals), has(self.prefix), has(self.regex)].filter(x, x).size() == 1").message("give exactly one of equals, prefix or regex"))]
#[x_kube(validation = kube::core::Rule::new("(has(self.source) && self.source == 'claim') ? has(self.claim) : !has(self.claim)").message("claim names the claim or attribute to match, and is required exactly when source is claim"))]
pub struct RoleRule {
    /// Role given when the rule matches.
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63))]
    pub role: String,

    /// `group` (default): any of the person's groups. `claim`: the OIDC claim or SAML
    /// attribute named by `claim`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RuleSource>,

    /// Claim or attribute name, with source `claim` (e.g. `department`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub claim: Option<String>,

    /// Matches a value equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub equals: Option<String>,

    /// Matches a value starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub prefix: Option<String>,

    /// Matches a value this regular expression (RE2 syntax) matches anywhere; anchor
    /// it with `^…$` to match whole values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,

    /// Compare without regard to case (default false). IdPs differ in how they case
    /// group names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_case: Option<bool>,

    /// SSOConnections (by name) whose sign-in assertions this rule sees, so a
    /// second IdP of the workspace cannot assert, say, the admins group. Groups
    /// the directory pushed over SCIM count whatever this says. Empty: every
    /// connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")),
        length(max = 16)
    )]
    pub connections: Vec<String>,
}

/// What a rule matches against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RuleSource {
    /// The person's groups (OIDC `groups` claim, SAML groups attribute, SCIM groups).
    #[default]
    Group,
    /// A named OIDC claim or SAML attribute.
    Claim,
}

/// A test case: a person as the IdP describes them, and the role they must get.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleTest {
    /// A name for the case, shown when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub name: Option<String>,
    /// The person's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub groups: Vec<String>,
    /// The person's claims or attributes; each may have several values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Vec<String>>,
    /// The SSOConnection that asserted these groups and claims at sign-in
    /// (default: the groups come from the directory, the claims from no
    /// particular connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub connection: Option<String>,
    /// The role they must get (the workspace default when nothing matches is written
    /// as that role; `none` when no rule matches and the mapping has no defaultRole).
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63))]
    pub expect: String,
}

/// Observed state of a `RoleMapping`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `TestsPassed` and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of inline tests that passed at the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_passed: Option<i32>,
    /// When the identity service last changed to match this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Content fingerprint the identity service reported after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_fingerprint: Option<String>,
}
