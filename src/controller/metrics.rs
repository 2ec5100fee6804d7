//! Prometheus metrics of the operator.

use std::time::Instant;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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
    pub token_rotation_seconds: GaugeVec,
    /// The same moment as `token_rotation_seconds`, as a Unix time: it stays
    /// right between reconciles and when a rotation fails, so "overdue" is
    /// `time() > next rotation` in PromQL.
    pub token_rotation_timestamp: GaugeVec,
    pub idp_certificate_expiry_seconds: GaugeVec,
    /// The same moment as `idp_certificate_expiry_seconds`, as a Unix time.
    pub idp_certificate_expiry_timestamp: GaugeVec,
    pub leader: IntGauge,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // Names and labels are constants of this module.
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

impl OperatorMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let m = Self {
            reconciles: counter(
                "idsync_operator_reconciles_total",
                "Reconciles by kind and result (ok, or an error category).",
                &["kind", "result"],
            ),
            reconcile_duration: HistogramVec::new(
                HistogramOpts::new(
                    "idsync_operator_reconcile_duration_seconds",
                    "Reconcile duration by kind.",
                )
                .buckets(latency.clone()),
                &["kind"],
            )
            .expect("valid metric definition"),
            service_requests: counter(
                "idsync_operator_service_requests_total",
                "Identity service admin API calls by operation and status code (or `error` when unreachable).",
                &["operation", "status"],
            ),
            service_request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "idsync_operator_service_request_duration_seconds",
                    "Identity service admin API call latency by operation.",
                )
                .buckets(latency),
                &["operation"],
            )
            .expect("valid metric definition"),
            drift_corrections: counter(
                "idsync_operator_drift_corrections_total",
                "Times the identity service differed from an already-synced resource and was corrected.",
                &["kind"],
            ),
            status_patches: counter(
                "idsync_operator_status_patches_total",
                "Status subresource patches by kind.",
                &["kind"],
            ),
            secret_writes: counter(
                "idsync_operator_secret_writes_total",
                "Secrets the operator created or updated, by kind of owner.",
                &["kind"],
            ),
            token_rotation_seconds: gauge(
                "idsync_operator_scim_token_next_rotation_seconds",
                "Seconds until a SCIMToken's next scheduled rotation (negative when overdue).",
                &["namespace", "name"],
            ),
            token_rotation_timestamp: gauge(
                "idsync_operator_scim_token_next_rotation_timestamp_seconds",
                "Unix time of a SCIMToken's next scheduled rotation.",
                &["namespace", "name"],
            ),
            idp_certificate_expiry_timestamp: gauge(
                "idsync_operator_idp_certificate_expiry_timestamp_seconds",
                "Unix time at which the first-expiring IdP signing certificate of an SSOConnection expires.",
                &["namespace", "name"],
            ),
            idp_certificate_expiry_seconds: gauge(
                "idsync_operator_idp_certificate_expiry_seconds",
                "Seconds until the first-expiring IdP signing certificate of an SSOConnection expires.",
                &["namespace", "name"],
            ),
            leader: IntGauge::new(
                "idsync_operator_leader",
                "1 when this replica holds the leader lease and runs the controllers.",
            )
            .expect("valid metric definition"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.reconciles.clone()),
            Box::new(m.reconcile_duration.clone()),
            Box::new(m.service_requests.clone()),
            Box::new(m.service_request_duration.clone()),
            Box::new(m.drift_corrections.clone()),
            Box::new(m.status_patches.clone()),
            Box::new(m.secret_writes.clone()),
            Box::new(m.token_rotation_seconds.clone()),
            Box::new(m.idp_certificate_expiry_seconds.clone()),
            Box::new(m.token_rotation_timestamp.clone()),
            Box::new(m.idp_certificate_expiry_timestamp.clone()),
            Box::new(m.leader.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("each metric registered once");
        }
        m
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Starts timing a reconcile; the duration is recorded when the guard drops, so
    /// every exit path is measured.
    pub fn time_reconcile(&self, kind: &'static str) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.reconcile_duration.clone(),
            kind,
            started: Instant::now(),
        }
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ReconcileTimer {
    histogram: HistogramVec,
    kind: &'static str,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram
            .with_label_values(&[self.kind])
            .observe(self.started.elapsed().as_secs_f64());
    }
}
