//! `/sso/keys`: a signed-in person's own API keys ("personal access tokens"),
//! which a product can offer in its settings page. Only a session manages
//! keys: a key cannot mint, list or revoke keys, so a leaked key cannot make
//! itself a successor.
//!
//! Cross-site requests cannot issue keys: `POST` needs `Content-Type:
//! application/json`, which a form on another site cannot send without a
//! CORS preflight this service never answers.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get},
};

use super::{
    SharedState,
    error::{ApiError, Body},
    sso_routes::{Presented, presented},
};
use crate::{
    admin::{ApiKeyRequest, IssuedApiKeyView, ListView},
    service::{
        admin::{AdminError, api_keys::key_view, parse},
        api_keys::{KeyRequest, self_issued_expiry},
        store::{SessionRecord, now_millis},
    },
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/keys", get(list).post(issue))
        .route("/keys/{id}", delete(revoke))
}

/// The live session the request carries; API keys are refused here.
async fn session_of(state: &SharedState, headers: &HeaderMap) -> Result<SessionRecord, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_session",
            "no valid session: sign in again",
        )
    };
    match presented(headers) {
        Some(Presented::Session(cookie)) => state
            .sso
            .sessions
            .check(cookie, now_millis())
            .await?
            .ok_or_else(unauthorized),
        Some(Presented::ApiKey(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "session_required",
            "API keys are managed with a session, not with another key",
        )),
        None => Err(unauthorized()),
    }
}

async fn issue(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "send the key request as application/json",
        ));
    }
    let session = session_of(&state, &headers).await?;
    let req: ApiKeyRequest = parse(&body)?;
    if req.principal.is_some() {
        return Err(ApiError::bad_request(
            "a key issued here is always your own: leave out principal",
        ));
    }
    let now = now_millis();
    let expires_at = self_issued_expiry(req.expires_at.map(|t| t.as_millisecond()), now)
        .map_err(AdminError::from)?;
    let actor = format!("user:{}", session.user_id);
    let issued = state
        .admin
        .keys()
        .issue(
            &KeyRequest {
                workspace: &session.workspace,
                principal_id: &session.user_id,
                name: &req.name,
                expires_at: Some(expires_at),
                issued_by: "self",
                actor: &actor,
            },
            now,
        )
        .await
        .map_err(AdminError::from)?;
    let view = IssuedApiKeyView {
        key: issued.key.expose().to_string(),
        view: key_view(&issued.record, now),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list(State(state): State<SharedState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = session_of(&state, &headers).await?;
    let now = now_millis();
    let keys = state
        .admin
        .keys()
        .list(&session.workspace, Some(&session.user_id))
        .await?;
    let items: Vec<_> = keys.iter().map(|k| key_view(k, now)).collect();
    Ok(Json(ListView { items }).into_response())
}

async fn revoke(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session_of(&state, &headers).await?;
    let actor = format!("user:{}", session.user_id);
    let revoked = state
        .admin
        .keys()
        .revoke(
            &session.workspace,
            &id,
            Some(&session.user_id),
            &actor,
            now_millis(),
        )
        .await?;
    match revoked {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(ApiError::not_found(format!("you have no live key {id}"))),
    }
}
