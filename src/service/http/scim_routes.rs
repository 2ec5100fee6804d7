//! `/scim/v2/{workspace}/`: one route takes every SCIM request, authenticates
//! it within its source's budget, hands it to [`ScimService`], and gives every
//! answer its RFC 7644 error body, metrics and headers.

use std::time::Instant;

use axum::{
    Router,
    body::Body,
    extract::{FromRequestParts, Path, Query, RawPathParams, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::Value;

use super::{SharedState, client_addr::ClientAddr, with_retry_after};
use crate::{
    scim::{ScimProblem, schema::ResourceKind},
    service::{
        scim::{
            Endpoint, SCIM_MEDIA_TYPE, bulk,
            context::{WorkspaceCtx, authenticate, presented_credential, request_id},
            discovery,
            error::ScimError,
            service::{ListParams, Outcome, Preconditions},
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
            // Both schemes a credential may be registered for (RFC 9110 §11.6.1).
            for challenge in [
                "Bearer realm=\"idsync-scim\"",
                "Basic realm=\"idsync-scim\"",
            ] {
                response.headers_mut().append(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(challenge),
                );
            }
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
    caller: Result<ScimCaller, Refused>,
    Path(ws): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = Path((ws, String::new()));
    dispatch(state, caller, path, method, uri, headers, body).await
}

#[tracing::instrument(
    name = "scim",
    skip_all,
    fields(workspace = %ws, method = %method, endpoint = rest.as_str(), status)
)]
async fn dispatch(
    State(state): State<SharedState>,
    caller: Result<ScimCaller, Refused>,
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
    let (workspace, response) = match caller {
        Ok(ScimCaller(ctx)) => {
            let result = match &endpoint {
                Some(e) => handle(&state, &ctx, e, &method, &uri, &headers, body).await,
                None => Err(ScimError::not_found(format!(
                    "no SCIM endpoint at /{rest}: use /Users, /Groups, /Bulk, /.search or a discovery endpoint"
                ))),
            };
            let response = match result {
                Ok(outcome) => outcome_response(outcome),
                Err(e) => e.into_response(),
            };
            (ctx.name, response)
        }
        Err(refused) => (refused.label.clone(), refused.into_response()),
    };
    let status = response.status();
    tracing::Span::current().record("status", status.as_u16());
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

/// An authenticated SCIM caller: the workspace its bearer token belongs to.
/// Extracting one spends from the source's failure budget when the token is
/// wrong, and is refused outright once that budget is spent.
struct ScimCaller(WorkspaceCtx);

/// Why a SCIM request was not let in, with the workspace label its metrics get
/// and, for a 429, how long to wait.
struct Refused {
    label: String,
    error: ScimError,
    retry_after: Option<std::time::Duration>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let response = self.error.into_response();
        match self.retry_after {
            Some(wait) => with_retry_after(response, wait),
            None => response,
        }
    }
}

impl FromRequestParts<SharedState> for ScimCaller {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientAddr(client)) = ClientAddr::from_request_parts(parts, state).await;
        let ws = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params
                .iter()
                .find_map(|(k, v)| (k == "ws").then(|| v.to_string()))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let refuse = |label, error, retry_after| Refused {
            label,
            error,
            retry_after,
        };
        if let Err(wait) = state.rate_limits.credentials.check(client) {
            let e = ScimError::too_many_requests(
                "too many failed authentications from this address; retry later",
            );
            return Err(refuse(refused_label(state, &ws).await, e, Some(wait)));
        }
        let mut decoded = String::new();
        let credential = presented_credential(&parts.headers, &mut decoded);
        let e = match authenticate(
            state.scim.store(),
            &ws,
            credential,
            request_id(&parts.headers),
        )
        .await
        {
            // Checked after the credential, so the answer to a stranger says
            // nothing about the workspace's ranges.
            Ok(ctx) if !scim_source_allowed(&ctx, client) => ScimError::forbidden(&format!(
                "requests from {client} are not allowed for this workspace (spec.policy.sourceRanges.scim)"
            )),
            Ok(ctx) => return Ok(ScimCaller(ctx)),
            Err(e) => e,
        };
        let label = refused_label(state, &ws).await;
        if e.status == StatusCode::UNAUTHORIZED {
            let _ = state.rate_limits.credentials.take(client);
            let entry = AuditEntry {
                workspace: (label != "unauthenticated").then(|| ws.clone()),
                actor: "unauthenticated".into(),
                action: "scim.unauthorized".into(),
                kind: None,
                name: None,
                detail: None,
            };
            state.failures.record(client, &e.detail, entry).await;
        }
        Err(refuse(label, e, None))
    }
}

