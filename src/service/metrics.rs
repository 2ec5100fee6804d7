//! Prometheus metrics of the identity service.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The service's metrics, registered in their own registry.
#[derive(Clone)]
pub struct ServiceMetrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub admin_unauthorized: prometheus::IntCounter,
    pub build_info: IntGauge,
}

impl ServiceMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "idsync_http_requests_total",
                "HTTP requests answered, by route, method and status code.",
            ),
            &["route", "method", "status"],
        )
        .expect("metric definition is valid"); // constant name and labels
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "idsync_http_request_duration_seconds",
                "Time to answer an HTTP request, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
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
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(admin_unauthorized.clone()),
            Box::new(build_info.clone()),
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
