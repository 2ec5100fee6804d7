//! Three `idsync serve` replicas on one PostgreSQL behind HAProxy
//! (round-robin, no stickiness): what an IdP spreading its SCIM requests
//! over them must never see (two users of one userName, a lost group
//! member, an ETag one replica honours and another does not), and that every
//! replica takes its share.

mod support;

use std::collections::BTreeSet;

use idsync::service::store::ObjectKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::replicas::Replicas;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A SCIM client of workspace `acme` through the balancer.
struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    async fn start(r: &Replicas) -> Self {
        Self::on(&r.admin(), &r.url).await
    }

    /// Workspace `acme` and a token through `admin`; requests to `url`.
    async fn on(admin: &idsync::admin::AdminClient, url: &str) -> Self {
        admin
            .put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
            .await
            .expect("workspace");
        let token = support::scim::issue_token(admin, "acme").await;
        Self {
            http: reqwest::Client::new(),
            base: format!("{url}/scim/v2/acme"),
            token,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.try_send(method, path, body)
            .await
            .expect("through the balancer")
    }

    /// The same, answering a failure to get an answer at all.
    async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), name)
}

/// SCIM requests each replica answered, from its `/metrics`.
async fn scim_requests(url: &str) -> f64 {
    let metrics = format!("{url}/metrics");
    support::cluster::metric_sum_at(&metrics, "idsync_scim_requests_total", &[]).await
}

/// A sign-in answer that is a refusal: a 4xx and no session.
fn assert_refused(answer: &support::signin::Landing, what: &str) {
    assert!(
        answer.status.is_client_error(),
        "{what}: {} {}",
        answer.status,
        answer.body
    );
    assert!(answer.session_cookie().is_none(), "{what} made a session");
}

/// The same userName created at once through every replica: one 201, the
/// rest 409 `uniqueness`, and one user.
#[tokio::test]
async fn concurrent_creates_of_one_user_name_make_one_user() {
    let r = Replicas::start(&dir("replicas-unique"), 3).await;
    let scim = Scim::start(&r).await;
    for name in ["ada", "bob", "cy", "dee"] {
        let user = json!({"schemas": [USER], "userName": format!("{name}@acme.com")});
        let answers = futures::future::join_all(
            (0..9).map(|_| scim.send(reqwest::Method::POST, "/Users", Some(user.clone()))),
        )
        .await;
        let created = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        assert_eq!(created, 1, "{name}: {answers:?}");
        for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["scimType"], "uniqueness", "{body}");
        }
        let filter = format!("/Users?filter=userName%20eq%20%22{name}%40acme.com%22");
        let (_, list) = scim.send(reqwest::Method::GET, &filter, None).await;
        assert_eq!(list["totalResults"], 1, "{list}");
    }
    for replica in &r.replicas {
        assert!(
            scim_requests(&replica.url).await > 0.0,
            "{} took no share",
            replica.url
        );
    }
}

/// Members added to one group by concurrent PATCHes spread over the
/// replicas: none is lost.
#[tokio::test]
async fn concurrent_member_adds_from_every_replica_lose_none() {
    let r = Replicas::start(&dir("replicas-group"), 3).await;
    let scim = Scim::start(&r).await;
    let mut ids = Vec::new();
    for i in 0..96 {
        let user = json!({"schemas": [USER], "userName": format!("m{i:02}@acme.com")});
        let (status, body) = scim.send(reqwest::Method::POST, "/Users", Some(user)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().expect("an id").to_string());
    }
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": "Engineering"});
    let (status, body) = scim
        .send(reqwest::Method::POST, "/Groups", Some(group))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("/Groups/{}", body["id"].as_str().expect("an id"));
    let answers = futures::future::join_all(ids.iter().map(|id| {
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                           "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
        scim.send(reqwest::Method::PATCH, &path, Some(patch))
    }))
    .await;
    for (status, body) in &answers {
        assert!(status.is_success(), "{status}: {body}");
    }
    let (_, group) = scim.send(reqwest::Method::GET, &path, None).await;
    let members: BTreeSet<&str> = group["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(members, ids.iter().map(String::as_str).collect(), "{group}");
}

/// An ETag read from one replica is honoured by another, and a stale one
/// refused by a third.
#[tokio::test]
async fn etags_hold_across_replicas() {
    let r = Replicas::start(&dir("replicas-etag"), 3).await;
    let scim = Scim::start(&r).await;
    let user = json!({"schemas": [USER], "userName": "ada@acme.com"});
    let (_, created) = scim.send(reqwest::Method::POST, "/Users", Some(user)).await;
    let id = created["id"].as_str().expect("an id");
    let at = |i: usize| format!("{}/scim/v2/acme/Users/{id}", r.replicas[i].url);
    let read = scim
        .http
        .get(at(0))
        .bearer_auth(&scim.token)
        .send()
        .await
        .expect("GET");
    let etag = read.headers()["etag"].to_str().expect("ASCII").to_string();
    let patch = |i: usize, etag: &str| {
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "replace", "path": "displayName", "value": format!("Ada {i}")}]});
        scim.http
            .patch(at(i))
            .bearer_auth(&scim.token)
            .header("if-match", etag.to_string())
            .json(&body)
            .send()
    };
    let fresh = patch(1, &etag).await.expect("PATCH");
    assert_eq!(fresh.status(), StatusCode::OK);
    let stale = patch(2, &etag).await.expect("PATCH");
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let body: Value = stale.json().await.expect("a SCIM error");
    assert_eq!(body["status"], "412", "{body}");
}

