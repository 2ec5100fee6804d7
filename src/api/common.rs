//! Types shared by every kind: references, deletion policy, conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A reference to another idsync object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectRef {
    /// Name of the referenced object, in this object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The identity service a Workspace lives in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// `IdentityService` (default: in this namespace) or `ClusterIdentityService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// Name of the service object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kinds a Workspace's `serviceRef` may name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceKind {
    /// A namespaced IdentityService in the Workspace's namespace.
    #[default]
    IdentityService,
    /// A cluster-scoped ClusterIdentityService that allows the namespace.
    ClusterIdentityService,
}

impl ServiceRef {
    pub fn kind(&self) -> ServiceKind {
        self.kind.unwrap_or_default()
    }
}

/// A key in a Kubernetes Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in this object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// What happens in the identity service when this resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove what this resource created in the identity service (the default).
    #[default]
    Delete,
    /// Leave it in place: deleting the Kubernetes object only stops managing it.
    Retain,
}
