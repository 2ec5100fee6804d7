//! The HTTP surface of the identity service. Handlers are thin: they parse, call the
//! service layer, and turn its answer into JSON.

mod admin_routes;
pub mod error;
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

use super::{
    admin::AdminService, metrics::ServiceMetrics, scim::service::ScimService, sso::SsoService,
};
use error::ApiError;

/// Largest request body accepted (admin documents, SCIM resources). SAML metadata
/// with several certificates stays well under it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// State shared by every handler.
pub struct AppState {
    pub admin: AdminService,
    pub scim: ScimService,
    pub sso: SsoService,
    pub metrics: ServiceMetrics,
    /// SHA-256 of the admin token; comparing hashes keeps the comparison constant-time
    /// whatever the presented token's length.
    admin_token_sha256: [u8; 32],
}

impl AppState {
    pub fn new(admin: AdminService, metrics: ServiceMetrics, admin_token: &str) -> Self {
        let scim = ScimService::new(admin.store().clone(), admin.public_url(), metrics.clone());
        let sso = SsoService::new(admin.store().clone(), admin.public_url(), metrics.clone());
        Self {
            admin,
            scim,
            sso,
            metrics,
            admin_token_sha256: Sha256::digest(admin_token.as_bytes()).into(),
        }
    }

    fn admin_token_matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.admin_token_sha256).into()
    }
}

pub type SharedState = Arc<AppState>;

/// The whole router.
pub fn router(state: SharedState) -> Router {
    let admin = admin_routes::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_admin_token,
    ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/admin/v1", admin)
        .nest("/scim/v2", super::scim::routes())
        .nest("/sso", sso_routes::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
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
    req: Request,
    next: Next,
) -> Response {
    let reason = match bearer_token(req.headers()) {
        Some(token) if state.admin_token_matches(token) => return next.run(req).await,
        Some(_) => "wrong admin token",
        None => "missing bearer token",
    };
    state.metrics.admin_unauthorized.inc();
    if let Err(e) = state.admin.record_unauthorized(reason).await {
        tracing::warn!(error = %e, "could not record a refused admin call");
    }
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
