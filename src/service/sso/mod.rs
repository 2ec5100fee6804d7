//! Sign-in: the OIDC relying party and SAML service provider, then the
//! workspace's policy (domain routing, SCIM-before-SSO, just-in-time
//! provisioning, approval of elevated roles), role resolution and a session.
//!
//! `SsoService` is the service layer tests call directly; `http::sso_routes`
//! only parses requests and renders its answers.

mod admit;
mod certificate_watch;
pub mod error;
pub mod identity;
pub mod oidc;
pub mod policy;
pub mod saml;
pub mod session;
pub mod sp_keys;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::{
    error::{Reason, SignInError},
    oidc::{AuthRequest, OidcClient},
    saml::{SamlSp, SpEndpoints},
    session::Sessions,
};
use super::{
    failure_audit::FailureAudit,
    metrics::ServiceMetrics,
    scim::{roles::RoleResolver, service::ScimService},
    store::{AuditEntry, ObjectKind, SessionRecord, SignInRequest, SignInStats, Store, now_millis},
};
use crate::{
    admin::{SsoConnectionDoc, WorkspaceDoc},
    api::{Protocol, SourceRanges},
};
pub use identity::{Identity, identity_from_assertion, identity_from_claims};

/// How long a started sign-in may take at the IdP.
const SIGNIN_REQUEST_TTL: i64 = 10 * 60 * 1000;

/// What a sign-in in flight must remember until the browser comes back.
enum InFlight {
    /// The nonce the ID token must carry and the PKCE verifier of the code.
    Oidc {
        nonce: String,
        code_verifier: String,
    },
    /// The AuthnRequest id the response's InResponseTo must name.
    Saml { request_id: String },
}
/// The cookie binding a started sign-in to the browser that started it.
pub const STATE_COOKIE: &str = "idsync_signin";

/// A workspace and one of its connections, as stored.
#[derive(Debug, Clone)]
pub struct ConnectionCtx {
    pub workspace: String,
    pub workspace_doc: WorkspaceDoc,
    pub name: String,
    pub doc: SsoConnectionDoc,
}

impl ConnectionCtx {
    /// The OIDC settings of an OIDC connection (the admin API refuses one
    /// without them, so their absence is a corrupt row).
    fn oidc(&self) -> Result<&crate::admin::OidcDoc, SignInError> {
        self.doc
            .oidc
            .as_ref()
            .ok_or_else(|| corrupt("oidc block missing"))
    }

    /// The SAML settings of a SAML connection.
    fn saml(&self) -> Result<&crate::admin::SamlDoc, SignInError> {
        self.doc
            .saml
            .as_ref()
            .ok_or_else(|| corrupt("saml block missing"))
    }
}

/// Where to send the browser to sign in.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub location: String,
    /// The state cookie to set, binding the sign-in to this browser.
    pub state_cookie: Option<StateCookie>,
}

/// The cookie that makes a sign-in finish only in the browser that started
/// it (login CSRF): it carries the handle the IdP echoes (OIDC `state`, SAML
/// RelayState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCookie {
    pub value: String,
    /// `SameSite=None` (SAML: the ACS is a cross-site POST, which `Lax`
    /// cookies do not reach) or `Lax` (OIDC: the callback is a top-level GET).
    pub cross_site_post: bool,
}

/// A finished sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub cookie: String,
    pub max_age: Duration,
    pub return_to: String,
    pub session: SessionRecord,
}

/// What a product asks before showing a password field.
///
/// Anyone may ask, so the unauthenticated answer has one shape for every email
/// and workspace, known or not: whether the email's domain requires SSO and
/// where to start. Whether this very person may use a password (the
/// break-glass list) is told only to an authenticated caller.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub workspace: String,
    pub sso_required: bool,
    pub sign_in_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
}

/// What the browser posts to the ACS (HTTP-POST binding), and the state
/// cookie it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcsPost<'a> {
    pub response: Option<&'a str>,
    pub relay_state: Option<&'a str>,
    pub browser_state: Option<&'a str>,
}

/// The callback parameters of an OIDC authorization response.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct OidcCallback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

