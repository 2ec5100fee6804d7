//! SCIM benchmark: the identity service on SQLite, 64 concurrent keep-alive
//! clients on loopback, on whatever cores the machine has.
//!
//! 1. user creates/s (POST /Users), with p50/p99 latency;
//! 2. filtered `userName eq` lookups/s;
//! 3. PATCH add-member/s on a group that already has 10,000 members (answer
//!    without members, as `excludedAttributes=members` asks, and with them);
//! 4. time to provision 100,000 users and 10,000 groups of 10 members.
//!
//! Run with `cargo bench --bench scim` (IDSYNC_BENCH_USERS scales step 4 down).
//! Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{Value, json};
use support::{Db, scim::ScimFixture};

const CLIENTS: usize = 64;

struct Run {
    label: String,
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: usize,
}

impl Run {
    fn print(&mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            self.latencies
                .get(
                    ((self.latencies.len() as f64 * p) as usize)
                        .min(self.latencies.len().saturating_sub(1)),
                )
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{:<48} {:>8} ops {:>9.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   failures {}",
            self.label,
            self.count,
            self.count as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.failures
        );
    }
}

/// Runs `count` requests from `CLIENTS` concurrent tasks; `make(i)` gives the
/// i-th request (method, path, body).
async fn drive<F>(f: &Arc<ScimFixture>, label: &str, count: usize, make: F) -> Run
where
    F: Fn(usize) -> (Method, String, Option<Value>) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (f, make, next) = (f.clone(), make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (method, path, body) = make(i);
                let t = Instant::now();
                let url = format!("{}{path}", f.base());
                let mut req = f.http.request(method, url).bearer_auth(&f.token);
                if let Some(b) = body {
                    req = req
                        .header("content-type", "application/scim+json")
                        .body(b.to_string());
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => failures += 1,
                }
                latencies.push(t.elapsed());
            }
            (latencies, failures)
        }));
    }
    let mut run = Run {
        label: label.to_string(),
        count,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(count),
        failures: 0,
    };
    for t in tasks {
        let (l, fails) = t.await.expect("client task");
        run.latencies.extend(l);
        run.failures += fails;
    }
    run.elapsed = started.elapsed();
    run
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name, "externalId": format!("ext-{name}"), "active": true,
        "name": {"givenName": "Bench", "familyName": name},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
    })
}

async fn ids_of(f: &ScimFixture, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = 1;
    while ids.len() < n {
        let r = f
            .get(&format!("/Users?attributes=id&sortBy=userName&startIndex={start}&count=1000&filter=userName%20sw%20%22{prefix}%22"))
            .await;
        let page = r.body["Resources"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        start += page.len();
        ids.extend(
            page.iter()
                .filter_map(|u| u["id"].as_str().map(str::to_string)),
        );
    }
    ids.truncate(n);
    ids
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let scale: usize = std::env::var("IDSYNC_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "SCIM benchmark: SQLite, {CLIENTS} concurrent keep-alive clients, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let f = Arc::new(ScimFixture::start(Db::Sqlite, json!({})).await);

    // 1. Creates.
    let mut run = drive(&f, "POST /Users (create)", 10_000, |i| {
        (
            Method::POST,
            "/Users".into(),
            Some(user(&format!("c{i:06}"))),
        )
    })
    .await;
    run.print();

    // 2. Lookups by userName, as IdPs do before every create.
    let mut run = drive(&f, "GET /Users?filter=userName eq (lookup)", 40_000, |i| {
        let name = format!("c{:06}", (i * 7919) % 10_000);
        (
            Method::GET,
            format!("/Users?filter=userName%20eq%20%22{name}%22"),
            None,
        )
    })
    .await;
    run.print();

    // 3. PATCH add-member on a 10k-member group.
    let members = ids_of(&f, "c", 10_000).await;
    let first: Vec<Value> = members
        .iter()
        .take(9_000)
        .map(|id| json!({"value": id}))
        .collect();
    let group = f
        .post(
            "/Groups",
            json!({"displayName": "Everyone", "members": first}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("group created")
        .to_string();
    let rest = Arc::new(members[9_000..].to_vec());
    let (g, r) = (group.clone(), rest.clone());
    let mut run = drive(
        &f,
        "PATCH add-member, 9-10k group, no members back",
        500,
        move |i| {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": r[i]}]}]});
            (
                Method::PATCH,
                format!("/Groups/{g}?excludedAttributes=members"),
                Some(body),
            )
        },
    )
    .await;
    run.print();
    let (g, r) = (group.clone(), rest.clone());
    let mut run = drive(
        &f,
        "PATCH add-member, 10k group, whole group back",
        200,
        move |i| {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": r[500 + i]}]}]});
            (Method::PATCH, format!("/Groups/{g}"), Some(body))
        },
    )
    .await;
    run.print();

    // 4. Provisioning a directory from scratch, as an IdP's first sync does.
    let groups = scale / 10;
    let started = Instant::now();
    let mut users = drive(&f, &format!("provision: {scale} users"), scale, |i| {
        (
            Method::POST,
            "/Users".into(),
            Some(user(&format!("p{i:07}"))),
        )
    })
    .await;
    users.print();
    let ids = Arc::new(ids_of(&f, "p", scale).await);
    let mut run = drive(
        &f,
        &format!("provision: {groups} groups of 10"),
        groups,
        move |i| {
            let members: Vec<Value> = ids[i * 10..(i * 10 + 10).min(ids.len())]
                .iter()
                .map(|id| json!({"value": id}))
                .collect();
            (
                Method::POST,
                "/Groups".into(),
                Some(json!({"displayName": format!("g{i}"), "members": members})),
            )
        },
    )
    .await;
    run.print();
    println!(
        "{:<48} {:>8.1} s (target < 60 s for 100k + 10k)",
        "provision: total",
        started.elapsed().as_secs_f64()
    );
    match Arc::try_unwrap(f) {
        Ok(f) => f.stop().await,
        Err(_) => eprintln!("fixture still shared; leaving it to the process exit"),
    }
}
