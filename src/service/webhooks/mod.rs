//! Delivering events to webhook endpoints, the Standard Webhooks way
//! ([`crate::webhook_signing`]), so a receiver verifies with the `standardwebhooks` or
//! `svix` libraries.
//!
//! At least once, each subject's events in order: an endpoint's cursor
//! moves past an event only once every event before it was answered with a
//! 2xx; up to [`pass::CONCURRENCY`] deliveries are in flight to an endpoint,
//! never two of one member or group. A failure is retried with the same
//! `webhook-id` on an exponential schedule with jitter; 410 Gone, or failing
//! for the whole schedule (about three days), disables the endpoint until a
//! replay. Only the replica holding an endpoint's claim delivers to it, and
//! a slow endpoint delays no other: each claimed pass runs as its own task.

mod pass;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use tokio::task::JoinSet;

pub use crate::webhook_signing::{Signer, key_of, signature};
pub use pass::{CONCURRENCY, RETRY_AFTER, wants};

use crate::{
    admin::WebhookDoc,
    outbound::{ClientOptions, Guarded, OutboundPolicy},
    service::{
        metrics::ServiceMetrics,
        store::{Cursor, ObjectKind, PassEnd, Result, Store, StoredObject, now_millis},
    },
};

/// How often endpoints are looked at: the delay an event waits at most
/// before its first delivery starts.
const TICK: Duration = Duration::from_millis(250);
/// How long a claim lasts: a pass starts no delivery after [`PASS_FOR`],
/// and one started then ends within the outbound timeout, inside the claim.
const CLAIM_FOR: Duration = Duration::from_secs(60);
const PASS_FOR: Duration = Duration::from_secs(40);
/// A receiver has this long to answer (and to be connected to).
const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Events read per claimed pass.
const BATCH: i64 = 1000;

/// An endpoint: its workspace and name.
type Key = (String, String);

/// An endpoint's signer, replaced whole when its secrets change.
type SharedSigner = Arc<RwLock<Arc<Signer>>>;

