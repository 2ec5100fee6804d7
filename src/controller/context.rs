//! What every reconciler shares.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
    },
};

use super::{
    cache::Caches,
    error::Result,
    metrics::{Kind, OperatorMetrics},
    target::ServiceTargets,
};
use crate::outbound::{ClientOptions, Guarded, OutboundPolicy};

/// Shared by all controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// `reportingInstance` of the Events this replica creates.
    reporting_instance: String,
    pub metrics: OperatorMetrics,
    pub targets: ServiceTargets,
    /// The guarded client IdP checks go through.
    pub outbound: Guarded,
    /// How often a resource is re-checked against the identity service (drift).
    pub resync: Duration,
    /// Reconciles each controller runs at once.
    concurrency: u16,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Running mean of reconcile durations per kind, in seconds (resync pacing).
    mean_durations: Mutex<HashMap<Kind, f64>>,
}

/// Share of a controller's reconcile slots resyncs may fill. The rest stays free
/// for new and changed objects.
const RESYNC_SHARE: f64 = 0.5;
/// Weight of the latest reconcile in the running mean of reconcile durations.
const DURATION_WEIGHT: f64 = 0.05;
/// Longest gap between two resyncs of one kind.
const MAX_RESYNC_GAP: Duration = Duration::from_secs(60);

/// `reportingController` of every Event.
const REPORTING_CONTROLLER: &str = "idsync-operator";

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// How the operator runs, resolved from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often every resource is compared with the identity service.
    pub resync: Duration,
    /// Reconciles each controller runs at once.
    pub concurrency: u16,
    /// Which addresses IdP checks and admin calls may reach.
    pub outbound: OutboundPolicy,
    /// This cluster's name in workspace claims (`--cluster-name`).
    pub cluster: String,
    /// Where ClusterIdentityServices keep their Secrets.
    pub operator_namespace: String,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: OperatorMetrics,
        settings: &Settings,
        caches: Caches,
    ) -> Arc<Self> {
        let Settings {
            resync,
            concurrency,
            outbound,
            cluster,
            operator_namespace,
        } = settings.clone();
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            reporting_instance: reporter
                .instance
                .clone()
                .unwrap_or_else(|| REPORTING_CONTROLLER.into()),
            recorder: Recorder::new(client.clone(), reporter),
            targets: ServiceTargets::new(
                client.clone(),
                metrics.clone(),
                caches,
                outbound.clone(),
                cluster,
                operator_namespace,
            ),
            outbound: Guarded::new(outbound.clone(), &ClientOptions::default())
                // The default options carry no CA bundle, the only input that
                // can make building a client fail.
                .expect("the outbound client builds"),
            client,
            metrics,
            resync,
            concurrency: concurrency.max(1),
            failures: Mutex::new(HashMap::new()),
            mean_durations: Mutex::new(HashMap::new()),
        })
    }

    /// Records a finished reconcile: its duration (histogram and resync pacing),
    /// its result, and on success forgets the object's failures.
    pub fn observe<K: Resource<DynamicType = ()>>(
        &self,
        kind: Kind,
        obj: ObjectRef<K>,
        started: Instant,
        result: &Result<Action>,
    ) {
        let took = started.elapsed().as_secs_f64();
        self.metrics
            .reconcile_duration
            .with_label_values(&[kind.as_str()])
            .observe(took);
        let label = match result {
            Ok(_) => "ok",
            Err(e) => e.metric_label(),
        };
        self.metrics
            .reconciles
            .with_label_values(&[kind.as_str(), label])
            .inc();
        if result.is_ok() {
            self.succeeded(&obj);
        }
        self.mean_durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .and_modify(|mean| *mean += DURATION_WEIGHT * (took - *mean))
            .or_insert(took);
    }

    /// Time between two resyncs of `kind` when a pass covers `objects`: the
    /// period spread evenly, but at least `mean reconcile time / (concurrency ×
    /// RESYNC_SHARE)`, so resyncs alone never fill more than half the
    /// controller's slots; when a period is too short for the number of
    /// objects, the pass stretches rather than starve new work.
    pub fn resync_gap(&self, kind: Kind, objects: usize) -> Duration {
        let even = self.resync.div_f64(objects.max(1) as f64);
        let mean = self
            .mean_durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kind)
            .copied()
            .unwrap_or(0.0);
        let paced = Duration::from_secs_f64(mean / (f64::from(self.concurrency) * RESYNC_SHARE));
        even.max(paced.min(MAX_RESYNC_GAP))
    }

    /// Whether something due in `until` must be scheduled for the object, or
    /// the next resync pass comes soon enough.
    pub fn due_before_resync(&self, until: Duration) -> bool {
        until < self.resync.mul_f64(1.2)
    }

    /// Publishes an Event about `obj`. Failures to publish are logged, never fatal.
    ///
    /// Warnings go through kube-runtime's [`Recorder`], which folds a repeat (the
    /// same drift corrected every resync) into one Event's series. That needs a
    /// cache of every Event published in the last six minutes, and at thousands
    /// of resources the one-off Normal events (synced, issued, rotated) would fill
    /// it; those are created directly instead, cached nowhere.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let reference = obj.object_ref(&());
        let result = match type_ {
            EventType::Warning => {
                let event = Event {
                    type_,
                    reason: reason.into(),
                    note: Some(note),
                    action: reason.into(),
                    secondary: None,
                };
                self.recorder.publish(&event, &reference).await
            }
            EventType::Normal => self.create_event(reference, reason, note).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not publish an event");
        }
    }

    /// Creates a Normal `events.k8s.io/v1` Event, as the Recorder would.
    async fn create_event(
        &self,
        regarding: ObjectReference,
        reason: &str,
        note: String,
    ) -> kube::Result<()> {
        let now = jiff::Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(REPORTING_CONTROLLER),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(reason.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some("Normal".into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(self.reporting_instance.clone()),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
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
        // Half fixed, half random: never hot-loops, never synchronizes retries.
        ceiling.mul_f64(0.5 + 0.5 * random_fraction())
    }

    /// Forgets an object's failures after a success.
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, obj: &ObjectRef<K>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Self::key(obj));
    }
}

/// A uniform number in [0, 1] for jitter (0 if the OS random source fails,
/// which only removes the jitter).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = crate::token::random_bytes(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX)
}

/// `namespace/name` of an object, for logs and messages.
pub fn obj_key<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
