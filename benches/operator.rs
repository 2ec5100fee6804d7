//! Operator benchmark on a real control plane (tests/e2e/control-plane.sh):
//!
//! 1. time for 1,000 resources (100 Workspaces, 300 SSOConnections, 300 SCIMTokens,
//!    300 RoleMappings) to become Ready;
//! 2. identity-service writes and status patches during 3 idle resyncs (goal 0);
//! 3. operator RSS once 10,000 resources exist (goal < 64 MiB): 9,000 more
//!    RoleMappings created concurrently, then three resyncs at rest;
//! 4. a restarted operator's first pass over those 10,000 and its RSS after.
//!
//! Run with `cargo bench --bench operator`. Prints numbers with the load average
//! beside them (the machine may be shared); asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use futures::StreamExt;
use idsync::api::RoleMapping;
use kube::{
    Api,
    api::{ListParams, PostParams},
};
use support::cluster::{ControlPlane, OperatorProcess, ServiceProcess};

const WORKSPACES: usize = 100;
const RESYNC_SECONDS: u64 = 10;
const TOTAL: usize = 10_000;
const CREATE_CONCURRENCY: usize = 32;
/// How long the 10,000-resource phase may take before the bench reports what it has.
const GROW_TIMEOUT: Duration = Duration::from_secs(480);

/// (VmRSS, VmHWM) of a process, in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The machine's load average, printed beside each number (others may be building).
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = l.split_whitespace().take(3).collect();
    format!("load average {}", three.join(" "))
}