/// The delivery loop of a service replica.
pub struct Deliverer {
    store: Store,
    metrics: ServiceMetrics,
    policy: OutboundPolicy,
    /// The wait before each retry of a failing endpoint.
    retry_after: Vec<Duration>,
    /// One client per CA bundle (none for the system's roots), so pooled
    /// connections are reused across passes.
    clients: Mutex<HashMap<Option<String>, Guarded>>,
    /// Endpoints this replica is in a pass over.
    busy: Mutex<HashSet<Key>>,
    /// Each endpoint's signing secrets as last read and their signer,
    /// refreshed every tick, so a pass in flight signs with a rotation's new
    /// secret within a tick of it.
    secrets: Mutex<HashMap<Key, (Vec<String>, SharedSigner)>>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        policy: OutboundPolicy,
        retry_after: Vec<Duration>,
        metrics: ServiceMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            policy,
            retry_after,
            clients: Mutex::default(),
            busy: Mutex::default(),
            secrets: Mutex::default(),
        })
    }

    /// Runs until `stop` resolves. Passes in flight are dropped with it:
    /// their claims run out and another pass delivers again, same ids.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut passes = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(TICK) => {
                    while passes.try_join_next().is_some() {}
                    if let Err(e) = self.start_due(&mut passes).await {
                        tracing::warn!(error = %e, "looking for webhook deliveries failed");
                    }
                }
            }
        }
        passes.abort_all();
    }

    /// Starts a pass over each endpoint that is due, not in a pass here,
    /// and claimed.
    async fn start_due(self: &Arc<Self>, passes: &mut JoinSet<()>) -> Result<()> {
        let objects = self.store.list_objects(ObjectKind::Webhook, None).await?;
        self.refresh_secrets(&objects);
        for object in objects {
            let key = (object.workspace.clone(), object.name.clone());
            if self.lock_busy().contains(&key) {
                continue;
            }
            let now = now_millis();
            if !self.store.webhook_due(&key.0, &key.1, now).await? {
                continue;
            }
            let until = now + CLAIM_FOR.as_millis() as i64;
            let since = (key.0.as_str(), key.1.as_str(), object.created_at);
            let Some(cursor) = self.store.claim_webhook(since, now, until).await? else {
                continue;
            };
            self.lock_busy().insert(key.clone());
            let this = self.clone();
            passes.spawn(async move {
                this.passes(object, cursor).await;
                this.lock_busy().remove(&key);
            });
        }
        Ok(())
    }

    /// Claimed passes one after another while each delivers a whole batch
    /// (a backlog drains at the receiver's pace, not a batch per tick), each
    /// recorded and claimed again, so a replica killed in the middle loses
    /// at most one batch's progress.
    async fn passes(&self, first: StoredObject, mut cursor: Cursor) {
        let (workspace, name) = (first.workspace.as_str(), first.name.as_str());
        let mut object = first.clone();
        loop {
            match self.pass(&object, &cursor).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(workspace, webhook = name, error = %e,
                        "a webhook delivery pass failed; its claim runs out and it is retried");
                    return;
                }
            }
            let now = now_millis();
            let until = now + CLAIM_FOR.as_millis() as i64;
            // Read again: a change of URL applies from the next batch on.
            match self
                .store
                .get_object(ObjectKind::Webhook, workspace, name)
                .await
            {
                Ok(Some(current)) if current.created_at == first.created_at => object = current,
                // Deleted (or deleted and declared again: a new endpoint).
                _ => return,
            }
            let since = (workspace, name, object.created_at);
            match self.store.claim_webhook(since, now, until).await {
                Ok(Some(next)) => cursor = next,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(workspace, webhook = name, error = %e,
                        "claiming a webhook for its next batch failed; the next tick tries again");
                    return;
                }
            }
        }
    }

    /// One claimed pass: deliver what follows the cursor, record where it
    /// ends; answers whether it delivered a whole batch cleanly (more may
    /// follow at once).
    async fn pass(&self, object: &StoredObject, cursor: &Cursor) -> Result<bool> {
        let endpoint = (object.workspace.as_str(), object.name.as_str());
        let deadline = Instant::now() + PASS_FOR;
        let doc = serde_json::from_value::<WebhookDoc>(object.body.clone());
        let events = self
            .store
            .events_after(endpoint.0, cursor.delivered_seq, BATCH)
            .await?;
        let end = match (doc, self.client(object)) {
            // Pruned (or deleted with a workspace) under the cursor: catch up.
            (_, _) if events.is_empty() => PassEnd {
                delivered_seq: cursor.last.max(cursor.delivered_seq),
                attempts: 0,
                succeeded: false,
                failure: None,
            },
            (Ok(doc), Some(http)) => {
                let signer = self.signer_of(endpoint, &doc);
                let ep = pass::Endpoint {
                    workspace: endpoint.0,
                    name: endpoint.1,
                    doc: &doc,
                    signer: &signer,
                    url: http.checked_url(&doc.url),
                    http: &http,
                    retry_after: &self.retry_after,
                };
                pass::run(&ep, cursor, &events, &self.metrics, deadline).await
            }
            // Validated on the way in: only a document of another version
            // lands here, and waits (its claim runs out) for a new one.
            _ => return Ok(false),
        };
        let more = events.len() as i64 == BATCH
            && end.failure.is_none()
            && end.delivered_seq == events.last().map_or(0, |e| e.seq);
        self.store.finish_pass(endpoint, &end, now_millis()).await?;
        Ok(more)
    }

    /// The client for an endpoint's CA bundle, built once.
    fn client(&self, object: &StoredObject) -> Option<Guarded> {
        let bundle = object.body["caBundle"].as_str().map(str::to_string);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&bundle) {
            return Some(client.clone());
        }
        let options = ClientOptions {
            connect_timeout: CONNECT_TIMEOUT,
            timeout: TIMEOUT,
            ca_bundle: bundle.clone(),
        };
        let client = Guarded::new(self.policy.clone(), &options)
            .inspect_err(|e| {
                tracing::warn!(workspace = %object.workspace,
                webhook = %object.name, error = %e, "a webhook's client cannot be built")
            })
            .ok()?;
        clients.insert(bundle, client.clone());
        Some(client)
    }

    /// Brings each endpoint's signer up to date, and forgets deleted ones.
    fn refresh_secrets(&self, objects: &[StoredObject]) {
        let mut all = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let mut live = HashMap::new();
        for object in objects {
            let key = (object.workspace.clone(), object.name.clone());
            let Ok(doc) = serde_json::from_value::<WebhookDoc>(object.body.clone()) else {
                continue;
            };
            let (known, slot) = all.remove(&key).unwrap_or_default();
            if known != doc.secrets {
                // Written only whole; a poisoned lock still holds a signer.
                *slot.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(Signer::new(&doc.secrets));
            }
            live.insert(key, (doc.secrets, slot));
        }
        *all = live;
    }

    /// The shared signer of an endpoint (the document's, if it has none yet).
    fn signer_of(&self, (workspace, name): (&str, &str), doc: &WebhookDoc) -> SharedSigner {
        let mut all = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (workspace.to_string(), name.to_string());
        let (_, slot) = all.entry(key).or_insert_with(|| {
            let signer = Arc::new(Signer::new(&doc.secrets));
            (doc.secrets.clone(), Arc::new(RwLock::new(signer)))
        });
        slot.clone()
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        // The set stays consistent whatever panicked while holding it.
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }
}
