//! `/scim/v2/{workspace}/`: one route takes every SCIM request, authenticates
//! it within its source's budget, hands it to [`ScimService`], and gives every
//! answer its RFC 7644 error body, metrics and headers.

use std::time::Instant;

use axum::{
    Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::Value;

use super::{SharedState, bearer_token, client_addr::ClientAddr, with_retry_after};
use crate::{
    scim::{ScimProblem, schema::ResourceKind},
    service::{
        scim::{
            Endpoint, SCIM_MEDIA_TYPE, bulk,
            context::{WorkspaceCtx, authenticate, request_id},
            discovery,
            error::ScimError,
            service::{Answer, ListParams, Preconditions},
        },
        store::{AuditEntry, ObjectKind},
    },
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/{ws}/{*rest}", any(dispatch))
        .route("/{ws}", any(dispatch_root))
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, SCIM_MEDIA_TYPE)],
            self.body().to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"idsync-scim\""),
            );
        }
        response
    }
}

/// The `operation` metric label: what the request does, never its ids.
fn operation_label(endpoint: Option<&Endpoint>, method: &Method) -> &'static str {
    match (endpoint, method.as_str()) {
        (Some(Endpoint::Resources(_, None)), "GET") | (Some(Endpoint::Search(_)), _) => "list",
        (Some(Endpoint::Resources(_, None)), "POST") => "create",
        (Some(Endpoint::Resources(_, Some(_))), "GET") => "get",
        (Some(Endpoint::Resources(_, Some(_))), "PUT") => "replace",
        (Some(Endpoint::Resources(_, Some(_))), "PATCH") => "patch",
        (Some(Endpoint::Resources(_, Some(_))), "DELETE") => "delete",
        (Some(Endpoint::Bulk), _) => "bulk",
        (Some(_), "GET") => "discover",
        _ => "other",
    }
}

fn method_not_allowed(allowed: &str) -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this endpoint answers {allowed} only"),
    )
}

/// The workspace label of a refused request: the path's workspace when it
/// exists, so "this workspace's IdP lost its token" can be alerted on by name;
/// `unauthenticated` otherwise, so callers cannot mint label values with made-up
/// paths. The response never says which it was.
async fn refused_label(state: &SharedState, ws: &str) -> String {
    match state
        .scim
        .store()
        .get_object(ObjectKind::Workspace, ws, ws)
        .await
    {
        Ok(Some(_)) => ws.to_string(),
        _ => "unauthenticated".to_string(),
    }
}

async fn dispatch_root(
    state: State<SharedState>,
    client: ClientAddr,
    Path(ws): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dispatch(
        state,
        client,
        Path((ws, String::new())),
        method,
        uri,
        headers,
        body,
    )
    .await
}

async fn dispatch(
    State(state): State<SharedState>,
    client: ClientAddr,
    Path((ws, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::parse(&rest);
    let resource = endpoint
        .as_ref()
        .map_or("unknown", Endpoint::resource_label);
    let operation = operation_label(endpoint.as_ref(), &method);
    let (workspace, result, retry_after) = match authenticate_within_budget(
        &state, client, &ws, &headers,
    )
    .await
    {
        Ok(ctx) => {
            let result = match &endpoint {
                Some(e) => handle(&state, &ctx, e, &method, &uri, &headers, body).await,
                None => Err(ScimError::not_found(format!(
                    "no SCIM endpoint at /{rest}: use /Users, /Groups, /Bulk, /.search or a discovery endpoint"
                ))),
            };
            (ctx.name, result, None)
        }
        Err((label, e, wait)) => (label, Err(e), wait),
    };
    let mut response = match result {
        Ok(answer) => answer_response(answer),
        Err(e) => e.into_response(),
    };
    if let Some(wait) = retry_after {
        response = with_retry_after(response, wait);
    }
    let status = response.status();
    let m = &state.metrics;
    m.scim_duration
        .with_label_values(&[resource, operation])
        .observe(started.elapsed().as_secs_f64());
    m.scim_requests
        .with_label_values(&[&workspace, resource, operation, status.as_str()])
        .inc();
    if status.is_success() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        m.scim_last_success
            .with_label_values(&[&workspace])
            .set(now);
    }
    response
}

/// Authenticates a request unless its source spent its failure budget; a
/// failure spends from it and is audited (aggregated). The error side carries
/// the workspace label for metrics and, for a 429, how long to wait.
async fn authenticate_within_budget(
    state: &SharedState,
    client: ClientAddr,
    ws: &str,
    headers: &HeaderMap,
) -> Result<WorkspaceCtx, (String, ScimError, Option<std::time::Duration>)> {
    if let Err(wait) = state.rate_limits.credentials.check(client.0) {
        let e = ScimError::too_many_requests(
            "too many failed authentications from this address; retry later",
        );
        return Err((refused_label(state, ws).await, e, Some(wait)));
    }
    let e = match authenticate(
        state.scim.store(),
        ws,
        bearer_token(headers),
        request_id(headers),
    )
    .await
    {
        Ok(ctx) => return Ok(ctx),
        Err(e) => e,
    };
    let label = refused_label(state, ws).await;
    if e.status == StatusCode::UNAUTHORIZED {
        let _ = state.rate_limits.credentials.take(client.0);
        let entry = AuditEntry {
            workspace: (label != "unauthenticated").then(|| ws.to_string()),
            actor: "unauthenticated".into(),
            action: "scim.unauthorized".into(),
            kind: None,
            name: None,
            detail: None,
        };
        state.failures.record(client.0, &e.detail, entry).await;
    }
    Err((label, e, None))
}

fn answer_response(answer: Answer) -> Response {
    let mut response = match answer.body {
        Some(body) => (
            answer.status,
            [(header::CONTENT_TYPE, SCIM_MEDIA_TYPE)],
            body.to_string(),
        )
            .into_response(),
        None => answer.status.into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::ETAG, answer.etag),
        (header::LOCATION, answer.location),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    }
    response
}

