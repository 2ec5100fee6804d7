//! A browser's view of sign-in: the identity service on a known port (so the IdP
//! can redirect back to it), a real OpenID Provider, and a cookie-jar client
//! that walks the redirect dance and fills in the IdP's login and consent forms.

use std::sync::Arc;

use idsync::{
    admin::AdminClient,
    service::{self, RunningService, ServeConfig, store::ObjectKind},
};
use reqwest::{StatusCode, redirect};
use serde_json::{Value, json};

use super::{
    ADMIN_TOKEN, Db, TestDb,
    cluster::{OidcProvider, free_port, wait_http_ok},
    process::OwnedProcess,
    repo_root,
};

pub const CLIENT_ID: &str = "idsync-test";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789";

pub struct SignInFixture {
    pub db: TestDb,
    pub service: ServiceUnderTest,
    pub admin: AdminClient,
    pub idp: OidcProvider,
    /// `http://127.0.0.1:PORT`: the service itself.
    pub base: String,
    /// The URL IdPs and browsers reach the service at (`base` unless a proxy
    /// stands in front).
    pub public: String,
    pub port: u16,
    /// The SAML IdP (samlify), when the fixture has the `entra` SAML connection.
    pub saml_idp: Option<OwnedProcess>,
}

/// What the SAML IdP posts back through the browser.
pub struct SamlPost {
    pub acs: String,
    pub response: String,
    pub relay_state: Option<String>,
}

/// What the service answered at the end of a sign-in.
pub struct Landing {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Landing {
    async fn read(r: reqwest::Response) -> Self {
        let status = r.status();
        let location = header(&r, "location");
        let set_cookies = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let body = r.text().await.unwrap_or_default();
        Self {
            status,
            location,
            set_cookies,
            body,
        }
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let v = c.strip_prefix("idsync_session=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_string())
        })
    }
}

/// How the identity service under test runs.
pub enum ServiceUnderTest {
    /// `service::start` in the test process.
    InProcess(RunningService),
    /// `idsync serve` as a process of its own, for tests that watch what a
    /// hostile request does to the process (crashes, threads, memory).
    Process(OwnedProcess),
}

impl ServiceUnderTest {
    /// The process id of a separate `idsync serve`.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ServiceUnderTest::InProcess(_) => None,
            ServiceUnderTest::Process(p) => p.pid(),
        }
    }

    /// Writes the counts of aggregated refusals now instead of when their
    /// minute is over (in process only).
    pub async fn flush_audit(&self) {
        if let ServiceUnderTest::InProcess(s) = self {
            s.state.failures.flush(true).await;
        }
    }

    pub fn is_running(&self) -> bool {
        match self {
            ServiceUnderTest::InProcess(_) => true,
            ServiceUnderTest::Process(p) => p.is_running(),
        }
    }
}

/// Options for [`SignInFixture::start_with`].
#[derive(Debug, Clone, Default)]
pub struct FixtureOptions {
    /// Run `idsync serve` as a separate process.
    pub process: bool,
    /// Extra `idsync serve` flags (process only).
    pub serve_args: Vec<String>,
    /// The public URL, when the service sits behind a proxy (default: its
    /// own `http://127.0.0.1:PORT`).
    pub public_url: Option<String>,
}

