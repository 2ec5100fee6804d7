//! Resolving where a resource syncs to: its Workspace, that Workspace's
//! IdentityService, the admin token from a Secret, and an admin client with a
//! concurrency limit and metrics around every call. Workspaces and
//! IdentityServices come from the shared reflector stores, the token from the
//! Secret cache ([`Caches`]): a reconcile asks the apiserver for none of them.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Instant,
};

use kube::{Api, Client};
use tokio::sync::Semaphore;

use super::{
    cache::Caches,
    error::{Error, Result},
    metrics::{Op, OperatorMetrics},
};
use crate::admin::{AdminClient, ClientError};
use crate::api::{
    ClusterIdentityService, IdentityService, IdentityServiceSpec, SecretKeyRef, ServiceKind,
    Workspace,
};
use crate::outbound::OutboundPolicy;

/// Default for `IdentityService.spec.maxConcurrentRequests`.
const DEFAULT_CONCURRENCY: usize = 8;

/// An identity service to call, with its per-service concurrency limit.
#[derive(Clone)]
pub struct Target {
    pub client: AdminClient,
    /// Base URL IdPs use (public URL when set).
    pub public_url: String,
    limit: Arc<Semaphore>,
    metrics: OperatorMetrics,
}

impl Target {
    /// Runs one admin call under the concurrency limit, counting it.
    pub async fn call<T, F>(&self, operation: Op, fut: F) -> Result<T, ClientError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.limit.acquire().await;
        let started = Instant::now();
        let result = fut.await;
        let status = match &result {
            Ok(_) => "ok".to_string(),
            Err(ClientError::Api { status, .. }) => status.as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        self.metrics
            .service_request_duration
            .with_label_values(&[operation.as_str()])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .service_requests
            .with_label_values(&[operation.as_str(), &status])
            .inc();
        result
    }

    /// This target, writing on behalf of `claimant` (see [`claimant_of`]).
    pub fn claimed_by(&self, claimant: String) -> Self {
        Self {
            client: self.client.clone().with_claimant(claimant),
            ..self.clone()
        }
    }

    pub fn scim_base_url(&self, workspace_id: &str) -> String {
        format!(
            "{}/scim/v2/{workspace_id}",
            self.public_url.trim_end_matches('/')
        )
    }
}

/// Builds targets, reusing one per IdentityService while its spec and token stay
/// the same (so the semaphore really bounds concurrency).
pub struct ServiceTargets {
    client: Client,
    metrics: OperatorMetrics,
    pub caches: Caches,
    /// Which addresses the admin clients may reach.
    outbound: OutboundPolicy,
    /// This cluster's name in claimants (`--cluster-name`).
    cluster: String,
    /// Where ClusterIdentityServices keep their admin token and key Secrets.
    pub operator_namespace: String,
    cache: Mutex<HashMap<String, (String, Target)>>,
}

/// Who a Workspace resource's writes are for: this cluster, its namespace and
/// name, and its UID (so a re-created Workspace of the same name is a new
/// claimant only after the old one released the id).
pub fn claimant_of(cluster: &str, ws: &Workspace) -> String {
    format!(
        "kubernetes:{cluster}:{}/{}:{}",
        ws.metadata.namespace.as_deref().unwrap_or_default(),
        ws.metadata.name.as_deref().unwrap_or_default(),
        ws.metadata.uid.as_deref().unwrap_or_default()
    )
}

