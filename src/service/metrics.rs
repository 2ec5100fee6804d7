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
    /// Webhook delivery attempts by workspace, endpoint and result
    /// (`delivered`, `failed`, `gone`).
    pub webhook_deliveries: IntCounterVec,
    /// Seconds from an event to the 2xx that delivered it, retries included.
    pub webhook_latency: HistogramVec,
    /// Read from the store at scrape: each endpoint's undelivered events,
    /// the age of the oldest, and whether it is disabled.
    pub webhook_backlog: WebhookBacklog,
}

/// The webhook gauges set at scrape.
#[derive(Clone)]
pub struct WebhookBacklog {
    pub pending: IntGaugeVec,
    pub oldest_age: GaugeVec,
    pub disabled: IntGaugeVec,
}

/// What a scrape read from the store to bring its gauges up to date; `None`
/// where the read failed (the last values stay).
#[derive(Debug, Default)]
pub struct Scraped {
    /// Each workspace's count of roles waiting for approval.
    pub pending_approvals: Option<Vec<(String, i64)>>,
    pub deliveries: Option<Vec<crate::service::store::DeliveryState>>,
}

/// Event-to-delivery buckets, from 50 ms to the three days retries last.
const DELIVERY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 86400.0, 259200.0,
];

/// Latency buckets from 0.5 ms to 2.5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl ServiceMetrics {
    pub fn new() -> Self {
        let r = Registrar::new();
        let build_info = build_info(&r);
        let (scim_sync_lag, role_approvals_pending) = scrape_gauges(&r);
        let (webhook_deliveries, webhook_latency) = webhook_counters(&r);
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
            webhook_deliveries,
            webhook_latency,
            webhook_backlog: webhook_gauges(&r),
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
    /// up to date from `scraped`; `now` is Unix seconds.
    pub fn render(&self, scraped: &Scraped, now: f64) -> String {
        if let Some(pending) = &scraped.pending_approvals {
            // Reset first: a workspace with none left must not keep its last count.
            self.role_approvals_pending.reset();
            for (workspace, n) in pending {
                self.role_approvals_pending
                    .with_label_values(&[workspace])
                    .set(*n);
            }
        }
        if let Some(states) = &scraped.deliveries {
            self.webhook_backlog.set(states, now);
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

fn build_info(r: &Registrar) -> IntGauge {
    let info = r.plain_gauge(
        Opts::new(
            "idsync_service_build_info",
            "Always 1; labels say the version.",
        )
        .const_label("version", env!("CARGO_PKG_VERSION")),
    );
    info.set(1);
    info
}

fn webhook_counters(r: &Registrar) -> (IntCounterVec, HistogramVec) {
    let deliveries = r.counter(
        "idsync_webhook_deliveries_total",
        "Webhook delivery attempts, by workspace, endpoint and result (delivered, failed, gone).",
        &["workspace", "webhook", "result"],
    );
    let latency = r.histogram(
        "idsync_webhook_delivery_latency_seconds",
        "Time from an event to the 2xx that delivered it, retries included, by workspace and endpoint.",
        &["workspace", "webhook"],
        DELIVERY_BUCKETS,
    );
    (deliveries, latency)
}

fn webhook_gauges(r: &Registrar) -> WebhookBacklog {
    let labels = &["workspace", "webhook"];
    WebhookBacklog {
        pending: r.int_gauge(
            "idsync_webhook_pending_events",
            "Events after a webhook endpoint's cursor, not delivered yet.",
            labels,
        ),
        oldest_age: r.gauge(
            "idsync_webhook_backlog_age_seconds",
            "Age of the oldest event a webhook endpoint has not been delivered (0 when none waits).",
            labels,
        ),
        disabled: r.int_gauge(
            "idsync_webhook_disabled",
            "1 when a webhook endpoint is disabled (410 Gone, or failing for the whole retry schedule).",
            labels,
        ),
    }
}

impl WebhookBacklog {
    fn set(&self, states: &[crate::service::store::DeliveryState], now: f64) {
        // Reset first: a deleted endpoint must not keep its last values.
        self.pending.reset();
        self.oldest_age.reset();
        self.disabled.reset();
        for s in states {
            let labels = [s.workspace.as_str(), s.webhook.as_str()];
            self.pending.with_label_values(&labels).set(s.pending);
            let age = s
                .oldest_pending_at
                .map_or(0.0, |at| (now - at as f64 / 1000.0).max(0.0));
            self.oldest_age.with_label_values(&labels).set(age);
            let disabled = i64::from(s.disabled_at.is_some());
            self.disabled.with_label_values(&labels).set(disabled);
        }
    }
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}
