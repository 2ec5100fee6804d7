//! The HTTP surface of the identity service. Handlers are thin: they parse, call the
//! service layer, and turn its answer into JSON.

mod admin_routes;
pub mod client_addr;
pub mod error;
pub mod rate_limit;
mod scim_routes;
pub mod server;
mod sso_keys;
mod sso_routes;

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::store::AuditEntry;
use super::{
    ServeConfig,
    admin::AdminService,
    failure_audit::FailureAudit,
    metrics::{Scraped, ServiceMetrics},
    scim::service::ScimService,
    sso::SsoService,
};
use super::{scim::roles::RoleResolver, session_cache::CheckCache};
use client_addr::TrustedProxies;
use error::ApiError;
use rate_limit::RateLimits;

/// Largest request body accepted (admin documents, SCIM resources). SAML metadata
/// with several certificates stays well under it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// State shared by every handler.
pub struct AppState {
    pub admin: AdminService,
    pub scim: ScimService,
    pub sso: Arc<SsoService>,
    pub metrics: ServiceMetrics,
    /// Per-source budgets for unauthenticated traffic and failed authentications.
    pub rate_limits: RateLimits,
    /// Refusals, aggregated per source and minute into the audit log.
    pub failures: Arc<FailureAudit>,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// SHA-256 of the admin token; comparing hashes keeps the comparison constant-time
    /// whatever the presented token's length.
    admin_token_sha256: [u8; 32],
}

impl AppState {
    pub fn new(
        admin: AdminService,
        config: &ServeConfig,
        outbound: crate::outbound::Guarded,
    ) -> Self {
        let metrics = ServiceMetrics::new();
        let store = admin.store().clone();
        let failures = Arc::new(FailureAudit::new(store.clone()));
        // One session-check cache and one compiled-mapping cache, shared by
        // SCIM and sign-in.
        let session_cache = Arc::new(CheckCache::default());
        let roles = Arc::new(RoleResolver::default());
        let scim = ScimService::new(
            store.clone(),
            admin.public_url(),
            metrics.clone(),
            session_cache.clone(),
            roles.clone(),
        );
        let sso = SsoService::new(
            store,
            admin.public_url(),
            metrics.clone(),
            outbound,
            failures.clone(),
            session_cache,
            roles,
        );
        Self {
            admin,
            scim,
            sso: Arc::new(sso),
            metrics,
            rate_limits: RateLimits::new(&config.rate_limits),
            failures,
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            admin_token_sha256: Sha256::digest(config.admin_token.as_bytes()).into(),
        }
    }

    pub(crate) fn admin_token_matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.admin_token_sha256).into()
    }
}

pub type SharedState = Arc<AppState>;

/// The whole router. `with_metrics`: serve `/metrics` here too (when it has
/// no listener of its own).
pub fn router(state: SharedState, limits: &server::Limits, with_metrics: bool) -> Router {
    let admin = admin_routes::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_admin_token,
    ));
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if with_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .nest("/admin/v1", admin)
        .nest("/scim/v2", scim_routes::routes())
        .nest("/sso", sso_routes::routes(&state))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            server::Admission::new(limits, state.trusted_proxies.clone()),
            server::admit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

/// `/metrics` (and the health checks) on a listener of its own, so the admin
/// and sign-in port does not publish workspace names to whoever can reach it.
pub fn metrics_router(state: SharedState, limits: &server::Limits) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(middleware::from_fn_with_state(
            server::Admission::new(limits, state.trusted_proxies.clone()),
            server::admit,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<SharedState>) -> Response {
    match state.admin.store().ready().await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations not applied\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    // Grouped counts over indexes; a scrape that cannot read them keeps the
    // last values rather than failing.
    let store = state.admin.store();
    let scraped = Scraped {
        pending_approvals: store
            .pending_approval_counts()
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "counting pending approvals for /metrics failed"),
            )
            .ok(),
        deliveries: store
            .delivery_states()
            .await
            .inspect_err(
                |e| tracing::warn!(error = %e, "reading webhook backlogs for /metrics failed"),
            )
            .ok(),
    };
    let now = crate::service::store::now_millis() as f64 / 1000.0;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&scraped, now),
    )
        .into_response()
}

async fn record_metrics(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    // The matched route template, never the raw path: ids in paths would make
    // label cardinality unbounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .http_duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn require_admin_token(
    State(state): State<SharedState>,
    client: client_addr::ClientAddr,
    req: Request,
    next: Next,
) -> Response {
    // A source that spent its failure budget is not even checked.
    if let Err(wait) = state.rate_limits.credentials.check(client.0) {
        return with_retry_after(
            ApiError::too_many_requests(
                "too many failed authentications from this source; retry later",
            )
            .into_response(),
            wait,
        );
    }
    let reason = match bearer_token(req.headers()) {
        Some(token) if state.admin_token_matches(token) => return next.run(req).await,
        Some(_) => "wrong admin token",
        None => "missing bearer token",
    };
    state.metrics.admin_unauthorized.inc();
    let _ = state.rate_limits.credentials.take(client.0);
    state
        .failures
        .record(
            client.0,
            reason,
            AuditEntry {
                workspace: None,
                actor: "unauthenticated".into(),
                action: "admin.unauthorized".into(),
                kind: None,
                name: None,
                detail: None,
            },
        )
        .await;
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(crate::admin::ErrorBody {
            error: crate::admin::ErrorDetail {
                code: "unauthorized".into(),
                message: format!("{reason}: send Authorization: Bearer <admin token>"),
            },
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"idsync-admin\""),
    );
    response
}

/// Adds `Retry-After` (whole seconds, at least one) to an answer.
pub fn with_retry_after(mut response: Response, wait: std::time::Duration) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(rate_limit::retry_after_secs(wait)),
    );
    response
}
