//! The operator (`idsync operator`): one kube-runtime `Controller` per kind, sharing
//! a [`Context`], running only on the replica that holds the leader `Lease`.

mod cache;
mod context;
mod error;
mod identity_service;
mod keyring;
mod metrics;
mod owned_secret;
mod resync;
mod role_mapping;
mod scim_token;
mod sso_connection;
mod status;
mod sync;
mod target;
mod validation;
mod workspace;

use std::{
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller,
        controller::Action,
        finalizer::{self, Event as FinalizerEvent},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};

pub use context::Context;
pub use error::{Error, Result};
pub use metrics::OperatorMetrics;

use crate::api::{
    ClusterIdentityService, IdentityService, RoleMapping, ScimToken, ServiceKind, SsoConnection,
    Workspace,
};
use crate::outbound::OutboundPolicy;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "idsync-operator";
/// Finalizer on every idsync resource the operator has synced.
pub const FINALIZER: &str = "idsync.dev/cleanup";

/// How `idsync operator` runs, resolved from its flags (`cli::operator`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: SocketAddr,
    /// The leader Lease's namespace (default: the client's namespace).
    pub lease_namespace: Option<String>,
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else host and pid).
    pub identity: Option<String>,
    /// Seconds a leader's Lease lasts without renewal.
    pub lease_duration: u64,
    /// Namespaces to watch (empty: every namespace).
    pub watch_namespaces: Vec<String>,
    pub resync: Duration,
    pub concurrency: u16,
    pub outbound: OutboundPolicy,
    /// This cluster's name in workspace claims.
    pub cluster_name: String,
    /// Where ClusterIdentityServices keep their Secrets (default: the client's namespace).
    pub operator_namespace: Option<String>,
}

/// Finalizer wrapper shared by every kind: apply or clean up, count, time.
async fn reconcile<K, A, C, FA, FC>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    apply: A,
    cleanup: C,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    A: FnOnce(Arc<K>, Arc<Context>) -> FA,
    C: FnOnce(Arc<K>, Arc<Context>) -> FC,
    FA: Future<Output = Result<Action>>,
    FC: Future<Output = Result<Action>>,
{
    let kind = K::kind(&());
    let _timer = ctx.metrics.time_reconcile(static_kind(&kind));
    ctx.targets.caches.ready().await;
    let started = Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer::finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(o, ctx.clone()).await,
            FinalizerEvent::Cleanup(o) => cleanup(o, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.record_duration(static_kind(&kind), started.elapsed());
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    };
    ctx.metrics
        .reconciles
        .with_label_values(&[static_kind(&kind), label])
        .inc();
    if result.is_ok() {
        ctx.succeeded(&ObjectRef::from_obj(obj.as_ref()));
    }
    result
}

fn static_kind(kind: &str) -> &'static str {
    match kind {
        "IdentityService" => "IdentityService",
        "Workspace" => "Workspace",
        "SSOConnection" => "SSOConnection",
        "SCIMToken" => "SCIMToken",
        "RoleMapping" => "RoleMapping",
        "ClusterIdentityService" => "ClusterIdentityService",
        _ => "Other",
    }
}

/// Transient failures back off exponentially with jitter; configuration problems
/// wait for a change (a watch event) or the periodic resync, never a hot loop.
fn error_policy<K: Resource<DynamicType = ()> + ResourceExt>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    // A configuration problem waits for a change or the next resync pass.
    let retry = err
        .is_transient()
        .then(|| ctx.backoff(&ObjectRef::from_obj(obj.as_ref())));
    tracing::warn!(
        kind = %K::kind(&()),
        object = %context::obj_key(obj.as_ref()),
        reason = err.reason(),
        error = %err,
        retry_in = ?retry,
        "reconcile failed"
    );
    retry.map_or_else(Action::await_change, Action::requeue)
}

