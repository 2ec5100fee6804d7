//! `IdentityService`: where the operator syncs to.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Condition, SecretKeyRef};

/// An idsync identity service (`idsync serve`) that workspaces in this namespace sync to.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "An idsync identity service that workspaces in this namespace sync to.",
    version = "v1alpha1",
    kind = "IdentityService",
    namespaced,
    status = "IdentityServiceStatus",
    shortname = "idsvc",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityServiceSpec {
    /// Base URL of the identity service, e.g. `https://idsync.example.internal`. The
    /// operator calls its admin API under `/admin/v1`.
    #[schemars(regex(pattern = r"^https?://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub url: String,

    /// Secret key holding the admin API bearer token of the identity service.
    pub admin_token_secret_ref: SecretKeyRef,

    /// PEM-encoded CA certificates to trust for the service's TLS certificate, in
    /// addition to the system roots. Leave unset for publicly trusted certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,

    /// Public base URL IdPs and browsers use to reach the service, when it differs
    /// from `url` (for example an in-cluster `url` behind a public ingress). Used in
    /// status to show SCIM base URLs and redirect URIs to paste into the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub public_url: Option<String>,

    /// Maximum concurrent admin API calls the operator makes to this service
    /// (default 8). Bounds the load a large reconcile burst puts on the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrent_requests: Option<i32>,
}

/// Observed state of an `IdentityService`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the admin API answered and accepted the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Version string the service reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_version: Option<String>,
}