fn count_ready(cp: &ControlPlane, kind: &str) -> usize {
    let (_, out, _) = cp.kubectl_run(
        &["get", kind, "-A", "-o", r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#],
        None,
    );
    out.lines().filter(|l| *l == "True").count()
}

fn apply_in_batches(cp: &ControlPlane, docs: &[String]) {
    for chunk in docs.chunks(500) {
        let (ok, _, err) = cp.kubectl_run(
            &["apply", "--server-side", "-f", "-"],
            Some(&chunk.join("---\n")),
        );
        assert!(ok, "kubectl apply: {err}");
    }
}

#[tokio::main]
async fn main() {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "bench-operator");
    let cp = ControlPlane::start(&dir.join("cluster"));
    cp.install_crds();
    let service = ServiceProcess::start(&dir);
    let cert =
        std::fs::read_to_string(support::repo_root().join("tests/data/idp-signing.pem")).unwrap();
    let cert_yaml: String = cert.lines().map(|l| format!("        {l}\n")).collect();

    let mut docs = vec![format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: idsync-admin, namespace: default}}\nstringData: {{token: {}}}\n",
        service.admin_token
    )];
    docs.push(format!(
        "apiVersion: idsync.dev/v1alpha1\nkind: IdentityService\nmetadata: {{name: idsync, namespace: default}}\nspec:\n  url: {}\n  adminTokenSecretRef: {{name: idsync-admin, key: token}}\n",
        service.url
    ));
    for w in 0..WORKSPACES {
        docs.push(format!(
            "apiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: ws{w}, namespace: default}}\nspec:\n  serviceRef: {{name: idsync}}\n  domains: [ws{w}.example.com]\n"
        ));
        for i in 0..3 {
            let mut d = String::new();
            write!(
                d,
                "apiVersion: idsync.dev/v1alpha1\nkind: SSOConnection\nmetadata: {{name: ws{w}-sso{i}, namespace: default}}\nspec:\n  workspaceRef: {{name: ws{w}}}\n  protocol: saml\n  saml:\n    entityId: https://idp{i}.example.com/\n    ssoUrl: https://idp{i}.example.com/sso\n    certificates:\n      - |\n{cert_yaml}"
            )
            .unwrap();
            docs.push(d);
            docs.push(format!(
                "apiVersion: idsync.dev/v1alpha1\nkind: SCIMToken\nmetadata: {{name: ws{w}-scim{i}, namespace: default}}\nspec:\n  workspaceRef: {{name: ws{w}}}\n  rotation: {{every: 90d, overlap: 24h}}\n"
            ));
            docs.push(format!(
                "apiVersion: idsync.dev/v1alpha1\nkind: RoleMapping\nmetadata: {{name: ws{w}-roles{i}, namespace: default}}\nspec:\n  workspaceRef: {{name: ws{w}}}\n  rules: [{{role: admin, equals: admins-{i}}}, {{role: member, regex: '^team-.*$'}}]\n  tests: [{{groups: [admins-{i}], expect: admin}}]\n"
            ));
        }
    }
    let resources = docs.len() - 2;
    let operator = OperatorProcess::start(
        &cp,
        &dir,
        "operator",
        &format!("{RESYNC_SECONDS}s"),
        &["--lease-namespace", "default"],
    );
    let pid = operator.process.pid().expect("the operator is running");
    let (empty, _) = rss(pid);
    println!("operator with no resources: RSS {empty:.1} MiB");
    let started = Instant::now();
    apply_in_batches(&cp, &docs);
    let applied = started.elapsed();
    loop {
        let ready: usize = ["workspaces", "ssoconnections", "scimtokens", "rolemappings"]
            .iter()
            .map(|k| count_ready(&cp, k))
            .sum();
        if ready >= resources {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {ready}/{resources} Ready after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let to_ready = started.elapsed();
    println!(
        "{resources} resources over {WORKSPACES} workspaces: applied in {:.1} s, all Ready after {:.1} s ({:.0} resources/s); {}",
        applied.as_secs_f64(),
        to_ready.as_secs_f64(),
        resources as f64 / to_ready.as_secs_f64(),
        loadavg()
    );

    // Idle resyncs: nothing changed, so nothing may be written.
    tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS)).await;
    let puts = |o: &OperatorProcess| {
        let o = o.metrics_url.clone();
        async move {
            let text = reqwest::get(&o).await.unwrap().text().await.unwrap();
            let sum = |prefix: &str| -> f64 {
                text.lines()
                    .filter(|l| l.starts_with(prefix))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            (
                sum("idsync_operator_service_requests_total{operation=\"put"),
                sum("idsync_operator_status_patches_total"),
                sum("idsync_operator_secret_writes_total"),
                sum("idsync_operator_reconciles_total"),
            )
        }
    };
    let before = puts(&operator).await;
    tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS * 3 + 2)).await;
    let after = puts(&operator).await;
    println!(
        "3 idle resyncs ({RESYNC_SECONDS} s each): {} reconciles, {} identity-service writes, {} status patches, {} Secret writes; {}",
        after.3 - before.3,
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        loadavg()
    );
    let (rss_now, hwm) = rss(pid);
    println!("operator at {resources} resources: RSS {rss_now:.1} MiB (VmHWM {hwm:.1} MiB)");

    // Grow to 10,000 resources: RoleMappings, the lightest kind to sync, created
    // concurrently through the API (kubectl would apply them one by one).
    let client = cp.client().await;
    let extra = TOTAL - resources;
    let api: Api<RoleMapping> = Api::namespaced(client.clone(), "default");
    let grow = Instant::now();
    let mut peak = rss(pid);
    let created = futures::stream::iter(0..extra)
        .map(|n| {
            let api = api.clone();
            async move {
                let rm: RoleMapping = serde_json::from_value(serde_json::json!({
                    "apiVersion": "idsync.dev/v1alpha1",
                    "kind": "RoleMapping",
                    "metadata": {"name": format!("bulk-{n}"), "namespace": "default"},
                    "spec": {
                        "workspaceRef": {"name": format!("ws{}", n % WORKSPACES)},
                        "defaultRole": "viewer",
                        "rules": [{"role": "admin", "equals": format!("bulk-{n}")}],
                    },
                }))
                .expect("a valid RoleMapping");
                api.create(&PostParams::default(), &rm).await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    let created_in = grow.elapsed();
    println!(
        "created {created}/{extra} more RoleMappings in {:.1} s ({CREATE_CONCURRENCY} at a time); {}",
        created_in.as_secs_f64(),
        loadavg()
    );
    let wanted = 300 + extra;
    let ready = loop {
        let ready = ready_role_mappings(&api).await;
        let now = rss(pid);
        peak = (peak.0.max(now.0), now.1);
        if ready >= wanted || grow.elapsed() > GROW_TIMEOUT {
            break ready;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let all_ready = grow.elapsed();
    println!(
        "{} resources: {ready}/{wanted} RoleMappings Ready {:.1} s after the creates began{}; {}",
        resources + created,
        all_ready.as_secs_f64(),
        if ready >= wanted {
            String::new()
        } else {
            format!(" (gave up after {} s)", GROW_TIMEOUT.as_secs())
        },
        loadavg()
    );
    // A few resyncs of all 10,000 at rest, sampling RSS.
    let settle = Instant::now();
    let before = puts(&operator).await;
    while settle.elapsed() < Duration::from_secs(RESYNC_SECONDS * 3 + 2) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = rss(pid);
        peak = (peak.0.max(now.0), now.1);
    }
    let after = puts(&operator).await;
    let (rss_now, hwm) = rss(pid);
    println!(
        "operator at {} resources: RSS {rss_now:.1} MiB (peak sampled {:.1} MiB, VmHWM {hwm:.1} MiB); {} reconciles, {} identity-service writes, {} status patches in the {} s after; {}",
        resources + created,
        peak.0,
        after.3 - before.3,
        after.0 - before.0,
        after.1 - before.1,
        RESYNC_SECONDS * 3 + 2,
        loadavg()
    );

    // A fresh operator (a restart, or the standby taking over) starts with all
    // 10,000 in the cluster: its first list and first reconcile of each.
    operator.process.signal("-TERM");
    drop(operator);
    let restart = Instant::now();
    let fresh = OperatorProcess::start(
        &cp,
        &dir,
        "operator-restarted",
        &format!("{RESYNC_SECONDS}s"),
        &["--lease-namespace", "default"],
    );
    let fresh_pid = fresh.process.pid().expect("the operator is running");
    let total = (resources + created) as f64;
    let mut fresh_peak = 0.0_f64;
    loop {
        let reconciled = fresh
            .metric_sum("idsync_operator_reconciles_total", &[])
            .await;
        fresh_peak = fresh_peak.max(rss(fresh_pid).0);
        if reconciled >= total || restart.elapsed() > GROW_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let first_pass = restart.elapsed();
    tokio::time::sleep(Duration::from_secs(RESYNC_SECONDS * 2)).await;
    let (rss_now, hwm) = rss(fresh_pid);
    println!(
        "restarted operator at {} resources: each reconciled once {:.1} s after start; RSS {rss_now:.1} MiB (peak sampled {:.1} MiB, VmHWM {hwm:.1} MiB) {} s later; {}",
        resources + created,
        first_pass.as_secs_f64(),
        fresh_peak.max(rss_now),
        RESYNC_SECONDS * 2,
        loadavg()
    );
}

/// Ready RoleMappings, listed a page at a time.
async fn ready_role_mappings(api: &Api<RoleMapping>) -> usize {
    let mut ready = 0;
    let mut params = ListParams::default().limit(1000);
    loop {
        let Ok(page) = api.list(&params).await else {
            return ready;
        };
        ready += page
            .items
            .iter()
            .filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return ready,
        }
    }
}