/// Maps a Secret (metadata) to the objects of a store that name it.
fn secrets_named<K, F>(
    store: Store<K>,
    names: F,
) -> impl Fn(Arc<PartialObjectMeta<Secret>>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    F: Fn(&K) -> Vec<String>,
{
    move |secret| {
        let ns = secret.namespace();
        let name = secret.name_any();
        store
            .state()
            .iter()
            .filter(|o| o.namespace() == ns && names(o).contains(&name))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

fn workspace_dependents<K, F>(
    store: Store<K>,
    workspace_of: F,
) -> impl Fn(Arc<Workspace>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    F: Fn(&K) -> String,
{
    move |ws| {
        let ns = ws.namespace();
        let name = ws.name_any();
        store
            .state()
            .iter()
            .filter(|o| o.namespace() == ns && workspace_of(o) == name)
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

type Runner = BoxFuture<'static, ()>;

/// Drives a controller stream to completion, logging each result at debug.
fn drain<K, S>(stream: S) -> Runner
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

/// The operator's futures: the controllers, and the shared watches that feed them
/// (which run until the process stops).
pub struct Operator {
    pub controllers: Vec<Runner>,
    pub watches: Vec<Runner>,
}

/// Every controller for one [`cache::Scope`] (see the `cache` module for why a
/// namespace list gets one set per namespace).
///
/// Watches: IdentityServices, Workspaces and Secret metadata are each watched once
/// and shared (one store, fanned out to every controller that needs them);
/// SSOConnections, SCIMTokens and RoleMappings have one watch and store each.
/// Every store holds slimmed objects ([`cache::slim`]).
fn controllers_in(
    client: Client,
    metrics: OperatorMetrics,
    settings: &context::Settings,
    scope: &cache::Scope,
    with_cluster_services: bool,
) -> Operator {
    let limits =
        kube::runtime::controller::Config::default().concurrency(settings.concurrency.max(1));
    let cfg = watcher::Config::default().any_semantic();

    let services = cache::Shared::<IdentityService>::new();
    let cluster_services = cache::Shared::<ClusterIdentityService>::new();
    let workspaces = cache::Shared::<Workspace>::new();
    let secrets = cache::Shared::<PartialObjectMeta<Secret>>::new();
    let (sso_store, sso_stream) = cache::owned::<SsoConnection>(&client, scope, cfg.clone());
    let (token_store, token_stream) = cache::owned::<ScimToken>(&client, scope, cfg.clone());
    let (mapping_store, mapping_stream) = cache::owned::<RoleMapping>(&client, scope, cfg.clone());

    let ctx = Context::new(
        client.clone(),
        metrics,
        settings,
        cache::Caches::new(
            client.clone(),
            &services,
            &cluster_services,
            &workspaces,
            &secrets,
        ),
    );

    let svc = Controller::for_shared_stream(services.subscribe(), services.store.clone())
        .with_config(limits.clone())
        .watches_shared_stream(
            secrets.subscribe(),
            secrets_named(services.store.clone(), |s: &IdentityService| {
                vec![s.spec.admin_token_secret_ref.name.clone()]
            }),
        )
        .reconcile_on(resync::paced(
            services.store.clone(),
            ctx.clone(),
            "IdentityService",
        ))
        .shutdown_on_signal()
        .run(
            |o, c| {
                reconcile(o, c, identity_service::apply, |_, _| async {
                    Ok(Action::await_change())
                })
            },
            error_policy,
            ctx.clone(),
        );

    let ws = {
        let store = workspaces.store.clone();
        Controller::for_shared_stream(workspaces.subscribe(), workspaces.store.clone())
            .with_config(limits.clone())
            .watches_shared_stream(services.subscribe(), {
                let store = store.clone();
                move |svc: Arc<IdentityService>| {
                    let ns = svc.namespace();
                    let name = svc.name_any();
                    store
                        .state()
                        .iter()
                        .filter(|w| {
                            w.namespace() == ns
                                && w.spec.service_ref.kind() == ServiceKind::IdentityService
                                && w.spec.service_ref.name == name
                        })
                        .map(|w| ObjectRef::from_obj(w.as_ref()))
                        .collect::<Vec<_>>()
                }
            })
            .watches_shared_stream(
                cluster_services.subscribe(),
                move |svc: Arc<ClusterIdentityService>| {
                    let name = svc.name_any();
                    store
                        .state()
                        .iter()
                        .filter(|w| {
                            w.spec.service_ref.kind() == ServiceKind::ClusterIdentityService
                                && w.spec.service_ref.name == name
                        })
                        .map(|w| ObjectRef::from_obj(w.as_ref()))
                        .collect::<Vec<_>>()
                },
            )
            .reconcile_on(resync::paced(
                workspaces.store.clone(),
                ctx.clone(),
                "Workspace",
            ))
            .shutdown_on_signal()
            .run(
                |o, c| reconcile(o, c, workspace::apply, workspace::cleanup),
                error_policy,
                ctx.clone(),
            )
    };

    let sso = Controller::for_stream(sso_stream, sso_store.clone())
        .with_config(limits.clone())
        .watches_shared_stream(
            secrets.subscribe(),
            secrets_named(sso_store.clone(), |c: &SsoConnection| {
                c.spec
                    .oidc
                    .iter()
                    .map(|o| o.client_secret_ref.name.clone())
                    .chain(
                        c.spec
                            .saml
                            .iter()
                            .filter_map(|s| s.metadata_ref.as_ref().map(|r| r.name.clone())),
                    )
                    .collect()
            }),
        )
        .watches_shared_stream(
            workspaces.subscribe(),
            workspace_dependents(sso_store.clone(), |c: &SsoConnection| {
                c.spec.workspace_ref.name.clone()
            }),
        )
        .reconcile_on(resync::paced(sso_store, ctx.clone(), "SSOConnection"))
        .shutdown_on_signal()
        .run(
            |o, c| reconcile(o, c, sso_connection::apply, sso_connection::cleanup),
            error_policy,
            ctx.clone(),
        );

    // A SCIMToken's Secret is found through its owner reference in the shared
    // Secret metadata watch.
    let tokens = Controller::for_stream(token_stream, token_store.clone())
        .with_config(limits.clone())
        .owns_shared_stream(secrets.subscribe())
        .watches_shared_stream(
            workspaces.subscribe(),
            workspace_dependents(token_store.clone(), |t: &ScimToken| {
                t.spec.workspace_ref.name.clone()
            }),
        )
        .reconcile_on(resync::paced(token_store, ctx.clone(), "SCIMToken"))
        .shutdown_on_signal()
        .run(
            |o, c| reconcile(o, c, scim_token::apply, scim_token::cleanup),
            error_policy,
            ctx.clone(),
        );

    let mappings = Controller::for_stream(mapping_stream, mapping_store.clone())
        .with_config(limits.clone())
        .watches_shared_stream(
            workspaces.subscribe(),
            workspace_dependents(mapping_store.clone(), |r: &RoleMapping| {
                r.spec.workspace_ref.name.clone()
            }),
        )
        .reconcile_on(resync::paced(mapping_store, ctx.clone(), "RoleMapping"))
        .shutdown_on_signal()
        .run(
            |o, c| reconcile(o, c, role_mapping::apply, role_mapping::cleanup),
            error_policy,
            ctx.clone(),
        );

    // One operator reconciles each ClusterIdentityService once, whatever the
    // number of namespace scopes it watches.
    let cluster = with_cluster_services.then(|| {
        let store = cluster_services.store.clone();
        drain(
            Controller::for_shared_stream(cluster_services.subscribe(), store.clone())
                .with_config(limits)
                .reconcile_on(resync::paced(store, ctx.clone(), "ClusterIdentityService"))
                .shutdown_on_signal()
                .run(identity_service::apply_cluster, error_policy, ctx.clone()),
        )
    });
    let watches = vec![
        cluster_services.run(cache::cluster_services(&client)),
        services.run(cache::full(&client, scope, cfg.clone())),
        workspaces.run(cache::full(&client, scope, cfg)),
        secrets.run(cache::secret_metadata(&client, scope)),
    ];
    let mut controllers = vec![
        drain(svc),
        drain(ws),
        drain(sso),
        drain(tokens),
        drain(mappings),
    ];
    controllers.extend(cluster);
    Operator {
        controllers,
        watches,
    }
}

/// Refuses to start when the CRDs are missing, with the command that installs them.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crdgen::all() {
        let name = crd.metadata.name.unwrap_or_default();
        if api.get_opt(&name).await?.is_none() {
            anyhow::bail!(
                "CustomResourceDefinition {name} is not installed: run `idsync crd | kubectl apply -f -` (or install the Helm chart)"
            );
        }
    }
    Ok(())
}

async fn serve_metrics(addr: SocketAddr, metrics: OperatorMetrics) -> anyhow::Result<()> {
    use axum::{Router, routing::get};
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics on {addr}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::signal::shutdown())
        .await?;
    Ok(())
}

fn default_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Runs the operator until SIGTERM/Ctrl-C, or until it loses the leader lease
/// (then it exits so the standby takes over cleanly).
pub async fn run(args: RunOptions) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG or in-cluster config)")?;
    check_crds(&client).await?;
    let metrics = OperatorMetrics::new();
    let metrics_task = tokio::spawn(serve_metrics(args.metrics_addr, metrics.clone()));

    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lease = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration)
        .with_grace(args.lease_duration.div_ceil(3).max(2))
        .build()
        .await
        .context("setting up leader election")?;
    let (mut leader, lease_task) = lease.watch().await;
    tracing::info!(%identity, lease = %format!("{namespace}/{}", args.lease_name), "waiting to become leader");

    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader.changed() => changed.context("leader election stopped")?,
            _ = &mut shutdown => return Ok(()),
        }
    }
    metrics.leader.set(1);
    tracing::info!(%identity, "became leader; starting controllers");

    let settings = context::Settings {
        resync: args.resync,
        concurrency: args.concurrency,
        outbound: args.outbound.clone(),
        cluster: args.cluster_name.clone(),
        operator_namespace: args
            .operator_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
    };
    let scopes = cache::Scope::from_namespaces(&args.watch_namespaces);
    tracing::info!(?scopes, "watching");
    let mut operator = Operator {
        controllers: Vec::new(),
        watches: Vec::new(),
    };
    for scope in &scopes {
        let first = operator.controllers.is_empty();
        let set = controllers_in(client.clone(), metrics.clone(), &settings, scope, first);
        operator.controllers.extend(set.controllers);
        operator.watches.extend(set.watches);
    }
    // The shared watches never end on their own; they stop with the controllers.
    let watches = tokio::spawn(futures::future::join_all(operator.watches));
    let controllers = futures::future::join_all(operator.controllers);
    tokio::pin!(controllers);
    let result = loop {
        tokio::select! {
            _ = &mut controllers => break Ok(()),
            changed = leader.changed() => {
                if changed.is_err() || !*leader.borrow() {
                    metrics.leader.set(0);
                    break Err(anyhow::anyhow!("lost the leader lease; exiting so another replica takes over"));
                }
            }
        }
    };
    watches.abort();
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    metrics_task.abort();
    result
}
