//! `/sso`: where browsers sign in and products check sessions. Handlers parse
//! the request, call `SsoService`, and render its answer: a redirect, an HTML
//! page that says why a sign-in was refused, or JSON.

use axum::{
    Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    SharedState, bearer_token, client_addr::ClientAddr, error::ApiError, with_retry_after,
};
use crate::service::{
    api_keys,
    sso::{
        AcsPost, OidcCallback, STATE_COOKIE, SignedIn, StateCookie,
        error::{Reason, SignInError},
        session::{self, COOKIE},
    },
    store::{LiveApiKey, SessionRecord, format_millis, now_millis},
};

/// How long the state cookie of a started sign-in lives (the request's TTL).
const STATE_COOKIE_MAX_AGE: u64 = 600;

pub fn routes(state: &SharedState) -> Router<SharedState> {
    // What browsers reach without any credential: each request spends from
    // its source's sign-in budget.
    let browser = Router::new()
        .route("/{workspace}/start", get(start))
        .route("/{workspace}/discover", get(discover))
        .route(
            "/{workspace}/oidc/{connection}/callback",
            get(oidc_callback),
        )
        .route("/{workspace}/saml/{connection}/acs", post(saml_acs))
        .route(
            "/{workspace}/saml/{connection}/metadata",
            get(saml_metadata),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_signin));
    Router::new()
        .route("/session", get(check_session))
        .route("/logout", post(logout))
        .merge(super::sso_keys::routes())
        .merge(browser)
}

/// Spends one unit of the source's sign-in budget, or answers 429.
async fn limit_signin(
    State(state): State<SharedState>,
    client: ClientAddr,
    req: Request,
    next: Next,
) -> Response {
    match state.rate_limits.signin.take(client.0) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let e = SignInError::new(Reason::RateLimited, "sign-in budget of this source spent");
            with_retry_after(refused(&e), wait)
        }
    }
}