/// Reads a JSON request body, within the advertised payload limit.
async fn json_body(body: Body) -> Result<Value, ScimError> {
    let bytes = axum::body::to_bytes(body, bulk::MAX_PAYLOAD_BYTES)
        .await
        .map_err(|_| {
            ScimError::too_large(format!(
                "the request body is larger than {} bytes",
                bulk::MAX_PAYLOAD_BYTES
            ))
        })?;
    if bytes.is_empty() {
        return Err(ScimProblem::invalid_syntax("the request needs a JSON body").into());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimProblem::invalid_syntax(format!("the body is not valid JSON: {e}")).into())
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ScimError> {
    match Query::<Vec<(String, String)>>::try_from_uri(uri) {
        Ok(Query(pairs)) => Ok(pairs),
        Err(_) => Err(ScimProblem::invalid_syntax("the query string is malformed").into()),
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(
    state: &SharedState,
    ctx: &WorkspaceCtx,
    endpoint: &Endpoint,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, ScimError> {
    let svc = &state.scim;
    let base = svc.base_url(&ctx.name);
    let pairs = query_pairs(uri)?;
    let params = ListParams::from_query(&pairs);
    let pre = Preconditions {
        if_match: header_text(headers, header::IF_MATCH),
        if_none_match: header_text(headers, header::IF_NONE_MATCH),
    };
    let discovery = |found: Option<Value>, what: &str| {
        found
            .map(|v| Answer {
                status: StatusCode::OK,
                body: Some(v),
                etag: None,
                location: None,
            })
            .ok_or_else(|| ScimError::not_found(format!("no {what} with that id")))
    };
    let get_only = || {
        if method == Method::GET {
            Ok(())
        } else {
            Err(method_not_allowed("GET"))
        }
    };
    match endpoint {
        Endpoint::Me => Err(ScimError::new(
            StatusCode::NOT_IMPLEMENTED,
            "/Me is not supported: a SCIM token acts for the IdP, not for a person",
        )),
        Endpoint::ServiceProviderConfig => {
            get_only()?;
            discovery(Some(discovery::service_provider_config(&base)), "")
        }
        Endpoint::ResourceTypes(id) => {
            get_only()?;
            let all = discovery::resource_types(&base, &ctx.policy.scim_schema_extensions);
            match id {
                None => discovery(Some(discovery::list(all)), ""),
                Some(id) => discovery(discovery::by_id(all, id), "resource type"),
            }
        }
        Endpoint::Schemas(id) => {
            get_only()?;
            let all = discovery::schemas(&base);
            match id {
                None => discovery(Some(discovery::list(all)), ""),
                Some(id) => discovery(discovery::by_id(all, id), "schema"),
            }
        }
        Endpoint::Search(kind) => {
            if method != Method::POST {
                return Err(method_not_allowed("POST"));
            }
            let params = ListParams::from_search(&json_body(body).await?)?;
            let kinds = match kind {
                Some(k) => vec![*k],
                None => vec![ResourceKind::User, ResourceKind::Group],
            };
            svc.list(ctx, &kinds, &params).await
        }
        Endpoint::Bulk => {
            if method != Method::POST {
                return Err(method_not_allowed("POST"));
            }
            bulk::run(svc, ctx, &json_body(body).await?).await
        }
        Endpoint::Resources(kind, None) => {
            if method == Method::GET {
                svc.list(ctx, &[*kind], &params).await
            } else if method == Method::POST {
                let proj = params.projection()?;
                svc.create(ctx, *kind, json_body(body).await?, &proj).await
            } else {
                Err(method_not_allowed("GET and POST"))
            }
        }
        Endpoint::Resources(kind, Some(id)) => {
            let proj = params.projection()?;
            match *method {
                Method::GET => svc.get(ctx, *kind, id, &proj, &pre).await,
                Method::PUT => {
                    svc.replace(ctx, *kind, id, json_body(body).await?, &pre, &proj)
                        .await
                }
                Method::PATCH => {
                    svc.patch(ctx, *kind, id, &json_body(body).await?, &pre, &proj)
                        .await
                }
                Method::DELETE => svc.delete(ctx, *kind, id, &pre).await,
                _ => Err(method_not_allowed("GET, PUT, PATCH and DELETE")),
            }
        }
    }
}
