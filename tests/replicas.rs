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
        let admin = r.admin();
        admin
            .put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
            .await
            .expect("workspace");
        let token = support::scim::issue_token(&admin, "acme").await;
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/scim/v2/acme", r.url),
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
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("idsync_scim_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
    for i in 0..48 {
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
    for (_, outcome) in &log {
        if let Ok(id) = outcome {
            let (status, body) = scim
                .send(reqwest::Method::GET, &format!("/Users/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "acknowledged {id} lost: {body}");
        }
    }
}
