//! `ClusterIdentityService`: one identity service for many namespaces, without
//! handing any of them its admin token.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{IdentityServiceSpec, IdentityServiceStatus, SecretKeyRef};

/// An identity service that Workspaces in the namespaces it allows sync to.
/// Its admin token lives in a Secret of the operator's own namespace, so a
/// tenant namespace needs no copy of it.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "An identity service Workspaces in the namespaces it allows sync to; its admin token stays in the operator's namespace.",
    version = "v1alpha1",
    kind = "ClusterIdentityService",
    status = "IdentityServiceStatus",
    shortname = "cidsvc",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterIdentityServiceSpec {
    /// Base URL of the identity service; the operator calls `/admin/v1` under it.
    #[schemars(regex(pattern = r"^https?://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub url: String,

    /// Secret key holding the admin API token, in the operator's namespace.
    pub admin_token_secret_ref: SecretKeyRef,

    /// PEM-encoded CA certificates to trust for the service's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,

    /// Public base URL IdPs and browsers use, when it differs from `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub public_url: Option<String>,

    /// Maximum concurrent admin API calls the operator makes (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrent_requests: Option<i32>,

    /// Which namespaces may place Workspaces on this service. A Workspace in any
    /// other namespace is refused with a condition (`NamespaceNotAllowed`).
    /// Required: a service open to every namespace says so with an empty
    /// selector (`selector: {}`).
    pub allowed_namespaces: AllowedNamespaces,
}

/// Namespaces by name, by label, or both (either admits a namespace).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedNamespaces {
    /// Namespaces allowed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")),
        length(max = 1000)
    )]
    pub names: Vec<String>,
    /// Namespaces allowed by their labels (`{}` selects every namespace).
    /// Namespace labels are set by whoever may edit namespaces, usually not
    /// the tenants themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl AllowedNamespaces {
    /// Whether a namespace with `labels` is allowed.
    pub fn admits(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.names.iter().any(|n| n == namespace)
            || self.selector.as_ref().is_some_and(|s| selects(s, labels))
    }
}

/// Label-selector semantics (`matchLabels` and `matchExpressions`).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            // An operator Kubernetes does not define selects nothing.
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

impl ClusterIdentityServiceSpec {
    /// The connection settings, as a namespaced IdentityService has them.
    pub fn as_service(&self) -> IdentityServiceSpec {
        IdentityServiceSpec {
            url: self.url.clone(),
            admin_token_secret_ref: self.admin_token_secret_ref.clone(),
            ca_bundle: self.ca_bundle.clone(),
            public_url: self.public_url.clone(),
            max_concurrent_requests: self.max_concurrent_requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn namespaces_are_admitted_by_name_or_by_label() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let by_label = AllowedNamespaces {
            names: vec!["platform".into()],
            selector: Some(LabelSelector {
                match_labels: Some(
                    labels(&[("idsync.dev/tenant", "enabled")])
                        .into_iter()
                        .collect(),
                ),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["sandbox".into()]),
                }]),
            }),
        };
        assert!(by_label.admits("platform", &labels(&[])));
        assert!(by_label.admits("team-a", &labels(&[("idsync.dev/tenant", "enabled")])));
        assert!(!by_label.admits("team-b", &labels(&[])));
        assert!(!by_label.admits(
            "team-c",
            &labels(&[("idsync.dev/tenant", "enabled"), ("env", "sandbox")])
        ));
        let everyone = AllowedNamespaces {
            names: vec![],
            selector: Some(LabelSelector::default()),
        };
        assert!(everyone.admits("anything", &labels(&[])));
        assert!(!AllowedNamespaces::default().admits("anything", &labels(&[])));
    }
}
