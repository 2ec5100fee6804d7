//! Prometheus metrics of the identity service.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The service's metrics, registered in their own registry.
#[derive(Clone)]
pub struct ServiceMetrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub admin_unauthorized: prometheus::IntCounter,
    pub build_info: IntGauge,
    /// SCIM requests by workspace (`unauthenticated` before a token matched),
    /// resource, operation and status.
    pub scim_requests: IntCounterVec,
    pub scim_duration: HistogramVec,
    pub scim_provisioned: IntCounterVec,
    pub scim_deprovisioned: IntCounterVec,
    pub scim_last_success: GaugeVec,
    /// Sign-ins by workspace, connection, protocol and result (`success` or
    /// the refusal's reason code); unknown connections count as `unknown`.
    pub sso_signins: IntCounterVec,
    pub sso_duration: HistogramVec,
    /// Session checks by result (`valid`, `invalid`).
    pub session_checks: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid") // constant name and labels
}

/// Latency buckets from 0.5 ms to 2.5 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ]
}

impl ServiceMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = counter(
            "idsync_http_requests_total",
            "HTTP requests answered, by route, method and status code.",
            &["route", "method", "status"],
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "idsync_http_request_duration_seconds",
                "Time to answer an HTTP request, by route.",
            )
            .buckets(latency_buckets()),
            &["route"],
        )
        .expect("metric definition is valid"); // constant name and labels
        let admin_unauthorized = prometheus::IntCounter::new(
            "idsync_admin_unauthorized_total",
            "Admin API calls refused for a missing or wrong admin token.",
        )
        .expect("metric definition is valid"); // constant name
        let build_info = IntGauge::with_opts(
            Opts::new(
                "idsync_service_build_info",
                "Always 1; labels say the version.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("metric definition is valid"); // constant name and label
        build_info.set(1);
        let scim_requests = counter(
            "idsync_scim_requests_total",
            "SCIM requests answered, by workspace, resource, operation and status code.",
            &["workspace", "resource", "operation", "status"],
        );
        let scim_duration = HistogramVec::new(
            HistogramOpts::new(
                "idsync_scim_request_duration_seconds",
                "Time to answer a SCIM request, by resource and operation.",
            )
            .buckets(latency_buckets()),
            &["resource", "operation"],
        )
        .expect("metric definition is valid"); // constant name and labels
        let scim_provisioned = counter(
            "idsync_scim_provisioned_total",
            "Users and groups created (or users reactivated) through SCIM, by workspace.",
            &["workspace", "resource"],
        );
        let scim_deprovisioned = counter(
            "idsync_scim_deprovisioned_total",
            "Users deactivated or deleted through SCIM, by workspace.",
            &["workspace"],
        );
        let scim_last_success = GaugeVec::new(
            Opts::new(
                "idsync_scim_last_success_timestamp_seconds",
                "Unix time of the last SCIM request answered with a 2xx, by workspace.",
            ),
            &["workspace"],
        )
        .expect("metric definition is valid"); // constant name and labels
        let sso_signins = counter(
            "idsync_sso_signins_total",
            "Sign-ins finished, by workspace, connection, protocol and result (success or the reason code).",
            &["workspace", "connection", "protocol", "result"],
        );
        let sso_duration = HistogramVec::new(
            HistogramOpts::new(
                "idsync_sso_signin_duration_seconds",
                "Time to handle a sign-in callback (OIDC) or assertion (SAML), IdP calls included, by protocol.",
            )
            .buckets(latency_buckets()),
            &["protocol"],
        )
        .expect("metric definition is valid"); // constant name and labels
        let session_checks = counter(
            "idsync_session_checks_total",
            "Session checks answered, by result (valid, invalid).",
            &["result"],
        );
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(admin_unauthorized.clone()),
            Box::new(build_info.clone()),
            Box::new(scim_requests.clone()),
            Box::new(scim_duration.clone()),
            Box::new(scim_provisioned.clone()),
            Box::new(scim_deprovisioned.clone()),
            Box::new(scim_last_success.clone()),
            Box::new(sso_signins.clone()),
            Box::new(sso_duration.clone()),
            Box::new(session_checks.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once"); // distinct names
        }
        Self {
            registry,
            http_requests,
            http_duration,
            admin_unauthorized,
            build_info,
            scim_requests,
            scim_duration,
            scim_provisioned,
            scim_deprovisioned,
            scim_last_success,
            sso_signins,
            sso_duration,
            session_checks,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}
