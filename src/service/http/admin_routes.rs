//! `/admin/v1`: what the operator and `idsync admin` call.

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{
    SharedState,
    error::{ApiError, Body},
};
use crate::admin::{InfoView, ListView, PutResult};
use crate::service::{
    admin::Actor,
    store::{AuditFilter, Backend, ObjectKind},
};

/// Header a caller may set to name itself in the audit log (e.g.
/// `operator/acme/okta-oidc`).
pub const ACTOR_HEADER: &str = "x-idsync-actor";
/// Header naming who the write is for, whose claim on the workspace id it
/// must hold (see `AdminService::check_claim`).
pub const CLAIMANT_HEADER: &str = "x-idsync-claimant";
const MAX_AUDIT_LIMIT: i64 = 1000;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/info", get(info))
        .route("/audit", get(audit))
        .route("/workspaces", get(list_workspaces))
        .route(
            "/workspaces/{ws}",
            get(get_workspace)
                .put(put_workspace)
                .delete(delete_workspace),
        )
        .route(
            "/workspaces/{ws}/release",
            axum::routing::post(release_workspace),
        )
        .route("/workspaces/{ws}/{collection}", get(list_items))
        .route(
            "/workspaces/{ws}/{collection}/{name}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .route(
            "/workspaces/{ws}/connections/{name}/sign-ins",
            get(sign_in_health),
        )
        .route("/session-keys", get(list_session_keys))
        .route("/session-keys/{id}", axum::routing::put(put_session_key))
        .route("/saml-signing-keys", get(list_saml_signing_keys))
        .route(
            "/saml-signing-keys/{id}",
            axum::routing::put(put_saml_signing_key),
        )
}

/// A changed RoleMapping or Workspace (its default role, approval list) moves
/// members' roles: recompute them in the background.
fn roles_may_have_moved(
    state: &SharedState,
    kind: ObjectKind,
    ws: &str,
    result: Option<PutResult>,
) {
    let changed = matches!(result, Some(PutResult::Created | PutResult::Updated));
    if changed && matches!(kind, ObjectKind::RoleMapping | ObjectKind::Workspace) {
        state.scim.recompute_in_background(ws);
    }
}

/// A key id: 1 to 32 letters, digits or '-'.
fn check_key_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad_request(
            "a key id is 1 to 32 letters, digits or '-'",
        ));
    }
    Ok(())
}

/// A key in a list answer: its id and times, never its material.
fn key_item(id: &str, created_at: i64, expires_at: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "createdAt": crate::service::store::format_millis(created_at),
        "expiresAt": crate::service::store::format_millis(expires_at),
    })
}

fn rfc3339_millis(what: &str, t: &str) -> Result<i64, ApiError> {
    t.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| ApiError::bad_request(format!("{what} must be an RFC 3339 time")))
}

/// SAML SP signing keys: certificates and times; private keys never leave.
async fn list_saml_signing_keys(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let keys = state
        .admin
        .store()
        .saml_signing_keys(crate::service::store::now_millis())
        .await?;
    let items: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let mut item = key_item(&k.id, k.created_at, k.expires_at);
            item["certificate"] = k.certificate_pem.clone().into();
            item
        })
        .collect();
    Ok(Json(ListView { items }).into_response())
}

/// Registers a SAML SP signing key the operator keeps in a Secret, after
/// checking the key and certificate belong together.
async fn put_saml_signing_key(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let doc: crate::admin::SamlSigningKeyDoc = crate::service::admin::parse(&body)?;
    check_key_id(&id)?;
    let private_key = doc
        .private_key
        .ok_or_else(|| ApiError::bad_request("privateKey is required"))?;
    let checked = crate::saml_signing::parse(&private_key, &doc.certificate)
        .map_err(ApiError::bad_request)?;
    let key = crate::service::store::SamlSigningKeyRecord {
        id: id.clone(),
        private_key_pem: private_key,
        certificate_pem: doc.certificate,
        created_at: rfc3339_millis("createdAt", &doc.created_at)?,
        expires_at: checked.not_after_ms,
    };
    state.admin.store().insert_saml_signing_key(&key).await?;
    state.sso.saml_keys_changed();
    Ok(Json(serde_json::json!({"id": id})).into_response())
}

/// Session-cookie keys: ids and times only; the secrets never leave.
async fn list_session_keys(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let keys = state
        .admin
        .store()
        .session_keys(crate::service::store::now_millis())
        .await?;
    let items: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| key_item(&k.id, k.created_at, k.expires_at))
        .collect();
    Ok(Json(ListView { items }).into_response())
}

/// Registers a session-cookie key the operator keeps in a Secret.
async fn put_session_key(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let doc: crate::admin::SessionKeyDoc = crate::service::admin::parse(&body)?;
    check_key_id(&id)?;
    let secret = doc
        .secret
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ApiError::bad_request("secret must be 32 bytes as 64 hex characters"))?;
    let key = crate::service::store::SessionKey {
        id: id.clone(),
        secret: secret.to_ascii_lowercase(),
        created_at: rfc3339_millis("createdAt", &doc.created_at)?,
        expires_at: rfc3339_millis("expiresAt", &doc.expires_at)?,
    };
    state.admin.store().insert_session_key(&key).await?;
    Ok(Json(serde_json::json!({"id": id})).into_response())
}

