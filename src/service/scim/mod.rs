//! SCIM 2.0 (RFC 7643/7644) under `/scim/v2/{workspace}/`.
//!
//! This module holds bearer-token authentication and the discovery endpoint; the
//! Users and Groups resources build on it.

pub mod error;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use self::error::ScimError;
use super::{
    http::{SharedState, bearer_token},
    store::{ObjectKind, StoredToken, now_millis},
};
use crate::token;

/// Media type of SCIM answers (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

pub fn routes() -> Router<SharedState> {
    Router::new().route("/{ws}/ServiceProviderConfig", get(service_provider_config))
}

/// Checks the bearer token of a SCIM request against the workspace's tokens. The
/// comparison is constant-time; failures say only what the IdP admin can act on.
pub async fn authenticate(
    state: &SharedState,
    workspace: &str,
    headers: &HeaderMap,
) -> Result<StoredToken, ScimError> {
    let presented =
        bearer_token(headers).ok_or_else(|| ScimError::unauthorized("missing bearer token"))?;
    let refused = || ScimError::unauthorized("the bearer token is not valid for this workspace");
    let id = token::parse_id(presented).ok_or_else(refused)?;
    let store = state.admin.store();
    let stored = store.get_token(id).await?.ok_or_else(refused)?;
    let now = now_millis();
    if stored.workspace != workspace
        || !token::matches(presented, &stored.hash)
        || !stored.is_valid_at(now)
    {
        return Err(refused());
    }
    let workspace_doc = store
        .get_object(ObjectKind::Workspace, workspace, workspace)
        .await?
        .ok_or_else(refused)?;
    if workspace_doc.body.pointer("/policy/scimEnabled") == Some(&serde_json::Value::Bool(false)) {
        return Err(ScimError::forbidden(
            "SCIM provisioning is disabled for this workspace",
        ));
    }
    if let Err(e) = store.touch_token(&stored.id, now).await {
        tracing::warn!(error = %e, "could not record SCIM token use");
    }
    Ok(stored)
}

async fn service_provider_config(
    State(state): State<SharedState>,
    Path(ws): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    authenticate(&state, &ws, &headers).await?;
    let location = format!("{}/ServiceProviderConfig", state.admin.scim_base_url(&ws));
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://idsync.dev/docs/scim",
        "patch": {"supported": false},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": false, "maxResults": 0},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token issued by idsync for this workspace",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": location}
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, SCIM_MEDIA_TYPE)],
        Json(body),
    )
        .into_response())
}
