//! A client of the admin API, shared by the operator and `idsync admin`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use super::model::{
    ApiKeyRequest, ApiKeyView, AuditRecord, DeliveryView, ErrorBody, EventPage, InfoView,
    IssuedApiKeyView, KeyDoc, ListView, MemberExplanation, MemberView, ObjectKind, ObjectView,
    PendingApproval, ReplayRequest, ReplayView, ScimTokenDoc, SignInHealthView, TokenView,
    UsageView,
};
use crate::{
    fingerprint::FingerprintKey,
    outbound::{BodyLimit, ClientOptions, FailureClass, FetchError, Guarded, OutboundPolicy},
};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error.
    #[error("identity service answered {status} ({code}): {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The service could not be reached or the connection broke.
    #[error("identity service unreachable: {0}")]
    Transport(String),
    /// The answer was not what the admin API sends.
    #[error("unexpected answer from the identity service: {0}")]
    Decode(String),
    #[error("invalid identity service configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Worth retrying: the service is down, overloaded or failed on its side.
    /// A 4xx means our request is wrong and will stay wrong until something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            ClientError::Transport(_) => true,
            ClientError::Decode(_) | ClientError::Config(_) => false,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A failed request: the host and a class (the token is a header, never in it).
fn transport(e: FetchError) -> ClientError {
    match e.class {
        FailureClass::RedirectRefused(_)
        | FailureClass::InvalidUrl
        | FailureClass::AddressRefused => ClientError::Config(e.to_string()),
        FailureClass::TooLarge(_) => ClientError::Decode(e.to_string()),
        _ => ClientError::Transport(e.to_string()),
    }
}

