//! Prometheus metrics of the identity service.

use prometheus::{
    GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::prom::Registrar;

/// The service's metrics, registered in their own registry.
#[derive(Clone)]
pub struct ServiceMetrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub admin_unauthorized: IntCounter,
    pub build_info: IntGauge,
    /// SCIM requests by workspace (`unauthenticated` before a token matched),
    /// resource, operation and status.
    pub scim_requests: IntCounterVec,
    pub scim_duration: HistogramVec,
    pub scim_provisioned: IntCounterVec,
    pub scim_deprovisioned: IntCounterVec,
    pub scim_last_success: GaugeVec,
    /// Seconds since the last 2xx SCIM answer, by workspace, set at scrape.
    pub scim_sync_lag: GaugeVec,
    /// Members whose role waits for an approval, by workspace, read from the
    /// store at scrape (every replica answers the same).
    pub role_approvals_pending: IntGaugeVec,
    /// Role decisions (a SCIM change, a sign-in, a recompute) by workspace
    /// and outcome (`rule_matched`, `default_applied`, `no_role`).
    pub role_decisions: IntCounterVec,
    /// Sign-ins by workspace, connection, protocol and result (`success` or
    /// the refusal's reason code); unknown connections count as `unknown`.
    pub sso_signins: IntCounterVec,
    pub sso_duration: HistogramVec,
    /// Session checks by result (`valid`, `invalid`).
    pub session_checks: IntCounterVec,
}

/// Latency buckets from 0.5 ms to 2.5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl ServiceMetrics {
    pub fn new() -> Self {
        let r = Registrar::new();
        let build_info = r.plain_gauge(
            Opts::new(
                "idsync_service_build_info",
                "Always 1; labels say the version.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        );
        build_info.set(1);
        let (scim_sync_lag, role_approvals_pending) = scrape_gauges(&r);
        Self {
            http_requests: r.counter(
                "idsync_http_requests_total",
                "HTTP requests answered, by route, method and status code.",
                &["route", "method", "status"],
            ),
            http_duration: r.histogram(
                "idsync_http_request_duration_seconds",
                "Time to answer an HTTP request, by route.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            admin_unauthorized: r.plain_counter(
                "idsync_admin_unauthorized_total",
                "Admin API calls refused for a missing or wrong admin token.",
            ),
            build_info,
            scim_requests: r.counter(
                "idsync_scim_requests_total",
                "SCIM requests answered, by workspace, resource, operation and status code.",
                &["workspace", "resource", "operation", "status"],
            ),
            scim_duration: r.histogram(
                "idsync_scim_request_duration_seconds",
                "Time to answer a SCIM request, by resource and operation.",
                &["resource", "operation"],
                LATENCY_BUCKETS,
            ),
            scim_provisioned: r.counter(
                "idsync_scim_provisioned_total",
                "Users and groups created (or users reactivated) through SCIM, by workspace.",
                &["workspace", "resource"],
            ),
            scim_deprovisioned: r.counter(
                "idsync_scim_deprovisioned_total",
                "Users deactivated or deleted through SCIM, by workspace.",
                &["workspace"],
            ),
            scim_last_success: r.gauge(
                "idsync_scim_last_success_timestamp_seconds",
                "Unix time of the last SCIM request answered with a 2xx, by workspace.",
                &["workspace"],
            ),
            scim_sync_lag,
            role_approvals_pending,
            role_decisions: r.counter(
                "idsync_role_decisions_total",
                "Role decisions by workspace and outcome: a rule matched, a default applied, no role.",
                &["workspace", "outcome"],
            ),
            sso_signins: r.counter(
                "idsync_sso_signins_total",
                "Sign-ins finished, by workspace, connection, protocol and result (success or the reason code).",
                &["workspace", "connection", "protocol", "result"],
            ),
            sso_duration: r.histogram(
                "idsync_sso_signin_duration_seconds",
                "Time to handle a sign-in callback (OIDC) or assertion (SAML), IdP calls included, by protocol.",
                &["protocol"],
                LATENCY_BUCKETS,
            ),
            session_checks: r.counter(
                "idsync_session_checks_total",
                "Session checks answered, by result (valid, invalid).",
                &["result"],
            ),
            registry: r.finish(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts role decisions of `workspace`, one per outcome given.
    pub fn count_role_decisions<'a>(
        &self,
        workspace: &str,
        outcomes: impl Iterator<Item = &'a str>,
    ) {
        let mut counts: std::collections::BTreeMap<&str, u64> = Default::default();
        for outcome in outcomes {
            *counts.entry(outcome).or_default() += 1;
        }
        for (outcome, n) in counts {
            self.role_decisions
                .with_label_values(&[workspace, outcome])
                .inc_by(n);
        }
    }

    /// The text exposition format, with the gauges read at scrape brought
    /// up to date: `pending` is each workspace's count of roles waiting for
    /// approval (none when the store could not be read), `now` Unix seconds.
    pub fn render(&self, pending: Option<&[(String, i64)]>, now: f64) -> String {
        if let Some(pending) = pending {
            // Reset first: a workspace with none left must not keep its last count.
            self.role_approvals_pending.reset();
            for (workspace, n) in pending {
                self.role_approvals_pending
                    .with_label_values(&[workspace])
                    .set(*n);
            }
        }
        for family in prometheus::core::Collector::collect(&self.scim_last_success) {
            for m in family.get_metric() {
                let Some(ws) = m.get_label().iter().find(|l| l.name() == "workspace") else {
                    continue;
                };
                let lag = (now - m.get_gauge().get_value()).max(0.0);
                self.scim_sync_lag.with_label_values(&[ws.value()]).set(lag);
            }
        }
        crate::prom::render(&self.registry)
    }
}

/// The gauges `render` sets at each scrape.
fn scrape_gauges(r: &Registrar) -> (GaugeVec, IntGaugeVec) {
    let lag = r.gauge(
        "idsync_scim_sync_lag_seconds",
        "Seconds since this replica last answered a SCIM request with a 2xx, by workspace \
         (take the min over replicas).",
        &["workspace"],
    );
    let pending = r.int_gauge(
        "idsync_role_approvals_pending",
        "Members whose role waits for an administrator's approval, by workspace.",
        &["workspace"],
    );
    (lag, pending)
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}
