//! Prometheus metrics made and registered in one step, and the text format.
//!
//! The service and the operator each keep their own registry; both build it
//! through [`Registrar`], so a metric cannot be defined and then forgotten in
//! the registration list.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

/// Defines metrics into one registry.
///
/// Names, help texts and labels are constants of the metrics modules, and every
/// name is registered once: the `expect`s below fail only on a programming error,
/// which the unit tests that build each metrics set would show at once.
#[derive(Default)]
pub struct Registrar {
    registry: Registry,
}

impl Registrar {
    pub fn new() -> Self {
        Self::default()
    }

    fn register<C: Collector + Clone + 'static>(&self, metric: C) -> C {
        self.registry
            .register(Box::new(metric.clone()))
            .expect("each metric name is registered once");
        metric
    }

    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let metric = IntCounterVec::new(Opts::new(name, help), labels);
        self.register(metric.expect("constant metric definition"))
    }

    pub fn plain_counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("constant metric definition"))
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let metric = GaugeVec::new(Opts::new(name, help), labels);
        self.register(metric.expect("constant metric definition"))
    }

    pub fn int_gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let metric = IntGaugeVec::new(Opts::new(name, help), labels);
        self.register(metric.expect("constant metric definition"))
    }

    pub fn plain_gauge(&self, opts: Opts) -> IntGauge {
        self.register(IntGauge::with_opts(opts).expect("constant metric definition"))
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let metric = HistogramVec::new(opts, labels);
        self.register(metric.expect("constant metric definition"))
    }

    pub fn finish(self) -> Registry {
        self.registry
    }
}

/// The text exposition format of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding gathered families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_defined_metric_is_registered_and_rendered() {
        let r = Registrar::new();
        let c = r.counter("idsync_test_total", "A test counter.", &["kind"]);
        c.with_label_values(&["Workspace"]).inc();
        let text = render(&r.finish());
        assert!(
            text.contains("idsync_test_total{kind=\"Workspace\"} 1"),
            "{text}"
        );
    }
}