/// An admin API client for one identity service.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    http: Guarded,
    /// The service's fingerprint key, which the admin token derives.
    fingerprints: FingerprintKey,
    token: String,
    actor: Option<String>,
    /// Whose claim on a workspace id the writes are made under.
    claimant: Option<String>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AdminClient {
    /// A client for the service at `url` (its base URL, without `/admin/v1`).
    pub fn new(url: &str, token: &str, ca_bundle_pem: Option<&str>) -> Result<Self, ClientError> {
        Self::with_policy(url, token, ca_bundle_pem, OutboundPolicy::default())
    }

    /// [`Self::new`] with the operator's outbound address policy.
    pub fn with_policy(
        url: &str,
        token: &str,
        ca_bundle_pem: Option<&str>,
        policy: OutboundPolicy,
    ) -> Result<Self, ClientError> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "service URL {url:?} must start with http:// or https://"
            )));
        }
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            ca_bundle: ca_bundle_pem.map(str::to_string),
        };
        let http = Guarded::new(policy, &options).map_err(ClientError::Config)?;
        Ok(Self {
            base: format!("{url}/admin/v1"),
            http,
            fingerprints: FingerprintKey::from_admin_token(token),
            token: token.trim().to_string(),
            actor: None,
            claimant: None,
        })
    }

    /// The fingerprint the service gives `doc` when it stores it.
    pub fn fingerprint<T: Serialize>(&self, doc: &T) -> String {
        self.fingerprints.of(doc)
    }

    /// Makes every write on behalf of `claimant` (a Workspace resource, or
    /// `admin/<name>`): the service refuses writes to workspace ids another
    /// claimant holds, and claims free ones for this one.
    pub fn with_claimant(mut self, claimant: impl Into<String>) -> Self {
        self.claimant = Some(claimant.into());
        self
    }

    /// The claimant this client writes for, if any.
    pub fn claimant(&self) -> Option<&str> {
        self.claimant.as_deref()
    }

    /// Frees a workspace id's claim (as its owner, or as the administrator).
    pub async fn release_workspace(&self, workspace: &str) -> Result<bool, ClientError> {
        let answer: Option<serde_json::Value> = self
            .call(
                Method::POST,
                &format!("/workspaces/{workspace}/release"),
                None,
            )
            .await?;
        Ok(answer.is_some_and(|a| a["released"] == true))
    }

    /// Names the caller in the service's audit log.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Option<T>, ClientError> {
        let mut req = self
            .http
            .request(method, &format!("{}{path}", self.base))
            .map_err(transport)?
            .bearer_auth(&self.token);
        if let Some(actor) = &self.actor {
            req = req.header("x-idsync-actor", actor);
        }
        if let Some(claimant) = &self.claimant {
            req = req.header("x-idsync-claimant", claimant);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let (status, bytes) = self
            .http
            .send(req, BodyLimit::AdminApi)
            .await
            .map_err(transport)?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClientError::Decode(e.to_string()));
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            // Not the admin API's error body (a proxy's page, another
            // service): its text is not repeated into statuses and logs.
            Err(_) => (
                "unknown".to_string(),
                "the answer is not an idsync admin API error".to_string(),
            ),
        };
        Err(ClientError::Api {
            status,
            code,
            message,
        })
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.call(method, path, body)
            .await?
            .ok_or_else(|| ClientError::Decode("empty answer".into()))
    }

    fn object_path(kind: ObjectKind, workspace: &str, name: &str) -> String {
        match kind {
            ObjectKind::Workspace => format!("/workspaces/{workspace}"),
            _ => format!("/workspaces/{workspace}/{}/{name}", kind.collection()),
        }
    }

    pub async fn info(&self) -> Result<InfoView, ClientError> {
        self.expect(Method::GET, "/info", None).await
    }

    pub async fn put_object<T: Serialize>(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        doc: &T,
    ) -> Result<ObjectView, ClientError> {
        let path = Self::object_path(kind, workspace, name);
        self.expect(Method::PUT, &path, Some(to_json(doc)?)).await
    }

    /// The object, or `None` when it does not exist.
    pub async fn get_object(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
    ) -> Result<Option<ObjectView>, ClientError> {
        match self
            .call(Method::GET, &Self::object_path(kind, workspace, name), None)
            .await
        {
            Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            other => other,
        }
    }

    pub async fn list_objects(
        &self,
        kind: ObjectKind,
        workspace: Option<&str>,
    ) -> Result<Vec<ObjectView>, ClientError> {
        let path = match (kind, workspace) {
            (ObjectKind::Workspace, _) => "/workspaces".to_string(),
            (_, Some(ws)) => format!("/workspaces/{ws}/{}", kind.collection()),
            (_, None) => {
                return Err(ClientError::Config(format!(
                    "listing {} needs a workspace",
                    kind.collection()
                )));
            }
        };
        let list: ListView<ObjectView> = self.expect(Method::GET, &path, None).await?;
        Ok(list.items)
    }

    /// Deletes an object; one already gone counts as deleted.
    pub async fn delete_object(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        cascade: bool,
    ) -> Result<(), ClientError> {
        let mut path = Self::object_path(kind, workspace, name);
        if cascade {
            path.push_str("?cascade=true");
        }
        match self
            .call::<serde_json::Value>(Method::DELETE, &path, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Api { status, code, .. })
                if status == StatusCode::NOT_FOUND && code == "not_found" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Registers a key (idempotent by id: a key never changes).
    pub async fn put_key<D: KeyDoc>(&self, id: &str, doc: &D) -> Result<(), ClientError> {
        let path = format!("/{}/{id}", D::KIND.collection());
        let _: Option<serde_json::Value> =
            self.call(Method::PUT, &path, Some(to_json(doc)?)).await?;
        Ok(())
    }

    /// The keys of a kind the service holds, as `(id, doc)` pairs: ids, times
    /// and certificates, never secrets.
    pub async fn list_keys<D: KeyDoc>(&self) -> Result<Vec<(String, D)>, ClientError> {
        let path = format!("/{}", D::KIND.collection());
        let list: ListView<serde_json::Value> = self.expect(Method::GET, &path, None).await?;
        list.items
            .into_iter()
            .map(|v| {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                let mut doc = v;
                if let Some(o) = doc.as_object_mut() {
                    o.remove("id");
                }
                serde_json::from_value(doc)
                    .map(|d| (id, d))
                    .map_err(|e| ClientError::Decode(e.to_string()))
            })
            .collect()
    }

    /// Sign-in health of an SSO connection (counts, last success and failure).
    pub async fn sign_in_health(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<SignInHealthView, ClientError> {
        self.expect(
            Method::GET,
            &format!("/workspaces/{workspace}/connections/{name}/sign-ins"),
            None,
        )
        .await
    }

    pub async fn put_token(
        &self,
        workspace: &str,
        id: &str,
        doc: &ScimTokenDoc,
    ) -> Result<TokenView, ClientError> {
        let path = format!("/workspaces/{workspace}/scim-tokens/{id}");
        self.expect(Method::PUT, &path, Some(to_json(doc)?)).await
    }

    /// A member by SCIM id or userName: role, assignments, groups.
    pub async fn member(&self, workspace: &str, who: &str) -> Result<MemberView, ClientError> {
        let who: String = url::form_urlencoded::byte_serialize(who.as_bytes()).collect();
        let path = format!("/workspaces/{workspace}/members/{who}");
        self.expect(Method::GET, &path, None).await
    }

    /// A page of a workspace's events after `after` (a `seq`).
    pub async fn events(
        &self,
        workspace: &str,
        after: i64,
        limit: i64,
    ) -> Result<EventPage, ClientError> {
        let path = format!("/workspaces/{workspace}/events?after={after}&limit={limit}");
        self.expect(Method::GET, &path, None).await
    }

    /// Where endpoint `name`'s deliveries stand.
    pub async fn webhook_deliveries(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<DeliveryView, ClientError> {
        let path = format!("/workspaces/{workspace}/webhooks/{name}/deliveries");
        self.expect(Method::GET, &path, None).await
    }

    /// Delivers the events of a time range to endpoint `name` again.
    pub async fn replay_webhook(
        &self,
        workspace: &str,
        name: &str,
        range: &ReplayRequest,
    ) -> Result<ReplayView, ClientError> {
        let path = format!("/workspaces/{workspace}/webhooks/{name}/replay");
        self.expect(Method::POST, &path, Some(to_json(range)?))
            .await
    }

    /// What the IdPs used after `since` (SCIM credentials, sign-ins).
    pub async fn usage(&self, since: jiff::Timestamp) -> Result<UsageView, ClientError> {
        let since: String =
            url::form_urlencoded::byte_serialize(since.to_string().as_bytes()).collect();
        self.expect(Method::GET, &format!("/usage?since={since}"), None)
            .await
    }

    /// Why a member has their role and access (`members explain`).
    pub async fn explain_member(
        &self,
        workspace: &str,
        who: &str,
    ) -> Result<MemberExplanation, ClientError> {
        let who: String = url::form_urlencoded::byte_serialize(who.as_bytes()).collect();
        let path = format!("/workspaces/{workspace}/members/{who}/explain");
        self.expect(Method::GET, &path, None).await
    }

    /// The roles waiting for an approval, longest waiting first.
    pub async fn pending_approvals(
        &self,
        workspace: &str,
    ) -> Result<Vec<PendingApproval>, ClientError> {
        let path = format!("/workspaces/{workspace}/pending-approvals");
        let list: ListView<PendingApproval> = self.expect(Method::GET, &path, None).await?;
        Ok(list.items)
    }

    /// Issues an API key; the answer holds its value, shown this once.
    pub async fn issue_api_key(
        &self,
        workspace: &str,
        req: &ApiKeyRequest,
    ) -> Result<IssuedApiKeyView, ClientError> {
        let path = format!("/workspaces/{workspace}/api-keys");
        self.expect(Method::POST, &path, Some(to_json(req)?)).await
    }

    /// A workspace's API keys, or one principal's (SCIM id or userName).
    pub async fn list_api_keys(
        &self,
        workspace: &str,
        principal: Option<&str>,
    ) -> Result<Vec<ApiKeyView>, ClientError> {
        let mut path = format!("/workspaces/{workspace}/api-keys");
        if let Some(p) = principal {
            let p: String = url::form_urlencoded::byte_serialize(p.as_bytes()).collect();
            path.push_str(&format!("?principal={p}"));
        }
        let list: ListView<ApiKeyView> = self.expect(Method::GET, &path, None).await?;
        Ok(list.items)
    }

    /// Revokes an API key; an unknown or revoked one counts as revoked.
    pub async fn revoke_api_key(&self, workspace: &str, id: &str) -> Result<(), ClientError> {
        let path = format!("/workspaces/{workspace}/api-keys/{id}");
        self.call::<serde_json::Value>(Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    pub async fn get_token(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<TokenView>, ClientError> {
        match self
            .call(
                Method::GET,
                &format!("/workspaces/{workspace}/scim-tokens/{id}"),
                None,
            )
            .await
        {
            Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            other => other,
        }
    }

    pub async fn list_tokens(&self, workspace: &str) -> Result<Vec<TokenView>, ClientError> {
        let list: ListView<TokenView> = self
            .expect(
                Method::GET,
                &format!("/workspaces/{workspace}/scim-tokens"),
                None,
            )
            .await?;
        Ok(list.items)
    }

    /// Revokes a token; an unknown or revoked one counts as revoked.
    pub async fn revoke_token(&self, workspace: &str, id: &str) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(
            Method::DELETE,
            &format!("/workspaces/{workspace}/scim-tokens/{id}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Audit entries, newest first. `query` is the URL query string
    /// (`workspace=acme&limit=50`).
    pub async fn audit(&self, query: &str) -> Result<Vec<AuditRecord>, ClientError> {
        let path = if query.is_empty() {
            "/audit".to_string()
        } else {
            format!("/audit?{query}")
        };
        let list: ListView<AuditRecord> = self.expect(Method::GET, &path, None).await?;
        Ok(list.items)
    }
}

fn to_json<T: Serialize>(doc: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(doc).map_err(|e| ClientError::Decode(e.to_string()))
}
