//! Webhook benchmark: what the transactional outbox costs SCIM, and how fast
//! events reach a receiver. The identity service on SQLite, then on
//! PostgreSQL; 64 concurrent keep-alive SCIM clients; a receiver in this
//! process (axum on 127.0.0.1, answering 204 at once, so the numbers are
//! the sender's).
//!
//! 1. SCIM creates/s without a webhook, then with one endpoint subscribed to
//!    `*` (each create writes its event in the same transaction either way),
//!    in three alternating pairs; the median ratio of the rates, and of the
//!    process CPU per create, counted until its event is delivered (the
//!    load client's and the receiver's share the process: an upper bound of
//!    what delivery adds);
//! 2. event → 2xx latency of the "with" bursts' events, p50/p99;
//! 3. deliveries/s: a replay of every burst (every event a different
//!    member, so 64 are in flight at once).
//!
//! Run with `cargo bench --bench webhooks`; `IDSYNC_BENCH_EVENTS` (default
//! 5,000) sizes each burst, `IDSYNC_BENCH_DBS=sqlite` skips PostgreSQL.
//! Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "common/http_load.rs"]
mod http_load;

#[path = "common/scim_load.rs"]
mod scim_load;

/// The allocator `idsync serve` runs with (src/main.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::post};
use idsync::service::store::ObjectKind;
use reqwest::Method;
use scim_load::{CLIENTS, Request, Target, drive, process_cpu, user};
use serde_json::json;
use support::{Db, scim::ScimFixture};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

/// What the receiver saw: each delivery's event → receipt latency.
#[derive(Default)]
struct Received {
    latencies: Mutex<Vec<Duration>>,
}

impl Received {
    fn count(&self) -> usize {
        self.latencies.lock().expect("not poisoned").len()
    }
}

/// The one field of a delivery the receiver reads.
#[derive(serde::Deserialize)]
struct Stamped<'a> {
    timestamp: &'a str,
}

async fn receive(State(seen): State<Arc<Received>>, body: String) -> StatusCode {
    let at = serde_json::from_str::<Stamped>(&body)
        .ok()
        .and_then(|e| e.timestamp.parse::<jiff::Timestamp>().ok());
    let waited = at.map_or(Duration::ZERO, |at| {
        let ms = jiff::Timestamp::now().as_millisecond() - at.as_millisecond();
        Duration::from_millis(ms.max(0) as u64)
    });
    seen.latencies.lock().expect("not poisoned").push(waited);
    StatusCode::NO_CONTENT
}

/// A receiver on a free port; answers its URL and what it saw.
async fn receiver() -> (String, Arc<Received>) {
    let seen = Arc::new(Received::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Waits until the receiver holds `n` deliveries (or a minute passes).
async fn until_received(seen: &Received, n: usize) -> Duration {
    let started = Instant::now();
    while seen.count() < n && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn creates(target: &Target, prefix: String, label: &str, n: usize) -> f64 {
    let mut run = drive(target, label, n, move |i| {
        Request::new(
            Method::POST,
            "/Users",
            Some(user(&format!("{prefix}{i:06}"))),
        )
    })
    .await;
    run.print();
    run.rate()
}

/// Rounds of a burst without a webhook, then one with it, alternating, so
/// that the machine's drift falls on both sides alike.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn bench_on(db: Db, n: usize) {
    println!("\n{db:?}: {ROUNDS} rounds of two bursts of {n} creates, {CLIENTS} SCIM clients");
    let f = ScimFixture::start(db, json!({})).await;
    let target = Target::of(&f);
    let (url, seen) = receiver().await;
    let hook = json!({"url": url, "eventTypes": ["*"],
                      "secrets": [format!("whsec_{}=", "A".repeat(43))]});
    let start = jiff::Timestamp::now();
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Absent in the first round: nothing to delete is fine.
        let _ = (f.admin)
            .delete_object(ObjectKind::Webhook, "acme", "bench", false)
            .await;
        let cpu = process_cpu();
        let without = creates(&target, format!("a{round}-"), "POST /Users, no webhook", n).await;
        let cpu_without = process_cpu().saturating_sub(cpu);
        (f.admin)
            .put_object(ObjectKind::Webhook, "acme", "bench", &hook)
            .await
            .expect("webhook stored");
        let label = "POST /Users, one webhook subscribed";
        let cpu = process_cpu();
        let with = creates(&target, format!("b{round}-"), label, n).await;
        // Until the last event is delivered: the deliveries' CPU counts.
        until_received(&seen, (round + 1) * n).await;
        let cpu_with = process_cpu().saturating_sub(cpu);
        rates.push(with / without);
        cpus.push(cpu_with.as_secs_f64() / cpu_without.as_secs_f64());
    }
    let (rate, cpu) = (median(rates), median(cpus));
    println!(
        "outbox cost (median of {ROUNDS} pairs): creates/s with a webhook are {:.1} % of without ({:+.1} %); CPU per create, its delivery and receipt included: {:+.1} %",
        100.0 * rate,
        100.0 * (rate - 1.0),
        100.0 * (cpu - 1.0)
    );
    let mut burst = seen.latencies.lock().expect("not poisoned").clone();
    burst.sort();
    println!(
        "event -> 2xx during and after the bursts: {} delivered, p50 {:.0} ms, p99 {:.0} ms",
        burst.len(),
        percentile(&burst, 0.5),
        percentile(&burst, 0.99)
    );
    let range = idsync::admin::ReplayRequest {
        from: start,
        until: None,
    };
    let replay = f
        .admin
        .replay_webhook("acme", "bench", &range)
        .await
        .expect("replayed");
    let (before, cpu) = (seen.count(), process_cpu());
    let took = until_received(&seen, before + replay.events as usize).await;
    let cpu = process_cpu().saturating_sub(cpu).as_secs_f64();
    println!(
        "replay of {} events: {:.0} deliveries/s ({} in flight at most), {:.1} us CPU each, sender and receiver",
        replay.events,
        replay.events as f64 / took.as_secs_f64(),
        idsync::service::webhooks::CONCURRENCY,
        cpu * 1e6 / replay.events.max(1) as f64
    );
    f.stop().await;
}

async fn bench() {
    let n = std::env::var("IDSYNC_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let dbs = std::env::var("IDSYNC_BENCH_DBS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "Webhook benchmark: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if dbs.contains("sqlite") {
        bench_on(Db::Sqlite, n).await;
    }
    if dbs.contains("postgres") {
        bench_on(Db::Postgres, n).await;
    }
}