/// (When, the created id or the failure) of each request of a load.
type Outcomes = Vec<(std::time::Duration, Result<String, String>)>;

/// 16 clients creating users through the balancer for `secs` seconds.
fn create_load(
    scim: &std::sync::Arc<Scim>,
    started: std::time::Instant,
    secs: u64,
    log: &std::sync::Arc<std::sync::Mutex<Outcomes>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..16)
        .map(|c| {
            let (scim, log) = (scim.clone(), log.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while started.elapsed().as_secs() < secs {
                    let user = json!({"schemas": [USER], "userName": format!("k{c:02}-{i:05}")});
                    let answer = scim.try_send(reqwest::Method::POST, "/Users", Some(user));
                    let outcome = match answer.await {
                        Ok((StatusCode::CREATED, body)) if body["id"].is_string() => {
                            Ok(body["id"].as_str().unwrap_or_default().to_string())
                        }
                        Ok((status, body)) => Err(format!("{status}: {body}")),
                        Err(e) => Err(e.to_string()),
                    };
                    log.lock()
                        .expect("not poisoned")
                        .push((started.elapsed(), outcome));
                    i += 1;
                }
            })
        })
        .collect()
}

/// Every create of `log` that was acknowledged reads back.
async fn every_acknowledged_create_is_there(scim: &Scim, log: &Outcomes) {
    for (_, outcome) in log {
        if let Ok(id) = outcome {
            let path = format!("/Users/{id}");
            let (status, body) = scim.send(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "acknowledged {id} lost: {body}");
        }
    }
}

/// `kill -9` of one replica in the middle of a SCIM load through the
/// balancer: only requests in flight to it fail (at most one per client),
/// none once the balancer has noticed (measured and printed), and every
/// create any replica acknowledged is there afterwards.
#[tokio::test]
async fn a_replica_killed_under_load_fails_only_what_it_held() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let mut r = Replicas::start(&dir("replicas-kill"), 3).await;
    let scim = Arc::new(Scim::start(&r).await);
    let (started, log) = (Instant::now(), Arc::new(Mutex::new(Outcomes::new())));
    let clients = create_load(&scim, started, 6, &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = r.replicas.remove(1);
    let killed_at = started.elapsed();
    tokio::task::spawn_blocking(move || killed.kill())
        .await
        .expect("killed");
    for c in clients {
        c.await.expect("client");
    }
    let log = log.lock().expect("not poisoned").clone();
    let failures: Vec<_> = log.iter().filter(|(_, o)| o.is_err()).collect();
    let last = failures
        .iter()
        .map(|(t, _)| t.saturating_sub(killed_at))
        .max();
    println!(
        "{} creates, {} failed, the last {last:?} after the kill",
        log.len(),
        failures.len()
    );
    assert!(
        failures.iter().all(|(t, _)| *t >= killed_at),
        "a failure before the kill: {failures:?}"
    );
    assert!(
        failures.len() <= 16,
        "more failed than were in flight: {failures:?}"
    );
    let after = log
        .iter()
        .filter(|(t, o)| o.is_ok() && *t > killed_at + Duration::from_secs(2));
    assert!(after.count() > 0, "the others went on");
    every_acknowledged_create_is_there(&scim, &log).await;
}

