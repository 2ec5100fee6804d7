//! `SCIMToken`: a bearer token an IdP uses to provision a workspace through SCIM.
//!
//! The token value exists only in the Secret the operator writes; the identity
//! service stores its SHA-256 hash.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Condition, DeletionPolicy, DurationSpec, LocalObjectRef};

/// Annotation that forces a rotation: set it to a new value (for example the current
/// time) and the operator rotates once for that value.
pub const ROTATE_ANNOTATION: &str = "idsync.dev/rotate-requested-at";

/// A SCIM bearer token for one workspace, stored in a Secret and rotated with overlap.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "A SCIM bearer token for one workspace, kept in a Secret and rotated with overlap.",
    version = "v1alpha1",
    kind = "SCIMToken",
    root = "ScimToken",
    plural = "scimtokens",
    namespaced,
    status = "ScimTokenStatus",
    shortname = "scimtoken",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Token ID","type":"string","jsonPath":".status.tokenId","priority":1}"#,
    printcolumn = r#"{"name":"Next Rotation","type":"string","jsonPath":".status.nextRotationAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScimTokenSpec {
    /// The `Workspace` (same namespace) this token provisions.
    pub workspace_ref: LocalObjectRef,

    /// How the IdP authenticates: `bearer` (default; the Secret's `token` is
    /// the bearer token) or `basic` (HTTP Basic, for IdPs that ask for a
    /// client ID and secret; the Secret holds `clientId` and `clientSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ScimAuthentication>,

    /// Secret the operator writes with keys `token` (or `clientId` and
    /// `clientSecret`) and `scimBaseUrl` (default `{metadata.name}-scim-token`).
    /// Owned by this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub secret_name: Option<String>,

    /// Scheduled rotation. Without it the token rotates only on request (annotation
    /// `idsync.dev/rotate-requested-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,

    /// `Delete` (default) revokes the token in the identity service when this resource
    /// is deleted; `Retain` leaves it valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// How an IdP presents a SCIM credential.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ScimAuthentication {
    /// `Authorization: Bearer <token>`.
    #[default]
    Bearer,
    /// `Authorization: Basic base64(<client id>:<client secret>)`.
    Basic,
}

impl ScimAuthentication {
    /// The name the store and the admin API use.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimAuthentication::Bearer => "bearer",
            ScimAuthentication::Basic => "basic",
        }
    }
}

/// When to rotate, and how long the previous token stays valid afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(int(self.overlap.substring(0, self.overlap.size() - 1)) * (self.overlap.endsWith('d') ? 86400 : self.overlap.endsWith('h') ? 3600 : self.overlap.endsWith('m') ? 60 : 1)) < (int(self.every.substring(0, self.every.size() - 1)) * (self.every.endsWith('d') ? 86400 : self.every.endsWith('h') ? 3600 : self.every.endsWith('m') ? 60 : 1))").message("rotation.overlap must be shorter than rotation.every"))]
pub struct RotationSpec {
    /// Rotate this long after the current token was issued, e.g. `90d`.
    pub every: DurationSpec,
    /// Keep the previous token valid this long after a rotation, so IdPs that read the
    /// Secret late keep provisioning, e.g. `24h`. Must be shorter than `every`.
    pub overlap: DurationSpec,
}

/// Observed state of a `SCIMToken`. Never contains the token value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the token in the Secret is accepted) and `Rotated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SCIM base URL to paste into the IdP, beside the token from the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_base_url: Option<String>,
    /// Secret holding the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Public identifier of the current token (also its prefix in the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// When the current token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    /// When the next scheduled rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    /// Identifier of the previous token while it is still valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token_id: Option<String>,
    /// When the previous token stops being accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token_expires_at: Option<String>,
    /// When the IdP last presented the current token (kept to the minute,
    /// and brought here within a minute of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// Value of `idsync.dev/rotate-requested-at` already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
}

impl ScimToken {
    /// Name of the Secret holding this token.
    pub fn secret_name(&self) -> String {
        self.spec.secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-scim-token",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::ScimToken;
    use crate::api::duration::cel_seconds;

    #[test]
    fn the_overlap_rule_compares_both_durations_in_seconds() {
        let rule = format!(
            "{} < {}",
            cel_seconds("self.overlap"),
            cel_seconds("self.every")
        );
        let crd = serde_json::to_string(&ScimToken::crd()).expect("a CRD serializes");
        let rule = serde_json::to_string(&rule).expect("a string serializes");
        assert!(crd.contains(&rule), "the CRD has no rule {rule}");
    }
}
