//! What the reconcilers read instead of the apiserver: reflector stores shared by
//! every controller that needs a kind, filled by one watch each, and the values of
//! the few Secrets the operator reads.
//!
//! Memory: objects enter a store without `metadata.managedFields` and without
//! kubectl's last-applied annotation (together usually larger than the spec), and
//! Secrets are watched as metadata only, so no Secret value sits in a store.
//!
//! Scope: every watch here covers one [`Scope`], the whole cluster or one
//! namespace. With `--watch-namespaces a,b` the operator builds one complete set
//! of stores and controllers per namespace instead of feeding one store from
//! several namespaced watches: a reflector `Writer` replaces its whole content on
//! each watch's (re)list (`Init`..`InitDone`), so a second watch would wipe the
//! first one's objects. Cross-object references never leave a namespace, so
//! nothing needs a view across them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use k8s_openapi::{ByteString, NamespaceResourceScope, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, ReflectHandle, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Annotation `kubectl apply` (client-side) fills with a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Events a shared watch buffers for a controller that has not taken them yet.
const SHARED_BUFFER: usize = 1024;

/// What one set of watches covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (`--watch-namespaces` unset): needs cluster-wide list/watch.
    Cluster,
    /// One namespace: needs list/watch in that namespace only.
    Namespace(String),
}

impl Scope {
    /// The scopes of `--watch-namespaces`: the cluster when the list is empty,
    /// else each distinct namespace once.
    pub fn from_namespaces(namespaces: &[String]) -> Vec<Scope> {
        let mut names: Vec<&str> = namespaces
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            return vec![Scope::Cluster];
        }
        names
            .into_iter()
            .map(|n| Scope::Namespace(n.to_string()))
            .collect()
    }

    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Drops what no reconciler reads before an object enters a store.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A watch, slimmed and with client-go's backoff on errors.
fn watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, cfg).default_backoff().modify(slim::<K>)
}

/// A store of one kind for one controller, and the stream that fills it (the
/// controller's own trigger).
pub fn owned<K>(
    client: &Client,
    scope: &Scope,
    cfg: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = watcher::Result<K>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watch(scope.api::<K>(client), cfg)
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

/// A store shared by several controllers: one watch, fanned out to subscribers.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: Writer<K>,
    /// Turns true once the store holds its first full list.
    ready: watch::Sender<bool>,
}

/// Whether a shared store holds its first full list, for any number of waiters.
///
/// Not `Store::wait_until_ready`: kube-runtime 5's `DelayedInit` keeps only the
/// last waiter's waker (a `futures` oneshot receiver), so when several
/// reconciles wait on one store at once, all but one may never wake. That hung
/// a standby's first reconciles after it took the lease.
#[derive(Clone)]
pub struct Readiness(watch::Receiver<bool>);

impl Readiness {
    /// Waits until the store is filled (returns at once if the watch is gone,
    /// i.e. the operator is shutting down).
    pub async fn wait(&self) {
        let _ = self.0.clone().wait_for(|ready| *ready).await;
    }
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store_shared(SHARED_BUFFER);
        let (ready, _) = watch::channel(false);
        Self {
            store,
            writer,
            ready,
        }
    }

    pub fn readiness(&self) -> Readiness {
        Readiness(self.ready.subscribe())
    }

    /// A stream of the objects as they change, for one more controller. Take every
    /// subscription before [`Self::run`].
    pub fn subscribe(&self) -> ReflectHandle<K> {
        // `store_shared` always creates the dispatcher `subscribe` reads, so this
        // is `Some` for every `Shared`.
        self.writer
            .subscribe()
            .expect("a shared store's writer can always be subscribed to")
    }

    /// Drives the watch that fills the store and feeds the subscribers. Runs
    /// until the process stops; watch errors are retried with backoff.
    pub fn run(
        self,
        events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    ) -> futures::future::BoxFuture<'static, ()> {
        let kind = K::kind(&()).to_string();
        let ready = self.ready;
        // `reflect_shared` yields an event after applying it to the store, so the
        // store is filled when `InitDone` comes out.
        Box::pin(events.reflect_shared(self.writer).for_each(move |event| {
            match event {
                Ok(watcher::Event::InitDone) => {
                    ready.send_replace(true);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
            futures::future::ready(())
        }))
    }
}

/// The full-object watch of a shared kind.
pub fn full<K>(
    client: &Client,
    scope: &Scope,
    cfg: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    watch(scope.api::<K>(client), cfg)
}

/// The watch of every ClusterIdentityService (cluster-scoped, whatever the
/// scope of the rest).
pub fn cluster_services(
    client: &Client,
) -> impl Stream<Item = watcher::Result<watcher::Event<crate::api::ClusterIdentityService>>>
+ Send
+ 'static {
    watch(
        Api::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
}

/// The metadata-only watch of every Secret in the scope
/// (`Api<PartialObjectMeta<_>>` makes metadata-only list and watch requests).
pub fn secret_metadata(
    client: &Client,
    scope: &Scope,
) -> impl Stream<Item = watcher::Result<watcher::Event<PartialObjectMeta<Secret>>>> + Send + 'static
{
    watch(
        scope.api::<PartialObjectMeta<Secret>>(client),
        watcher::Config::default(),
    )
}

type SecretData = Arc<BTreeMap<String, ByteString>>;
type Labels = BTreeMap<String, String>;
/// A value read directly from the apiserver, and when.
type Fetched<T> = (Instant, T);

