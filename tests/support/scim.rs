//! A SCIM client's view of a running identity service: one workspace, one token.

use idsync::{
    admin::{AdminClient, ScimTokenDoc},
    service::{RunningService, store::ObjectKind},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{TestDb, client};

pub struct ScimFixture {
    pub db: TestDb,
    pub service: RunningService,
    pub admin: AdminClient,
    pub http: reqwest::Client,
    pub workspace: String,
    pub token: String,
}

/// An answer: status, headers and the JSON body (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts an RFC 7644 §3.12 error body with this status and scimType.
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status.to_string(), "{}", self.body);
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.body);
    }
}

impl ScimFixture {
    /// A service with workspace `acme` (with `workspace` as its document) and a token.
    pub async fn start(db: super::Db, workspace_doc: Value) -> Self {
        Self::start_with(db, workspace_doc, |_| {}).await
    }

    /// The same, with the service's settings changed by `configure` first.
    pub async fn start_with(
        db: super::Db,
        workspace_doc: Value,
        configure: impl FnOnce(&mut idsync::service::ServeConfig),
    ) -> Self {
        let db = TestDb::new(db).await;
        let service = super::start_service_with(&db.url, configure).await;
        let admin = client(&service);
        let fixture = Self {
            db,
            admin,
            http: reqwest::Client::new(),
            workspace: "acme".into(),
            token: String::new(),
            service,
        };
        fixture
            .admin
            .put_object(ObjectKind::Workspace, "acme", "acme", &workspace_doc)
            .await
            .expect("workspace stored");
        let token = fixture.issue_token("acme").await;
        Self { token, ..fixture }
    }

    /// Registers a new token for `workspace` and returns its value.
    pub async fn issue_token(&self, workspace: &str) -> String {
        issue_token(&self.admin, workspace).await
    }

    pub fn base(&self) -> String {
        format!("http://{}/scim/v2/{}", self.service.addr, self.workspace)
    }

    /// Sends a SCIM request with the fixture's token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, &self.token, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base())
        };
        let mut req = self.http.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "active": true,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// Creates a group with members and returns its id.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        let r = self
            .post(
                "/Groups",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": members,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// Audit entries of the workspace with this action, newest first.
    pub async fn audit(&self, action: &str) -> Vec<idsync::service::store::AuditRecord> {
        self.admin
            .audit(&format!("workspace={}&action={action}", self.workspace))
            .await
            .expect("audit read")
    }

    pub async fn stop(self) {
        self.service.stop().await.expect("service stops");
    }
}

/// Registers a new SCIM token for `workspace`, as the operator would, and
/// returns its value (what an IdP holds).
pub async fn issue_token(admin: &AdminClient, workspace: &str) -> String {
    let token = idsync::token::generate().expect("random token");
    admin
        .put_token(
            workspace,
            &token.id,
            &ScimTokenDoc {
                authentication: None,
                name: "test".into(),
                sha256: Some(token.hash()),
                expires_at: None,
            },
        )
        .await
        .expect("token registered");
    token.expose().to_string()
}
