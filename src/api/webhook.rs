//! `Webhook`: an endpoint of the product that a workspace's lifecycle
//! events are delivered to, signed with a secret the operator keeps in a
//! Secret and rotates with overlap.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, LocalObjectRef, RotationSpec};

/// Annotation that redelivers events: set it to an RFC 3339 time and the
/// operator replays every event from then on, once for that value.
pub const REPLAY_ANNOTATION: &str = "idsync.dev/replay-from";

/// Delivers a workspace's lifecycle events (`member.created`,
/// `member.role_changed`, `group.deleted`, …) to an HTTP endpoint, the
/// Standard Webhooks way: `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers a receiver verifies with the
/// `standardwebhooks` or `svix` libraries and the secret in the Secret.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "An endpoint a workspace's lifecycle events are delivered to, signed with a rotated secret.",
    version = "v1alpha1",
    kind = "Webhook",
    namespaced,
    status = "WebhookStatus",
    shortname = "webhook",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Delivering","type":"string","jsonPath":".status.conditions[?(@.type==\"Delivering\")].status"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pending"}"#,
    printcolumn = r#"{"name":"Last Success","type":"date","jsonPath":".status.lastSuccessAt"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// The `Workspace` (same namespace) whose events are delivered.
    pub workspace_ref: LocalObjectRef,

    /// Where events are POSTed.
    #[schemars(regex(pattern = r"^https?://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub url: String,

    /// The event types delivered: exact (`member.created`), a family
    /// (`member.*`) or everything (`*`).
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$"))
    )]
    pub event_types: Vec<String>,

    /// PEM certificates trusted for an https `url` beside the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1048576))]
    pub ca_bundle: Option<String>,

    /// Secret the operator writes with key `secret` (`whsec_…`, what the
    /// receiver verifies with) and, during a rotation's overlap,
    /// `previousSecret` (default `{metadata.name}-webhook-secret`). Owned by
    /// this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub secret_name: Option<String>,

    /// Scheduled rotation of the signing secret. During `overlap` every
    /// delivery is signed with both the new and the previous secret, so the
    /// receiver may switch at any moment. Without it the secret rotates only
    /// on request (annotation `idsync.dev/rotate-requested-at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
}

/// Observed state of a `Webhook`. Never holds a secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Delivering` (False once the endpoint is
    /// disabled: 410 Gone, or failing for the whole retry schedule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Secret holding the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// When the current signing secret was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_issued_at: Option<String>,
    /// When the next scheduled rotation is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    /// Until when the previous secret still signs, during an overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
    /// Events not delivered yet, and when the oldest of them happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
    /// What the last failure was (`HTTP 503`, `timed out`), never the
    /// receiver's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// Value of `idsync.dev/replay-from` already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay_request: Option<String>,
    /// Value of `idsync.dev/rotate-requested-at` already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
    /// When the identity service last changed to match this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
    /// Content fingerprint the identity service reported after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_fingerprint: Option<String>,
}

impl Webhook {
    /// Name of the Secret holding the signing secret.
    pub fn secret_name(&self) -> String {
        self.spec.secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-webhook-secret",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }
}