pub struct SsoService {
    store: Store,
    public_url: String,
    oidc: OidcClient,
    saml: SamlSp,
    sp_keys: sp_keys::SpKeys,
    pub sessions: Sessions,
    roles: Arc<RoleResolver>,
    metrics: ServiceMetrics,
    /// Refused sign-ins, aggregated per source and minute.
    failures: Arc<FailureAudit>,
}

/// Refuses a callback from outside the workspace's `sourceRanges.signIn`,
/// before anything the browser brought is looked at; the refusal is counted
/// and audited like any failed sign-in.
fn source_allowed(ctx: &ConnectionCtx, client: IpAddr) -> Result<(), SignInError> {
    let ranges = ctx
        .workspace_doc
        .policy
        .as_ref()
        .and_then(|p| p.source_ranges.as_ref());
    match SourceRanges::allows(ranges.and_then(|r| r.sign_in.as_deref()), client) {
        true => Ok(()),
        false => Err(SignInError::new(
            Reason::SourceNotAllowed,
            format!("sign-in from {client}, outside the workspace's sourceRanges.signIn"),
        )),
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn corrupt(e: impl std::fmt::Display) -> SignInError {
    SignInError::new(Reason::Unavailable, format!("stored configuration: {e}"))
}

impl SsoService {
    pub fn new(
        store: Store,
        public_url: &str,
        metrics: ServiceMetrics,
        outbound: crate::outbound::Guarded,
        failures: Arc<FailureAudit>,
        session_cache: Arc<crate::service::session_cache::CheckCache>,
        roles: Arc<RoleResolver>,
    ) -> Self {
        Self {
            failures,
            sessions: Sessions::new(store.clone(), session_cache),
            sp_keys: sp_keys::SpKeys::new(store.clone()),
            store,
            public_url: public_url.trim_end_matches('/').to_string(),
            oidc: OidcClient::new(outbound.clone()),
            saml: SamlSp::new(outbound),
            roles,
            metrics,
        }
    }

    /// Whether cookies get `Secure` (everywhere but a plain-HTTP development URL).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    fn base(&self, workspace: &str) -> String {
        format!("{}/sso/{workspace}", self.public_url)
    }

    /// The OIDC redirect URI of a connection (what the admin API publishes).
    pub fn redirect_uri(&self, workspace: &str, connection: &str) -> String {
        format!("{}/oidc/{connection}/callback", self.base(workspace))
    }

    async fn workspace(&self, workspace: &str) -> Result<WorkspaceDoc, SignInError> {
        let object = self
            .store
            .get_object(ObjectKind::Workspace, workspace, workspace)
            .await?
            .ok_or_else(|| SignInError::new(Reason::UnknownConnection, "no such workspace"))?;
        serde_json::from_value(object.body).map_err(corrupt)
    }

    async fn connections(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, SsoConnectionDoc)>, SignInError> {
        self.store
            .list_objects(ObjectKind::SsoConnection, Some(workspace))
            .await?
            .into_iter()
            .map(|o| Ok((o.name, serde_json::from_value(o.body).map_err(corrupt)?)))
            .collect()
    }

    /// A workspace's connection by name.
    pub async fn connection(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<ConnectionCtx, SignInError> {
        let workspace_doc = self.workspace(workspace).await?;
        let object = self
            .store
            .get_object(ObjectKind::SsoConnection, workspace, name)
            .await?
            .ok_or_else(|| SignInError::new(Reason::UnknownConnection, "no such connection"))?;
        Ok(ConnectionCtx {
            workspace: workspace.to_string(),
            workspace_doc,
            name: name.to_string(),
            doc: serde_json::from_value(object.body).map_err(corrupt)?,
        })
    }

    /// Whether this email must use SSO, and where it would sign in. With
    /// `authenticated` (an admin-token caller), also whether this person may
    /// use a password and through which connection they would come.
    pub async fn discover(
        &self,
        workspace: &str,
        email: &str,
        authenticated: bool,
    ) -> Result<Discovery, SignInError> {
        let mut answer = Discovery {
            workspace: workspace.to_string(),
            sso_required: false,
            sign_in_url: None,
            password_allowed: None,
            connection: None,
        };
        let ws = match self.workspace(workspace).await {
            Ok(ws) => ws,
            // An unknown workspace answers like one that requires nothing.
            Err(e) if e.reason == Reason::UnknownConnection && !authenticated => return Ok(answer),
            Err(e) => return Err(e),
        };
        let connections = self.connections(workspace).await?;
        let routed = policy::route(&ws, &connections, None, Some(email))
            .filter(|(_, c)| policy::domain_allowed(&ws, c, email));
        answer.sso_required = policy::sso_required_for_domain(&ws, email);
        answer.sign_in_url = routed
            .map(|(n, _)| format!("{}/start?connection={}", self.base(workspace), urlencode(n)));
        if authenticated {
            answer.password_allowed = Some(!policy::sso_required(&ws, email));
            answer.connection = routed.map(|(n, _)| n.clone());
        }
        Ok(answer)
    }

    /// Starts a sign-in: picks the connection and answers where the browser goes.
    pub async fn start(
        &self,
        workspace: &str,
        named: Option<&str>,
        email: Option<&str>,
        return_to: Option<&str>,
    ) -> Result<Redirect, SignInError> {
        let ws = self.workspace(workspace).await?;
        let connections = self.connections(workspace).await?;
        let (name, doc) = policy::route(&ws, &connections, named, email).ok_or_else(|| {
            SignInError::new(
                Reason::UnknownConnection,
                "no connection for this email; pass ?email= or ?connection=",
            )
        })?;
        let ctx = ConnectionCtx {
            workspace: workspace.to_string(),
            workspace_doc: ws.clone(),
            name: name.clone(),
            doc: doc.clone(),
        };
        let return_to = policy::safe_return_to(return_to);
        match ctx.doc.protocol {
            Protocol::Oidc => self.start_oidc(&ctx, return_to).await,
            Protocol::Saml => self.start_saml(&ctx, return_to).await,
        }
    }

    /// The SP's URLs for a SAML connection (what the admin API publishes).
    pub fn sp_endpoints(&self, workspace: &str, connection: &str) -> SpEndpoints {
        let entity_id = format!("{}/saml/{connection}", self.base(workspace));
        SpEndpoints {
            acs_url: format!("{entity_id}/acs"),
            entity_id,
        }
    }

    async fn saml_provider(
        &self,
        ctx: &ConnectionCtx,
        idp_initiated: bool,
    ) -> Result<samael::service_provider::ServiceProvider, SignInError> {
        let cfg = ctx.saml()?;
        let metadata = self.saml.idp_metadata(cfg).await?;
        let endpoints = self.sp_endpoints(&ctx.workspace, &ctx.name);
        self.saml
            .provider(cfg, &metadata, &endpoints, idp_initiated)
    }

    async fn start_saml(
        &self,
        ctx: &ConnectionCtx,
        return_to: String,
    ) -> Result<Redirect, SignInError> {
        let provider = self.saml_provider(ctx, false).await?;
        let relay_state = oidc::random_token()?;
        let keys = self.sp_keys.get().await?;
        let signer = keys.signer(crate::service::store::now_millis());
        let (location, request_id) = self.saml.authn_redirect(&provider, &relay_state, signer)?;
        let in_flight = InFlight::Saml { request_id };
        self.remember_request(ctx, &relay_state, in_flight, return_to)
            .await?;
        // The ACS is a cross-site POST, which only a `SameSite=None; Secure`
        // cookie reaches, and browsers take such a cookie only over https:
        // there the RelayState is bound to this browser; over plain http
        // (development) InResponseTo alone binds the answer to this request.
        Ok(Redirect {
            location,
            state_cookie: self.secure_cookies().then_some(StateCookie {
                value: relay_state,
                cross_site_post: true,
            }),
        })
    }

    /// The SP metadata of a SAML connection.
    pub async fn saml_metadata(
        &self,
        workspace: &str,
        connection: &str,
    ) -> Result<String, SignInError> {
        let ctx = self.connection(workspace, connection).await?;
        if ctx.doc.saml.is_none() {
            return Err(SignInError::new(
                Reason::UnknownConnection,
                "not a SAML connection",
            ));
        }
        let keys = self.sp_keys.get().await?;
        let now = crate::service::store::now_millis();
        Ok(saml::sp_metadata(
            &self.sp_endpoints(workspace, connection),
            keys.certificates(),
            keys.signer(now).is_some(),
        ))
    }

    /// A SAML signing key was registered on this replica: use it from now on.
    pub fn saml_keys_changed(&self) {
        self.sp_keys.invalidate();
    }

    /// A SAMLResponse posted to the ACS.
    #[tracing::instrument(name = "saml_acs", skip_all, fields(workspace = %workspace, connection = %connection))]
    pub async fn saml_acs(
        &self,
        scim: &ScimService,
        client: IpAddr,
        workspace: &str,
        connection: &str,
        post: &AcsPost<'_>,
    ) -> Result<SignedIn, SignInError> {
        let started = Instant::now();
        let ctx = self
            .callback_connection(workspace, connection, Protocol::Saml)
            .await?;
        let result = match source_allowed(&ctx, client) {
            Ok(()) => self.saml_sign_in(&ctx, post).await,
            Err(e) => Err(e),
        };
        self.finish(scim, client, &ctx, Protocol::Saml, started, result)
            .await
    }

    async fn saml_sign_in(
        &self,
        ctx: &ConnectionCtx,
        post: &AcsPost<'_>,
    ) -> Result<(Identity, String), SignInError> {
        let AcsPost {
            response,
            relay_state,
            browser_state,
        } = *post;
        let response = response
            .ok_or_else(|| SignInError::new(Reason::BadRequest, "the POST has no SAMLResponse"))?;
        let xml = saml::decode_response(response)?;
        let now = now_millis();
        let request = match relay_state.filter(|r| !r.is_empty()) {
            Some(relay) => self.take_request(ctx, relay, Protocol::Saml, now).await?,
            None => None,
        };
        let allow_unsolicited = ctx
            .doc
            .saml
            .as_ref()
            .is_some_and(|s| s.allow_idp_initiated == Some(true));
        if request.is_none() && !allow_unsolicited {
            return Err(SignInError::new(
                Reason::InvalidState,
                "the response answers no sign-in started here (unknown, used or expired \
                 RelayState) and IdP-initiated sign-in is off",
            ));
        }
        // Login CSRF: over https, a sign-in started here finishes only in the
        // browser that started it (see `start_saml`).
        if request.is_some() && self.secure_cookies() && !same_handle(browser_state, relay_state) {
            return Err(SignInError::new(
                Reason::InvalidState,
                "the RelayState does not belong to this browser",
            ));
        }
        let provider = self.saml_provider(ctx, request.is_none()).await?;
        let endpoints = self.sp_endpoints(&ctx.workspace, &ctx.name);
        let request_id = request.as_ref().and_then(|r| r.request_id.clone());
        let assertion = saml::verify(provider, xml, request_id, &endpoints.entity_id).await?;
        let replay_key = sha256_hex(&format!(
            "{}|{}",
            assertion.issuer.value.as_deref().unwrap_or(""),
            assertion.id
        ));
        if !self
            .store
            .remember_assertion(
                &replay_key,
                now,
                saml::assertion_expiry_millis(&assertion, now),
            )
            .await?
        {
            return Err(SignInError::new(
                Reason::Replayed,
                "this assertion was already used to sign in",
            ));
        }
        let cfg = ctx.saml()?;
        let identity = identity_from_assertion(&assertion, cfg.attribute_mapping.as_ref())?;
        let return_to = request.map_or_else(|| "/".to_string(), |r| r.return_to);
        Ok((identity, return_to))
    }

    async fn start_oidc(
        &self,
        ctx: &ConnectionCtx,
        return_to: String,
    ) -> Result<Redirect, SignInError> {
        let cfg = ctx.oidc()?;
        let discovery = self.oidc.discover(cfg).await?;
        let req = AuthRequest::new()?;
        let redirect_uri = self.redirect_uri(&ctx.workspace, &ctx.name);
        let location = self
            .oidc
            .authorization_url(&discovery, cfg, &redirect_uri, &req)?;
        let in_flight = InFlight::Oidc {
            nonce: req.nonce.clone(),
            code_verifier: req.code_verifier.clone(),
        };
        self.remember_request(ctx, &req.state, in_flight, return_to)
            .await?;
        Ok(Redirect {
            location,
            state_cookie: Some(StateCookie {
                value: req.state,
                cross_site_post: false,
            }),
        })
    }

    /// The OIDC redirect back from the IdP. `browser_state` is the state cookie.
    #[tracing::instrument(name = "oidc_callback", skip_all, fields(workspace = %workspace, connection = %connection))]
    pub async fn oidc_callback(
        &self,
        scim: &ScimService,
        client: IpAddr,
        workspace: &str,
        connection: &str,
        params: &OidcCallback,
        browser_state: Option<&str>,
    ) -> Result<SignedIn, SignInError> {
        let started = Instant::now();
        let ctx = self
            .callback_connection(workspace, connection, Protocol::Oidc)
            .await?;
        let result = match source_allowed(&ctx, client) {
            Ok(()) => self.oidc_sign_in(&ctx, params, browser_state).await,
            Err(e) => Err(e),
        };
        self.finish(scim, client, &ctx, Protocol::Oidc, started, result)
            .await
    }

    async fn oidc_sign_in(
        &self,
        ctx: &ConnectionCtx,
        params: &OidcCallback,
        browser_state: Option<&str>,
    ) -> Result<(Identity, String), SignInError> {
        if let Some(error) = &params.error {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(SignInError::new(
                Reason::IdpError,
                format!("the IdP answered error={code}"),
            ));
        }
        let (Some(code), Some(state)) = (&params.code, &params.state) else {
            return Err(SignInError::new(
                Reason::BadRequest,
                "the callback has no code or no state",
            ));
        };
        let now = now_millis();
        let request = self
            .take_request(ctx, state, Protocol::Oidc, now)
            .await?
            .ok_or_else(|| {
                SignInError::new(Reason::InvalidState, "unknown, used or expired state")
            })?;
        // Login CSRF: the state must come back to the browser that started it.
        if !same_handle(browser_state, Some(state)) {
            return Err(SignInError::new(
                Reason::InvalidState,
                "the state does not belong to this browser",
            ));
        }
        let cfg = ctx.oidc()?;
        let discovery = self.oidc.discover(cfg).await?;
        let redirect_uri = self.redirect_uri(&ctx.workspace, &ctx.name);
        let verifier = request.code_verifier.as_deref().unwrap_or_default();
        let (id_token, access_token) = self
            .oidc
            .exchange(&discovery, cfg, &redirect_uri, code, verifier)
            .await?;
        let nonce = request.nonce.as_deref().unwrap_or_default();
        let mut claims = self
            .oidc
            .validate_id_token(&discovery, cfg, &id_token, nonce, now / 1000)
            .await?;
        if cfg.use_userinfo == Some(true)
            && let Some(access_token) = access_token
        {
            // The ID token's claims win: userinfo only fills in what it lacks.
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let extra = self.oidc.userinfo(&discovery, &access_token, sub).await?;
            for (k, v) in extra {
                claims.entry(k).or_insert(v);
            }
        }
        let identity = identity_from_claims(
            &claims,
            cfg.claim_mapping.as_ref(),
            cfg.trust_unverified_email == Some(true),
        )?;
        Ok((identity, request.return_to))
    }

    /// After the protocol: policy, user, role, session; then the books (audit,
    /// connection health, metrics) for success and failure alike.
    async fn finish(
        &self,
        scim: &ScimService,
        client: IpAddr,
        ctx: &ConnectionCtx,
        protocol: Protocol,
        started: Instant,
        authenticated: Result<(Identity, String), SignInError>,
    ) -> Result<SignedIn, SignInError> {
        let result = match authenticated {
            Ok((identity, return_to)) => {
                self.admit(scim, ctx, protocol, &identity, return_to).await
            }
            Err(e) => Err(e),
        };
        let now = now_millis();
        let reason = result.as_ref().err().map(|e| e.reason.code());
        let label = reason.unwrap_or("success");
        self.metrics
            .sso_signins
            .with_label_values(&[&ctx.workspace, &ctx.name, protocol.as_str(), label])
            .inc();
        self.metrics
            .sso_duration
            .with_label_values(&[protocol.as_str()])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = self
            .store
            .record_signin_outcome(&ctx.workspace, &ctx.name, reason, now)
            .await
        {
            tracing::warn!(error = %e, "could not record sign-in health");
        }
        if let Err(e) = &result {
            tracing::info!(workspace = %ctx.workspace, connection = %ctx.name, reason = e.reason.code(), detail = %e.detail, "sign-in refused");
            let entry = AuditEntry {
                workspace: Some(ctx.workspace.clone()),
                actor: format!("sso:{}", ctx.name),
                action: "sign_in_failed".into(),
                kind: Some("SSOConnection".into()),
                name: Some(ctx.name.clone()),
                detail: Some(json!({"protocol": protocol.as_str(), "detail": e.detail})),
            };
            self.failures.record(client, e.reason.code(), entry).await;
        }
        result
    }

    /// The connection an IdP's answer is addressed to. One that does not exist
    /// (or speaks another protocol) is counted under `unknown`, so callers
    /// cannot mint metric label values from the URL.
    async fn callback_connection(
        &self,
        workspace: &str,
        connection: &str,
        protocol: Protocol,
    ) -> Result<ConnectionCtx, SignInError> {
        let found = self
            .connection(workspace, connection)
            .await
            .and_then(|ctx| {
                if ctx.doc.protocol == protocol {
                    Ok(ctx)
                } else {
                    Err(SignInError::new(
                        Reason::UnknownConnection,
                        format!("not an {} connection", protocol.as_str()),
                    ))
                }
            });
        if let Err(e) = &found {
            self.metrics
                .sso_signins
                .with_label_values(&["unknown", "unknown", protocol.as_str(), e.reason.code()])
                .inc();
        }
        found
    }

    /// Takes (once) the sign-in in flight that `handle` names, if this
    /// connection started it over `protocol`.
    async fn take_request(
        &self,
        ctx: &ConnectionCtx,
        handle: &str,
        protocol: Protocol,
        now: i64,
    ) -> Result<Option<SignInRequest>, SignInError> {
        let taken = self
            .store
            .take_signin_request(&sha256_hex(handle), now)
            .await?;
        Ok(taken.filter(|r| {
            r.workspace == ctx.workspace
                && r.connection == ctx.name
                && r.protocol == protocol.as_str()
        }))
    }

    /// Records a sign-in in flight under the SHA-256 of the handle the browser
    /// carries back (OIDC `state`, SAML RelayState).
    async fn remember_request(
        &self,
        ctx: &ConnectionCtx,
        handle: &str,
        in_flight: InFlight,
        return_to: String,
    ) -> Result<(), SignInError> {
        let (protocol, nonce, code_verifier, request_id) = match in_flight {
            InFlight::Oidc {
                nonce,
                code_verifier,
            } => (Protocol::Oidc, Some(nonce), Some(code_verifier), None),
            InFlight::Saml { request_id } => (Protocol::Saml, None, None, Some(request_id)),
        };
        let now = now_millis();
        self.store
            .put_signin_request(&SignInRequest {
                id: sha256_hex(handle),
                workspace: ctx.workspace.clone(),
                connection: ctx.name.clone(),
                protocol: protocol.as_str().into(),
                nonce,
                code_verifier,
                request_id,
                return_to,
                created_at: now,
                expires_at: now + SIGNIN_REQUEST_TTL,
            })
            .await?;
        Ok(())
    }

    /// Sign-in health of a connection, for the admin API and the operator.
    pub async fn stats(
        &self,
        workspace: &str,
        connection: &str,
    ) -> Result<SignInStats, SignInError> {
        Ok(self.store.signin_stats(workspace, connection).await?)
    }

    /// Ends the session a cookie names.
    pub async fn sign_out(&self, cookie: &str) -> Result<bool, SignInError> {
        let Some(id) = self.sessions.verify(cookie).await? else {
            return Ok(false);
        };
        let now = now_millis();
        let Some(session) = self.store.live_session(&id, now).await? else {
            self.sessions.forget(&id);
            return Ok(false);
        };
        let entry = AuditEntry {
            workspace: Some(session.workspace.clone()),
            actor: format!("user:{}", session.user_id),
            action: "sign_out".into(),
            kind: Some("User".into()),
            name: Some(session.user_id.clone()),
            detail: None,
        };
        let revoked = self.store.revoke_session(&id, &entry, now).await?;
        self.sessions.forget(&id);
        Ok(revoked)
    }
}

/// Whether the cookie carries the handle the IdP echoed (constant time).
fn same_handle(cookie: Option<&str>, echoed: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    match (cookie, echoed) {
        (Some(c), Some(e)) => c.len() == e.len() && bool::from(c.as_bytes().ct_eq(e.as_bytes())),
        _ => false,
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