/// The HTTP-POST binding's form.
#[derive(Debug, Default, Deserialize)]
struct SamlPost {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn saml_acs(
    State(state): State<SharedState>,
    client: ClientAddr,
    Path((workspace, connection)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SamlPost>,
) -> Response {
    let result = state
        .sso
        .saml_acs(
            &state.scim,
            client.0,
            &workspace,
            &connection,
            &AcsPost {
                response: form.saml_response.as_deref(),
                relay_state: form.relay_state.as_deref(),
                browser_state: cookie(&headers, STATE_COOKIE),
            },
        )
        .await;
    finished(&state, &workspace, result)
}

async fn saml_metadata(
    State(state): State<SharedState>,
    Path((workspace, connection)): Path<(String, String)>,
) -> Response {
    match state.sso.saml_metadata(&workspace, &connection).await {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response(),
        Err(e) => refused(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct StartQuery {
    email: Option<String>,
    connection: Option<String>,
    return_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DiscoverQuery {
    email: String,
}

fn refused(e: &SignInError) -> Response {
    (e.reason.status(), Html(e.page())).into_response()
}

fn cookie_header(value: String) -> HeaderValue {
    // Cookie values here are base64url, digits and fixed attribute text.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The state cookie of a started sign-in (`None`: clears it).
fn state_cookie(workspace: &str, cookie: Option<&StateCookie>, secure: bool) -> HeaderValue {
    let secure_attr = if secure { "; Secure" } else { "" };
    cookie_header(match cookie {
        // `SameSite=None` needs `Secure`; start_saml sets it only over https.
        Some(c) if c.cross_site_post => format!(
            "{STATE_COOKIE}={}; Path=/sso/{workspace}/; HttpOnly; SameSite=None; Secure; Max-Age={STATE_COOKIE_MAX_AGE}",
            c.value
        ),
        Some(c) => format!(
            "{STATE_COOKIE}={}; Path=/sso/{workspace}/; HttpOnly; SameSite=Lax; Max-Age={STATE_COOKIE_MAX_AGE}{secure_attr}",
            c.value
        ),
        None => format!(
            "{STATE_COOKIE}=; Path=/sso/{workspace}/; HttpOnly; SameSite=Lax; Max-Age=0{secure_attr}"
        ),
    })
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, name))
}

async fn start(
    State(state): State<SharedState>,
    Path(workspace): Path<String>,
    Query(q): Query<StartQuery>,
) -> Response {
    match state
        .sso
        .start(
            &workspace,
            q.connection.as_deref(),
            q.email.as_deref(),
            q.return_to.as_deref(),
        )
        .await
    {
        Ok(redirect) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&redirect.location) {
                headers.insert(header::LOCATION, location);
            }
            if let Some(c) = &redirect.state_cookie {
                headers.append(
                    header::SET_COOKIE,
                    state_cookie(&workspace, Some(c), state.sso.secure_cookies()),
                );
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            // The page says only the reason; the detail (which check, which
            // host) is for whoever reads the logs.
            tracing::info!(%workspace, reason = e.reason.code(), detail = %e.detail, "sign-in start refused");
            refused(&e)
        }
    }
}

async fn discover(
    State(state): State<SharedState>,
    Path(workspace): Path<String>,
    Query(q): Query<DiscoverQuery>,
    headers: HeaderMap,
) -> Response {
    let authenticated = bearer_token(&headers).is_some_and(|t| state.admin_token_matches(t));
    match state
        .sso
        .discover(&workspace, &q.email, authenticated)
        .await
    {
        Ok(d) => Json(d).into_response(),
        Err(e) => (
            e.reason.status(),
            Json(json!({"error": {"code": e.reason.code(), "message": e.detail}})),
        )
            .into_response(),
    }
}

async fn oidc_callback(
    State(state): State<SharedState>,
    client: ClientAddr,
    Path((workspace, connection)): Path<(String, String)>,
    Query(params): Query<OidcCallback>,
    headers: HeaderMap,
) -> Response {
    let browser_state = cookie(&headers, STATE_COOKIE);
    let result = state
        .sso
        .oidc_callback(
            &state.scim,
            client.0,
            &workspace,
            &connection,
            &params,
            browser_state,
        )
        .await;
    finished(&state, &workspace, result)
}

/// A finished sign-in: the session cookie and a redirect to where the person
/// was going; or the page that says why not.
/// The answer to a finished sign-in, which also clears the state cookie: it
/// served its one sign-in, won or lost.
fn finished(
    state: &SharedState,
    workspace: &str,
    result: Result<SignedIn, SignInError>,
) -> Response {
    let mut response = signed_in(state, result);
    response.headers_mut().append(
        header::SET_COOKIE,
        state_cookie(workspace, None, state.sso.secure_cookies()),
    );
    response
}

fn signed_in(state: &SharedState, result: Result<SignedIn, SignInError>) -> Response {
    match result {
        Ok(s) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&s.return_to) {
                headers.insert(header::LOCATION, location);
            }
            headers.append(
                header::SET_COOKIE,
                cookie_header(session::set_cookie(
                    Some(&s.cookie),
                    s.max_age,
                    state.sso.secure_cookies(),
                )),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => refused(&e),
    }
}

/// The credential a request carries.
pub(super) enum Presented<'a> {
    /// The session cookie, or its value as a bearer token (a product's
    /// backend checking on a browser's behalf).
    Session(&'a str),
    /// An API key, as a bearer token.
    ApiKey(&'a str),
}

/// An API key in `Authorization` wins over a cookie: a caller that sends a
/// key means the key.
pub(super) fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    match bearer_token(headers) {
        Some(key) if api_keys::is_api_key(key) => Some(Presented::ApiKey(key)),
        bearer => cookie(headers, COOKIE).or(bearer).map(Presented::Session),
    }
}

/// The session a request carries, if it carries one.
fn presented_session(headers: &HeaderMap) -> Option<&str> {
    match presented(headers)? {
        Presented::Session(s) => Some(s),
        Presented::ApiKey(_) => None,
    }
}

/// Stored by the service as a JSON array; a row it cannot read shows none
/// rather than failing the check.
fn assignments_json(stored: Option<&str>) -> Value {
    stored
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .unwrap_or_else(|| json!([]))
}

/// What a valid session answers: who, and their role now.
fn session_json(s: &SessionRecord) -> Value {
    json!({
        "workspace": s.workspace,
        "userId": s.user_id,
        "userName": s.user_name,
        "principalType": "User",
        "role": s.role,
        "assignments": assignments_json(s.assignments.as_deref()),
        "connection": s.connection,
        "createdAt": format_millis(s.created_at),
        "expiresAt": format_millis(s.expires_at),
    })
}

/// What a valid API key answers: the same about its principal, and the key.
fn key_json(k: &LiveApiKey) -> Value {
    json!({
        "workspace": k.workspace,
        "userId": k.principal_id,
        "userName": k.principal_name,
        "principalType": k.principal_kind.as_str(),
        "role": k.role,
        "assignments": assignments_json(k.assignments.as_deref()),
        "keyId": k.id,
        "createdAt": format_millis(k.created_at),
        "expiresAt": k.expires_at.map(format_millis),
    })
}

async fn check_session(
    State(state): State<SharedState>,
    client: ClientAddr,
    headers: HeaderMap,
) -> Response {
    // A source whose failed checks spent its budget gets 429 for further
    // failures (its valid sessions are still answered).
    let unauthorized = |state: &SharedState| {
        state
            .metrics
            .session_checks
            .with_label_values(&["invalid"])
            .inc();
        if let Err(wait) = state.rate_limits.sessions.take(client.0) {
            return with_retry_after(
                ApiError::too_many_requests(
                    "too many invalid session checks from this source; retry later",
                )
                .into_response(),
                wait,
            );
        }
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "no_session", "message": "no valid session: sign in again"}})),
        )
            .into_response()
    };
    let now = now_millis();
    let checked = match presented(&headers) {
        None => return unauthorized(&state),
        Some(Presented::Session(cookie)) => state
            .sso
            .sessions
            .check(cookie, now)
            .await
            .map(|s| s.as_ref().map(session_json)),
        Some(Presented::ApiKey(key)) => state
            .admin
            .keys()
            .check(key, now)
            .await
            .map(|k| k.as_ref().map(key_json)),
    };
    match checked {
        Ok(Some(answer)) => {
            state
                .metrics
                .session_checks
                .with_label_values(&["valid"])
                .inc();
            Json(answer).into_response()
        }
        Ok(None) => unauthorized(&state),
        Err(e) => {
            tracing::warn!(error = %e, "session check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"code": "unavailable", "message": "the session store is unreachable; retry"}})),
            )
                .into_response()
        }
    }
}

async fn logout(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let signed_out = match presented_session(&headers) {
        Some(presented) => match state.sso.sign_out(presented).await {
            Ok(revoked) => revoked,
            Err(e) => return refused(&e),
        },
        None => false,
    };
    let mut response = Json(json!({"signedOut": signed_out})).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(session::set_cookie(
            None,
            Default::default(),
            state.sso.secure_cookies(),
        )),
    );
    response
}
