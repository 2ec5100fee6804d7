//! The SCIM load the benchmarks drive: `CLIENTS` concurrent keep-alive
//! clients (`http_load`) sending the i-th request of a workload, with
//! latencies and the process's CPU time per operation.

#![allow(dead_code)] // each benchmark uses a different part

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{Value, json};

use super::http_load;
use super::support::scim::ScimFixture;

pub const CLIENTS: usize = 64;

/// Where a workload goes: a SCIM base URL and a bearer token.
#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Target {
    pub fn endpoint(&self) -> http_load::Endpoint {
        http_load::Endpoint::parse(&self.base, &self.token)
    }

    pub fn of(f: &ScimFixture) -> Self {
        Self {
            base: f.base(),
            token: f.token.clone(),
            http: f.http.clone(),
        }
    }
}

pub struct Run {
    pub label: String,
    pub count: usize,
    pub elapsed: Duration,
    /// CPU time this process spent meanwhile: idsync's service and the
    /// clients for idsync runs, the clients alone for peers (which run in
    /// processes of their own). Steadier than ops/s on a shared machine.
    pub cpu: Duration,
    pub latencies: Vec<Duration>,
    pub failures: usize,
}

/// CPU time (user + system) this process has used, from /proc/self/stat
/// (clock ticks of 10 ms).
pub fn process_cpu() -> Duration {
    cpu_of("self")
}

/// CPU time (user + system) process `pid` has used (`self`: this one).
pub fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11) // state … cmajflt; then utime, stime
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    pub fn print(&mut self) {
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
            "{:<48} {:>8} ops {:>9.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   cpu {:>5.0} us/op   failures {}",
            self.label,
            self.count,
            self.rate(),
            pct(0.50),
            pct(0.99),
            self.cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64,
            self.failures
        );
    }
}

/// Runs `count` requests from `CLIENTS` concurrent tasks; `make(i)` gives the
/// i-th request.
pub async fn drive<F>(target: &Target, label: &str, count: usize, make: F) -> Run
where
    F: Fn(usize) -> Request + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (target, make, next) = (target.clone(), make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut conn = http_load::Connection::new(target.endpoint());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let request = make(i);
                let body = request.body.map(|b| b.to_string());
                let t = Instant::now();
                let answer = conn
                    .send(
                        request.method.as_str(),
                        &request.path,
                        body.as_deref().map(str::as_bytes),
                        request.must_contain.as_deref().map(str::as_bytes),
                    )
                    .await;
                if !answer.is_ok_and(|a| a.succeeded()) {
                    failures += 1;
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
        cpu: Duration::ZERO,
        latencies: Vec::with_capacity(count),
        failures: 0,
    };
    for t in tasks {
        let (l, fails) = t.await.expect("client task");
        run.latencies.extend(l);
        run.failures += fails;
    }
    run.elapsed = started.elapsed();
    run.cpu = process_cpu().saturating_sub(cpu_before);
    run
}

/// One request of a workload.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    /// Text a successful answer's body contains (a lookup's userName: a
    /// lookup that finds nobody is a 200 too).
    pub must_contain: Option<String>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Self {
        Self {
            method,
            path: path.into(),
            body,
            must_contain: None,
        }
    }
}

pub fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name, "externalId": format!("ext-{name}"), "active": true,
        "name": {"givenName": "Bench", "familyName": name},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
    })
}

/// `count` user creates (`c000000`, `c000001`, …).
pub async fn creates(target: &Target, label: &str, count: usize) -> Run {
    drive(target, label, count, |i| {
        Request::new(Method::POST, "/Users", Some(user(&format!("c{i:06}"))))
    })
    .await
}

/// `count` lookups by userName among the first `users` created, as IdPs do
/// before every create.
pub async fn lookups(target: &Target, label: &str, count: usize, users: usize) -> Run {
    drive(target, label, count, move |i| {
        let name = format!("c{:06}", (i * 7919) % users);
        Request {
            must_contain: Some(format!("\"{name}\"")),
            ..Request::new(
                Method::GET,
                format!("/Users?filter=userName%20eq%20%22{name}%22"),
                None,
            )
        }
    })
    .await
}