/// Whether the workspace's `sourceRanges.scim` admits `client`.
fn scim_source_allowed(ctx: &WorkspaceCtx, client: std::net::IpAddr) -> bool {
    let ranges = ctx.policy.source_ranges.as_ref();
    crate::api::SourceRanges::allows(ranges.and_then(|r| r.scim.as_deref()), client)
}

fn outcome_response(outcome: Outcome) -> Response {
    let status = outcome.status();
    let scim_json = |body: Value| {
        (
            status,
            [(header::CONTENT_TYPE, SCIM_MEDIA_TYPE)],
            body.to_string(),
        )
            .into_response()
    };
    let (mut response, etag, location) = match outcome {
        Outcome::Created(r) | Outcome::Found(r) => {
            (scim_json(r.body), Some(r.etag), Some(r.location))
        }
        Outcome::Document(body) => (scim_json(body), None, None),
        Outcome::NotModified { etag } => (status.into_response(), Some(etag), None),
        Outcome::Deleted => (status.into_response(), None, None),
    };
    let headers = response.headers_mut();
    for (name, value) in [(header::ETAG, etag), (header::LOCATION, location)] {
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
) -> Result<Outcome, ScimError> {
    let svc = &state.scim;
    let params = ListParams::from_query(&query_pairs(uri)?);
    let pre = Preconditions {
        if_match: header_text(headers, header::IF_MATCH),
        if_none_match: header_text(headers, header::IF_NONE_MATCH),
    };
    match (endpoint, method.clone()) {
        (Endpoint::Me, _) => Err(ScimError::new(
            StatusCode::NOT_IMPLEMENTED,
            "/Me is not supported: a SCIM token acts for the IdP, not for a person",
        )),
        (Endpoint::ServiceProviderConfig, Method::GET) => {
            let basic = svc
                .store()
                .has_basic_credentials(&ctx.name, crate::service::store::now_millis())
                .await?;
            let config = discovery::service_provider_config(&svc.base_url(&ctx.name), basic);
            Ok(Outcome::Document(config))
        }
        (Endpoint::ResourceTypes(_) | Endpoint::Schemas(_), Method::GET) => {
            discover(&svc.base_url(&ctx.name), ctx, endpoint)
        }
        (
            Endpoint::ServiceProviderConfig | Endpoint::ResourceTypes(_) | Endpoint::Schemas(_),
            _,
        ) => Err(method_not_allowed("GET")),
        (Endpoint::Search(kind), Method::POST) => {
            let params = ListParams::from_search(&json_body(body).await?)?;
            let kinds = match kind {
                Some(k) => vec![*k],
                None => ResourceKind::ALL.to_vec(),
            };
            svc.list(ctx, &kinds, &params).await
        }
        (Endpoint::Bulk, Method::POST) => bulk::run(svc, ctx, &json_body(body).await?).await,
        (Endpoint::Search(_) | Endpoint::Bulk, _) => Err(method_not_allowed("POST")),
        (Endpoint::Resources(kind, None), Method::GET) => svc.list(ctx, &[*kind], &params).await,
        (Endpoint::Resources(kind, None), Method::POST) => {
            let proj = params.projection()?;
            svc.create(ctx, *kind, json_body(body).await?, &proj).await
        }
        (Endpoint::Resources(_, None), _) => Err(method_not_allowed("GET and POST")),
        (Endpoint::Resources(kind, Some(id)), method) => {
            let proj = params.projection()?;
            match method {
                Method::GET => svc.get(ctx, *kind, id, &proj, &pre).await,
                Method::PUT => {
                    let body = json_body(body).await?;
                    svc.replace(ctx, *kind, id, body, &pre, &proj).await
                }
                Method::PATCH => {
                    let body = json_body(body).await?;
                    svc.patch(ctx, *kind, id, &body, &pre, &proj).await
                }
                Method::DELETE => svc.delete(ctx, *kind, id, &pre).await,
                _ => Err(method_not_allowed("GET, PUT, PATCH and DELETE")),
            }
        }
    }
}

/// The discovery endpoints (RFC 7644 §4): what this workspace serves.
fn discover(base: &str, ctx: &WorkspaceCtx, endpoint: &Endpoint) -> Result<Outcome, ScimError> {
    let (found, what) = match endpoint {
        Endpoint::ResourceTypes(id) => {
            let all = discovery::resource_types(base, &ctx.policy.scim_schema_extensions);
            match id {
                None => (Some(discovery::list(all)), ""),
                Some(id) => (discovery::by_id(all, id), "resource type"),
            }
        }
        Endpoint::Schemas(id) => {
            let all = discovery::schemas(base);
            match id {
                None => (Some(discovery::list(all)), ""),
                Some(id) => (discovery::by_id(all, id), "schema"),
            }
        }
        _ => (None, "discovery endpoint"),
    };
    found
        .map(Outcome::Document)
        .ok_or_else(|| ScimError::not_found(format!("no {what} with that id")))
}
