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
use crate::admin::{InfoView, KeyKind, ListView, PutResult, RoleApprovalDoc};
use crate::service::{
    admin::{Actor, keys},
    scim::context::WorkspaceCtx,
    store::{AuditFilter, Backend, ObjectKind, now_millis},
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
        .route("/usage", get(usage))
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
        .route(
            "/workspaces/{ws}/webhooks/{name}/deliveries",
            get(webhook_deliveries),
        )
        .route(
            "/workspaces/{ws}/webhooks/{name}/replay",
            axum::routing::post(replay_webhook),
        )
        .route("/workspaces/{ws}/members/{member}", get(get_member))
        .route(
            "/workspaces/{ws}/members/{member}/explain",
            get(explain_member),
        )
        .route("/workspaces/{ws}/pending-approvals", get(pending_approvals))
        .route("/workspaces/{ws}/events", get(events))
        .route(
            "/workspaces/{ws}/api-keys",
            get(list_api_keys).post(issue_api_key),
        )
        .route(
            "/workspaces/{ws}/api-keys/{id}",
            axum::routing::delete(revoke_api_key),
        )
        .merge(key_routes(KeyKind::SessionCookies))
        .merge(key_routes(KeyKind::SamlSigning))
}

/// `GET /<kind>` lists a kind's keys; `PUT /<kind>/{id}` registers one.
fn key_routes(kind: KeyKind) -> Router<SharedState> {
    let collection = kind.collection();
    Router::new()
        .route(
            &format!("/{collection}"),
            get(move |state: State<SharedState>| list_keys(state, kind)),
        )
        .route(
            &format!("/{collection}/{{id}}"),
            axum::routing::put(move |state, id, body| put_key(state, kind, id, body)),
        )
}

/// A changed RoleMapping or Workspace (its default role, approval list,
/// access groups) moves members' roles: recompute them in the background. A
/// changed approval moves the person it names (and named, `before`): at
/// once, so the next session check shows it.
async fn roles_may_have_moved(
    state: &SharedState,
    (kind, ws): (ObjectKind, &str),
    result: Option<PutResult>,
    before: Option<RoleApprovalDoc>,
    after: Option<&serde_json::Value>,
) -> Result<(), ApiError> {
    let changed = matches!(result, Some(PutResult::Created | PutResult::Updated));
    match kind {
        _ if !changed => {}
        ObjectKind::RoleMapping | ObjectKind::Workspace => state.scim.recompute_in_background(ws),
        ObjectKind::RoleApproval => {
            let after = after.and_then(|v| serde_json::from_value(v.clone()).ok());
            let named: Vec<RoleApprovalDoc> = before.into_iter().chain(after).collect();
            state.scim.approvals_changed(ws, &named).await?;
        }
        ObjectKind::SsoConnection | ObjectKind::Webhook => {}
    }
    Ok(())
}