/// What the operator shows in an SSOConnection's status: counts, last success,
/// last failure and its reason code.
async fn sign_in_health(
    State(state): State<SharedState>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .admin
        .get(ObjectKind::SsoConnection, &ws, &name)
        .await?;
    let stats = state.admin.store().signin_stats(&ws, &name).await?;
    let at = |t: Option<i64>| t.map(crate::service::store::format_millis);
    Ok(Json(crate::admin::SignInHealthView {
        successes: stats.successes,
        failures: stats.failures,
        last_success_at: at(stats.last_success_at),
        last_failure_at: at(stats.last_failure_at),
        last_failure_reason: stats.last_failure_reason,
    })
    .into_response())
}

fn actor(headers: &HeaderMap) -> Actor {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.chars()
                    .filter(|c| !c.is_control())
                    .take(300)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty())
    };
    Actor {
        name: match header(ACTOR_HEADER) {
            Some(name) => format!("admin:{name}"),
            None => "admin".into(),
        },
        claimant: header(CLAIMANT_HEADER),
    }
}

/// What a `{collection}` path segment names.
enum Collection {
    Objects(ObjectKind),
    ScimTokens,
}

fn collection(segment: &str) -> Result<Collection, ApiError> {
    match segment {
        "connections" => Ok(Collection::Objects(ObjectKind::SsoConnection)),
        "role-mappings" => Ok(Collection::Objects(ObjectKind::RoleMapping)),
        "scim-tokens" => Ok(Collection::ScimTokens),
        other => Err(ApiError::not_found(format!(
            "no collection {other:?}: use connections, role-mappings or scim-tokens"
        ))),
    }
}

async fn info(State(state): State<SharedState>) -> Json<InfoView> {
    Json(InfoView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        public_url: state.admin.public_url().to_string(),
        database: match state.admin.store().backend() {
            Backend::Sqlite => "sqlite".into(),
            Backend::Postgres => "postgres".into(),
        },
    })
}

async fn list_workspaces(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let items = state.admin.list(ObjectKind::Workspace, None).await?;
    Ok(Json(ListView { items }).into_response())
}

async fn get_workspace(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.admin.get(ObjectKind::Workspace, &ws, &ws).await?).into_response())
}

async fn put_workspace(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let view = state
        .admin
        .put(ObjectKind::Workspace, &ws, &ws, &body, &actor(&headers))
        .await?;
    roles_may_have_moved(&state, ObjectKind::Workspace, &ws, view.result);
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    #[serde(default)]
    cascade: bool,
}

/// `POST /workspaces/{ws}/release`: frees the workspace id's claim.
async fn release_workspace(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let released = state.admin.release(&ws, &actor(&headers)).await?;
    Ok(Json(serde_json::json!({ "released": released })).into_response())
}

async fn delete_workspace(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    params: Result<Query<DeleteParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state
        .admin
        .delete(
            ObjectKind::Workspace,
            &ws,
            &ws,
            params.cascade,
            &actor(&headers),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_items(
    State(state): State<SharedState>,
    Path((ws, segment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match collection(&segment)? {
        Collection::Objects(kind) => Json(ListView {
            items: state.admin.list(kind, Some(&ws)).await?,
        })
        .into_response(),
        Collection::ScimTokens => Json(ListView {
            items: state.admin.list_tokens(&ws).await?,
        })
        .into_response(),
    })
}

async fn get_item(
    State(state): State<SharedState>,
    Path((ws, segment, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    Ok(match collection(&segment)? {
        Collection::Objects(kind) => Json(state.admin.get(kind, &ws, &name).await?).into_response(),
        Collection::ScimTokens => Json(state.admin.get_token(&ws, &name).await?).into_response(),
    })
}

async fn put_item(
    State(state): State<SharedState>,
    Path((ws, segment, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let actor = actor(&headers);
    Ok(match collection(&segment)? {
        Collection::Objects(kind) => {
            let view = state.admin.put(kind, &ws, &name, &body, &actor).await?;
            roles_may_have_moved(&state, kind, &ws, view.result);
            Json(view).into_response()
        }
        Collection::ScimTokens => {
            Json(state.admin.put_token(&ws, &name, &body, &actor).await?).into_response()
        }
    })
}

async fn delete_item(
    State(state): State<SharedState>,
    Path((ws, segment, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = actor(&headers);
    match collection(&segment)? {
        Collection::Objects(kind) => {
            state.admin.delete(kind, &ws, &name, false, &actor).await?;
            roles_may_have_moved(&state, kind, &ws, Some(PutResult::Updated));
        }
        Collection::ScimTokens => {
            state.admin.revoke_token(&ws, &name, &actor).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    workspace: Option<String>,
    kind: Option<String>,
    action: Option<String>,
    /// RFC 3339 lower bound.
    since: Option<String>,
    /// RFC 3339 upper bound.
    until: Option<String>,
    /// Only entries older than this id (paging).
    before: Option<i64>,
    limit: Option<i64>,
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
        })
        .transpose()
}

async fn audit(
    State(state): State<SharedState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = AuditFilter {
        workspace: params.workspace,
        kind: params.kind,
        action: params.action,
        since: parse_time("since", params.since.as_deref())?,
        until: parse_time("until", params.until.as_deref())?,
        before_id: params.before,
        limit: params.limit.unwrap_or(100).clamp(1, MAX_AUDIT_LIMIT),
    };
    let items = state.admin.audit(&filter).await?;
    Ok(Json(ListView { items }).into_response())
}
