//! What every reconciler shares.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Client, Resource, ResourceExt,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
    },
};

use super::{metrics::OperatorMetrics, target::ServiceTargets};

/// Shared by all controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: OperatorMetrics,
    pub targets: ServiceTargets,
    /// How often a resource is re-checked against the identity service (drift).
    pub resync: Duration,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BASE_BACKOFF: Duration = Duration::from_millis(500);

impl Context {
    pub fn new(client: Client, metrics: OperatorMetrics, resync: Duration) -> Arc<Self> {
        let reporter = Reporter {
            controller: "idsync-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            targets: ServiceTargets::new(client.clone(), metrics.clone()),
            client,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes an Event about `obj`. Failures to publish are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an event");
        }
    }

    fn key<K: Resource<DynamicType = ()>>(obj: &ObjectRef<K>) -> String {
        format!("{}/{}", K::kind(&()), obj)
    }

    /// Next retry delay for an object that just failed: exponential with full
    /// jitter, capped.
    pub fn backoff<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(Self::key(obj)).or_insert(0);
        *n = n.saturating_add(1);
        let ceiling = BASE_BACKOFF
            .saturating_mul(1u32 << (*n - 1).min(12))
            .min(MAX_BACKOFF);
        let mut byte = [0u8; 2];
        let _ = crate::token::random_bytes(&mut byte);
        let fraction = u16::from_le_bytes(byte) as f64 / u16::MAX as f64;
        // Half fixed, half random: never hot-loops, never synchronizes retries.
        ceiling.mul_f64(0.5 + 0.5 * fraction)
    }

    /// Forgets an object's failures after a success.
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Self::key(obj));
    }
}

/// `namespace/name` of an object, for logs and messages.
pub fn obj_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
