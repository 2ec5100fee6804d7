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
    metrics::OperatorMetrics,
};
use crate::admin::{AdminClient, ClientError};
use crate::api::{IdentityService, SecretKeyRef, Workspace};
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
    pub async fn call<T, F>(&self, operation: &'static str, fut: F) -> Result<T, ClientError>
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
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .service_requests
            .with_label_values(&[operation, &status])
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
    ) -> Self {
        Self {
            client,
            metrics,
            caches,
            outbound,
            cluster,
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
        let token = self.secret_value(&ns, r).await?.ok_or_else(|| {
            Error::config(
                "AdminTokenNotFound",
                format!(
                    "admin token key `{}` not found in Secret `{}` (namespace {ns}); create it with the identity service's admin token",
                    r.key, r.name
                ),
            )
        })?;
        // Cache key covers everything the client is built from; the token enters
        // only as a hash.
        let fingerprint = crate::fingerprint::digest(&(
            &service.spec.url,
            &service.spec.ca_bundle,
            &service.spec.public_url,
            service.spec.max_concurrent_requests,
            crate::token::hash(&token),
        ));
        let key = format!("{ns}/{name}");
        if let Some((fp, target)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *fp == fingerprint
        {
            return Ok(target.clone());
        }
        let client = AdminClient::with_policy(
            &service.spec.url,
            &token,
            service.spec.ca_bundle.as_deref(),
            self.outbound.clone(),
        )
        .map_err(|e| Error::config("InvalidServiceConfig", e.to_string()))?
        .with_actor(format!("operator/{ns}"));
        let limit = service
            .spec
            .max_concurrent_requests
            .map(|n| n.max(1) as usize)
            .unwrap_or(DEFAULT_CONCURRENCY);
        let target = Target {
            client,
            public_url: service
                .spec
                .public_url
                .clone()
                .unwrap_or_else(|| service.spec.url.clone()),
            limit: Arc::new(Semaphore::new(limit)),
            metrics: self.metrics.clone(),
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (fingerprint, target.clone()));
        Ok(target)
    }

    /// The IdentityService a Workspace names, from the shared store.
    pub fn service_of(&self, workspace: &Workspace) -> Option<Arc<IdentityService>> {
        let ns = workspace.metadata.namespace.as_deref().unwrap_or_default();
        self.caches.service(ns, &workspace.spec.service_ref.name)
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
        let service = self.service_of(&ws).ok_or_else(|| {
            Error::config(
                "IdentityServiceNotFound",
                format!(
                    "IdentityService `{}` (named by Workspace `{workspace}`) not found in namespace {namespace}",
                    ws.spec.service_ref.name
                ),
            )
        })?;
        let target = self
            .for_service(&service)
            .await?
            .claimed_by(self.claimant(&ws));
        Ok((ws, target))
    }

    /// The target a Workspace syncs to, writing under its claim.
    pub async fn for_workspace(&self, ws: &Workspace) -> Result<Target> {
        let service = self.service_of(ws).ok_or_else(|| {
            Error::config(
                "IdentityServiceNotFound",
                format!(
                    "IdentityService `{}` not found in namespace {}",
                    ws.spec.service_ref.name,
                    ws.metadata.namespace.as_deref().unwrap_or_default()
                ),
            )
        })?;
        Ok(self
            .for_service(&service)
            .await?
            .claimed_by(self.claimant(ws)))
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
                .get(&format!("{ns}/{}", ws.spec.service_ref.name))
                .map(|(_, t)| t.clone())
        };
        let fresh = match self.service_of(ws) {
            Some(service) => match self.for_service(&service).await {
                Ok(t) => Some(t),
                Err(Error::Config { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
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
