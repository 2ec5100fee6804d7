//! `RoleApproval`: an administrator's approval, reviewed in a pull request
//! like any other configuration, of a role the workspace's
//! `approvalRequiredRoles` holds back.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, LocalObjectRef};

/// Approves a role for one person of a workspace. It applies as soon as the
/// identity service has it, when the workspace's RoleMapping gives the person
/// that role (an approval grants nothing the mapping does not give). At
/// `expiresAt`, or when the resource is deleted, the person is demoted to
/// what the mapping gives without it. Every step is in the audit log.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "An approval of an elevated role for one person of a workspace.",
    version = "v1alpha1",
    kind = "RoleApproval",
    namespaced,
    status = "RoleApprovalStatus",
    shortname = "roleapproval",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Person","type":"string","jsonPath":".spec.email"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.email) != has(self.scimId)").message("give exactly one of email or scimId"))]
pub struct RoleApprovalSpec {
    /// The `Workspace` (same namespace) the person belongs to.
    pub workspace_ref: LocalObjectRef,

    /// The person by email: their userName (the address they sign in with),
    /// compared case-insensitively; never another of their emails, which an
    /// IdP may let its users edit. May name someone not provisioned yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), length(max = 254))]
    pub email: Option<String>,

    /// The person (or service account) by SCIM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub scim_id: Option<String>,

    /// The role approved: one `approvalRequiredRoles` lists.
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63))]
    pub role: String,

    /// When the approval lapses (RFC 3339); without it, never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,

    /// Why (a ticket, an incident), for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub reason: Option<String>,
}

/// Observed state of a `RoleApproval`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleApprovalStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the identity service last changed to match this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Content fingerprint the identity service reported after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_fingerprint: Option<String>,
}