/// Why a member has their role and access: groups, last claims, the rule
/// that decided, approvals.
async fn explain_member(
    State(state): State<SharedState>,
    Path((ws, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let view = state.admin.member(&ws, &member).await?;
    let ctx = WorkspaceCtx::load(state.admin.store(), &ws)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workspace {ws}")))?;
    Ok(Json(state.scim.explain(&ctx, view).await?).into_response())
}

/// The roles that wait for an approval, with who, since when and why.
async fn pending_approvals(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    let ctx = WorkspaceCtx::load(state.admin.store(), &ws)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workspace {ws}")))?;
    let items = state.scim.pending_approvals(&ctx).await?;
    Ok(Json(ListView { items }).into_response())
}

/// A member's role, pending role, effective assignments and groups.
async fn get_member(
    State(state): State<SharedState>,
    Path((ws, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(state.admin.member(&ws, &member).await?).into_response())
}

/// Issues an API key: 201 with its value, the one time it is shown.
async fn issue_api_key(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let issued = state
        .admin
        .issue_api_key(&ws, &body, &actor(&headers))
        .await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

async fn webhook_deliveries(
    State(state): State<SharedState>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(state.admin.webhook_deliveries(&ws, &name).await?).into_response())
}

async fn replay_webhook(
    State(state): State<SharedState>,
    Path((ws, name)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let queued = state
        .admin
        .replay_webhook((&ws, &name), &body, &actor(&headers))
        .await?;
    Ok(Json(queued).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyParams {
    principal: Option<String>,
}

/// A workspace's API keys (`?principal=` for one principal's).
async fn list_api_keys(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    Query(params): Query<ApiKeyParams>,
) -> Result<Response, ApiError> {
    let items = state
        .admin
        .list_api_keys(&ws, params.principal.as_deref())
        .await?;
    Ok(Json(ListView { items }).into_response())
}

async fn revoke_api_key(
    State(state): State<SharedState>,
    Path((ws, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .admin
        .revoke_api_key(&ws, &id, &actor(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A kind's keys: ids and times (and SAML certificates); secrets never leave.
async fn list_keys(State(state): State<SharedState>, kind: KeyKind) -> Result<Response, ApiError> {
    let items = keys::list(state.admin.store(), kind, now_millis()).await?;
    Ok(Json(ListView { items }).into_response())
}

/// Registers a key the operator keeps in a Secret.
async fn put_key(
    State(state): State<SharedState>,
    kind: KeyKind,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    keys::register(state.admin.store(), kind, &id, &body).await?;
    if kind == KeyKind::SamlSigning {
        state.sso.saml_keys_changed();
    }
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
    let at = |t: Option<i64>| t.map(crate::service::store::timestamp);
    Ok(Json(crate::admin::SignInHealthView {
        successes: stats.successes,
        failures: stats.failures,
        last_success_at: at(stats.last_success_at),
        last_failure_at: at(stats.last_failure_at),
        last_failure_reason: stats.last_failure_reason,
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParams {
    /// A `seq`: the events after it (default from the first).
    after: Option<i64>,
    limit: Option<i64>,
}

/// A workspace's lifecycle events in order, for a product reconciling after
/// an outage.
async fn events(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state.admin.get(ObjectKind::Workspace, &ws, &ws).await?;
    let after = params.after.unwrap_or(0);
    let limit = params.limit.unwrap_or(100);
    let rows = state.admin.store().events_after(&ws, after, limit).await?;
    let next = rows.last().map_or(after, |e| e.seq);
    let items = rows
        .into_iter()
        .map(|e| crate::admin::EventView {
            id: e.id,
            kind: e.kind,
            workspace: e.workspace,
            seq: e.seq,
            at: crate::service::store::timestamp(e.at),
            data: e.data,
        })
        .collect();
    Ok(Json(crate::admin::EventPage { items, next }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    /// RFC 3339; what was used after it.
    since: String,
}

/// SCIM credentials used, and connections signed in through, since a time.
async fn usage(
    State(state): State<SharedState>,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = parse_time("since", Some(&params.since))?.unwrap_or_default();
    let rows = state.admin.store().usage_since(since).await?;
    let at = crate::service::store::timestamp;
    Ok(Json(crate::admin::UsageView {
        tokens: (rows.tokens.into_iter())
            .map(|(workspace, id, t)| crate::admin::TokenUse {
                workspace,
                id,
                last_used_at: at(t),
            })
            .collect(),
        connections: (rows.connections.into_iter())
            .map(|(workspace, name, t)| crate::admin::ConnectionUse {
                workspace,
                name,
                last_success_at: at(t),
            })
            .collect(),
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
    if segment == "scim-tokens" {
        return Ok(Collection::ScimTokens);
    }
    ObjectKind::ALL
        .into_iter()
        .filter(|k| *k != ObjectKind::Workspace)
        .find(|k| k.collection() == segment)
        .map(Collection::Objects)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no collection {segment:?}: use connections, role-mappings, role-approvals or \
                 scim-tokens"
            ))
        })
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
    roles_may_have_moved(
        &state,
        (ObjectKind::Workspace, &ws),
        view.result,
        None,
        None,
    )
    .await?;
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
            let before = state.scim.approval_before(kind, &ws, &name).await?;
            let view = state.admin.put(kind, &ws, &name, &body, &actor).await?;
            roles_may_have_moved(&state, (kind, &ws), view.result, before, Some(&view.spec))
                .await?;
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
            let before = state.scim.approval_before(kind, &ws, &name).await?;
            state.admin.delete(kind, &ws, &name, false, &actor).await?;
            let moved = Some(PutResult::Updated);
            roles_may_have_moved(&state, (kind, &ws), moved, before, None).await?;
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
