//! Replicas benchmark: the SCIM load of `benches/scim.rs` (64 keep-alive
//! clients) on PostgreSQL, through HAProxy to one `idsync serve` and then to
//! three (round-robin, no stickiness), as separate processes of this build.
//! On a machine of two cores the machine is the limit, not the replica count,
//! so beside ops/s it prints the CPU per request of the replicas together,
//! of the balancer, and of the load client: the ratio that carries to a
//! bigger machine.
//!
//! 1. user creates/s (POST /Users), p50/p99;
//! 2. `userName eq` lookups/s;
//! 3. PATCH add-member/s to one group (members left out of the answer).
//!
//! Run with `cargo bench --bench replicas`; `IDSYNC_BENCH_USERS` (default
//! 10,000) sizes the creates. Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/http_load.rs"]
mod http_load;

#[path = "common/scim_load.rs"]
mod scim_load;

use std::time::Duration;

use idsync::service::store::ObjectKind;
use reqwest::Method;
use scim_load::{Request, Run, Target, cpu_of, creates, drive, lookups, process_cpu};
use serde_json::json;
use support::replicas::Replicas;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

/// CPU of the replicas, of the balancer, and of this process.
fn cpus(r: &Replicas) -> [Duration; 3] {
    let pid = |p: Option<u32>| cpu_of(&p.map_or("0".into(), |p| p.to_string()));
    let replicas = r.replicas.iter().map(|s| pid(s.process.pid())).sum();
    [replicas, pid(r.balancer_pid()), process_cpu()]
}

/// Runs `work` and prints its rate, latencies and CPU per request.
async fn measured(r: &Replicas, work: impl std::future::Future<Output = Run>) {
    let before = cpus(r);
    let mut run = work.await;
    let after = cpus(r);
    run.print();
    let per = |i: usize| (after[i] - before[i]).as_secs_f64() * 1e6 / run.count.max(1) as f64;
    println!(
        "{:<48} CPU per request: replicas {:.0} us, balancer {:.0} us, load client {:.0} us",
        "",
        per(0),
        per(1),
        per(2)
    );
}

async fn shape(n: usize, users: usize) {
    println!("\n{n} replica(s) on PostgreSQL behind HAProxy");
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), &format!("bench-{n}"));
    let r = Replicas::start(&dir, n).await;
    let admin = r.admin();
    admin
        .put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .expect("workspace");
    let target = Target {
        base: format!("{}/scim/v2/acme", r.url),
        token: support::scim::issue_token(&admin, "acme").await,
        http: reqwest::Client::new(),
    };
    measured(&r, creates(&target, "POST /Users", users)).await;
    let label = "GET /Users?filter=userName eq";
    measured(&r, lookups(&target, label, 2 * users, users)).await;
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "all"});
    let created = target
        .http
        .post(format!("{}/Groups", target.base))
        .bearer_auth(&target.token)
        .json(&group)
        .send()
        .await
        .expect("group");
    let body: serde_json::Value = created.json().await.expect("group JSON");
    let path = format!(
        "/Groups/{}?excludedAttributes=members",
        body["id"].as_str().unwrap_or_default()
    );
    let ids = member_ids(&target, users.min(5000)).await;
    let add = move |i: usize| {
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[i % ids.len()]}]}]});
        Request::new(Method::PATCH, path.clone(), Some(patch))
    };
    measured(
        &r,
        drive(&target, "PATCH /Groups add-member", users.min(5000), add),
    )
    .await;
}

/// Ids of the first `n` users.
async fn member_ids(target: &Target, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let page: serde_json::Value = target
            .http
            .get(format!(
                "{}/Users?attributes=id&count=1000&startIndex={}",
                target.base,
                ids.len() + 1
            ))
            .bearer_auth(&target.token)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("page JSON");
        let found: Vec<String> = page["Resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|u| u["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            break;
        }
        ids.extend(found);
    }
    ids
}

async fn bench() {
    let users = std::env::var("IDSYNC_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!(
        "Replicas benchmark: {} cores, {users} creates",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    shape(1, users).await;
    shape(3, users).await;
}