/// Stores the reconcilers read, and the values of the Secrets they read.
///
/// A Secret's value is fetched once per `resourceVersion` the metadata store
/// reports: an unchanged Secret costs no request. Only Secrets a resource names
/// are ever fetched. Nothing here is `Debug`, so no value reaches a log.
pub struct Caches {
    client: Client,
    pub services: Store<crate::api::IdentityService>,
    pub cluster_services: Store<crate::api::ClusterIdentityService>,
    pub workspaces: Store<crate::api::Workspace>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    filled: [Readiness; 4],
    values: Mutex<HashMap<ObjectRef<Secret>, (String, SecretData)>>,
    /// Namespace labels and Secrets outside the watched scope, read directly
    /// and kept for [`DIRECT_TTL`].
    namespace_labels: Mutex<HashMap<String, Fetched<Arc<Labels>>>>,
    direct_secrets: Mutex<HashMap<ObjectRef<Secret>, Fetched<Option<SecretData>>>>,
}

/// How long a directly read namespace's labels or Secret are reused: a
/// namespace newly labelled for a ClusterIdentityService (or a rotated admin
/// token) takes effect within this.
const DIRECT_TTL: Duration = Duration::from_secs(10);

impl Caches {
    pub fn new(
        client: Client,
        services: &Shared<crate::api::IdentityService>,
        cluster_services: &Shared<crate::api::ClusterIdentityService>,
        workspaces: &Shared<crate::api::Workspace>,
        secrets: &Shared<PartialObjectMeta<Secret>>,
    ) -> Self {
        Self {
            client,
            services: services.store.clone(),
            cluster_services: cluster_services.store.clone(),
            workspaces: workspaces.store.clone(),
            secrets: secrets.store.clone(),
            filled: [
                services.readiness(),
                cluster_services.readiness(),
                workspaces.readiness(),
                secrets.readiness(),
            ],
            values: Mutex::new(HashMap::new()),
            namespace_labels: Mutex::new(HashMap::new()),
            direct_secrets: Mutex::new(HashMap::new()),
        }
    }

    pub fn cluster_service(&self, name: &str) -> Option<Arc<crate::api::ClusterIdentityService>> {
        self.cluster_services.get(&ObjectRef::new(name))
    }

    /// A namespace's labels (for ClusterIdentityService selectors).
    pub async fn namespace_labels(
        &self,
        name: &str,
    ) -> kube::Result<Arc<BTreeMap<String, String>>> {
        if let Some((at, labels)) = self
            .namespace_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            && at.elapsed() < DIRECT_TTL
        {
            return Ok(labels.clone());
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let labels = Arc::new(
            api.get_opt(name)
                .await?
                .and_then(|n| n.metadata.labels)
                .unwrap_or_default(),
        );
        self.namespace_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (Instant::now(), labels.clone()));
        Ok(labels)
    }

    /// A Secret's data read directly (the operator's own namespace, which a
    /// namespace-scoped install need not watch).
    pub async fn direct_secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<SecretData>> {
        let key = ObjectRef::<Secret>::new(name).within(namespace);
        if let Some((at, data)) = self
            .direct_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < DIRECT_TTL
        {
            return Ok(data.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let data = api
            .get_opt(name)
            .await?
            .map(|s| Arc::new(s.data.unwrap_or_default()));
        self.direct_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), data.clone()));
        Ok(data)
    }

    /// Waits until every store has its first full list, so a reconcile never
    /// mistakes a cache still filling for a missing object. Every reconcile
    /// calls this, many at once.
    pub async fn ready(&self) {
        for store in &self.filled {
            store.wait().await;
        }
    }

    pub fn workspace(&self, namespace: &str, name: &str) -> Option<Arc<crate::api::Workspace>> {
        self.workspaces.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<crate::api::IdentityService>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    /// The data of a Secret, fetched only when its `resourceVersion` changed.
    pub async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<SecretData>> {
        let key = ObjectRef::<Secret>::new(name).within(namespace);
        let Some(meta) = self
            .secrets
            .get(&ObjectRef::<PartialObjectMeta<Secret>>::new(name).within(namespace))
        else {
            self.values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return Ok(None);
        };
        let version = meta.resource_version().unwrap_or_default();
        if let Some((v, data)) = self
            .values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *v == version
        {
            return Ok(Some(data.clone()));
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let data: SecretData = Arc::new(secret.data.unwrap_or_default());
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                (
                    secret.metadata.resource_version.unwrap_or_default(),
                    data.clone(),
                ),
            );
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    /// Many reconciles wait for a shared store at once (a standby that just took
    /// the lease starts all of them together); every one must wake when the
    /// store is filled, not only the last to wait.
    #[tokio::test]
    async fn every_waiter_wakes_when_the_store_is_filled() {
        let shared = Shared::<ConfigMap>::new();
        let store = shared.store.clone();
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let ready = shared.readiness();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        // Let every waiter register before the list arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _subscriber = shared.subscribe();
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(cm)),
            Ok(watcher::Event::InitDone),
        ])
        .chain(futures::stream::pending());
        tokio::spawn(shared.run(events));
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was never woken")
                .expect("waiter task");
        }
        assert_eq!(store.state().len(), 1, "the store is filled when they wake");
    }

    #[test]
    fn watch_namespaces_become_one_scope_each_or_the_cluster() {
        assert_eq!(Scope::from_namespaces(&[]), vec![Scope::Cluster]);
        assert_eq!(
            Scope::from_namespaces(&[String::new()]),
            vec![Scope::Cluster]
        );
        assert_eq!(
            Scope::from_namespaces(&["b".into(), " a ".into(), "b".into(), "".into()]),
            vec![Scope::Namespace("a".into()), Scope::Namespace("b".into())]
        );
    }
}