impl ServiceTargets {
    pub fn new(
        client: Client,
        metrics: OperatorMetrics,
        caches: Caches,
        outbound: OutboundPolicy,
        cluster: String,
        operator_namespace: String,
    ) -> Self {
        Self {
            client,
            metrics,
            caches,
            outbound,
            cluster,
            operator_namespace,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reads a Secret key (`None` when the Secret or the key is missing).
    pub async fn secret_value(&self, namespace: &str, r: &SecretKeyRef) -> Result<Option<String>> {
        let Some(data) = self.caches.secret_data(namespace, &r.name).await? else {
            return Ok(None);
        };
        Ok(data
            .get(&r.key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned()))
    }

    /// The target of an IdentityService.
    pub async fn for_service(&self, service: &IdentityService) -> Result<Target> {
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let r = &service.spec.admin_token_secret_ref;
        let token = self.secret_value(&ns, r).await?;
        self.for_spec(&format!("{ns}/{name}"), &ns, &service.spec, token)
    }

    /// The target of a ClusterIdentityService, whose admin token is in the
    /// operator's namespace (read directly: that namespace need not be watched).
    pub async fn for_cluster_service(&self, service: &ClusterIdentityService) -> Result<Target> {
        let ns = &self.operator_namespace;
        let r = &service.spec.admin_token_secret_ref;
        let token = self
            .caches
            .direct_secret_data(ns, &r.name)
            .await?
            .and_then(|d| {
                d.get(&r.key)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            });
        let key = format!(
            "cluster/{}",
            service.metadata.name.as_deref().unwrap_or_default()
        );
        self.for_spec(&key, ns, &service.spec.as_service(), token)
    }

    /// A target for a service's connection settings (cached by everything it
    /// is built from; the token enters the cache key only as a hash).
    fn for_spec(
        &self,
        key: &str,
        token_namespace: &str,
        spec: &IdentityServiceSpec,
        token: Option<String>,
    ) -> Result<Target> {
        let r = &spec.admin_token_secret_ref;
        let token = token.ok_or_else(|| {
            Error::config(
                "AdminTokenNotFound",
                format!(
                    "admin token key `{}` not found in Secret `{}` (namespace {token_namespace}); create it with the identity service's admin token",
                    r.key, r.name
                ),
            )
        })?;
        let fingerprint = crate::fingerprint::digest(&(
            &spec.url,
            &spec.ca_bundle,
            &spec.public_url,
            spec.max_concurrent_requests,
            crate::token::hash(&token),
        ));
        if let Some((fp, target)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            && *fp == fingerprint
        {
            return Ok(target.clone());
        }
        let client = AdminClient::with_policy(
            &spec.url,
            &token,
            spec.ca_bundle.as_deref(),
            self.outbound.clone(),
        )
        .map_err(|e| Error::config("InvalidServiceConfig", e.to_string()))?
        .with_actor(format!("operator/{key}"));
        let limit = spec
            .max_concurrent_requests
            .map(|n| n.max(1) as usize)
            .unwrap_or(DEFAULT_CONCURRENCY);
        let target = Target {
            client,
            public_url: spec.public_url.clone().unwrap_or_else(|| spec.url.clone()),
            limit: Arc::new(Semaphore::new(limit)),
            metrics: self.metrics.clone(),
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (fingerprint, target.clone()));
        Ok(target)
    }

    /// The IdentityService a Workspace names, from the shared store (`None`
    /// for a Workspace on a ClusterIdentityService).
    pub fn service_of(&self, workspace: &Workspace) -> Option<Arc<IdentityService>> {
        if workspace.spec.service_ref.kind() != ServiceKind::IdentityService {
            return None;
        }
        let ns = workspace.metadata.namespace.as_deref().unwrap_or_default();
        self.caches.service(ns, &workspace.spec.service_ref.name)
    }

    /// The target a Workspace's service gives, without the claim; a missing
    /// service, or a ClusterIdentityService that does not allow the
    /// Workspace's namespace, is a configuration error.
    async fn service_target(&self, ws: &Workspace) -> Result<Target> {
        let ns = ws.metadata.namespace.as_deref().unwrap_or_default();
        let name = &ws.spec.service_ref.name;
        match ws.spec.service_ref.kind() {
            ServiceKind::IdentityService => {
                let service = self.service_of(ws).ok_or_else(|| {
                    Error::config(
                        "IdentityServiceNotFound",
                        format!("IdentityService `{name}` not found in namespace {ns}"),
                    )
                })?;
                self.for_service(&service).await
            }
            ServiceKind::ClusterIdentityService => {
                let service = self.caches.cluster_service(name).ok_or_else(|| {
                    Error::config(
                        "IdentityServiceNotFound",
                        format!("ClusterIdentityService `{name}` not found"),
                    )
                })?;
                let labels = self.caches.namespace_labels(ns).await?;
                if !service.spec.allowed_namespaces.admits(ns, &labels) {
                    return Err(Error::config(
                        "NamespaceNotAllowed",
                        format!(
                            "ClusterIdentityService `{name}` does not allow namespace {ns} \
                             (spec.allowedNamespaces); ask its owner to add the namespace or its label"
                        ),
                    ));
                }
                self.for_cluster_service(&service).await
            }
        }
    }

    /// The Workspace a resource references, its identity service target and the
    /// workspace id. A missing Workspace or IdentityService is a config error.
    pub async fn for_workspace_ref(
        &self,
        namespace: &str,
        workspace: &str,
    ) -> Result<(Arc<Workspace>, Target)> {
        let ws = self.caches.workspace(namespace, workspace).ok_or_else(|| {
            Error::config(
                "WorkspaceNotFound",
                format!("Workspace `{workspace}` not found in namespace {namespace}"),
            )
        })?;
        let target = self
            .service_target(&ws)
            .await?
            .claimed_by(self.claimant(&ws));
        Ok((ws, target))
    }

    /// The target a Workspace syncs to, writing under its claim.
    pub async fn for_workspace(&self, ws: &Workspace) -> Result<Target> {
        Ok(self.service_target(ws).await?.claimed_by(self.claimant(ws)))
    }

    /// The claimant a Workspace's writes are for.
    pub fn claimant(&self, ws: &Workspace) -> String {
        claimant_of(&self.cluster, ws)
    }

    /// Where to clean up a Workspace's objects. During a namespace deletion the
    /// IdentityService or its admin-token Secret may already be gone; the client
    /// built while they existed still works, so it is used. With neither, there is
    /// nothing left to reach: `None` (cleaned up) rather than an error that would
    /// wedge deletion.
    pub async fn cleanup_target(&self, ws: &Workspace) -> Result<Option<Target>> {
        let ns = ws.metadata.namespace.clone().unwrap_or_default();
        let cached = || {
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&match ws.spec.service_ref.kind() {
                    ServiceKind::IdentityService => format!("{ns}/{}", ws.spec.service_ref.name),
                    ServiceKind::ClusterIdentityService => {
                        format!("cluster/{}", ws.spec.service_ref.name)
                    }
                })
                .map(|(_, t)| t.clone())
        };
        let fresh = match self.service_target(ws).await {
            Ok(t) => Some(t),
            Err(Error::Config { .. }) => None,
            Err(e) => return Err(e),
        };
        let target = fresh
            .or_else(cached)
            .map(|t| t.claimed_by(self.claimant(ws)));
        if target.is_none() {
            tracing::warn!(
                workspace = %format!("{ns}/{}", ws.metadata.name.clone().unwrap_or_default()),
                "IdentityService or its admin token is gone and was never reached; nothing to clean up"
            );
        }
        Ok(target)
    }

    /// The Workspace and cleanup target for a resource in it (see
    /// [`Self::cleanup_target`]); `None` when either is gone. The Workspace is
    /// read from the apiserver, not the store: deletion is rare, and a store a
    /// moment behind must not make a cleanup skip the identity service.
    pub async fn for_cleanup(
        &self,
        namespace: &str,
        workspace: &str,
    ) -> Result<Option<(Workspace, Target)>> {
        let api: Api<Workspace> = Api::namespaced(self.client.clone(), namespace);
        let Some(ws) = api.get_opt(workspace).await? else {
            tracing::warn!(%namespace, %workspace, "Workspace gone; nothing to clean up");
            return Ok(None);
        };
        Ok(self.cleanup_target(&ws).await?.map(|t| (ws, t)))
    }
}
