//! The operator (`idsync operator`): one kube-runtime `Controller` per kind, sharing
//! a [`Context`], running only on the replica that holds the leader `Lease`.

mod cache;
mod context;
mod error;
mod identity_service;
mod keyring;
mod metrics;
mod owned_secret;
mod reconciler;
mod resync;
mod role_approval;
mod role_mapping;
mod rotation;
#[cfg(test)]
mod scenarios;
mod scim_token;
mod sso_connection;
mod status;
mod sync;
mod target;
mod usage;
mod validation;
mod webhook;
mod workspace;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use futures::future::BoxFuture;
use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{Controller, watcher},
};

pub use context::Context;
pub use error::{Error, Result};
pub use metrics::OperatorMetrics;

use crate::api::{
    ClusterIdentityService, IdentityService, RoleApproval, RoleMapping, ScimToken, SsoConnection,
    Webhook, Workspace,
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

type Runner = BoxFuture<'static, ()>;

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
/// SSOConnections, SCIMTokens, RoleMappings, RoleApprovals and Webhooks have one watch
/// and store each.
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
    let caches = cache::Caches::new(
        client.clone(),
        &services,
        &cluster_services,
        &workspaces,
        &secrets,
    );
    let ctx = Context::new(client.clone(), metrics, settings, caches);
    let shared = reconciler::Wiring {
        services: &services,
        cluster_services: &cluster_services,
        workspaces: &workspaces,
        secrets: &secrets,
        ctx: &ctx,
        limits: limits.clone(),
    };
    // "Last used" in statuses: a poll of each service reconciles only what its IdPs used.
    let (usage_senders, triggers) = usage::channels();
    let scim_tokens = owned::<ScimToken>(&client, scope, &cfg);
    let token_store = scim_tokens.store();
    let mut controllers = vec![
        reconciler::run(
            Controller::for_shared_stream(services.subscribe(), services.store.clone()),
            &shared,
        ),
        reconciler::run(
            Controller::for_shared_stream(workspaces.subscribe(), workspaces.store.clone()),
            &shared,
        ),
        reconciler::run(
            owned::<SsoConnection>(&client, scope, &cfg)
                .reconcile_on(usage::stream(triggers.connections)),
            &shared,
        ),
        reconciler::run(
            scim_tokens.reconcile_on(usage::stream(triggers.tokens)),
            &shared,
        ),
        reconciler::run(owned::<RoleMapping>(&client, scope, &cfg), &shared),
        reconciler::run(owned::<RoleApproval>(&client, scope, &cfg), &shared),
        reconciler::run(owned::<Webhook>(&client, scope, &cfg), &shared),
    ];
    // One operator reconciles each ClusterIdentityService once, whatever the
    // number of namespace scopes it watches.
    if with_cluster_services {
        controllers.push(cluster_service_controller(&cluster_services, limits, &ctx));
    }
    let watches = vec![
        // Never ends on its own either: it stops with the watches.
        Box::pin(usage::run(
            ctx.clone(),
            workspaces.store.clone(),
            token_store,
            usage_senders,
        )),
        cluster_services.run(cache::cluster_services(&client)),
        services.run(cache::full(&client, scope, cfg.clone())),
        workspaces.run(cache::full(&client, scope, cfg)),
        secrets.run(cache::secret_metadata(&client, scope)),
    ];
    Operator {
        controllers,
        watches,
    }
}

/// The ClusterIdentityService controller, on the shared store.
fn cluster_service_controller(
    cluster_services: &cache::Shared<ClusterIdentityService>,
    limits: kube::runtime::controller::Config,
    ctx: &std::sync::Arc<Context>,
) -> Runner {
    let store = cluster_services.store.clone();
    let kind = metrics::Kind::ClusterIdentityService;
    reconciler::drain(
        Controller::for_shared_stream(cluster_services.subscribe(), store.clone())
            .with_config(limits)
            .reconcile_on(resync::paced(store, ctx.clone(), kind))
            .shutdown_on_signal()
            .run(
                identity_service::apply_cluster,
                reconciler::error_policy,
                ctx.clone(),
            ),
    )
}

/// A controller on a kind's own watch and store.
fn owned<K: reconciler::Reconciler>(
    client: &Client,
    scope: &cache::Scope,
    cfg: &watcher::Config,
) -> Controller<K> {
    let (store, stream) = cache::owned::<K>(client, scope, cfg.clone());
    Controller::for_stream(stream, store)
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

/// Waits for the lease; false when the process is asked to stop first.
async fn become_leader(leader: &mut tokio::sync::watch::Receiver<bool>) -> anyhow::Result<bool> {
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        if *leader.borrow_and_update() {
            return Ok(true);
        }
        tokio::select! {
            changed = leader.changed() => changed.context("leader election stopped")?,
            _ = &mut shutdown => return Ok(false),
        }
    }
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
    if !become_leader(&mut leader).await? {
        return Ok(());
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