/// Starts the identity service with its public URL on its own port: in
/// process, or as `idsync serve`. Another process may take the chosen port
/// before the service binds it, so a few are tried.
async fn start_service_on_a_port(db: &TestDb, opts: &FixtureOptions) -> (ServiceUnderTest, u16) {
    for attempt in 0.. {
        let port = free_port();
        let direct = format!("http://127.0.0.1:{port}");
        let public_url = opts.public_url.clone().unwrap_or_else(|| direct.clone());
        // IDSYNC_TEST_SERVE_BIN runs every fixture against that binary.
        let process = opts.process || std::env::var_os("IDSYNC_TEST_SERVE_BIN").is_some();
        let started = if process {
            let token_file = db.dir.path().join("admin-token");
            std::fs::write(&token_file, ADMIN_TOKEN).expect("admin token file");
            let mut args = vec![
                "serve".to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--database-url".into(),
                db.url.clone(),
                "--admin-token-file".into(),
                token_file.display().to_string(),
                "--public-url".into(),
                public_url.clone(),
            ];
            args.extend(opts.serve_args.iter().cloned());
            let process = OwnedProcess::spawn(
                "idsync serve",
                &serve_binary(),
                args,
                &[],
                &db.dir.path().join(format!("serve-{attempt}.log")),
            );
            match wait_until_ready(&format!("{direct}/readyz"), &process).await {
                Ok(()) => Ok(ServiceUnderTest::Process(process)),
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        } else {
            service::start(ServeConfig::new(
                format!("127.0.0.1:{port}").parse().expect("valid address"),
                db.url.clone(),
                ADMIN_TOKEN,
                public_url,
            ))
            .await
            .map(ServiceUnderTest::InProcess)
        };
        match started {
            Ok(service) => return (service, port),
            Err(e) if attempt < 5 => {
                eprintln!("identity service did not start on {port} ({e:#}); trying another port")
            }
            Err(e) => panic!("identity service starts: {e:#}"),
        }
    }
    unreachable!("the loop returns or panics")
}

/// The `idsync` binary a separate service runs: this build's, or the one
/// `IDSYNC_TEST_SERVE_BIN` names (to run the hostile-input tests against an
/// older build and see them fail there).
fn serve_binary() -> std::path::PathBuf {
    std::env::var_os("IDSYNC_TEST_SERVE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_idsync").into())
}

