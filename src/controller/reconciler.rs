//! What each namespaced kind the operator reconciles provides ([`Reconciler`]),
//! and the one function that wires any of them into a kube-runtime `Controller`
//! ([`run`]): the finalizer, the metrics, the error policy, the resync walk and the
//! watches of what the kind refers to.

use std::{future::Future, sync::Arc, time::Instant};

use futures::StreamExt;
use k8s_openapi::{NamespaceResourceScope, api::core::v1::Secret};
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller,
        controller::{Action, Config},
        finalizer::{self, Event as FinalizerEvent},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Context, Error, FINALIZER, Result, Runner, cache, context::obj_key, metrics::Kind, resync,
};
use crate::api::{ClusterIdentityService, IdentityService, ServiceKind, ServiceRef, Workspace};

/// A kind of object another kind may refer to: its controller watches exactly
/// the ones it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Referent {
    Secrets,
    Workspace,
    Service,
}

/// What one object refers to, in its own namespace.
#[derive(Debug, Default)]
pub struct References<'a> {
    pub secrets: Vec<String>,
    pub workspace: Option<&'a str>,
    pub service: Option<&'a ServiceRef>,
}

/// A namespaced kind the operator reconciles.
pub trait Reconciler:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    const REFERS_TO: &'static [Referent];

    /// Brings the identity service in line with the object, and its status with
    /// what was found.
    fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> impl Future<Output = Result<Action>> + Send;

    /// Undoes what `apply` did, as the object's deletion policy says.
    fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> impl Future<Output = Result<Action>> + Send;

    /// What the object refers to; a change to any of it reconciles the object.
    fn references(&self) -> References<'_>;
}

/// One reconcile: apply or clean up behind the finalizer, counted and timed.
#[tracing::instrument(skip_all, fields(kind = K::KIND.as_str(), object = %obj_key(obj.as_ref())))]
async fn reconcile<K: Reconciler>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    ctx.targets.caches.ready().await;
    let started = Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer::finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(o) => K::apply(o, ctx.clone()).await,
            FinalizerEvent::Cleanup(o) => K::cleanup(o, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.observe(K::KIND, ObjectRef::from_obj(obj.as_ref()), started, &result);
    result
}

/// Transient failures back off exponentially with jitter; configuration problems
/// wait for a change (a watch event) or the periodic resync, never a hot loop.
pub fn error_policy<K: Resource<DynamicType = ()> + ResourceExt>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let retry = err
        .is_transient()
        .then(|| ctx.backoff(&ObjectRef::from_obj(obj.as_ref())));
    tracing::warn!(
        kind = %K::kind(&()),
        object = %obj_key(obj.as_ref()),
        reason = err.reason(),
        error = %err,
        retry_in = ?retry,
        "reconcile failed"
    );
    retry.map_or_else(Action::await_change, Action::requeue)
}

/// What every controller is wired to: the shared watches a kind may subscribe
/// to, the context, and the concurrency limit.
pub struct Wiring<'a> {
    pub services: &'a cache::Shared<IdentityService>,
    pub cluster_services: &'a cache::Shared<ClusterIdentityService>,
    pub workspaces: &'a cache::Shared<Workspace>,
    pub secrets: &'a cache::Shared<PartialObjectMeta<Secret>>,
    pub ctx: &'a Arc<Context>,
    pub limits: Config,
}

/// Runs `controller` (built on the kind's own trigger and store) with the
/// watches of what the kind refers to and the paced resync.
pub fn run<K: Reconciler>(controller: Controller<K>, shared: &Wiring<'_>) -> Runner {
    let ctx = shared.ctx;
    let store = controller.store();
    let mut controller = controller.with_config(shared.limits.clone());
    if K::REFERS_TO.contains(&Referent::Secrets) {
        controller = controller.watches_shared_stream(
            shared.secrets.subscribe(),
            referring(store.clone(), |o: &K, s: &PartialObjectMeta<Secret>| {
                same_namespace(o, s) && o.references().secrets.contains(&s.name_any())
            }),
        );
    }
    if K::REFERS_TO.contains(&Referent::Workspace) {
        controller = controller.watches_shared_stream(
            shared.workspaces.subscribe(),
            referring(store.clone(), |o: &K, w: &Workspace| {
                same_namespace(o, w) && o.references().workspace == Some(w.name_any().as_str())
            }),
        );
    }
    if K::REFERS_TO.contains(&Referent::Service) {
        controller = controller
            .watches_shared_stream(
                shared.services.subscribe(),
                referring(store.clone(), |o: &K, s: &IdentityService| {
                    same_namespace(o, s)
                        && names(o.references().service, ServiceKind::IdentityService, s)
                }),
            )
            .watches_shared_stream(
                shared.cluster_services.subscribe(),
                referring(store.clone(), |o: &K, s: &ClusterIdentityService| {
                    names(
                        o.references().service,
                        ServiceKind::ClusterIdentityService,
                        s,
                    )
                }),
            );
    }
    let stream = controller
        .reconcile_on(resync::paced(store, ctx.clone(), K::KIND))
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy, ctx.clone());
    drain(stream)
}

fn same_namespace(a: &impl ResourceExt, b: &impl ResourceExt) -> bool {
    a.namespace() == b.namespace()
}

fn names(service: Option<&ServiceRef>, kind: ServiceKind, svc: &impl ResourceExt) -> bool {
    service.is_some_and(|r| r.kind() == kind && r.name == svc.name_any())
}

/// Maps a changed object to the objects of `store` that refer to it.
fn referring<K, O>(
    store: Store<K>,
    refers: impl Fn(&K, &O) -> bool + Send + Sync + 'static,
) -> impl Fn(Arc<O>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    move |other| {
        store
            .state()
            .iter()
            .filter(|o| refers(o, &other))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

/// Drives a controller stream to completion, logging each result at debug.
pub fn drain<K, S>(stream: S) -> Runner
where
    K: Resource<DynamicType = ()> + 'static,
    S: futures::Stream<
            Item = std::result::Result<
                (ObjectRef<K>, Action),
                kube::runtime::controller::Error<Error, watcher::Error>,
            >,
        > + Send
        + 'static,
{
    Box::pin(stream.for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "controller");
        }
    }))
}