/// A browser that keeps its cookies (per host: every replica's) and walks
/// the IdP's redirects, but stops at any answer of the service's.
fn browser(idp_issuer: &str) -> reqwest::Client {
    let idp_port = reqwest::Url::parse(idp_issuer).ok().and_then(|u| u.port());
    reqwest::Client::builder()
        .cookie_provider(std::sync::Arc::new(reqwest::cookie::Jar::default()))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().port() != idp_port {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("client")
}

/// An OIDC sign-in started on one replica finishes on another (state, nonce
/// and PKCE verifier are in the database, not in a replica), and its
/// session holds on a third at once; the same callback replayed to the third
/// is refused; a logout on one replica ends the session on all of them
/// within the session-check cache's second.
#[tokio::test]
async fn a_sign_in_spans_replicas_and_a_logout_ends_it_everywhere() {
    use support::cluster::eventually;
    let (f, others) = sign_in_replicas().await;
    let browser = browser(&f.idp.issuer);
    let callback = f.through_idp(&browser, "alice@acme.com", "alice").await;
    let on = |base: &str| callback.replacen(&f.base, base, 1);
    let landing = f.land(&browser, &on(&others[0].url)).await;
    let cookie = landing.session_cookie().unwrap_or_else(|| {
        panic!(
            "no session from the second replica: {} {}",
            landing.status, landing.body
        )
    });
    let session = |base: String| {
        let cookie = cookie.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/sso/session"))
                .header("cookie", format!("idsync_session={cookie}"))
                .send()
                .await
                .expect("session check");
            r.status()
        }
    };
    assert_eq!(session(others[1].url.clone()).await, StatusCode::OK);
    assert_eq!(session(f.base.clone()).await, StatusCode::OK);

    let replayed = f.land(&browser, &on(&others[1].url)).await;
    assert_refused(&replayed, "a replayed callback");

    let out = reqwest::Client::new()
        .post(format!("{}/sso/logout", others[0].url))
        .header("cookie", format!("idsync_session={cookie}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(
        session(others[0].url.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    for base in [f.base.clone(), others[1].url.clone()] {
        eventually(
            "the logout seen everywhere",
            std::time::Duration::from_secs(2),
            || {
                let check = session(base.clone());
                async move { (check.await == StatusCode::UNAUTHORIZED).then_some(()) }
            },
        )
        .await;
    }
}

/// The sign-in fixture's `idsync serve` on PostgreSQL (an OIDC connection
/// `okta` to a real oidc-provider holding alice), and two more replicas on
/// its database with its public URL.
async fn sign_in_replicas() -> (
    support::signin::SignInFixture,
    Vec<support::cluster::ServiceProcess>,
) {
    use support::{
        cluster::{ServiceProcess, free_port},
        signin::{FixtureOptions, SignInFixture},
    };
    let accounts = json!({"alice": {"email": "alice@acme.com", "email_verified": true}});
    let options = FixtureOptions {
        process: true,
        ..Default::default()
    };
    let domains = json!({"domains": ["acme.com"]});
    let f =
        SignInFixture::start_with(support::Db::Postgres, domains, accounts, None, options).await;
    let public = ["--public-url".to_string(), f.public.clone()];
    let others = (1..3)
        .map(|i| {
            let (name, token) = (format!("replica-{i}"), support::ADMIN_TOKEN.to_string());
            let at = (name.as_str(), free_port());
            ServiceProcess::start_replica_with(f.db.dir.path(), at, token, &f.db.url, &public)
        })
        .collect();
    (f, others)
}

/// A SAML sign-in started on one replica (its AuthnRequest id and
/// RelayState) is accepted at another replica's ACS, and the same
/// SAMLResponse posted to a third is refused as a replay.
#[tokio::test]
async fn a_saml_assertion_is_accepted_once_across_replicas() {
    let (mut f, others) = sign_in_replicas().await;
    let saml_accounts = json!({"ada": {"email": "ada@acme.io", "givenName": "Ada"}});
    f.add_saml_idp(saml_accounts, false, &[]).await;
    let connection = (f.admin)
        .get_object(ObjectKind::SsoConnection, "acme", "entra")
        .await
        .expect("read")
        .expect("the SAML connection");
    let metadata = connection.spec["saml"]["metadataUrl"]
        .as_str()
        .unwrap_or_default();
    let browser = browser(metadata);
    let post = f.saml_through_idp(&browser, "ada", "").await;
    let to = |base: &str| support::signin::SamlPost {
        acs: post.acs.replacen(&f.base, base, 1),
        response: post.response.clone(),
        relay_state: post.relay_state.clone(),
    };
    let landing = f.post_acs(&browser, &to(&others[0].url)).await;
    assert!(
        landing.session_cookie().is_some(),
        "no session from the second replica: {} {}",
        landing.status,
        landing.body
    );
    let replayed = f.post_acs(&browser, &to(&others[1].url)).await;
    assert_refused(&replayed, "a replayed assertion");
}

/// PostgreSQL going away under a SCIM load, as a restart looks to a client
/// (every connection cut, new ones refused), then reachable but answering
/// nothing (a black hole): each request is a 201 or a 503 with a SCIM body
/// and `Retry-After` (a stalled one within `--request-timeout`, not piling
/// up), never a 500; `/readyz` fails while the database is away; the
/// service recovers by itself each time; every acknowledged create is there.
// Several threads: the proxy runs in this runtime while the replica starts
// (its readiness wait blocks one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_or_stalled_is_a_503_and_recovers_without_a_restart() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use support::tcp_proxy::{Mode, TcpProxy};
    let dir = dir("replicas-db-faults");
    let pg = support::postgres::shared();
    let database = pg.fresh_database().await;
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", pg.port)).await;
    let proxied = database.replacen(&format!(":{}/", pg.port), &format!(":{}/", proxy.port), 1);
    let token = support::ADMIN_TOKEN.to_string();
    let timeout = ["--request-timeout".to_string(), "3s".into()];
    let at = ("replica", support::cluster::free_port());
    let service =
        support::cluster::ServiceProcess::start_replica_with(&dir, at, token, &proxied, &timeout);
    let scim = Arc::new(Scim::on(&service.admin(), &service.url).await);
    let (started, log) = (Instant::now(), Arc::new(Mutex::new(Outcomes::new())));
    let clients = create_load(&scim, started, 14, &log);
    let readyz = || async {
        reqwest::get(format!("{}/readyz", service.url))
            .await
            .map(|r| r.status())
    };
    let away = |mode: Mode, what: &'static str| {
        let (proxy, scim) = (&proxy, scim.clone());
        async move {
            proxy.set(mode);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ready = readyz().await;
            assert!(
                ready.as_ref().map_or(true, |s| *s != StatusCode::OK),
                "{what}: /readyz {ready:?}"
            );
            let r = scim
                .http
                .get(format!("{}/Users", scim.base))
                .bearer_auth(&scim.token)
                .send()
                .await
                .expect("an answer");
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert!(
                r.headers().contains_key("retry-after"),
                "{what}: no Retry-After"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set(Mode::Forwarding);
            let back = Instant::now();
            support::cluster::eventually(what, Duration::from_secs(20), || async {
                (readyz().await.ok() == Some(StatusCode::OK)).then_some(())
            })
            .await;
            println!("{what}: ready {:?} after the database", back.elapsed());
        }
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    away(Mode::Down, "back after a restart").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    away(Mode::Stalled, "back after a stall").await;
    for c in clients {
        c.await.expect("client");
    }
    let log = log.lock().expect("not poisoned").clone();
    let failed: Vec<&String> = log.iter().filter_map(|(_, o)| o.as_ref().err()).collect();
    println!("{} creates, {} answered 503", log.len(), failed.len());
    for f in &failed {
        assert!(
            f.starts_with("503") && f.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
            "{f}"
        );
    }
    let last = log.iter().filter(|(_, o)| o.is_ok()).map(|(t, _)| *t).max();
    assert!(
        last > Some(Duration::from_secs(12)),
        "creates succeed again at the end"
    );
    every_acknowledged_create_is_there(&scim, &log).await;
}

/// Failed authentications have a budget per replica, as the README says
/// (30 a minute from one source): through a balancer over three, a source
/// gets three budgets of 401s, then 429 with a SCIM body from every replica.
/// (A deployment that wants one budget per source has to put it in the
/// balancer.)
#[tokio::test]
async fn the_failed_authentication_budget_is_per_replica() {
    let r = Replicas::start(&dir("replicas-budget"), 3).await;
    let scim = Scim::start(&r).await;
    let wrong = format!("{}x", &scim.token[..scim.token.len() - 1]);
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..120 {
        let answer = http
            .get(format!("{}/Users", scim.base))
            .bearer_auth(&wrong)
            .send()
            .await
            .expect("an answer");
        statuses.push(answer.status());
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    // A budget refills at half a token a second: a second or two of this
    // loop may add one or two.
    assert!((90..=96).contains(&refused), "{refused} 401s: {statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    // Past it the source is refused before any credential is checked, the
    // right one too, with an RFC 7644 body.
    let (status, body) = scim.send(reqwest::Method::GET, "/Users", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["status"], "429", "{body}");
}