/// Waits for a separate `idsync serve` to answer `/readyz`, or to exit.
async fn wait_until_ready(url: &str, process: &OwnedProcess) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if !process.is_running() {
            return Err(format!("idsync serve exited:\n{}", process.tail()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!(
        "idsync serve never became ready:\n{}",
        process.tail()
    ))
}

impl SignInFixture {
    /// Workspace `acme` (with `workspace_doc`), an OIDC connection `okta` to a real
    /// oidc-provider holding `accounts`, and a RoleMapping when given.
    pub async fn start(
        db: Db,
        workspace_doc: Value,
        accounts: Value,
        mapping: Option<Value>,
    ) -> Self {
        Self::start_with(
            db,
            workspace_doc,
            accounts,
            mapping,
            FixtureOptions::default(),
        )
        .await
    }

    /// `start` with the service run as `opts` says.
    pub async fn start_with(
        db: Db,
        workspace_doc: Value,
        accounts: Value,
        mapping: Option<Value>,
        opts: FixtureOptions,
    ) -> Self {
        let db = TestDb::new(db).await;
        let (service, port) = start_service_on_a_port(&db, &opts).await;
        let base = format!("http://127.0.0.1:{port}");
        let public = opts.public_url.clone().unwrap_or_else(|| base.clone());
        let redirect_uri = format!("{public}/sso/acme/oidc/okta/callback");
        let idp = OidcProvider::start(
            db.dir.path(),
            json!([{
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code"], "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }]),
            accounts,
        );
        let admin = AdminClient::new(&base, ADMIN_TOKEN, None)
            .expect("client")
            .with_actor("test");
        admin
            .put_object(ObjectKind::Workspace, "acme", "acme", &workspace_doc)
            .await
            .expect("workspace stored");
        admin
            .put_object(
                ObjectKind::SsoConnection,
                "acme",
                "okta",
                &json!({
                    "protocol": "oidc", "displayName": "Okta", "domains": ["acme.com"],
                    "oidc": {
                        "issuer": idp.issuer, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                        "scopes": ["openid", "email", "profile", "groups"],
                    },
                }),
            )
            .await
            .expect("connection stored");
        if let Some(mapping) = mapping {
            admin
                .put_object(ObjectKind::RoleMapping, "acme", "default", &mapping)
                .await
                .expect("role mapping stored");
        }
        Self {
            db,
            service,
            admin,
            idp,
            base,
            public,
            port,
            saml_idp: None,
        }
    }

    /// Like `start`, plus a SAML connection `entra` (domain acme.io) to a real
    /// samlify IdP holding `saml_accounts`, imported by its metadata URL.
    pub async fn start_with_saml(
        db: Db,
        workspace_doc: Value,
        saml_accounts: Value,
        mapping: Option<Value>,
        allow_idp_initiated: bool,
    ) -> Self {
        Self::start_with_saml_idp(
            db,
            workspace_doc,
            saml_accounts,
            mapping,
            allow_idp_initiated,
            &[],
        )
        .await
    }

    /// `start_with_saml` with extra environment for the IdP (e.g.
    /// `IDP_WANT_SIGNED_REQUESTS=1`).
    pub async fn start_with_saml_idp(
        db: Db,
        workspace_doc: Value,
        saml_accounts: Value,
        mapping: Option<Value>,
        allow_idp_initiated: bool,
        idp_env: &[(&str, &str)],
    ) -> Self {
        let mut f = Self::start(db, workspace_doc, json!({}), mapping).await;
        f.add_saml_idp(saml_accounts, allow_idp_initiated, idp_env)
            .await;
        f
    }

    /// Adds the SAML connection `entra` (domain acme.io) to a real samlify IdP
    /// holding `saml_accounts`, imported by its metadata URL.
    pub async fn add_saml_idp(
        &mut self,
        saml_accounts: Value,
        allow_idp_initiated: bool,
        idp_env: &[(&str, &str)],
    ) {
        let f = self;
        let sp = format!("{}/sso/acme/saml/entra", f.public);
        let idp_port = free_port();
        let data = repo_root().join("tests/data");
        let process = OwnedProcess::spawn(
            "saml-idp",
            std::path::Path::new("node"),
            [
                repo_root()
                    .join("tests/idp/saml-idp.mjs")
                    .display()
                    .to_string(),
                idp_port.to_string(),
            ],
            &[
                ("IDP_ACCOUNTS", saml_accounts.to_string()),
                (
                    "IDP_KEY",
                    data.join("saml-idp-key.pem").display().to_string(),
                ),
                (
                    "IDP_CERT",
                    data.join("saml-idp-cert.pem").display().to_string(),
                ),
                ("SP_ENTITY_ID", sp.clone()),
                ("SP_ACS_URL", format!("{sp}/acs")),
                ("IDSYNC_OWNER_PID", std::process::id().to_string()),
            ]
            .into_iter()
            .chain(idp_env.iter().map(|(k, v)| (*k, v.to_string())))
            .collect::<Vec<_>>(),
            &f.db.dir.path().join("saml-idp.log"),
        );
        let metadata = format!("http://127.0.0.1:{idp_port}/metadata");
        wait_http_ok(&metadata, std::time::Duration::from_secs(30), || {
            process.tail()
        });
        f.admin
            .put_object(
                ObjectKind::SsoConnection,
                "acme",
                "entra",
                &json!({
                    "protocol": "saml", "displayName": "Entra ID", "domains": ["acme.io"],
                    "saml": {"metadataUrl": metadata, "allowIdpInitiated": allow_idp_initiated},
                }),
            )
            .await
            .expect("SAML connection stored");
        f.saml_idp = Some(process);
    }

    /// SP-initiated SAML: start at the service, sign in at the IdP as `login`
    /// (asking it for `variant`), and return what the IdP posts back.
    pub async fn saml_through_idp(
        &self,
        browser: &reqwest::Client,
        login: &str,
        variant: &str,
    ) -> SamlPost {
        let start = format!(
            "{}/sso/acme/start?connection=entra&return_to=/app/home",
            self.base
        );
        let page = browser.get(&start).send().await.expect("start");
        let url = page.url().clone();
        let html = page.text().await.expect("IdP login page");
        let field = |name: &str| {
            capture(&html, &format!(r#"name="{name}" value=""#), '"').unwrap_or_default()
        };
        let form = [
            ("request_id", field("request_id")),
            ("relay_state", field("relay_state")),
            ("login", login.to_string()),
            ("variant", variant.to_string()),
        ];
        assert!(
            !form[0].1.is_empty(),
            "the IdP did not accept the AuthnRequest: {html}"
        );
        let posted = browser
            .post(url.join("/login").expect("URL"))
            .form(&form)
            .send()
            .await
            .expect("IdP login")
            .text()
            .await
            .expect("auto-post page");
        Self::saml_post(&posted)
    }

    /// An IdP-initiated response for `login`.
    pub async fn saml_unsolicited(&self, login: &str) -> SamlPost {
        let metadata = self
            .admin
            .get_object(ObjectKind::SsoConnection, "acme", "entra")
            .await
            .expect("connection")
            .expect("exists");
        let url = metadata.spec["saml"]["metadataUrl"]
            .as_str()
            .expect("metadata URL")
            .replace("/metadata", &format!("/initiate?login={login}"));
        let html = reqwest::get(url)
            .await
            .expect("initiate")
            .text()
            .await
            .expect("page");
        Self::saml_post(&html)
    }

    fn saml_post(html: &str) -> SamlPost {
        SamlPost {
            acs: capture(html, r#"action=""#, '"').unwrap_or_else(|| panic!("no form: {html}")),
            response: capture(html, r#"name="SAMLResponse" value=""#, '"').expect("SAMLResponse"),
            relay_state: capture(html, r#"name="RelayState" value=""#, '"'),
        }
    }

    /// Posts a SAMLResponse to the ACS as the browser's auto-posting form does.
    pub async fn post_acs(&self, browser: &reqwest::Client, post: &SamlPost) -> Landing {
        let mut form = vec![("SAMLResponse", post.response.clone())];
        if let Some(r) = &post.relay_state {
            form.push(("RelayState", r.clone()));
        }
        let r = browser
            .post(&post.acs)
            .form(&form)
            .send()
            .await
            .expect("ACS");
        Landing::read(r).await
    }

    /// A browser: a cookie jar, following redirects except back to the service,
    /// so each of the service's answers can be inspected.
    pub fn browser(&self) -> reqwest::Client {
        self.browser_with(reqwest::header::HeaderMap::new())
    }

    /// A browser whose every request carries `headers` (say, the
    /// `X-Forwarded-For` a proxy in front of the service would add).
    pub fn browser_with(&self, headers: reqwest::header::HeaderMap) -> reqwest::Client {
        let port = self.port;
        reqwest::Client::builder()
            .default_headers(headers)
            .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.url().port() == Some(port) {
                    attempt.stop()
                } else if attempt.previous().len() > 20 {
                    attempt.error("redirect loop")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .expect("client")
    }

    /// Starts a sign-in and walks the IdP's pages as `login`; returns the URL the
    /// IdP sends the browser back to (the callback), not yet visited.
    pub async fn through_idp(&self, browser: &reqwest::Client, email: &str, login: &str) -> String {
        let start = format!(
            "{}/sso/acme/start?email={}&return_to=/app/home",
            self.base,
            email.replace('@', "%40")
        );
        let r = browser.get(&start).send().await.expect("start");
        let mut page = r;
        for _ in 0..4 {
            if page.status() == StatusCode::SEE_OTHER || page.status() == StatusCode::FOUND {
                let location = header(&page, "location").expect("a redirect has a location");
                let url = page.url().join(&location).expect("a URL");
                if url.port() == Some(self.port) {
                    return url.to_string();
                }
                page = browser.get(url).send().await.expect("follow");
                continue;
            }
            let url = page.url().clone();
            let html = page.text().await.expect("IdP page");
            let action = capture(&html, r#"action=""#, '"')
                .unwrap_or_else(|| panic!("no form on the IdP's page {url}: {html}"));
            let prompt = capture(&html, r#"name="prompt" value=""#, '"').unwrap_or_default();
            let mut form = vec![("prompt", prompt.clone())];
            if prompt == "login" {
                form.push(("login", login.to_string()));
                form.push(("password", "any-password".to_string()));
            }
            let target = url.join(&action).expect("form action");
            page = browser
                .post(target)
                .form(&form)
                .send()
                .await
                .expect("submit");
        }
        panic!("the IdP never redirected back to the service");
    }

    /// Visits a service URL (the callback) and returns the service's answer.
    pub async fn land(&self, browser: &reqwest::Client, url: &str) -> Landing {
        let r = browser.get(url).send().await.expect("callback");
        Landing::read(r).await
    }

    /// The whole dance for `login` with `email`.
    pub async fn sign_in(&self, browser: &reqwest::Client, email: &str, login: &str) -> Landing {
        let callback = self.through_idp(browser, email, login).await;
        self.land(browser, &callback).await
    }

    /// `GET /sso/session` with a session cookie value.
    pub async fn session(&self, cookie: &str) -> (StatusCode, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}/sso/session", self.base))
            .header("cookie", format!("idsync_session={cookie}"))
            .send()
            .await
            .expect("session check");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The connection's sign-in health from the admin API.
    pub async fn health(&self, connection: &str) -> Value {
        reqwest::Client::new()
            .get(format!(
                "{}/admin/v1/workspaces/acme/connections/{connection}/sign-ins",
                self.base
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("health JSON")
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The text after `prefix` up to `end`, HTML entities for `&` undone.
fn capture(html: &str, prefix: &str, end: char) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let rest = &html[start..];
    Some(rest[..rest.find(end)?].replace("&amp;", "&"))
}
