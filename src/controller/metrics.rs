//! Prometheus metrics of the operator.

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::prom::Registrar;

/// A kind the operator reconciles, spelled in metric labels as its Kubernetes kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    IdentityService,
    ClusterIdentityService,
    Workspace,
    SsoConnection,
    ScimToken,
    RoleMapping,
    RoleApproval,
    Webhook,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IdentityService => "IdentityService",
            Kind::ClusterIdentityService => "ClusterIdentityService",
            Kind::Workspace => "Workspace",
            Kind::SsoConnection => "SSOConnection",
            Kind::ScimToken => "SCIMToken",
            Kind::RoleMapping => "RoleMapping",
            Kind::RoleApproval => "RoleApproval",
            Kind::Webhook => "Webhook",
        }
    }
}

impl From<crate::admin::ObjectKind> for Kind {
    fn from(kind: crate::admin::ObjectKind) -> Self {
        match kind {
            crate::admin::ObjectKind::Workspace => Kind::Workspace,
            crate::admin::ObjectKind::SsoConnection => Kind::SsoConnection,
            crate::admin::ObjectKind::RoleMapping => Kind::RoleMapping,
            crate::admin::ObjectKind::RoleApproval => Kind::RoleApproval,
            crate::admin::ObjectKind::Webhook => Kind::Webhook,
        }
    }
}

/// An identity service admin API call, as the `operation` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Info,
    GetObject,
    PutObject,
    DeleteObject,
    ReleaseWorkspace,
    SignInHealth,
    GetToken,
    PutToken,
    ListTokens,
    RevokeToken,
    ListKeys,
    PutKey,
    Usage,
    WebhookDeliveries,
    ReplayWebhook,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Info => "info",
            Op::GetObject => "get_object",
            Op::PutObject => "put_object",
            Op::DeleteObject => "delete_object",
            Op::ReleaseWorkspace => "release_workspace",
            Op::SignInHealth => "sign_in_health",
            Op::GetToken => "get_token",
            Op::PutToken => "put_token",
            Op::ListTokens => "list_tokens",
            Op::RevokeToken => "revoke_token",
            Op::ListKeys => "list_keys",
            Op::PutKey => "put_key",
            Op::Usage => "usage",
            Op::WebhookDeliveries => "webhook_deliveries",
            Op::ReplayWebhook => "replay_webhook",
        }
    }
}

#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub service_requests: IntCounterVec,
    pub service_request_duration: HistogramVec,
    pub drift_corrections: IntCounterVec,
    pub status_patches: IntCounterVec,
    pub secret_writes: IntCounterVec,
    /// Moments are Unix times rather than "seconds until": a time stays right
    /// between reconciles and when one fails, so "overdue" is `time() > next
    /// rotation` in PromQL.
    pub token_rotation_timestamp: GaugeVec,
    pub idp_certificate_expiry_timestamp: GaugeVec,
    pub leader: IntGauge,
}

/// Latency buckets from 1 ms to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl OperatorMetrics {
    pub fn new() -> Self {
        let r = Registrar::new();
        Self {
            reconciles: r.counter(
                "idsync_operator_reconciles_total",
                "Reconciles by kind and result (ok, or an error category).",
                &["kind", "result"],
            ),
            reconcile_duration: r.histogram(
                    "idsync_operator_reconcile_duration_seconds",
                    "Reconcile duration by kind.",
                &["kind"],
                LATENCY_BUCKETS,
            ),
            service_requests: r.counter(
                "idsync_operator_service_requests_total",
                "Identity service admin API calls by operation and status code (or `error` when unreachable).",
                &["operation", "status"],
            ),
            service_request_duration: r.histogram(
                    "idsync_operator_service_request_duration_seconds",
                    "Identity service admin API call latency by operation.",
                &["operation"],
                LATENCY_BUCKETS,
            ),
            drift_corrections: r.counter(
                "idsync_operator_drift_corrections_total",
                "Times the identity service differed from an already-synced resource and was corrected.",
                &["kind"],
            ),
            status_patches: r.counter(
                "idsync_operator_status_patches_total",
                "Status subresource patches by kind.",
                &["kind"],
            ),
            secret_writes: r.counter(
                "idsync_operator_secret_writes_total",
                "Secrets the operator created or updated, by kind of owner.",
                &["kind"],
            ),
            token_rotation_timestamp: r.gauge(
                "idsync_operator_scim_token_next_rotation_timestamp_seconds",
                "Unix time of a SCIMToken's next scheduled rotation.",
                &["namespace", "name"],
            ),
            idp_certificate_expiry_timestamp: r.gauge(
                "idsync_operator_idp_certificate_expiry_timestamp_seconds",
                "Unix time at which the first-expiring IdP signing certificate of an SSOConnection expires.",
                &["namespace", "name"],
            ),
            leader: r.plain_gauge(Opts::new(
                "idsync_operator_leader",
                "1 when this replica holds the leader lease and runs the controllers.",
            )),
            registry: r.finish(),
        }
    }

    pub fn render(&self) -> String {
        crate::prom::render(&self.registry)
    }

    /// Sets an object's moment gauge, or removes the series when there is no
    /// moment (so a deleted or changed object leaves no stale series behind).
    pub fn set_moment(gauge: &GaugeVec, namespace: &str, name: &str, at: Option<jiff::Timestamp>) {
        match at {
            Some(t) => gauge
                .with_label_values(&[namespace, name])
                .set(t.as_millisecond() as f64 / 1000.0),
            None => {
                let _ = gauge.remove_label_values(&[namespace, name]);
            }
        }
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
